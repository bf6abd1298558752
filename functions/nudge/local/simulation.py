"""Weeks of virtual time in milliseconds: the services over in-memory adapters and a virtual clock."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nudge.adapters.memory import MemoryMailer, MemoryScheduler, MemoryStore, MemoryTexter
from nudge.clocks import VirtualClock
from nudge.services.ingest import IngestOutcome
from nudge.services.inputs import EventIn
from nudge.services.runs import AdvanceOutcome
from nudge.settings import Settings
from nudge.wiring import build_memory


class Simulation:
    def __init__(self, settings: Settings, clock: VirtualClock) -> None:
        self.clock = clock
        self.container = build_memory(settings, clock)
        self.fired: list[AdvanceOutcome] = []

    @property
    def store(self) -> MemoryStore:
        return self.container.store  # type: ignore[return-value]

    @property
    def scheduler(self) -> MemoryScheduler:
        return self.container.scheduler  # type: ignore[return-value]

    @property
    def mailer(self) -> MemoryMailer:
        return self.container.mailer  # type: ignore[return-value]

    @property
    def texter(self) -> MemoryTexter:
        return self.container.texter  # type: ignore[return-value]

    def send(self, body: dict[str, Any]) -> IngestOutcome:
        """Ingest an API body (validated like the handler does) at the current virtual time."""
        return self.container.ingest.ingest(EventIn.model_validate(body).to_event(self.clock.now()))

    def run_until(self, end: datetime) -> int:
        """Fire every wake-up due up to `end`, in time order, moving the clock; then set it to `end`."""
        fired = 0
        while (due := self.scheduler.next_due()) is not None and due <= end:
            self.clock.set(max(due, self.clock.now()))
            for pending in self.scheduler.pop_due(self.clock.now()):
                self.fired.append(self.container.runs.wake(pending.wake_up))
                fired += 1
        if end > self.clock.now():
            self.clock.set(end)
        return fired
