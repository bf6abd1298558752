"""Fires due EventBridge Scheduler schedules locally: moto stores schedules but never runs them.

The pump reads the schedule group through the real Scheduler API (on moto), invokes the schedule's target
with its Input — exactly what Scheduler would deliver — and then deletes a one-time `at(...)` schedule, as
ActionAfterCompletion=DELETE does, or lines up the next day of a daily `cron(M H * * ? *)` one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from nudge.adapters.scheduler import parse_at_expression
from nudge.clocks import MovableClock

_DAILY_CRON = re.compile(r"cron\((\d{1,2}) (\d{1,2}) \* \* \? \*\)")


@dataclass(frozen=True)
class DueSchedule:
    name: str
    at: datetime
    payload: dict[str, Any]
    target: str = ""  # the target's ARN
    daily: bool = False  # a recurring cron schedule: fired every day, never deleted


def next_daily(expression: str, after: datetime) -> datetime:
    """The first moment at or after `after` that `cron(M H * * ? *)` (UTC) names; other crons are refused."""
    found = _DAILY_CRON.fullmatch(expression)
    if found is None:
        raise ValueError(
            f"the local pump runs one-time at(...) and daily cron(M H * * ? *) schedules, not {expression}"
        )
    minute, hour = int(found.group(1)), int(found.group(2))
    moment = after.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return moment if moment >= after else moment + timedelta(days=1)


class SchedulePump:
    def __init__(
        self, client: Any, group: str, clock: MovableClock, invoke: Callable[[str, dict[str, Any]], Any]
    ) -> None:
        self._client = client
        self._group = group
        self._clock = clock
        self._invoke = invoke
        self._known: dict[str, DueSchedule] = {}
        self.fired = 0

    def pending(self) -> list[DueSchedule]:
        """Every schedule in the group, earliest first (reads only the ones not seen before)."""
        names: set[str] = set()
        for page in self._client.get_paginator("list_schedules").paginate(GroupName=self._group):
            names.update(item["Name"] for item in page["Schedules"])
        for name in names - self._known.keys():
            detail = self._client.get_schedule(Name=name, GroupName=self._group)
            expression = detail["ScheduleExpression"]
            target, payload = detail["Target"]["Arn"], json.loads(detail["Target"]["Input"])
            if expression.startswith("cron("):
                at = next_daily(expression, self._clock.now())
                self._known[name] = DueSchedule(name, at, payload, target, daily=True)
            else:
                self._known[name] = DueSchedule(name, parse_at_expression(expression), payload, target)
        for gone in self._known.keys() - names:
            del self._known[gone]
        return sorted(self._known.values(), key=lambda s: (s.at, s.name))

    def run_until(self, end: datetime, *, on_fire: Callable[[DueSchedule, Any], None] | None = None) -> int:
        """Fire every schedule due up to `end` in time order (moving the clock to each), then set the clock to end."""
        fired = 0
        while True:
            pending = self.pending()
            if not pending or pending[0].at > end:
                break
            # Everything due at the earliest moment fires as one batch; a firing only ever schedules later.
            batch = [item for item in pending if item.at == pending[0].at]
            if batch[0].at > self._clock.now():
                self._clock.set(batch[0].at)
            for due in batch:
                result = self._invoke(due.target, due.payload)
                if due.daily:
                    self._known[due.name] = replace(due, at=due.at + timedelta(days=1))
                else:
                    self._delete(due.name)
                fired += 1
                if on_fire:
                    on_fire(due, result)
        if end > self._clock.now():
            self._clock.set(end)
        self.fired += fired
        return fired

    def _delete(self, name: str) -> None:
        try:
            self._client.delete_schedule(Name=name, GroupName=self._group)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        self._known.pop(name, None)
