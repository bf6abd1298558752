"""The send-rate limiter over DynamoDB: one counter item per bucket and second, shared by every invocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pynamodb.exceptions import UpdateError

from nudge.adapters.dynamodb.models import RATE_PREFIX, BoundModels

# Window items are useless a second later; TTL sweeps them (within a day or two) so the table stays small.
WINDOW_TTL = timedelta(hours=1)


class DynamoSendRateLimiter:
    """Implements nudge.ports.SendRateLimiter: a conditional ADD admits at most `limit` per window."""

    def __init__(self, models: BoundModels) -> None:
        self._model = models.counters

    def try_acquire(self, bucket: str, window: int, limit: int) -> bool:
        model = self._model
        item = model(pk=RATE_PREFIX + bucket, sk=str(window))
        expires = datetime.fromtimestamp(window, UTC) + WINDOW_TTL
        try:
            item.update(
                actions=[model.taken.add(1), model.expires_at.set(expires)],
                condition=model.taken.does_not_exist() | (model.taken < limit),
            )
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise
        return True
