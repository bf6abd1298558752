"""The send-rate budget: at most N sends per second across every invocation, without waiting in Lambda."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from nudge.ports import SendRateLimiter

# A campaign's send takes a slot at most this far ahead, so a flow's send never waits behind more than
# this much of a campaign (ADR 0019); finding none, it looks again within twice this, spread by message.
SPARE_WITHIN = timedelta(seconds=2)


# A send turned away again and again waits longer each time, up to this (then it looks every 30-32 s).
SPARE_BACKOFF_MAX = timedelta(seconds=30)


def spare_retry(message_id: str, waited: timedelta = timedelta(0)) -> timedelta:
    """When a campaign's send that found no spare slot looks again: SPARE_WITHIN to twice that, in 1/10 s
    steps by a hash of the message, so the ones turned away together do not all come back together; plus
    as long as it has waited already (at most SPARE_BACKOFF_MAX), so a send that keeps finding none backs
    off about twofold each time (2-4 s, 4-8 s, 8-16 s, ...) instead of polling every 2-4 s for minutes."""
    tenths = int(hashlib.sha256(message_id.encode()).hexdigest()[:8], 16) % int(SPARE_WITHIN.total_seconds() * 10)
    backoff = min(max(waited, timedelta(0)), SPARE_BACKOFF_MAX)
    return SPARE_WITHIN + timedelta(seconds=tenths / 10) + backoff


class SendThrottle:
    """Hands each send its own slot, `1/per_second` apart; a slot later than now means: deliver it then.

    A burst of any size is spread over time at the account's rate instead of failing or sleeping out a
    Lambda; when the provider throttles anyway (another sender on the account), `hold` pauses every slot.
    """

    def __init__(self, limiter: SendRateLimiter, *, per_second: int, bucket: str = "email") -> None:
        if per_second < 1:
            raise ValueError("the send rate must be at least 1 per second")
        self._limiter = limiter
        self._bucket = bucket
        self.per_second = per_second
        self._interval = timedelta(seconds=1) / per_second

    def slot(self, now: datetime) -> datetime:
        """A send slot for one message: `now` when the rate has room, else the first free moment after."""
        return self._limiter.reserve(self._bucket, now, self._interval)

    def spare(self, now: datetime, within: timedelta) -> datetime | None:
        """A campaign's send slot: one no later than `now + within` that nobody holds, or None (flows have the
        rate until further out). Campaigns so fill what flows leave, and a flow never waits behind more
        than `within` of campaign sends (ADR 0019)."""
        return self._limiter.reserve_spare(self._bucket, now, self._interval, within)

    def used(self) -> tuple[int, int]:
        """Slots taken, ever: (flows' by `slot`, campaigns' by `spare`); their change over a minute is a rate."""
        return self._limiter.used(self._bucket)

    def hold(self, until: datetime) -> None:
        self._limiter.hold(self._bucket, until)
