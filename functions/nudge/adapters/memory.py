"""In-memory twins of every port, with the same conditional semantics as the AWS adapters.

For the engine's unit tests and for simulations over weeks of virtual time; never a replacement for
testing the real adapters (tests/component does that on moto).
"""

from __future__ import annotations

import heapq
import itertools
import json
import zlib
from bisect import bisect_left, insort
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import date, datetime, timedelta
from typing import Any

from nudge.domain.aggregates import ORDER_PLACED
from nudge.domain.audiences import BATCH_LIMITS, Audience
from nudge.domain.feedback import FeedbackKind
from nudge.domain.frozen import dataclass
from nudge.domain.kpis import Order, order_of
from nudge.domain.model import (
    Channel,
    Contact,
    Event,
    FlowSlot,
    Message,
    MessageStatus,
    Run,
    RunStatus,
    SentRecord,
    at_version,
    evolve,
)
from nudge.domain.segments import REVIEW_LOOKBACK_DAYS
from nudge.domain.suppression import AddressState, ConsentRecord, Suppression
from nudge.domain.whatsapp import OutgoingWhatsApp
from nudge.ports import (
    ApiKey,
    AudienceEntry,
    AudienceStats,
    Clock,
    ConflictError,
    ContactChange,
    EventDone,
    OutgoingEmail,
    OutgoingSms,
    PendingSignup,
    PrivacyRequest,
    SendClaim,
    SendLog,
    StepWakeUp,
    TransientSendError,
    UploadResult,
    WakeReads,
    scope_of,
    waited_item,
    waiting_ref,
)


class MemoryStore:
    """The Store in dicts, indexed per contact like the tables' partition keys, so a call costs what that
    contact holds, not what the whole store holds (a backtest replays tens of thousands of contacts)."""

    def __init__(self) -> None:
        self.contacts: dict[str, Contact] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.runs: dict[tuple[str, str], Run] = {}
        self.messages: dict[tuple[str, str], Message] = {}
        self.addresses: dict[str, AddressState] = {}
        self.consents: dict[str, list[ConsentRecord]] = defaultdict(list)
        self.counters: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.documents: dict[str, dict[str, Any]] = {}
        self.document_versions: dict[str, int] = {}
        self.job_log: dict[str, dict[str, dict[str, Any]]] = {}  # day -> piece key -> record
        self.piece_claims: dict[tuple[str, str], tuple[str | None, str | None]] = {}  # (origin, position)
        # Per-contact indexes (insertion-ordered dicts as ordered sets), kept by every write below.
        self._slots: dict[str, dict[str, FlowSlot]] = {}  # contact -> flow id -> slot
        self._runs_of: dict[str, dict[str, None]] = {}  # contact -> run ids
        self._messages_of: dict[str, dict[str, None]] = {}  # contact -> message ids
        self._sent: dict[str, list[tuple[datetime, str]]] = {}  # contact -> (sent_at, id) of those that count, sorted
        self._events_of: dict[str, dict[str, None]] = {}  # contact -> event ids
        self._by_provider: dict[str, tuple[str, str]] = {}  # provider id -> message key
        self._review: dict[date, set[str]] = {}  # review_at's day -> contact ids (the sparse index)

    def get_contact(self, contact_id: str) -> Contact | None:
        return self.contacts.get(contact_id)

    def save_contact(self, contact: Contact, expected_version: int, consents: Sequence[ConsentRecord] = ()) -> Contact:
        stored = self.contacts.get(contact.contact_id)
        if (stored.version if stored else 0) != expected_version:
            raise ConflictError(contact.contact_id)
        for record in consents:  # with the contact, as the transaction: after the version check
            self.record_consent(record)
        saved = at_version(contact, expected_version + 1)  # the ingest's own copy carries it already
        self.contacts[contact.contact_id] = saved
        self._index_review(contact.contact_id, stored, saved)
        return saved

    def _index_review(self, contact_id: str, before: Contact | None, after: Contact | None) -> None:
        old = before.review_at if before is not None else None
        new = after.review_at if after is not None else None
        if old == new:
            return
        if old is not None:
            self._review.get(old.date(), set()).discard(contact_id)
        if new is not None:
            self._review.setdefault(new.date(), set()).add(contact_id)

    def get_contacts(self, contact_ids: Sequence[str]) -> dict[str, Contact]:
        if len(contact_ids) > 100:
            raise ValueError(f"at most 100 contacts a batch, not {len(contact_ids)}")
        return {cid: found for cid in contact_ids if (found := self.contacts.get(cid)) is not None}

    def save_contacts(self, contacts: Sequence[tuple[Contact, int]]) -> list[Contact]:
        if len(contacts) > 100:
            raise ValueError(f"at most 100 contacts a transaction, not {len(contacts)}")
        for contact, expected in contacts:  # all or none, as the transaction
            stored = self.contacts.get(contact.contact_id)
            if (stored.version if stored else 0) != expected:
                raise ConflictError(contact.contact_id)
        return [self.save_contact(contact, expected) for contact, expected in contacts]

    def record_consents(self, records: Sequence[ConsentRecord]) -> None:
        for record in records:
            self.record_consent(record)

    def begin_event(self, event: Event, now: datetime) -> bool:
        stored = self.events.get(event.event_id)
        if stored is not None and stored["status"] == "processed":
            return False
        self.events[event.event_id] = {"event": event, "status": "received", "received_at": now}
        self._events_of.setdefault(event.contact_id, {})[event.event_id] = None
        return True

    def finish_event(self, event_id: str, outcome: Mapping[str, Any]) -> None:
        self.events[event_id].update(status="processed", outcome=dict(outcome))

    def record_event(
        self,
        event: Event,
        now: datetime,
        contact: Contact | None,
        expected_version: int,
        consents: Sequence[ConsentRecord] = (),
        outcome: Mapping[str, Any] | None = None,
    ) -> Contact | None:
        stored = self.events.get(event.event_id)
        if stored is not None and stored["status"] == "processed":
            raise EventDone(event.event_id)
        saved = None if contact is None else self.save_contact(contact, expected_version, consents)  # may raise
        self.begin_event(event, now)
        if outcome is not None:
            self.finish_event(event.event_id, outcome)
        return saved

    def flow_slots(self, contact_id: str) -> dict[str, FlowSlot]:
        return dict(self._slots.get(contact_id, {}))

    def start_run(self, run: Run, expected: FlowSlot | None) -> Run | None:
        slots = self._slots.setdefault(run.contact_id, {})
        current = slots.get(run.flow_id)
        if (run.contact_id, run.run_id) in self.runs or (current is not None and current.active_run_id):
            return None
        if (current.started_count if current else 0) != (expected.started_count if expected else 0):
            return None
        slots[run.flow_id] = FlowSlot(
            run.flow_id, run.run_id, run.started_at, (current.started_count if current else 0) + 1
        )
        stored = evolve(run, version=1)
        self.runs[(run.contact_id, run.run_id)] = stored
        self._runs_of.setdefault(run.contact_id, {})[run.run_id] = None
        return stored

    def get_run(self, contact_id: str, run_id: str) -> Run | None:
        return self.runs.get((contact_id, run_id))

    def run_with_context(
        self,
        contact_id: str,
        run_id: str,
        message_ids: Sequence[str] = (),
        address_keys: Sequence[str] = (),
        sends_since: datetime | None = None,
    ) -> WakeReads:
        return WakeReads(
            run=self.runs.get((contact_id, run_id)),
            contact=self.contacts.get(contact_id),
            messages={m: message for m in message_ids if (message := self.get_message(contact_id, m)) is not None},
            addresses={key: self.addresses.get(key) for key in address_keys},
            # Its send index is the log: always whole, never written apart from the messages.
            sends=None if sends_since is None else SendLog(tuple(self.recent_sends(contact_id, sends_since))),
        )

    def overdue_runs(self, before: datetime) -> Iterator[tuple[str, str]]:
        due = [r for r in self.runs.values() if r.is_active and r.due_at is not None and r.due_at < before]
        for run in sorted(due, key=lambda r: (r.due_at, r.run_id)):
            yield run.contact_id, run.run_id

    def active_runs(self, contact_id: str, slots: Mapping[str, FlowSlot] | None = None) -> list[Run]:
        held = self._slots.get(contact_id, {}) if slots is None else slots
        return [
            run
            for slot in held.values()
            if slot.active_run_id is not None and (run := self.runs.get((contact_id, slot.active_run_id)))
        ]

    def save_run(self, run: Run, expected_version: int) -> Run:
        key = (run.contact_id, run.run_id)
        stored = self.runs.get(key)
        if stored is None or stored.version != expected_version:
            raise ConflictError(run.run_id)
        saved = at_version(run, expected_version + 1)  # the run service's own copy carries it already
        self.runs[key] = saved
        slots = self._slots.get(run.contact_id, {})
        slot = slots.get(run.flow_id)
        if not saved.is_active and slot is not None and slot.active_run_id == run.run_id:
            slots[run.flow_id] = evolve(slot, active_run_id=None)
        return saved

    def commit_advance(
        self, run: Run, expected_version: int, messages: Sequence[Message], sends: SendLog | None = None
    ) -> Run:
        key = (run.contact_id, run.run_id)
        stored = self.runs.get(key)
        if stored is None or stored.version != expected_version:
            raise ConflictError(run.run_id)
        if any((m.contact_id, m.message_id) in self.messages for m in messages):
            raise ConflictError(run.run_id)
        saved = self.save_run(run, expected_version)
        version = saved.version
        for message in messages:
            # The run's service gives most of them this version already: no copy that changes nothing.
            self._put_message(message.at_run_version(version))
        return saved

    def begin_send(self, message: Message, now: datetime) -> SendClaim:
        run = self.runs.get((message.contact_id, message.run_id))
        if run is not None and run.version != message.run_version and run.status is RunStatus.EXITED:
            return SendClaim.RUN_EXITED
        key = (message.contact_id, message.message_id)
        stored = self.messages.get(key)
        if stored is None or stored.status is not MessageStatus.PENDING:
            return SendClaim.GONE
        self._put_message(evolve(stored, status=MessageStatus.SENDING, attempt_at=now))
        return SendClaim.TAKEN

    def settle_message(
        self,
        message: Message,
        status: MessageStatus,
        *,
        reason: str | None = None,
        provider_id: str | None = None,
        sent_at: datetime | None = None,
        only_from: MessageStatus | None = None,
        moved_from: Channel | None = None,  # its send index reads each message's channel as it is now
    ) -> Message | None:
        stored = self.messages.get((message.contact_id, message.message_id))
        if only_from is not None and (stored is None or stored.status is not only_from):
            return None
        settled = evolve(message, status=status, reason=reason, provider_id=provider_id, sent_at=sent_at)
        self._put_message(settled)
        return settled

    def _put_message(self, message: Message) -> None:
        """Write the record and keep the per-contact, sent-at and provider-id indexes in step with it."""
        key = (message.contact_id, message.message_id)
        before = self.messages.get(key)
        self.messages[key] = message
        self._messages_of.setdefault(message.contact_id, {})[message.message_id] = None
        if before is not None and before.status.counts and before.sent_at is not None:
            self._sent[message.contact_id].remove((before.sent_at, message.message_id))
        if message.status.counts and message.sent_at is not None:
            insort(self._sent.setdefault(message.contact_id, []), (message.sent_at, message.message_id))
        if message.provider_id is not None:
            self._by_provider[message.provider_id] = key

    def _messages(self, contact_id: str) -> list[Message]:
        return [self.messages[(contact_id, m)] for m in self._messages_of.get(contact_id, ())]

    def all_contacts(self) -> Iterator[Contact]:
        return iter(list(self.contacts.values()))

    def contacts_segment(
        self, segment: int, of: int, cursor: Mapping[str, Any] | None = None
    ) -> Iterator[tuple[Contact, dict[str, Any] | None]]:
        # Segments by a hash of the id, as DynamoDB's are by the partition key's; ids in order within one.
        after = str((cursor or {}).get("after", ""))
        ids = sorted(c for c in self.contacts if zlib.crc32(c.encode()) % of == segment and c > after)
        for index, contact_id in enumerate(ids):
            if (contact := self.contacts.get(contact_id)) is not None:
                yield contact, {"after": contact_id} if index + 1 < len(ids) else None

    def record_piece(
        self,
        day: str,
        key: str,
        record: Mapping[str, Any],
        at: datetime,
        *,
        origin: str | None = None,
        position: str | None = None,
    ) -> None:
        log = self.job_log.setdefault(day, {})
        if origin is not None:
            stored = self.piece_claims.get((day, key))
            if stored is not None and stored[1] is not None and origin not in stored:
                raise ConflictError(f"{day} {key}")
        self.piece_claims[(day, key)] = (origin, position)
        log[key] = json.loads(json.dumps(record))

    def pieces_of(self, day: str) -> dict[str, dict[str, Any]]:
        pieces: dict[str, dict[str, Any]] = json.loads(json.dumps(self.job_log.get(day, {})))
        return pieces

    def order_lines(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        for event_id, record in list(self.events.items()):
            event = record["event"]
            if event.type == ORDER_PLACED:
                yield event_id, [line for line in event.properties.get("lines") or () if isinstance(line, dict)]

    def get_document(self, name: str) -> dict[str, Any] | None:
        found = self.documents.get(name)
        return json.loads(json.dumps(found)) if found is not None else None  # a copy, as a read would be

    def put_document(self, name: str, document: Mapping[str, Any], at: datetime) -> None:
        self.documents[name] = json.loads(json.dumps(document))
        self.document_versions.pop(name, None)  # as DynamoDB's whole-item put drops the version

    def get_versioned_document(self, name: str) -> tuple[dict[str, Any], int] | None:
        found = self.get_document(name)
        return (found, self.document_versions.get(name, 0)) if found is not None else None

    def put_versioned_document(
        self, name: str, document: Mapping[str, Any], at: datetime, expected_version: int
    ) -> int:
        if self.document_versions.get(name, 0) != expected_version:
            raise ConflictError(name)
        self.documents[name] = json.loads(json.dumps(document))
        self.document_versions[name] = expected_version + 1
        return expected_version + 1

    def get_message(self, contact_id: str, message_id: str) -> Message | None:
        return self.messages.get((contact_id, message_id))

    def messages_for(self, contact_id: str) -> list[Message]:
        return sorted(self._messages(contact_id), key=lambda m: m.created_at)

    def recent_sends(self, contact_id: str, since: datetime) -> list[SentRecord]:
        sent = self._sent.get(contact_id, [])
        records = []
        for sent_at, message_id in sent[bisect_left(sent, (since, "")) :]:
            m = self.messages[(contact_id, message_id)]
            records.append(SentRecord(m.channel, m.category, m.priority, sent_at, m.flow_id, message_id))
        return records

    def update_contact(self, contact_id: str, change: ContactChange, now: datetime) -> Contact | None:
        stored = self.contacts.get(contact_id)
        if stored is None:
            return None
        return self.save_contact(change.apply(stored, now), stored.version)

    def message_by_provider_id(self, provider_id: str) -> Message | None:
        key = self._by_provider.get(provider_id)
        found = self.messages.get(key) if key is not None else None
        return found if found is not None and found.provider_id == provider_id else None

    def record_feedback(self, message: Message, kind: FeedbackKind, at: datetime) -> bool:
        key = (message.contact_id, message.message_id)
        stored = self.messages.get(key)
        if stored is None or kind.value in stored.feedback:
            return False
        self._put_message(evolve(stored, feedback={**stored.feedback, kind.value: at}))
        return True

    def count_step(self, flow_id: str, step_id: str, kind: FeedbackKind) -> None:
        self.counters[(flow_id, step_id)][kind.value] += 1

    def step_counts(self, flow_id: str) -> dict[str, dict[str, int]]:
        return {step: dict(counts) for (flow, step), counts in self.counters.items() if flow == flow_id}

    def address_state(self, key: str) -> AddressState | None:
        return self.addresses.get(key)

    def suppress(self, key: str, reason: Suppression, at: datetime) -> None:
        state = self.addresses.get(key) or AddressState(key)
        if reason not in state.suppressed:
            self.addresses[key] = replace(state, suppressed={**state.suppressed, reason: at})

    def lift_suppression(self, key: str, reason: Suppression) -> None:
        state = self.addresses.get(key)
        if state is not None:
            self.addresses[key] = replace(state, suppressed={k: v for k, v in state.suppressed.items() if k != reason})

    def set_topic(self, key: str, topic: str, *, subscribed: bool) -> None:
        state = self.addresses.get(key) or AddressState(key)
        off = state.topics_off - {topic} if subscribed else state.topics_off | {topic}
        self.addresses[key] = replace(state, topics_off=off)

    def record_consent(self, record: ConsentRecord) -> None:
        self.consents[record.address_key].append(record)

    def consent_records(self, key: str) -> list[ConsentRecord]:
        return sorted(self.consents.get(key, []), key=lambda r: r.at)

    def events_for(self, contact_id: str) -> list[dict[str, Any]]:
        # The DynamoDB adapter's record of each event (a privacy export shows it as it is).
        return [
            {
                "event_id": e["event"].event_id,
                "type": e["event"].type,
                "status": e["status"],
                "occurred_at": e["event"].occurred_at.isoformat(),
                "received_at": e["received_at"].isoformat(),
                "body": {"contact": asdict(e["event"].contact), "properties": e["event"].properties},
            }
            for event_id in self._events_of.get(contact_id, ())
            if (e := self.events.get(event_id)) is not None and e["event"].contact_id == contact_id
        ]

    def runs_for(self, contact_id: str) -> list[Run]:
        return [self.runs[(contact_id, run_id)] for run_id in self._runs_of.get(contact_id, ())]

    def erase_contact(self, contact_id: str) -> dict[str, int]:
        contact = self.contacts.pop(contact_id, None)
        self._index_review(contact_id, contact, None)
        counts = {"contacts": int(contact is not None)}
        events = [e for e in self._events_of.pop(contact_id, {}) if self.events.pop(e, None) is not None]
        runs = [self.runs.pop((contact_id, r)) for r in self._runs_of.pop(contact_id, {})]
        slots = self._slots.pop(contact_id, {})
        messages = [self.messages.pop((contact_id, m)) for m in self._messages_of.pop(contact_id, {})]
        self._sent.pop(contact_id, None)
        for message in messages:
            if message.provider_id is not None:
                self._by_provider.pop(message.provider_id, None)
        counts.update(events=len(events), runs=len(runs) + len(slots), messages=len(messages))
        return counts

    def erase_consent_records(self, key: str) -> int:
        return len(self.consents.pop(key, []))

    def contacts_to_review(self, until: datetime) -> Iterator[str]:
        due = []
        for days in range(REVIEW_LOOKBACK_DAYS):
            for contact_id in self._review.get(until.date() - timedelta(days=days), ()):
                contact = self.contacts[contact_id]
                if contact.review_at is not None and contact.review_at <= until:
                    due.append((contact.review_at, contact_id))
        for _, contact_id in sorted(due):
            yield contact_id

    def all_runs(self) -> Iterator[Run]:
        yield from self.runs.values()

    def all_messages(self) -> Iterator[Message]:
        yield from self.messages.values()

    def orders(self) -> Iterator[Order]:
        for record in self.events.values():
            event: Event = record["event"]
            if event.type == ORDER_PLACED:
                yield order_of(event.contact_id, event.event_id, event.properties, event.occurred_at)


class MemorySendRateLimiter:
    """One horizon per bucket, like the DynamoDB send-rate limiter's item: the next free slot."""

    def __init__(self) -> None:
        self.horizon: dict[str, datetime] = {}
        self.reserved = 0
        self.counted: dict[str, tuple[int, int]] = {}  # reserve() and reserve_spare() per bucket

    def reserve(self, bucket: str, now: datetime, interval: timedelta) -> datetime:
        slot = max(now, self.horizon.get(bucket, now))
        self.horizon[bucket] = slot + max(interval, timedelta(milliseconds=1))
        self.reserved += 1
        flows, spare = self.counted.get(bucket, (0, 0))
        self.counted[bucket] = (flows + 1, spare)
        return slot

    def reserve_spare(self, bucket: str, now: datetime, interval: timedelta, within: timedelta) -> datetime | None:
        slot = max(now, self.horizon.get(bucket, now))
        if slot > now + within:
            return None
        self.horizon[bucket] = slot + max(interval, timedelta(milliseconds=1))
        self.reserved += 1
        flows, spare = self.counted.get(bucket, (0, 0))
        self.counted[bucket] = (flows, spare + 1)
        return slot

    def used(self, bucket: str) -> tuple[int, int]:
        return self.counted.get(bucket, (0, 0))

    def hold(self, bucket: str, until: datetime) -> None:
        if until > self.horizon.get(bucket, until - timedelta(seconds=1)):
            self.horizon[bucket] = until


class MemoryQueue:
    """The worker's queue: items become visible after their delay; `pop_due(now)` receives them in order."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.items: list[tuple[datetime, int, StepWakeUp]] = []
        self._order = itertools.count()
        self.sent = 0

    def enqueue(self, work: StepWakeUp, delay: timedelta = timedelta(0)) -> None:
        heapq.heappush(self.items, (self._clock.now() + delay, next(self._order), work))
        self.sent += 1

    def enqueue_many(self, items: Sequence[tuple[StepWakeUp, timedelta]]) -> None:
        for work, delay in items:
            self.enqueue(work, delay)

    def next_due(self) -> datetime | None:
        return self.items[0][0] if self.items else None

    def pop_due(self, now: datetime) -> list[StepWakeUp]:
        due = []
        while self.items and self.items[0][0] <= now:
            due.append(heapq.heappop(self.items)[2])
        return due


class MemoryJobQueue:
    """The daily job's queue: bodies in order (`take()` empties it); `delays` keeps each one's delay."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.delays: list[timedelta] = []

    def put(self, bodies: Sequence[Mapping[str, Any]], *, delay: timedelta = timedelta(0)) -> None:
        self.items.extend(json.loads(json.dumps(body)) for body in bodies)
        self.delays.extend(delay for _ in bodies)

    def take(self) -> list[dict[str, Any]]:
        taken, self.items, self.delays = self.items, [], []
        return taken


@dataclass(frozen=True, slots=True)
class PendingWakeUp:
    name: str
    at: datetime
    wake_up: StepWakeUp


class MemoryScheduler:
    """Holds one-time schedules; `due(now)` hands back those whose time has come, earliest first.

    A heap orders them by time (a cancelled or replaced schedule leaves a stale entry, skipped when
    reached), so finding the next one costs log n however many are pending.
    """

    def __init__(self) -> None:
        self.pending: dict[str, PendingWakeUp] = {}
        self.created = 0
        self._heap: list[tuple[datetime, str]] = []

    def schedule(self, name: str, at: datetime, wake_up: StepWakeUp) -> bool:
        if name in self.pending:
            return False
        self.pending[name] = PendingWakeUp(name, at, wake_up)
        heapq.heappush(self._heap, (at, name))
        self.created += 1
        return True

    def cancel(self, name: str) -> None:
        self.pending.pop(name, None)

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and ((found := self.pending.get(heap[0][1])) is None or found.at != heap[0][0]):
            heapq.heappop(heap)

    def next_due(self) -> datetime | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime) -> list[PendingWakeUp]:
        """Remove and return every schedule due at or before now (ActionAfterCompletion=DELETE)."""
        due = []
        while (at := self.next_due()) is not None and at <= now:
            _, name = heapq.heappop(self._heap)
            due.append(self.pending.pop(name))
        return due


class MemoryMailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, OutgoingEmail]] = []
        self._ids = itertools.count(1)

    def send(self, email: OutgoingEmail) -> str:
        provider_id = f"mem-email-{next(self._ids)}"
        self.sent.append((provider_id, email))
        return provider_id


class MemoryTexter:
    def __init__(self) -> None:
        self.sent: list[tuple[str, OutgoingSms]] = []
        self.opted_in: list[str] = []
        self._ids = itertools.count(1)

    def send(self, sms: OutgoingSms) -> str:
        provider_id = f"mem-sms-{next(self._ids)}"
        self.sent.append((provider_id, sms))
        return provider_id

    def opt_in(self, phone: str) -> None:
        self.opted_in.append(phone)


class MemoryWhatsApp:
    """Records what it was given, and answers with a failure when one is queued in `fail_next` (the same
    exceptions the real adapter raises), so the services' handling can be played without an account."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, OutgoingWhatsApp]] = []
        self.fail_next: list[Exception] = []
        self._ids = itertools.count(1)

    def send(self, message: OutgoingWhatsApp) -> str:
        if self.fail_next:
            raise self.fail_next.pop(0)
        provider_id = f"mem-whatsapp-{next(self._ids)}"
        self.sent.append((provider_id, message))
        return provider_id


class MemoryWebhooks:
    """Records posts; `fail_next` makes the next N posts fail as a timeout would."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []
        self.fail_next = 0
        self.status = 200

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_seconds: float) -> int:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise TransientSendError(f"timed out after {timeout_seconds}s")
        self.posts.append((url, body, dict(headers)))
        return self.status


class MemoryApiKeys:
    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}

    def put(self, key: ApiKey) -> None:
        self.keys[key.key_hash] = key

    def get(self, key_hash: str) -> ApiKey | None:
        return self.keys.get(key_hash)

    def revoke(self, key_hash: str, at: datetime) -> bool:
        if key_hash not in self.keys:
            return False
        self.keys[key_hash] = replace(self.keys[key_hash], revoked_at=at)
        return True


class MemoryContactRefs:
    def __init__(self) -> None:
        self.refs: dict[str, str] = {}
        self.claimants: dict[str, str | None] = {}
        self.waitlists: dict[str, set[str]] = {}
        self.stock: dict[str, dict[str, Any]] = {}

    def wait(self, item: str, contact_id: str, now: datetime) -> None:
        self.link(waiting_ref(contact_id, item), contact_id, now)
        self.waitlists.setdefault(item, set()).add(contact_id)

    def waiting(self, item: str) -> list[str]:
        return sorted(self.waitlists.get(item, ()))

    def unwait(self, item: str, contact_ids: list[str]) -> None:
        self.waitlists.get(item, set()).difference_update(contact_ids)

    def recall(self, key: str) -> dict[str, Any] | None:
        return self.stock.get(key)

    def observe(self, key: str, record: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        previous = self.stock.get(key)
        self.stock[key] = dict(record)
        return previous

    def link(self, ref: str, contact_id: str, now: datetime, *, claimant: str | None = None) -> None:
        self.refs[ref] = contact_id
        self.claimants[ref] = claimant

    def claim(self, ref: str, contact_id: str, claimant: str, now: datetime) -> str | None:
        if ref in self.refs and self.claimants.get(ref) != claimant:
            return self.refs[ref]
        self.link(ref, contact_id, now, claimant=claimant)
        return None

    def resolve(self, ref: str) -> str | None:
        return self.refs.get(ref)

    def contacts_of(
        self, scope: str, cursor: dict[str, Any] | None = None, limit: int = 100
    ) -> tuple[list[str], dict[str, Any] | None]:
        keys = sorted((contact, ref) for ref, contact in self.refs.items() if scope_of(ref) == scope)
        if cursor is not None:
            keys = [key for key in keys if key > (cursor["contact_id"], cursor["ref"])]
        page = keys[:limit]
        more = len(keys) > limit
        return [contact for contact, _ in page], {"contact_id": page[-1][0], "ref": page[-1][1]} if more else None

    def forget(self, contact_id: str) -> int:
        gone = [ref for ref, linked in self.refs.items() if linked == contact_id]
        for ref in gone:
            if (item := waited_item(ref, contact_id)) is not None:
                self.unwait(item, [contact_id])
            del self.refs[ref]
            self.claimants.pop(ref, None)
        return len(gone)


class MemoryPendingSignups:
    def __init__(self) -> None:
        self.signups: dict[str, PendingSignup] = {}

    def put(self, signup: PendingSignup) -> None:
        self.signups[signup.signup_id] = signup

    def get(self, signup_id: str, now: datetime) -> PendingSignup | None:
        signup = self.signups.get(signup_id)
        return signup if signup is not None and signup.expires_at > now else None


class MemoryPrivacyRequests:
    def __init__(self) -> None:
        self.requests: dict[str, PrivacyRequest] = {}

    def record(self, request: PrivacyRequest) -> bool:
        if request.request_id in self.requests:
            return False
        self.requests[request.request_id] = request
        return True

    def complete(self, request_id: str, status: str) -> None:
        self.requests[request_id] = replace(self.requests[request_id], status=status)


class MemoryRequestLimiter:
    """Fixed windows: counts per (bucket, window start), like the DynamoDB adapter."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}

    def hit(self, bucket: str, *, limit: int, window: timedelta, now: datetime) -> bool:
        slot = (bucket, int(now.timestamp() // window.total_seconds()))
        self.counts[slot] = self.counts.get(slot, 0) + 1
        return self.counts[slot] <= limit


class MemoryAudienceLedger:
    """The audience ledger in a dict: (audience id, contact id) -> entry; figures per audience."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], AudienceEntry] = {}
        self._stats: dict[str, AudienceStats] = {}

    def want(
        self, audience_id: str, contact_id: str, wanted: bool, email: str | None, phone: str | None, now: datetime
    ) -> AudienceEntry | None:
        key = (audience_id, contact_id)
        stored = self.entries.get(key)
        if stored is None:
            if not wanted:
                return None
            entry = AudienceEntry(audience_id, contact_id, True, False, email, phone, now)
        elif stored.wanted == wanted and (email, phone) in ((None, None), (stored.email, stored.phone)):
            return stored  # the same wish again (a retry): nothing changes
        else:
            entry = replace(
                stored,
                wanted=wanted,
                email=email if email or phone else stored.email,
                phone=phone if email or phone else stored.phone,
                changed_at=now,
                version=stored.version + 1,
            )
        self.entries[key] = entry
        return entry

    def pending(self, audience_id: str) -> list[AudienceEntry]:
        found = [e for (a, _), e in self.entries.items() if a == audience_id and e.pending]
        return sorted(found, key=lambda e: (e.changed_at, e.contact_id))

    def settle(self, entry: AudienceEntry) -> bool:
        key = (entry.audience_id, entry.contact_id)
        stored = self.entries.get(key)
        if stored is None or stored.version != entry.version:
            return False
        if entry.wanted:
            self.entries[key] = replace(stored, synced=True)
        else:
            del self.entries[key]
        return True

    def of_contact(self, contact_id: str) -> list[AudienceEntry]:
        return [e for (_, c), e in self.entries.items() if c == contact_id]

    def members(self, audience_id: str) -> dict[str, AudienceEntry]:
        return {c: e for (a, c), e in self.entries.items() if a == audience_id}

    def record(self, audience_id: str, update: AudienceStats) -> None:
        stats = self._stats.setdefault(audience_id, AudienceStats())
        stats.added += update.added
        stats.removed += update.removed
        stats.requests += update.requests
        stats.invalid += update.invalid
        stats.failures += update.failures
        stats.last_sync_at = update.last_sync_at or stats.last_sync_at
        stats.last_error = update.last_error

    def stats(self, audience_id: str) -> AudienceStats:
        return self._stats.get(audience_id, AudienceStats())


class MemoryAudiencePlatform:
    """One ad platform's audiences as sets of hashed identifiers; `fail_next` raises the given errors first.

    The in-memory twin of adapters/ad_audiences.py: the same contract test (tests/component) holds for both.
    """

    def __init__(self, batch_limit: int) -> None:
        self.batch_limit = batch_limit
        self.members: dict[str, set[tuple[str | None, str | None]]] = defaultdict(set)
        self.uploads: list[tuple[str, str, int]] = []  # (audience id, action, rows)
        self.fail_next: list[Exception] = []

    def upload(
        self, audience: Audience, action: str, members: Sequence[AudienceEntry], upload_key: str
    ) -> UploadResult:
        if self.fail_next:
            raise self.fail_next.pop(0)
        rows = {(m.email, m.phone) for m in members}
        if action == "add":
            self.members[audience.audience_id] |= rows
        else:
            self.members[audience.audience_id] -= rows
        requests = max(1, -(-len(members) // self.batch_limit))
        self.uploads.append((audience.audience_id, action, len(members)))
        return UploadResult(requests=requests)


class MemoryAudiencePlatforms:
    """`platform(name)` -> that platform's twin, each made once."""

    def __init__(self) -> None:
        self.made: dict[str, MemoryAudiencePlatform] = {}

    def __call__(self, name: str) -> MemoryAudiencePlatform:
        if name not in self.made:
            self.made[name] = MemoryAudiencePlatform(BATCH_LIMITS[name])
        return self.made[name]
