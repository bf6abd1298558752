"""Counts AWS API requests by service and operation with botocore's event hooks."""

from __future__ import annotations

from collections import Counter
from typing import Any


class RequestCounter:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def _on_call(self, event_name: str, **_: Any) -> None:
        # event_name is "before-call.<service>.<Operation>"
        service, operation = event_name.split(".", 2)[1:]
        self.counts[(service, operation)] += 1

    def attach(self, emitter: Any) -> None:
        """Count every call made through a botocore client or session event emitter."""
        emitter.register("before-call", self._on_call)

    def by_service(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (service, _), n in self.counts.items():
            totals[service] += n
        return dict(totals)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
