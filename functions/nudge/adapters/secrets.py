"""Reads a secret from Secrets Manager once and keeps it for a while (warm invocations skip the call)."""

from __future__ import annotations

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
