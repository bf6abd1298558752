"""Fires due EventBridge Scheduler schedules and drains the work queue locally: moto does neither.

The pump reads the schedule group through the real Scheduler API (on moto), delivers the schedule's Input
to its target — the work queue, as Scheduler's SQS target would, or a function — and then deletes a
one-time `at(...)` schedule, as ActionAfterCompletion=DELETE does, or lines up the next day of a daily
`cron(M H * * ? *)` one. The queue pump plays Lambda's SQS event-source mapping: it receives up to ten
visible messages (one, for the daily job's pieces), invokes the worker (or the sweep function) with them,
deletes what succeeded and leaves the rest to come back
after the visibility timeout (and to the dead-letter queue after maxReceiveCount), on the virtual clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from nudge.adapters.scheduler import parse_at_expression
from nudge.clocks import MovableClock
from nudge.domain.frozen import dataclass
from nudge.local.lambda_events import sqs_event

_DAILY_CRON = re.compile(r"cron\((\d{1,2}) (\d{1,2}) \* \* \? \*\)")


@dataclass(frozen=True)
class DueSchedule:
    name: str
    at: datetime
    payload: dict[str, Any]
    target: str = ""  # the target's ARN
    daily: bool = False  # a recurring cron schedule: fired every day, never deleted
    every: timedelta | None = None  # a rate(N minutes) schedule: fired every N minutes, never deleted


_RATE = re.compile(r"rate\((\d+) minutes?\)")


def rate_interval(expression: str) -> timedelta:
    """The interval of `rate(N minutes)`; other rates are refused."""
    found = _RATE.fullmatch(expression)
    if found is None:
        raise ValueError(f"the local pump runs rate(N minutes) schedules, not {expression}")
    return timedelta(minutes=int(found.group(1)))


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


class QueuePump:
    """Lambda's SQS event-source mapping, locally: batches of visible messages to the worker."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        queue_arn: str,
        backend_queue: Callable[[], Any],
        invoke: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        visibility_timeout: int,
        batch_size: int = 10,
    ) -> None:
        self._client = client
        self._url = queue_url
        self._arn = queue_arn
        self._backend_queue = backend_queue
        self._invoke = invoke
        self._visibility = visibility_timeout
        self._batch = batch_size
        self.worked = 0  # records the worker was handed
        self.failed_batches = 0

    def next_due(self) -> datetime | None:
        """When the earliest message becomes receivable (moto's SQS runs on the virtual clock here)."""
        moments = [max(m.delayed_until, m.visible_at + 1) for m in self._backend_queue()._messages]
        return datetime.fromtimestamp(min(moments) / 1000, UTC) if moments else None

    def send(self, body: str) -> None:
        self._client.send_message(QueueUrl=self._url, MessageBody=body)

    def drain(self) -> int:
        """Hand every message visible now to the worker, ten at a time; returns how many were handed."""
        handed = 0
        while True:
            received = self._client.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=self._batch,
                VisibilityTimeout=self._visibility,
                AttributeNames=["All"],
            ).get("Messages", [])
            if not received:
                return handed
            handed += len(received)
            self.worked += len(received)
            try:
                response = self._invoke(sqs_event(received, self._arn))
            except Exception:
                self.failed_batches += 1  # the whole batch comes back after the visibility timeout
                continue
            failed = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
            done = [m for m in received if m["MessageId"] not in failed]
            for start in range(0, len(done), 10):
                self._client.delete_message_batch(
                    QueueUrl=self._url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done[start : start + 10])
                    ],
                )


class SchedulePump:
    def __init__(
        self,
        client: Any,
        group: str,
        clock: MovableClock,
        invoke: Callable[[str, dict[str, Any]], Any],
        queue: QueuePump | None = None,
        *,
        jobs: QueuePump | None = None,
        campaigns: QueuePump | None = None,
    ) -> None:
        self._client = client
        self._group = group
        self._clock = clock
        self._invoke = invoke
        self._queue = queue
        self._queues = [q for q in (queue, jobs, campaigns) if q is not None]
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
            elif expression.startswith("rate("):
                every = rate_interval(expression)
                self._known[name] = DueSchedule(name, self._clock.now() + every, payload, target, every=every)
            else:
                self._known[name] = DueSchedule(name, parse_at_expression(expression), payload, target)
        for gone in self._known.keys() - names:
            del self._known[gone]
        return sorted(self._known.values(), key=lambda s: (s.at, s.name))

    @property
    def worked(self) -> int:
        """Records the worker was handed (wake-ups and deferred messages, retries included)."""
        return self._queue.worked if self._queue is not None else 0

    def run_until(self, end: datetime, *, on_fire: Callable[[DueSchedule, Any], None] | None = None) -> int:
        """Fire schedules and drain the queue in time order up to `end` (moving the clock), then set it to end."""
        fired = 0
        while True:
            pending = self.pending()
            next_schedule = pending[0].at if pending else None
            next_work = [due for queue in self._queues if (due := queue.next_due()) is not None]
            moments = [m for m in (next_schedule, *next_work) if m is not None]
            if not moments or min(moments) > end:
                break
            moment = min(moments)
            if moment > self._clock.now():
                self._clock.set(moment)
            if next_schedule is not None and next_schedule <= self._clock.now():
                # Everything due at the earliest moment fires as one batch; a firing only ever schedules later.
                for firing in [item for item in pending if item.at == next_schedule]:
                    result = self._invoke(firing.target, firing.payload)
                    if firing.daily or firing.every is not None:
                        step = firing.every or timedelta(days=1)
                        self._known[firing.name] = replace(firing, at=firing.at + step)
                    else:
                        self._delete(firing.name)
                    fired += 1
                    if on_fire:
                        on_fire(firing, result)
            for queue in self._queues:  # the jobs' pieces queue work, which the next round drains
                queue.drain()
        if end > self._clock.now():
            self._clock.set(end)
        self.fired += fired
        return fired

    def settle(self) -> None:
        """Drain what is due now (the worker picks up a request's work within milliseconds on AWS)."""
        self.run_until(self._clock.now())

    def _delete(self, name: str) -> None:
        try:
            self._client.delete_schedule(Name=name, GroupName=self._group)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        self._known.pop(name, None)
