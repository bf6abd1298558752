"""The send-rate budget: at most N sends per second across every invocation, without waiting in Lambda."""

from __future__ import annotations

from datetime import datetime, timedelta

from nudge.ports import SendRateLimiter


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

    def hold(self, until: datetime) -> None:
        self._limiter.hold(self._bucket, until)
