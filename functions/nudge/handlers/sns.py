"""What the SNS-triggered handlers share: each record's JSON message and ISO 8601 timestamps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any


def parse_timestamp(text: str | None) -> datetime | None:
    """AWS timestamps ("2026-11-02T10:00:01.123Z") as aware UTC datetimes; None for none."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def messages(event: dict[str, Any]) -> Iterator[tuple[Any, str]]:
    """Each record's decoded Message with the record's Timestamp; a ValueError stands in for a bad one."""
    for record in event.get("Records", []):
        try:
            sns = record["Sns"]
            yield json.loads(sns["Message"]), str(sns.get("Timestamp", ""))
        except (KeyError, TypeError, ValueError) as exc:
            yield ValueError(f"not an SNS record with a JSON message: {exc}"), ""
