"""The Documents role (nudge.ports.Documents) over DynamoDB: named documents, whole or versioned."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pynamodb.exceptions import PutError

from nudge.adapters.dynamodb.tables import (
    DOC_PK,
    DynamoTables,
    condition_failed,
)
from nudge.ports import ConflictError


class DynamoDocuments(DynamoTables):
    """Implements nudge.ports.Documents."""

    def get_document(self, name: str) -> dict[str, Any] | None:
        try:
            item = self.models.counters.get(DOC_PK, name, consistent_read=True)
        except self.models.counters.DoesNotExist:
            return None
        return dict(item.document or {})

    def put_document(self, name: str, document: Mapping[str, Any], at: datetime) -> None:
        self.models.counters(pk=DOC_PK, sk=name, document=dict(document), updated_at=at).save()

    def get_versioned_document(self, name: str) -> tuple[dict[str, Any], int] | None:
        try:
            item = self.models.counters.get(DOC_PK, name, consistent_read=True)
        except self.models.counters.DoesNotExist:
            return None
        return dict(item.document or {}), int(item.version or 0)

    def put_versioned_document(
        self, name: str, document: Mapping[str, Any], at: datetime, expected_version: int
    ) -> int:
        counters = self.models.counters
        if expected_version == 0:
            condition = counters.version.does_not_exist() | (counters.version == 0)
        else:
            condition = counters.version == expected_version
        item = counters(pk=DOC_PK, sk=name, document=dict(document), updated_at=at, version=expected_version + 1)
        try:
            item.save(condition=condition)
        except PutError as exc:
            if condition_failed(exc):
                raise ConflictError(name) from exc
            raise
        return expected_version + 1
