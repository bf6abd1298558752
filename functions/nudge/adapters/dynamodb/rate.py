"""The send-rate limiter over DynamoDB: one horizon item per bucket, shared by every invocation.

The item holds the next free send slot (epoch milliseconds). Reserving a slot moves it `interval` later
with one conditional update, so a burst of any size gets distinct slots spread at the account's rate and
nobody waits inside Lambda: a caller whose slot is later defers its send to that moment.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from pynamodb.exceptions import UpdateError

from nudge.adapters.dynamodb.models import RATE_PREFIX, BoundModels

HORIZON_SK = "horizon"
_ATTEMPTS = 8


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class DynamoSendRateLimiter:
    """Implements nudge.ports.SendRateLimiter."""

    def __init__(self, models: BoundModels) -> None:
        self._model = models.counters

    def reserve(self, bucket: str, now: datetime, interval: timedelta) -> datetime:
        model = self._model
        item = model(pk=RATE_PREFIX + bucket, sk=HORIZON_SK)
        # Rounded up: a slot never comes sooner than the rate allows.
        step, now_ms = max(1, math.ceil(interval.total_seconds() * 1000)), _ms(now)
        for _ in range(_ATTEMPTS):
            try:
                # Busy: the next slot is now or later; take it and move the horizon one interval on.
                item.update(actions=[model.taken.add(step)], condition=model.taken >= now_ms)
                return datetime.fromtimestamp((int(item.taken) - step) / 1000, UTC)
            except UpdateError as exc:
                if not _lost(exc):
                    raise
            try:
                # Idle: the horizon is in the past (or absent); the slot is now.
                item.update(
                    actions=[model.taken.set(now_ms + step)],
                    condition=model.taken.does_not_exist() | (model.taken < now_ms),
                )
                return now
            except UpdateError as exc:
                if not _lost(exc):
                    raise
        raise RuntimeError(f"send-rate horizon {bucket} kept moving; {_ATTEMPTS} attempts")

    def hold(self, bucket: str, until: datetime) -> None:
        model = self._model
        item = model(pk=RATE_PREFIX + bucket, sk=HORIZON_SK)
        try:
            item.update(
                actions=[model.taken.set(_ms(until))],
                condition=model.taken.does_not_exist() | (model.taken < _ms(until)),
            )
        except UpdateError as exc:
            if not _lost(exc):
                raise  # a later horizon already holds: nothing to do


def _lost(exc: UpdateError) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"
