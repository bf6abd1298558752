"""The Scheduler port over EventBridge Scheduler: one one-time at() schedule per pending wake-up."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from nudge.ports import StepWakeUp

# Scheduler retries a failed invocation with backoff for up to this long, then sends it to the DLQ.
MAX_RETRY_ATTEMPTS = 10
MAX_EVENT_AGE_SECONDS = 6 * 3600


def at_expression(moment: datetime) -> str:
    """Scheduler's one-time expression, in UTC, to the second: at(2026-11-02T10:00:00)."""
    return f"at({moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S')})"


def parse_at_expression(expression: str) -> datetime:
    if not (expression.startswith("at(") and expression.endswith(")")):
        raise ValueError(f"not a one-time schedule expression: {expression!r}")
    return datetime.strptime(expression[3:-1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


class EventBridgeScheduler:
    def __init__(
        self, client: Any, *, group: str, target_arn: str, role_arn: str, dead_letter_arn: str | None = None
    ) -> None:
        self._client = client
        self._group = group
        self._target_arn = target_arn
        self._role_arn = role_arn
        self._dead_letter_arn = dead_letter_arn

    def schedule(self, name: str, at: datetime, wake_up: StepWakeUp) -> bool:
        target: dict[str, Any] = {
            "Arn": self._target_arn,
            "RoleArn": self._role_arn,
            "Input": json.dumps(wake_up.as_payload(), separators=(",", ":")),
            "RetryPolicy": {
                "MaximumRetryAttempts": MAX_RETRY_ATTEMPTS,
                "MaximumEventAgeInSeconds": MAX_EVENT_AGE_SECONDS,
            },
        }
        if self._dead_letter_arn:
            target["DeadLetterConfig"] = {"Arn": self._dead_letter_arn}
        try:
            self._client.create_schedule(
                Name=name,
                GroupName=self._group,
                ScheduleExpression=at_expression(at),
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Target=target,
                Description=f"nudge run {wake_up.run_id} wake-up {wake_up.seq}",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConflictException":
                return False  # already scheduled by an earlier attempt of this same step
            raise
        return True

    def cancel(self, name: str) -> None:
        try:
            self._client.delete_schedule(Name=name, GroupName=self._group)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
