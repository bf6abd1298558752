"""The JobLog role (nudge.ports.JobLog) over DynamoDB: the daily job's log of pieces."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pynamodb.exceptions import PutError

from nudge.adapters.dynamodb.tables import (
    JOB_LOG_KEPT,
    JOB_PK_PREFIX,
    DynamoTables,
    condition_failed,
)
from nudge.ports import ConflictError


class DynamoJobLog(DynamoTables):
    """Implements nudge.ports.JobLog."""

    def record_piece(
        self,
        day: str,
        key: str,
        record: Mapping[str, Any],
        at: datetime,
        *,
        origin: str | None = None,
        position: str | None = None,
    ) -> None:
        counters = self.models.counters
        item = counters(
            pk=f"{JOB_PK_PREFIX}{day}",
            sk=key,
            document=dict(record),
            updated_at=at,
            expires_at=at + JOB_LOG_KEPT,
            origin=origin,
            position=position,
        )
        if origin is None:
            item.save()
            return
        try:  # a piece moves its record only from where it started, or on from its own earlier write
            item.save(
                condition=counters.position.does_not_exist()
                | (counters.position == origin)
                | (counters.origin == origin)
            )
        except PutError as exc:
            if condition_failed(exc):
                raise ConflictError(f"{day} {key}") from exc
            raise

    def pieces_of(self, day: str) -> dict[str, dict[str, Any]]:
        return {item.sk: dict(item.document or {}) for item in self.models.counters.query(f"{JOB_PK_PREFIX}{day}")}
