"""Reads a secret from Secrets Manager once and keeps it for a while (warm invocations skip the call)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from nudge.ports import Clock

CACHE_FOR = timedelta(minutes=5)


class SecretReader:
    def __init__(self, client: Any, secret_id: str, *, clock: Clock) -> None:
        self._client = client
        self._secret_id = secret_id
        self._clock = clock
        self._value: str | None = None
        self._fetched_at: datetime | None = None

    def value(self) -> str:
        now = self._clock.now()
        if self._value is None or self._fetched_at is None or now - self._fetched_at > CACHE_FOR:
            self._value = str(self._client.get_secret_value(SecretId=self._secret_id)["SecretString"])
            self._fetched_at = now
        return self._value


class JsonSecretReader:
    """A SecretReader whose secret is a JSON object (the storefront webhook secrets)."""

    def __init__(self, reader: SecretReader) -> None:
        self._reader = reader

    def value(self) -> dict[str, Any]:
        parsed = json.loads(self._reader.value())
        return parsed if isinstance(parsed, dict) else {}
