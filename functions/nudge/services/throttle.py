"""The send-rate budget: at most N sends per second across every invocation, on a shared counter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nudge.ports import Clock, SendRateLimiter, Sleeper, TransientSendError


class SendThrottle:
    """Waits for a free slot in the current one-second window; gives up (a retryable error) after max_wait."""

    def __init__(
        self,
        limiter: SendRateLimiter,
        clock: Clock,
        sleeper: Sleeper,
        *,
        per_second: int,
        bucket: str = "email",
        max_wait: timedelta = timedelta(seconds=10),
    ) -> None:
        if per_second < 1:
            raise ValueError("the send rate must be at least 1 per second")
        self._limiter = limiter
        self._clock = clock
        self._sleeper = sleeper
        self._per_second = per_second
        self._bucket = bucket
        self._max_wait = max_wait
        self.waited = timedelta(0)

    def acquire(self) -> None:
        """Return once this send has a slot; raise TransientSendError if none frees up in time."""
        waited = timedelta(0)
        while True:
            now = self._clock.now()
            window = int(now.timestamp())
            if self._limiter.try_acquire(self._bucket, window, self._per_second):
                self.waited += waited
                return
            pause = datetime.fromtimestamp(window + 1, UTC) - now
            if waited + pause > self._max_wait:
                # The step fails as retryable: its message is RETRYABLE, so the retry sends it once.
                raise TransientSendError(f"send rate of {self._per_second}/s stayed exhausted for {waited}")
            self._sleeper.sleep(pause.total_seconds())
            waited += pause
