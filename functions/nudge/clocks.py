"""Clocks: the system clock for Lambda, a virtual one for the demo, tests and simulations."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


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


class MovableClock(Protocol):
    """A clock the local Scheduler pump may move forward (virtual or scaled time)."""

    def now(self) -> datetime: ...

    def set(self, moment: datetime) -> None: ...


class ScaledClock:
    """Wall-clock time that runs `speed` times faster from the moment it is made (`nudge serve --speed N`)."""

    def __init__(self, speed: float = 1.0, *, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._speed = speed
        self._start = start or datetime.now(UTC)
        self._t0 = time.monotonic()
        self._jump = timedelta(0)

    def now(self) -> datetime:
        return self._start + self._jump + timedelta(seconds=(time.monotonic() - self._t0) * self._speed)

    def set(self, moment: datetime) -> None:
        """Jump forward to `moment`; a moment already past changes nothing (time never goes back)."""
        ahead = moment - self.now()
        if ahead > timedelta(0):
            self._jump += ahead


class VirtualSleeper:
    """Sleeping on a virtual clock moves the clock: a wait costs no real time."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self.slept = 0.0

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self._clock.advance(timedelta(seconds=seconds))
