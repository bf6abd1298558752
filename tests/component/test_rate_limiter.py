"""The DynamoDB send-rate limiter on moto: one horizon shared by every invocation, on a virtual clock."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from nudge.adapters.dynamodb.rate import DynamoSendRateLimiter
from nudge.adapters.dynamodb.store import DynamoStore
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
