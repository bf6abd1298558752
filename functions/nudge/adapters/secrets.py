"""Reads a secret from Secrets Manager once and keeps it for a while (warm invocations skip the call)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

CACHE_SECONDS = 300.0


class SecretReader:
    """The secret's value, fetched again after CACHE_SECONDS of *wall* time.

    Freshness is about rotation, which happens in real time: a simulation on a virtual clock that jumps
    days must not refetch on every jump (the demo made 12 calls for one key before), and a Lambda
    container keeps its copy for five minutes whatever the business clock says.
    """

    def __init__(self, client: Any, secret_id: str, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._secret_id = secret_id
        self._monotonic = monotonic
        self._value: str | None = None
        self._fetched_at: float | None = None

    def value(self) -> str:
        now = self._monotonic()
        if self._value is None or self._fetched_at is None or now - self._fetched_at > CACHE_SECONDS:
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
