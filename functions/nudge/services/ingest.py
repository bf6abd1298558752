"""Use cases at the front door: record an event (starting and ending runs), identify, enroll."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import field, replace
from datetime import datetime
from typing import Protocol

from nudge.domain import aggregates, engine, segments, whatsapp
from nudge.domain.flows import DateTrigger, FlowCatalog, SegmentTrigger
from nudge.domain.frozen import dataclass
from nudge.domain.guardrails import Guardrails
from nudge.domain.lifecycle import Rfm
from nudge.domain.model import Contact, ContactPatch, Event, FlowSlot, Run, at_version, evolve
from nudge.domain.predictions import Predictions
from nudge.domain.segments import SegmentCatalog, Transition
from nudge.ports import AddressBook, Census, Clock, ConflictError, Contacts, EventDone, EventLog, Runs, Scheduler
from nudge.services.consent import consent_changes
from nudge.services.runs import RunService

log = logging.getLogger(__name__)

_CONTACT_WRITE_ATTEMPTS = 5
_EXIT_ATTEMPTS = 5


class _ContactGone(LookupError):
    """A review or rescore found no contact (erased since it was listed)."""


class UnknownFlow(LookupError):
    """No deployed flow has this id."""


@dataclass(slots=True)
class IngestOutcome:
    event_id: str
    contact_id: str
    duplicate: bool = False
    started: list[str] = field(default_factory=list)  # flow ids
    exited: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)
    entered: list[str] = field(default_factory=list)  # segments (and lifecycle stages) entered
    left: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "event_id": self.event_id,
            "contact_id": self.contact_id,
            "duplicate": self.duplicate,
            "started": self.started,
            "exited": self.exited,
            "converted": self.converted,
            "segments": {"entered": self.entered, "exited": self.left},
        }


class IngestStore(Contacts, EventLog, Runs, AddressBook, Census, Protocol):
    """What ingesting an event reads and writes: the contact, the event, the contact's runs and slots, consent
    records, and the contacts due for review."""


class IngestService:
    """Turns events into contact updates and run decisions. Idempotent on the event id."""

    def __init__(
        self,
        *,
        store: IngestStore,
        scheduler: Scheduler,
        runs: RunService,
        flows: FlowCatalog,
        guardrails: Guardrails,
        clock: Clock,
        segments: SegmentCatalog | None = None,
        observer: Callable[[IngestOutcome], object] | None = None,
        ads_withdrawn: Callable[[str], object] | None = None,
        segment_moved: Callable[[Contact, list[Transition]], object] | None = None,
        counts_aggregates: bool = True,
    ) -> None:
        """`observer` gets every outcome (events, enrollments, reviews, rescores): the handlers' metrics;
        `ads_withdrawn(contact_id)` hears a withdrawn ad consent (out of every ad audience, ADR 0024).
        `counts_aggregates` False: an event (ingested, backfilled or reviewed) leaves the contact's aggregates
        as they were (a backtest whose flows and segments read none, `Flow.reads_aggregates`); the bulk
        import's `folded` counts them regardless."""
        self._ads_withdrawn: Callable[[str], object] = ads_withdrawn or (lambda contact_id: None)
        # Hears every segment move of a contact whose consent covers ads (segment audiences, ADR 0024).
        self._segment_moved: Callable[[Contact, list[Transition]], object] = segment_moved or (lambda c, m: None)
        self._store = store
        self._scheduler = scheduler
        self._runs = runs
        self._flows = flows
        self._guardrails = guardrails
        self._clock = clock
        self._segments = segments if segments is not None else SegmentCatalog()
        self._counts_aggregates = counts_aggregates
        self._date_flows = [flow for flow in flows if isinstance(flow.trigger, DateTrigger)]
        self._segment_listeners = _segment_listeners(flows)
        self._observer: Callable[[IngestOutcome], object] = observer or (lambda outcome: None)

    def get_contact(self, contact_id: str) -> Contact | None:
        return self._store.get_contact(contact_id)

    def identify(self, patch: ContactPatch) -> Contact:
        """Create or update a contact; fields not given keep their stored values. Lines up date flows."""
        contact, moves = self._upsert(patch, source="api:contacts")
        outcome = IngestOutcome(event_id="identify", contact_id=contact.contact_id)
        self._on_segments(contact, moves, outcome)
        self._start_date_flows(contact, self._clock.now(), outcome)
        self._observer(outcome)
        return contact

    def review(self, contact_id: str) -> IngestOutcome:
        """Re-evaluate a contact's segments now: time alone (the daily sweep) or a flow's profile update moved it."""
        if not self._segments.evaluated:
            # No segment and no stage is worked out (a backtest whose flows read none): every contact is in
            # none for good, so a review finds nothing to move and writes nothing. Not even read, then.
            outcome = IngestOutcome(event_id="review", contact_id=contact_id)
            self._observer(outcome)
            return outcome
        return self._reevaluate(contact_id, "review")

    def rescore(self, contact_id: str, rfm: Rfm | None, predicted: Predictions | None = None) -> IngestOutcome:
        """Store the contact's new RFM score and predictions (the daily job); act on the segment moves they cause."""
        return self._reevaluate(contact_id, "rescore", adjust=lambda c: replace(c, rfm=rfm, predicted=predicted))

    def absorb(self, contact_id: str, earlier: Contact) -> IngestOutcome:
        """Fold an earlier record of the same person (an anonymous visitor) into `contact_id`.

        Its aggregates join the contact's (segments re-evaluated, moves announced), and its active runs end
        with the reason `merged`: from now on the person's events reach `contact_id`, so they would stall.
        """
        outcome = IngestOutcome(event_id="absorb", contact_id=contact_id)
        self._end_all(earlier.contact_id, "merged", outcome)

        def fold(contact: Contact) -> Contact:
            return replace(contact, aggregates=aggregates.combined(contact.aggregates, earlier.aggregates))

        return self._reevaluate(contact_id, "absorb", adjust=fold, outcome=outcome)

    def end_runs(self, contact_id: str, reason: str, where: Callable[[Run], bool] | None = None) -> IngestOutcome:
        """End every active run of the contact (those `where` accepts) with `reason` (a storefront deleted the
        customer, or the shop removed the app)."""
        outcome = IngestOutcome(event_id=reason, contact_id=contact_id)
        self._end_all(contact_id, reason, outcome, where)
        self._observer(outcome)
        return outcome

    def _end_all(
        self, contact_id: str, reason: str, outcome: IngestOutcome, where: Callable[[Run], bool] | None = None
    ) -> None:
        now = self._clock.now()
        for run in self._store.active_runs(contact_id):
            if where is None or where(run):
                self._end(engine.ExitRun(engine.exit_run(run, reason, now), run.version), outcome, None)

    def _reevaluate(
        self,
        contact_id: str,
        source: str,
        adjust: Callable[[Contact], Contact] | None = None,
        outcome: IngestOutcome | None = None,
    ) -> IngestOutcome:
        """Segments of a stored contact, now (after `adjust`); a contact erased meanwhile is left alone."""
        outcome = outcome or IngestOutcome(event_id=source, contact_id=contact_id)
        try:
            contact, moves = self._upsert(
                ContactPatch(external_id=contact_id), source=source, touch=False, adjust=adjust
            )
        except _ContactGone:
            pass  # nothing to move; what the caller already put in the outcome (ended runs) still counts
        else:
            self._on_segments(contact, moves, outcome)
        self._observer(outcome)
        return outcome

    def sweep(self) -> list[IngestOutcome]:
        """Review every contact whose membership may have changed with time by now (one index query a day)."""
        now = self._clock.now()
        return [self.review(contact_id) for contact_id in self._store.contacts_to_review(now)]

    def ingest(self, event: Event) -> IngestOutcome:
        """Record the event once, update its contact, end or convert the runs it concerns, start flows."""

        def decide(contact: Contact, now: datetime, slots: dict[str, FlowSlot]) -> list[engine.Decision]:
            # The runs the slots name: no second Query. The contact is the event's (its id read off the record).
            active = self._store.active_runs(contact.contact_id, slots)
            return engine.on_event(event, contact, slots, active, self._flows, now)

        return self._process(event, decide)

    def backfill(self, event: Event) -> IngestOutcome:
        """Record a past event once and update its contact, aggregates and segments; start, end and send nothing.

        For history (an order import): last year's order must not thank anyone today, and a contact that
        lands in `lapsed` through old orders did not just lapse, so segment moves are stored, not announced.
        """
        now = self._clock.now()
        outcome = IngestOutcome(event_id=event.event_id, contact_id=event.contact_id)
        if not self._store.begin_event(event, now):
            outcome.duplicate = True
            return outcome
        counted_before: list[bool] = []
        _, moves = self._upsert(
            event.contact, event, source=f"import:{event.type}:{event.event_id}", seen=counted_before.append
        )
        # The events table forgets after its retention; the contact's aggregates remember what they counted.
        outcome.duplicate = bool(counted_before) and counted_before[-1]
        for move in moves:
            (outcome.entered if move.entered else outcome.left).append(move.segment)
        self._store.finish_event(event.event_id, {**outcome.as_dict(), "backfill": True})
        return outcome

    def folded(self, stored: Contact | None, contact_id: str, events: Sequence[Event]) -> tuple[Contact, list[bool]]:
        """A contact after past events (a bulk import), with its segments; and which events counted (not seen).

        No I/O: the caller reads and writes in batches. An event older than the contact's last order only
        fills profile fields the contact lacks, so the newest order's name and phone win in any file order.
        """
        now = self._clock.now()
        contact = stored or Contact(contact_id=contact_id)
        counted = aggregates.Tally(contact.aggregates)  # one copy of the aggregates for all the events
        fresh: list[bool] = []
        applied = None  # the patch the contact was last compared with (an import's orders share one per customer)
        for event in events:
            patch = event.contact
            if counted.last_order_at is not None and event.occurred_at < counted.last_order_at:
                patch = replace(
                    patch,
                    email=None if contact.email else patch.email,
                    phone=None if contact.phone else patch.phone,
                    first_name=None if contact.first_name else patch.first_name,
                    last_name=None if contact.last_name else patch.last_name,
                    email_marketing=None if contact.email_marketing is not None else patch.email_marketing,
                )
            if patch is applied and not patch.properties:
                pass  # compared or merged just before, and the contact has not changed since: nothing to add
            elif patch.properties or any(
                value is not None and value != getattr(contact, name) for name, value in _profile_fields(patch)
            ):
                contact = contact.merged(patch, now)
            applied = patch
            fresh.append(counted.add(event.event_id, event.type, event.properties, event.occurred_at))
        if contact is not stored or any(fresh):  # a re-import that counts nothing leaves the contact as it was
            contact = replace(
                contact, aggregates=counted.frozen(), updated_at=now, created_at=contact.created_at or now
            )
        membership = segments.evaluate(self._segments, contact.lazy_view(), contact.aggregates, now)
        return replace(contact, segments=membership.segments, review_at=membership.review_at), fresh

    def enroll(self, flow_id: str, event: Event) -> IngestOutcome:
        """Start `flow_id` for the event's contact (POST /v1/flows/<id>/enrollments), entry rules allowing."""
        flow = self._flows.get(flow_id)
        if flow is None:
            raise UnknownFlow(flow_id)

        def decide(contact: Contact, now: datetime, slots: dict[str, FlowSlot]) -> list[engine.Decision]:
            slot = slots.get(flow_id)
            if slot is not None and slot.active_run_id == Run.id_for(flow_id, event.contact_id, event.event_id):
                # This very enrollment started the run on an earlier attempt: keep it moving.
                run = self._store.get_run(event.contact_id, slot.active_run_id)
                return [engine.Redrive(run)] if run is not None else []
            start = engine.enroll(flow, event, slot, now)
            return [start] if start is not None else []

        return self._process(event, decide)

    def _process(
        self,
        event: Event,
        decide: Callable[[Contact, datetime, dict[str, FlowSlot]], list[engine.Decision]],
    ) -> IngestOutcome:
        """Once per event id: update the contact, carry out the decisions, line up date flows, mark it done.

        The contact's flow slots are read once (one Query) for the decisions and the date flows; runs this
        request starts are added to them as it goes, and they are read again only after an exit freed one.
        """
        contact_id = event.contact_id  # derived from the patch on each ask: asked once
        outcome = IngestOutcome(event_id=event.event_id, contact_id=contact_id)
        source, adjust = f"event:{event.type}:{event.event_id}", _inbound_whatsapp(event)
        for _ in range(_CONTACT_WRITE_ATTEMPTS):
            # Decide first (reads only), then one write: the event record, the contact and its consent records
            # (issue #20). Nothing is carried out unless that write landed; a conflict decides again.
            now = self._clock.now()
            stored = self._store.get_contact(contact_id)
            base = stored or Contact(contact_id=contact_id)
            changed = self._changed(base, event.contact, event, now, adjust=adjust, version=base.version + 1)
            unchanged = stored is not None and changed == stored
            contact = stored if stored is not None and unchanged else at_version(changed, base.version + 1)
            moves = [] if unchanged else segments.transitions(base.segments, changed.segments)
            slots = self._store.flow_slots(contact_id)
            decisions = decide(contact, now, slots)
            withdrawn = stored is not None and stored.ads_marketing is not False and contact.ads_marketing is False
            # Nothing to carry out afterwards: the event is recorded processed in the same write.
            quiet = not (decisions or moves or withdrawn or self._date_starts(contact, slots, now))
            try:
                self._store.record_event(
                    event,
                    now,
                    None if unchanged else contact,  # at its new version, which the write sets (and checks)
                    base.version,
                    consents=[] if unchanged else consent_changes(stored, changed, source, now),
                    outcome=outcome.as_dict() if quiet else None,
                )
            except EventDone:
                outcome.duplicate = True
                return outcome
            except ConflictError:
                continue
            break
        else:
            raise ConflictError(f"contact {contact_id} kept changing; gave up after {_CONTACT_WRITE_ATTEMPTS} tries")
        if withdrawn:
            self._ads_withdrawn(contact_id)
        if quiet:
            self._observer(outcome)
            return outcome
        self._carry_out(decisions, contact, outcome, event, slots)
        acted = self._on_segments(contact, moves, outcome)
        freed = any(isinstance(d, engine.ExitRun | engine.GoalReached) for d in decisions)
        self._start_date_flows(contact, now, outcome, None if freed or acted else slots)
        self._store.finish_event(event.event_id, outcome.as_dict())
        self._observer(outcome)
        return outcome

    def _carry_out(
        self,
        decisions: list[engine.Decision],
        contact: Contact,
        outcome: IngestOutcome,
        event: Event | None = None,
        slots: dict[str, FlowSlot] | None = None,
    ) -> None:
        """`slots`, if given, hears of each run started (the request's own copy of the contact's slots)."""
        for decision in decisions:
            if isinstance(decision, engine.StartRun):
                started = self._start(decision, contact, outcome)
                if started is not None and slots is not None:
                    slots[started.flow_id] = _slot_of(started, decision.slot)
            elif isinstance(decision, engine.Redrive):
                self._runs.redrive(decision.run)
            elif isinstance(decision, engine.Refresh):
                self._refresh(decision, event)
            else:
                self._end(decision, outcome, event)

    def _on_segments(self, contact: Contact, moves: list[Transition], outcome: IngestOutcome) -> bool:
        """Each entry or exit is an internal event (segment_entered / segment_exited) that flows react to.

        True if a flow heard one (its runs may have started or ended: the contact's slots were read anew)."""
        acted = False
        if moves and contact.ads_marketing is True:  # nobody else can be in an ad audience: no reads for them
            self._segment_moved(contact, moves)
        for move in moves:
            (outcome.entered if move.entered else outcome.left).append(move.segment)
            heard = {(move.event_type, move.segment), (move.event_type, None)} & self._segment_listeners
            if not heard:
                continue  # no flow starts, ends or converts on it: no event record, no reads
            now = self._clock.now()
            # Named by the contact version that recorded the move: a redelivery of it is processed once.
            internal = Event(
                event_id=f"{move.event_type}:{contact.contact_id}:{move.segment}:{contact.version}",
                type=move.event_type,
                contact=ContactPatch(external_id=contact.contact_id),
                properties={"segment": move.segment},
                occurred_at=now,
            )
            if not self._store.begin_event(internal, now):
                continue
            acted = True
            slots = self._store.flow_slots(contact.contact_id)
            active = self._store.active_runs(contact.contact_id, slots)
            self._carry_out(
                engine.on_event(internal, contact, slots, active, self._flows, now), contact, outcome, internal
            )
            self._store.finish_event(internal.event_id, {"segment": move.segment, "started": outcome.started})
        return acted

    def _start(self, decision: engine.StartRun, contact: Contact, outcome: IngestOutcome) -> Run | None:
        # The request only decides and records: the worker advances the run (ADR 0007), so a throttled
        # send can never leave a started run without a pending wake-up, nor hold the caller waiting.
        started = self._runs.start(decision, contact=contact)
        if started is None:
            return None  # a concurrent delivery or start got there first
        outcome.started.append(started.flow_id)
        return started

    def _refresh(self, decision: engine.Refresh, event: Event | None) -> None:
        """Store the run's new cart; if a wake-up moved the run meanwhile, apply it to the run as it is now."""
        for _ in range(_EXIT_ATTEMPTS):
            try:
                self._store.save_run(decision.run, decision.previous_version)
                return
            except ConflictError:
                fresh = self._store.get_run(decision.run.contact_id, decision.run.run_id)
                again = engine.refreshed_cart(fresh, event, self._clock.now()) if fresh and event else None
                if fresh is None or not fresh.is_active or again is None:
                    return
                decision = engine.Refresh(again, fresh.version)
        raise ConflictError(f"run {decision.run.run_id} kept moving; its cart update will be retried")

    def _end(self, decision: engine.ExitRun | engine.GoalReached, outcome: IngestOutcome, event: Event | None) -> None:
        """Store the exit or conversion; if the run moved meanwhile, decide again on its new state and retry.

        An exit is never dropped for a lost race: the wake-up that moved the run may be about to send the
        next reminder, and only the stored exit stops it (the send checks the run in its transaction).
        """
        for _ in range(_EXIT_ATTEMPTS):
            try:
                saved = self._store.save_run(decision.run, decision.previous_version)
            except ConflictError:
                fresh = self._store.get_run(decision.run.contact_id, decision.run.run_id)
                if fresh is None or not fresh.is_active:
                    return  # ended meanwhile (completed, or another exit): nothing left to stop
                if event is None:  # an exit of the service's own (a merge): the same reason, on the new state
                    reason = decision.run.exit_reason or "exited"
                    decision = engine.ExitRun(engine.exit_run(fresh, reason, self._clock.now()), fresh.version)
                    continue
                contact = self._store.get_contact(fresh.contact_id)
                again = [
                    d
                    for d in engine.on_event(event, contact, {}, [fresh], self._flows, self._clock.now())
                    if isinstance(d, engine.ExitRun | engine.GoalReached)
                ]
                if not again:
                    return
                decision = again[0]
                continue
            break
        else:
            raise ConflictError(f"run {decision.run.run_id} kept moving; its exit will be retried with the request")
        if isinstance(decision, engine.GoalReached):
            outcome.converted.append(decision.run.flow_id)
        if not saved.is_active:
            outcome.exited.append(decision.run.flow_id)
            try:
                # Only tidiness: a wake-up that fires for an ended run does nothing.
                self._scheduler.cancel(saved.schedule_name)
            except Exception:
                log.warning("could not delete the ended run's schedule", extra={"run_id": saved.run_id}, exc_info=True)

    def _date_starts(self, contact: Contact, slots: dict[str, FlowSlot], now: datetime) -> list[engine.StartRun]:
        """The date flows' runs the contact's dates call for now (pure)."""
        if not self._date_flows:
            return []
        return engine.date_starts(contact, slots, self._date_flows, self._guardrails.default_timezone, now)

    def _start_date_flows(
        self, contact: Contact, now: datetime, outcome: IngestOutcome, slots: dict[str, FlowSlot] | None = None
    ) -> None:
        """Line up the date flows (birthday, launch) the contact's dates call for; each run waits for its day.

        `slots`: the contact's slots as this request knows them (else they are read)."""
        if not self._date_flows:
            return
        if slots is None:
            slots = self._store.flow_slots(contact.contact_id)
        for start in self._date_starts(contact, slots, now):
            if (run := self._runs.start(start, contact=contact)) is not None:
                outcome.started.append(run.flow_id)

    def _changed(
        self,
        base: Contact,
        patch: ContactPatch,
        event: Event | None,
        now: datetime,
        *,
        touch: bool = True,
        adjust: Callable[[Contact], Contact] | None = None,
        seen: Callable[[bool], None] | None = None,
        version: int,
    ) -> Contact:
        """`base` merged with the patch, the event counted, `adjust`ed, its segments evaluated: no I/O.

        `version`: the one its write would give it, set in the copy that moves its segments, if one is made
        (a contact whose segments did not move keeps its version, so an unchanged one still equals `base`)."""
        counted = base.aggregates  # merging the patch leaves them: the event is counted on the stored ones
        if event is not None and self._counts_aggregates:
            if seen is not None:
                seen(aggregates.is_counted(counted, event.event_id, event.type, event.properties))
            counted = aggregates.updated(counted, event.event_id, event.type, event.properties, event.occurred_at)
        if touch:
            changed = base.merged(patch, now, counted)  # one copy for both
        else:
            changed = base if counted is base.aggregates else evolve(base, aggregates=counted)
        if adjust is not None:
            changed = adjust(changed)
        if not self._segments.evaluated and not changed.segments and changed.review_at is None:
            return changed  # in no segment, for good (a backtest whose flows read none): nothing to move
        membership = segments.evaluate(self._segments, changed.lazy_view(), changed.aggregates, now)
        review_at, before = membership.review_at, changed.review_at
        # Most events move no segment: no copy that changes nothing (the same values, to their repr).
        same_review = review_at == before and (review_at is None or before is None or review_at.tzinfo is before.tzinfo)
        if same_review and membership.segments == changed.segments:
            return changed
        return evolve(changed, segments=membership.segments, review_at=membership.review_at, version=version)

    def _upsert(
        self,
        patch: ContactPatch,
        event: Event | None = None,
        *,
        source: str,
        touch: bool = True,
        adjust: Callable[[Contact], Contact] | None = None,
        seen: Callable[[bool], None] | None = None,
    ) -> tuple[Contact, list[Transition]]:
        """Merge, count the event, re-evaluate segments; one optimistic write. Returns the segment moves.

        Without `touch` (a review, a rescore) it only updates a contact that exists, else raises _ContactGone.
        `seen` hears, on each attempt, whether the contact's aggregates had already counted the event.
        """
        contact_id = patch.contact_id
        for _ in range(_CONTACT_WRITE_ATTEMPTS):
            now = self._clock.now()
            stored = self._store.get_contact(contact_id)
            if stored is None and not touch:
                raise _ContactGone(contact_id)
            base = stored or Contact(contact_id=contact_id)
            changed = self._changed(
                base, patch, event, now, touch=touch, adjust=adjust, seen=seen, version=base.version + 1
            )
            if stored is not None and changed == stored:
                return stored, []  # a review that finds nothing new writes nothing
            # When and where consent came from: written in the contact's own write (one call, all or none).
            consents = consent_changes(stored, changed, source, now)
            try:
                saved = self._store.save_contact(changed, expected_version=base.version, consents=consents)
            except ConflictError:
                continue
            if stored is not None and stored.ads_marketing is not False and saved.ads_marketing is False:
                self._ads_withdrawn(contact_id)
            return saved, segments.transitions(base.segments, saved.segments)
        raise ConflictError(f"contact {contact_id} kept changing; gave up after {_CONTACT_WRITE_ATTEMPTS} tries")


def _slot_of(run: Run, before: FlowSlot | None) -> FlowSlot:
    """The contact's slot in the run's flow once `run` started in it (what start_run wrote)."""
    return FlowSlot(
        flow_id=run.flow_id,
        active_run_id=run.run_id,
        last_started_at=run.started_at,
        started_count=(before.started_count if before else 0) + 1,
    )


def _inbound_whatsapp(event: Event) -> Callable[[Contact], Contact] | None:
    """A WhatsApp message from the customer opens (or restarts) the 24-hour window for free-form text."""
    if event.type != whatsapp.INBOUND_EVENT:
        return None

    def opened(contact: Contact) -> Contact:
        latest = contact.whatsapp_inbound_at
        if latest is not None and latest >= event.occurred_at:
            return contact  # an older message delivered late moves nothing
        return replace(contact, whatsapp_inbound_at=event.occurred_at)

    return opened


def _profile_fields(patch: ContactPatch) -> list[tuple[str, object]]:
    """The profile fields a patch sets (not its id or properties), as (name, value)."""
    return [
        ("email", patch.email),
        ("phone", patch.phone),
        ("first_name", patch.first_name),
        ("last_name", patch.last_name),
        ("timezone", patch.timezone),
        ("email_marketing", patch.email_marketing),
        ("sms_marketing", patch.sms_marketing),
        ("whatsapp_marketing", patch.whatsapp_marketing),
        ("ads_marketing", patch.ads_marketing),
    ]


def _segment_listeners(flows: FlowCatalog) -> set[tuple[str, str | None]]:
    """(segment event type, segment id or None for any) that some flow's trigger, exit rule or goal names."""
    found: set[tuple[str, str | None]] = set()
    for flow in flows:
        if isinstance(flow.trigger, SegmentTrigger):
            found.add((flow.trigger.event_type, flow.trigger.segment))
        for event_type in (segments.SEGMENT_ENTERED, segments.SEGMENT_EXITED):
            if any(rule.accepts(event_type) for rule in flow.exit) or (flow.goal and flow.goal.accepts(event_type)):
                found.add((event_type, None))
    return found
