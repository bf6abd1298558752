"""Use cases at the front door: record an event (starting and ending runs) and identify a contact."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from nudge.domain import engine
from nudge.domain.flows import FlowCatalog
from nudge.domain.model import Contact, ContactPatch, Event
from nudge.ports import Clock, ConflictError, Scheduler, Store
from nudge.services.consent import record_changes
from nudge.services.runs import AdvanceOutcome, RunService

log = logging.getLogger(__name__)

_CONTACT_WRITE_ATTEMPTS = 5


@dataclass(slots=True)
class IngestOutcome:
    event_id: str
    contact_id: str
    duplicate: bool = False
    started: list[str] = field(default_factory=list)  # flow ids
    exited: list[str] = field(default_factory=list)
    advanced: list[AdvanceOutcome] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "event_id": self.event_id,
            "contact_id": self.contact_id,
            "duplicate": self.duplicate,
            "started": self.started,
            "exited": self.exited,
        }


class IngestService:
    """Turns events into contact updates and run decisions. Idempotent on the event id."""

    def __init__(
        self, *, store: Store, scheduler: Scheduler, runs: RunService, flows: FlowCatalog, clock: Clock
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._runs = runs
        self._flows = flows
        self._clock = clock

    def identify(self, patch: ContactPatch) -> Contact:
        """Create or update a contact; fields not given keep their stored values."""
        return self._upsert(patch, source="api:contacts")

    def ingest(self, event: Event) -> IngestOutcome:
        """Record the event once, update its contact, end the runs it exits and start the flows it triggers."""
        now = self._clock.now()
        outcome = IngestOutcome(event_id=event.event_id, contact_id=event.contact_id)
        if not self._store.begin_event(event, now):
            outcome.duplicate = True
            return outcome
        self._upsert(event.contact, source=f"event:{event.type}:{event.event_id}")
        active = self._store.active_runs(event.contact_id)
        for decision in engine.on_event(event, active, self._flows, now):
            if isinstance(decision, engine.ExitRun):
                self._exit(decision, outcome)
            elif (started := self._store.start_run(decision.run)) is not None:
                outcome.started.append(started.flow_id)
                outcome.advanced.append(self._runs.advance(started))
        self._store.finish_event(event.event_id, outcome.as_dict())
        return outcome

    def _exit(self, decision: engine.ExitRun, outcome: IngestOutcome) -> None:
        try:
            self._store.save_run(decision.run, decision.previous_version)
        except ConflictError:
            # The run advanced meanwhile; the next event or wake-up sees it again. Nothing is lost.
            log.warning("exit lost a race with an advance", extra={"run_id": decision.run.run_id})
            return
        outcome.exited.append(decision.run.flow_id)
        # The pending wake-up would be ignored anyway (the run is no longer active); deleting it saves a call.
        # An exit keeps the run's seq, so its schedule name is still that of the pending wake-up.
        self._scheduler.cancel(decision.run.schedule_name)

    def _upsert(self, patch: ContactPatch, *, source: str) -> Contact:
        contact_id = patch.contact_id
        for _ in range(_CONTACT_WRITE_ATTEMPTS):
            now = self._clock.now()
            stored = self._store.get_contact(contact_id)
            base = stored or Contact(contact_id=contact_id)
            try:
                saved = self._store.save_contact(base.merged(patch, now), expected_version=base.version)
            except ConflictError:
                continue
            record_changes(self._store, stored, saved, source, now)  # when and where consent came from
            return saved
        raise ConflictError(f"contact {contact_id} kept changing; gave up after {_CONTACT_WRITE_ATTEMPTS} tries")
