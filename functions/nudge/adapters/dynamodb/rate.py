"""The send-rate limiter over DynamoDB: one horizon item per bucket, shared by every invocation.

The item holds the next free send slot (epoch milliseconds). Reserving a slot moves it `interval` later
with one conditional update, so a burst of any size gets distinct slots spread at the account's rate and
nobody waits inside Lambda: a caller whose slot is later defers its send to that moment. The same update
counts the slot in `used` (flows' slots, ever); a campaign's send takes a spare slot instead, only one
within a few seconds of now (counted in `spared`; ADR 0019), so it never queues ahead of a flow's.

Two conditional updates serve the two states of the horizon (busy: move it on; idle, in the past: set it
from now), and each limiter remembers which one the horizon was in when it last looked, and tries that
one first: a quiet shop's send costs one `UpdateItem`, and so does each send of a burst after the first
(ADR 0020, Decision 8). The memory is a hint only; both updates keep their conditions, so a stale hint
costs one failed update, never a wrong slot.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from pynamodb.exceptions import UpdateError

from nudge.adapters.dynamodb.models import RATE_PREFIX, BoundModels, CounterModel, condition_check_failed

HORIZON_SK = "horizon"
_ATTEMPTS = 8


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class DynamoSendRateLimiter:
    """Implements nudge.ports.SendRateLimiter."""

    def __init__(self, models: BoundModels) -> None:
        self._model = models.counters
        self._horizon_ms: dict[str, int] = {}  # per bucket, the horizon this limiter last saw (a hint)

    def reserve(self, bucket: str, now: datetime, interval: timedelta) -> datetime:
        model = self._model
        item = model(pk=RATE_PREFIX + bucket, sk=HORIZON_SK)
        # Rounded up: a slot never comes sooner than the rate allows.
        step, now_ms = max(1, math.ceil(interval.total_seconds() * 1000)), _ms(now)
        for _ in range(_ATTEMPTS):
            if self._horizon_ms.get(bucket, 0) < now_ms and self._idle(item, now_ms, step, count=True):
                self._horizon_ms[bucket] = now_ms + step
                return now  # it was idle when last seen (or never seen), and still is: one update
            try:
                # Busy: the next slot is now or later; take it and move the horizon one interval on.
                item.update(actions=[model.taken.add(step), model.used.add(1)], condition=model.taken >= now_ms)
                self._horizon_ms[bucket] = int(item.taken)
                return datetime.fromtimestamp((int(item.taken) - step) / 1000, UTC)
            except UpdateError as exc:
                if not condition_check_failed(exc):
                    raise
            self._horizon_ms[bucket] = 0  # idle after all: the next attempt takes the slot from now
        raise RuntimeError(f"send-rate horizon {bucket} kept moving; {_ATTEMPTS} attempts")

    def reserve_spare(self, bucket: str, now: datetime, interval: timedelta, within: timedelta) -> datetime | None:
        model = self._model
        item = model(pk=RATE_PREFIX + bucket, sk=HORIZON_SK)
        step, now_ms = max(1, math.ceil(interval.total_seconds() * 1000)), _ms(now)
        last_ms = now_ms + int(within.total_seconds() * 1000)
        for _ in range(_ATTEMPTS):
            try:
                # Busy, but the next slot is within reach: take it.
                item.update(
                    actions=[model.taken.add(step), model.spared.add(1)], condition=model.taken.between(now_ms, last_ms)
                )
                return datetime.fromtimestamp((int(item.taken) - step) / 1000, UTC)
            except UpdateError as exc:
                if not condition_check_failed(exc):
                    raise
            if self._idle(item, now_ms, step, count=False):
                return now
            found = model.get(item.pk, item.sk, consistent_read=True, attributes_to_get=["taken"])
            if found.taken is not None and int(found.taken) > last_ms:
                return None  # flows (or a hold) have the rate until then: no spare slot
        raise RuntimeError(f"send-rate horizon {bucket} kept moving; {_ATTEMPTS} attempts")

    def used(self, bucket: str) -> tuple[int, int]:
        model = self._model
        try:
            found = model.get(RATE_PREFIX + bucket, HORIZON_SK, attributes_to_get=["used", "spared"])
        except model.DoesNotExist:
            return 0, 0
        return int(found.used or 0), int(found.spared or 0)

    def _idle(self, item: CounterModel, now_ms: int, step: int, *, count: bool) -> bool:
        """The horizon is in the past (or absent): take the slot now. False if someone moved it meanwhile."""
        model = self._model
        try:
            item.update(
                actions=[model.taken.set(now_ms + step), (model.used if count else model.spared).add(1)],
                condition=model.taken.does_not_exist() | (model.taken < now_ms),
            )
            return True
        except UpdateError as exc:
            if not condition_check_failed(exc):
                raise
            return False

    def hold(self, bucket: str, until: datetime) -> None:
        model = self._model
        item = model(pk=RATE_PREFIX + bucket, sk=HORIZON_SK)
        try:
            item.update(
                actions=[model.taken.set(_ms(until))],
                condition=model.taken.does_not_exist() | (model.taken < _ms(until)),
            )
        except UpdateError as exc:
            if not condition_check_failed(exc):
                raise  # a later horizon already holds: nothing to do
