"""Clocks: the system clock for Lambda, a virtual one for the demo, tests and simulations."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SystemSleeper:
    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class VirtualClock:
    """A clock that only moves when told to; never backwards."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        if moment < self._now:
            raise ValueError(f"time does not go backwards: {moment} < {self._now}")
        self._now = moment

    def advance(self, delta: timedelta) -> None:
        self.set(self._now + delta)


class VirtualSleeper:
    """Sleeping on a virtual clock moves the clock: a wait costs no real time."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self.slept = 0.0

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self._clock.advance(timedelta(seconds=seconds))
