"""The local Scheduler pump: one-time wake-ups and the stack's daily schedule, fired through moto's Scheduler."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from nudge import names
from nudge.clocks import VirtualClock
from nudge.local.moto_stack import MotoStack, start_moto_stack
from nudge.local.pump import DueSchedule, next_daily
from tests.conftest import START
from tests.factories import checkout_started


@pytest.fixture
def daily_stack(clock: VirtualClock) -> Iterator[MotoStack]:
    stack = start_moto_stack(clock, daily_job=True)
    try:
        yield stack
    finally:
        stack.stop()


def test_the_daily_schedule_fires_the_sweep_every_day_at_four_and_stays(daily_stack: MotoStack) -> None:
    daily_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1"))
    fired: list[tuple[str, str, Any]] = []

    def record(due: DueSchedule, result: Any) -> None:
        fired.append((f"{due.at:%m-%d %H:%M}", due.name, result))

    daily_stack.pump.run_until(START + timedelta(days=3), on_fire=record)

    daily = [(at, result["planned"]) for at, name, result in fired if name == names.DAILY_SCHEDULE]
    # Each firing planned the day; its pieces ran off the jobs queue (the base pass fanned out 8 scoring ones).
    assert {tuple(planned) for _, planned in daily} == {("reviews-0of1-0", "base-0of1-0", "copurchases-0of1-0")}
    day = daily_stack.container.daily.status(f"{START + timedelta(days=2):%Y-%m-%d}")
    assert (day.pieces, day.unfinished, day.errors) == (11, 0, 0)
    assert [at for at, _ in daily] == [f"{(START + timedelta(days=d)):%m-%d} 04:00" for d in (1, 2, 3)]
    wake_ups = [at for at, name, _ in fired if name != names.DAILY_SCHEDULE]
    assert len(wake_ups) == 3  # the cart reminders at +1 h, +1 d, +3 d
    [still] = [p for p in daily_stack.pump.pending() if p.name == names.DAILY_SCHEDULE]
    assert still.at == (START + timedelta(days=4)).replace(hour=4, minute=0)  # recurring: never deleted


def test_only_daily_crons_are_understood() -> None:
    assert next_daily("cron(30 4 * * ? *)", START) == (START + timedelta(days=1)).replace(hour=4, minute=30)
    assert next_daily("cron(0 9 * * ? *)", START) == START  # START is 09:00: due now
    with pytest.raises(ValueError, match="daily cron"):
        next_daily("cron(0 4 ? * MON *)", START)
