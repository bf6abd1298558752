"""Weeks of virtual time in milliseconds: the services over in-memory adapters and a virtual clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from nudge import names
from nudge.adapters.memory import (
    MemoryMailer,
    MemoryQueue,
    MemoryScheduler,
    MemoryStore,
    MemoryTexter,
    MemoryWhatsApp,
)
from nudge.clocks import VirtualClock
from nudge.domain.validation import validate
from nudge.ports import AudiencePlatform
from nudge.services.ingest import IngestOutcome
from nudge.services.inputs import EventIn
from nudge.services.runs import AdvanceOutcome, NotCommittedYet
from nudge.settings import Settings
from nudge.templating import TemplateRenderer
from nudge.wiring import build_memory


class Simulation:
    def __init__(
        self,
        settings: Settings,
        clock: VirtualClock,
        *,
        renderer: TemplateRenderer | None = None,
        observer: Callable[[IngestOutcome], object] | None = None,
        audience_platforms: Callable[[str], AudiencePlatform] | None = None,
    ) -> None:
        self.clock = clock
        self.container = build_memory(
            settings, clock, renderer=renderer, observer=observer, audience_platforms=audience_platforms
        )
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

    @property
    def whatsapp(self) -> MemoryWhatsApp:
        return self.container.whatsapp  # type: ignore[return-value]

    @property
    def queue(self) -> MemoryQueue:
        return self.container.queue  # type: ignore[return-value]

    def send(self, body: dict[str, Any]) -> IngestOutcome:
        """Ingest an API body (validated like the handler does) at the current virtual time; let the worker act."""
        outcome = self.container.ingest.ingest(validate(EventIn, body).to_event(self.clock.now()))
        self.settle()
        return outcome

    def settle(self) -> int:
        """Do the work due now (what a request queued)."""
        return self.run_until(self.clock.now())

    def run_until(self, end: datetime) -> int:
        """Do every piece of work due up to `end`, in time order, moving the clock; then set it to `end`.

        Due schedules go to the queue (Scheduler's SQS target); the queue's work goes to the run service.
        """
        done = 0
        while True:
            moments = [m for m in (self.scheduler.next_due(), self.queue.next_due()) if m is not None]
            if not moments or min(moments) > end:
                break
            self.clock.set(max(min(moments), self.clock.now()))
            for pending in self.scheduler.pop_due(self.clock.now()):
                self.queue.enqueue(pending.wake_up)
            for work in self.queue.pop_due(self.clock.now()):
                try:
                    self.fired.append(self.container.runs.wake(work))
                except NotCommittedYet:
                    self.queue.enqueue(work, timedelta(seconds=names.WORK_VISIBILITY_TIMEOUT))
                done += 1
        if end > self.clock.now():
            self.clock.set(end)
        return done
