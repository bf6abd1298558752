"""The DynamoDB send-rate limiter on moto: one horizon shared by every invocation, on a virtual clock."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from nudge.adapters.dynamodb.rate import DynamoSendRateLimiter
from nudge.adapters.dynamodb.store import DynamoStore
from nudge.adapters.memory import MemorySendRateLimiter
from nudge.local.moto_stack import REGION, MotoStack
from nudge.services.throttle import SendThrottle
from tests.conftest import START


def other_invocation(stack: MotoStack) -> DynamoSendRateLimiter:
    """A limiter over its own pynamodb connection, as a concurrently running Lambda would hold."""
    # A store of its own binds fresh model classes over one new connection, as in another Lambda.
    return DynamoSendRateLimiter(DynamoStore.for_settings(stack.settings, region=REGION).models)


def test_a_burst_of_1000_slots_across_two_invocations_is_spread_at_the_rate(moto_stack: MotoStack) -> None:
    # Given two invocations sharing the 14/s budget through the counters table
    clock = moto_stack.clock
    clock.set(START + timedelta(hours=1))
    throttles = [
        SendThrottle(limiter, per_second=14) for limiter in (moto_stack.container.limiter, other_invocation(moto_stack))
    ]

    # When 1,000 sends fall due at the same instant and each asks for a slot, alternately
    slots = [throttles[i % 2].slot(clock.now()) for i in range(1000)]

    # Then every slot is distinct, none before now, no second holds more than 14, and nobody waited
    assert len(set(slots)) == 1000 and min(slots) == clock.now()
    per_second = Counter(int(at.timestamp()) for at in slots)
    assert max(per_second.values()) == 14 and len(per_second) == 72
    assert clock.now() == START + timedelta(hours=1)  # reserving is one write, never a sleep


def test_an_idle_horizon_starts_again_at_now_and_a_hold_pushes_it(moto_stack: MotoStack) -> None:
    limiter = moto_stack.container.limiter
    throttle = SendThrottle(limiter, per_second=10)
    now = START + timedelta(hours=1)
    assert throttle.slot(now) == now
    later = now + timedelta(minutes=5)
    assert throttle.slot(later) == later  # the horizon had fallen behind: no backlog is invented

    throttle.hold(later + timedelta(seconds=30))  # SES said it is throttling us
    assert throttle.slot(later) == later + timedelta(seconds=30)
    throttle.hold(later)  # an earlier hold never pulls the horizon back
    assert throttle.slot(later) == later + timedelta(seconds=30, milliseconds=100)


@pytest.mark.parametrize("twin", ["dynamodb", "memory"])
def test_a_spare_slot_is_taken_only_close_to_now_and_flows_and_campaigns_are_counted_apart(
    moto_stack: MotoStack, twin: str
) -> None:
    # Given the limiter (DynamoDB on moto, or its in-memory twin) at 10/s, and flows holding 3 s of slots
    limiter = moto_stack.container.limiter if twin == "dynamodb" else MemorySendRateLimiter()
    throttle = SendThrottle(limiter, per_second=10)
    now = START + timedelta(hours=2)
    assert throttle.spare(now, timedelta(seconds=2)) == now  # idle: a campaign's send goes now
    flows = [throttle.slot(now) for _ in range(30)]
    assert flows[0] == now + timedelta(milliseconds=100) and flows[-1] == now + timedelta(seconds=3)

    # Then a campaign's send finds no spare slot within 2 s, and takes none
    assert throttle.spare(now, timedelta(seconds=2)) is None
    # A second later the next free slot (3.1 s) is within reach: taken, and the flows' next is after it
    later = now + timedelta(seconds=1, milliseconds=500)
    assert throttle.spare(later, timedelta(seconds=2)) == now + timedelta(seconds=3, milliseconds=100)
    assert throttle.slot(later) == now + timedelta(seconds=3, milliseconds=200)
    # And the counts: 31 flows' slots, 2 spare ones
    assert throttle.used() == (31, 2)


def test_a_quiet_send_and_each_send_of_a_burst_cost_one_update(moto_stack: MotoStack) -> None:
    # Given a limiter that remembers which state the horizon was in when it last looked (a hint only)
    throttle = SendThrottle(moto_stack.container.limiter, per_second=10)
    now = START + timedelta(hours=3)
    calls = moto_stack.requests.counts

    # A quiet shop: the horizon is in the past at every send, one UpdateItem each
    for minutes in range(3):
        calls.clear()
        assert throttle.slot(now + timedelta(minutes=minutes)) == now + timedelta(minutes=minutes)
        assert calls[("dynamodb", "UpdateItem")] == 1
    # A burst: one update per send, the first taking the idle horizon, the others moving it on
    burst = now + timedelta(minutes=10)
    calls.clear()
    slots = [throttle.slot(burst) for _ in range(20)]
    assert slots[0] == burst and slots[-1] == burst + timedelta(seconds=1, milliseconds=900)
    assert calls[("dynamodb", "UpdateItem")] == 20
    # Another invocation moved the horizon meanwhile: a wrong hint costs one failed update, once
    SendThrottle(other_invocation(moto_stack), per_second=10).hold(burst + timedelta(minutes=1))
    quiet = burst + timedelta(seconds=30)
    calls.clear()
    assert throttle.slot(quiet) == burst + timedelta(minutes=1)
    assert calls[("dynamodb", "UpdateItem")] == 2
    calls.clear()
    assert throttle.slot(quiet) == burst + timedelta(minutes=1, milliseconds=100)
    assert calls[("dynamodb", "UpdateItem")] == 1
