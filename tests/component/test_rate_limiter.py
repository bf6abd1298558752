"""The DynamoDB send-rate limiter on moto: one budget shared by every invocation, on a virtual clock."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from nudge.adapters.dynamodb.rate import DynamoSendRateLimiter
from nudge.adapters.dynamodb.store import DynamoStore
from nudge.adapters.ses import SesMailer
from nudge.clocks import VirtualSleeper
from nudge.local.moto_stack import REGION, MotoStack
from nudge.ports import OutgoingEmail
from nudge.services.throttle import SendThrottle
from tests.conftest import START


def other_invocation(stack: MotoStack) -> DynamoSendRateLimiter:
    """A limiter over its own pynamodb connection, as a concurrently running Lambda would hold."""
    # A store of its own binds fresh model classes over one new connection, as in another Lambda.
    return DynamoSendRateLimiter(DynamoStore.for_settings(stack.settings, region=REGION).models)


def test_a_burst_of_1000_sends_across_two_invocations_never_exceeds_the_rate(moto_stack: MotoStack) -> None:
    # Given two invocations sharing the 14/s budget through the counters table, and SES on moto
    clock = moto_stack.clock
    clock.set(START + timedelta(hours=1))
    sleeper = VirtualSleeper(clock)
    throttles = [
        SendThrottle(limiter, clock, sleeper, per_second=14)
        for limiter in (moto_stack.container.limiter, other_invocation(moto_stack))
    ]
    mailer = SesMailer(moto_stack.session.client("sesv2"))

    # When 1,000 due sends go through them, alternately
    sent_at = []
    for i in range(1000):
        throttles[i % 2].acquire()
        sent_at.append(clock.now())
        mailer.send(OutgoingEmail(f"s{i}@example.com", "hello@shop.example", "Hi", "<p>Hi</p>", "Hi", clock.now()))

    # Then SES got all 1,000, and no second saw more than 14
    per_second = Counter(int(at.timestamp()) for at in sent_at)
    assert len(moto_stack.sent_emails()) == 1000
    assert max(per_second.values()) == 14 and len(per_second) == 72
    windows = moto_stack.scan_all_tables()["nudge-counters"]
    assert {int(item["taken"]["N"]) for item in windows} == {14, 1000 - 71 * 14}
    assert all("expires_at" in item for item in windows)  # TTL sweeps the window items
