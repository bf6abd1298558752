"""In-memory twins of every port, with the same conditional semantics as the AWS adapters.

For the engine's unit tests and for simulations over weeks of virtual time; never a replacement for
testing the real adapters (tests/component does that on moto).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from nudge.domain.aggregates import ORDER_PLACED
from nudge.domain.feedback import FeedbackKind
from nudge.domain.kpis import Order, order_of
from nudge.domain.model import Contact, Event, FlowSlot, Message, MessageStatus, Run, SentRecord
from nudge.domain.segments import REVIEW_LOOKBACK_DAYS
from nudge.domain.suppression import AddressState, ConsentRecord, Suppression
from nudge.ports import (
    ApiKey,
    ConflictError,
    ContactChange,
    OutgoingEmail,
    OutgoingSms,
    PrivacyRequest,
    StepWakeUp,
    TransientSendError,
)


class MemoryStore:
    def __init__(self) -> None:
        self.contacts: dict[str, Contact] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.runs: dict[tuple[str, str], Run] = {}
        self.slots: dict[tuple[str, str], FlowSlot] = {}  # (contact_id, flow_id)
        self.messages: dict[tuple[str, str], Message] = {}
        self.addresses: dict[str, AddressState] = {}
        self.consents: dict[str, list[ConsentRecord]] = defaultdict(list)
        self.counters: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.documents: dict[str, dict[str, Any]] = {}

    def get_contact(self, contact_id: str) -> Contact | None:
        return self.contacts.get(contact_id)

    def save_contact(self, contact: Contact, expected_version: int) -> Contact:
        stored = self.contacts.get(contact.contact_id)
        if (stored.version if stored else 0) != expected_version:
            raise ConflictError(contact.contact_id)
        saved = replace(contact, version=expected_version + 1)
        self.contacts[contact.contact_id] = saved
        return saved

    def begin_event(self, event: Event, now: datetime) -> bool:
        stored = self.events.get(event.event_id)
        if stored is not None and stored["status"] == "processed":
            return False
        self.events[event.event_id] = {"event": event, "status": "received", "received_at": now}
        return True

    def finish_event(self, event_id: str, outcome: Mapping[str, Any]) -> None:
        self.events[event_id].update(status="processed", outcome=dict(outcome))

    def flow_slots(self, contact_id: str) -> dict[str, FlowSlot]:
        return {flow: slot for (c, flow), slot in self.slots.items() if c == contact_id}

    def start_run(self, run: Run, expected: FlowSlot | None) -> Run | None:
        key = (run.contact_id, run.flow_id)
        current = self.slots.get(key)
        if (run.contact_id, run.run_id) in self.runs or (current is not None and current.active_run_id):
            return None
        if (current.started_count if current else 0) != (expected.started_count if expected else 0):
            return None
        self.slots[key] = FlowSlot(
            run.flow_id, run.run_id, run.started_at, (current.started_count if current else 0) + 1
        )
        stored = replace(run, version=1)
        self.runs[(run.contact_id, run.run_id)] = stored
        return stored

    def get_run(self, contact_id: str, run_id: str) -> Run | None:
        return self.runs.get((contact_id, run_id))

    def active_runs(self, contact_id: str) -> list[Run]:
        return [
            self.runs[(contact_id, slot.active_run_id)]
            for slot in self.flow_slots(contact_id).values()
            if slot.active_run_id is not None
        ]

    def save_run(self, run: Run, expected_version: int) -> Run:
        key = (run.contact_id, run.run_id)
        stored = self.runs.get(key)
        if stored is None or stored.version != expected_version:
            raise ConflictError(run.run_id)
        saved = replace(run, version=expected_version + 1)
        self.runs[key] = saved
        slot = self.slots.get((run.contact_id, run.flow_id))
        if not saved.is_active and slot is not None and slot.active_run_id == run.run_id:
            self.slots[(run.contact_id, run.flow_id)] = replace(slot, active_run_id=None)
        return saved

    def claim_message(self, message: Message) -> bool:
        key = (message.contact_id, message.message_id)
        stored = self.messages.get(key)
        if stored is not None and stored.status is not MessageStatus.RETRYABLE:
            return False
        self.messages[key] = replace(message, status=MessageStatus.CLAIMED)
        return True

    def settle_message(
        self,
        message: Message,
        status: MessageStatus,
        *,
        reason: str | None = None,
        provider_id: str | None = None,
        sent_at: datetime | None = None,
    ) -> Message:
        settled = replace(message, status=status, reason=reason, provider_id=provider_id, sent_at=sent_at)
        self.messages[(message.contact_id, message.message_id)] = settled
        return settled

    def all_contacts(self) -> Iterator[Contact]:
        return iter(list(self.contacts.values()))

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

    def get_message(self, contact_id: str, message_id: str) -> Message | None:
        return self.messages.get((contact_id, message_id))

    def messages_for(self, contact_id: str) -> list[Message]:
        return sorted((m for (c, _), m in self.messages.items() if c == contact_id), key=lambda m: m.created_at)

    def recent_sends(self, contact_id: str, since: datetime) -> list[SentRecord]:
        return [
            SentRecord(m.channel, m.category, m.priority, m.sent_at, m.flow_id)
            for m in self.messages_for(contact_id)
            if m.status is MessageStatus.SENT and m.sent_at is not None and m.sent_at >= since
        ]

    def update_contact(self, contact_id: str, change: ContactChange, now: datetime) -> Contact | None:
        stored = self.contacts.get(contact_id)
        if stored is None:
            return None
        return self.save_contact(change.apply(stored, now), stored.version)

    def message_by_provider_id(self, provider_id: str) -> Message | None:
        return next((m for m in self.messages.values() if m.provider_id == provider_id), None)

    def record_feedback(self, message: Message, kind: FeedbackKind, at: datetime) -> bool:
        key = (message.contact_id, message.message_id)
        stored = self.messages.get(key)
        if stored is None or kind.value in stored.feedback:
            return False
        self.messages[key] = replace(stored, feedback={**stored.feedback, kind.value: at})
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
        return [
            {"event_id": e["event"].event_id, "type": e["event"].type, "contact": asdict(e["event"].contact)}
            for e in self.events.values()
            if e["event"].contact_id == contact_id
        ]

    def runs_for(self, contact_id: str) -> list[Run]:
        return [run for (c, _), run in self.runs.items() if c == contact_id]

    def erase_contact(self, contact_id: str) -> dict[str, int]:
        counts = {"contacts": int(self.contacts.pop(contact_id, None) is not None)}
        events = [k for k, e in self.events.items() if e["event"].contact_id == contact_id]
        runs = [k for k in self.runs if k[0] == contact_id]
        slots = [k for k in self.slots if k[0] == contact_id]
        messages = [k for k in self.messages if k[0] == contact_id]
        for table, keys in (("events", events), ("runs", runs), ("slots", slots), ("messages", messages)):
            for key in keys:
                del getattr(self, table)[key]
        counts.update(events=len(events), runs=len(runs) + len(slots), messages=len(messages))
        return counts

    def erase_consent_records(self, key: str) -> int:
        return len(self.consents.pop(key, []))

    def contacts_to_review(self, until: datetime) -> Iterator[str]:
        oldest = until.date() - timedelta(days=REVIEW_LOOKBACK_DAYS - 1)
        due = [
            c
            for c in self.contacts.values()
            if c.review_at is not None and c.review_at <= until and c.review_at.date() >= oldest
        ]
        for contact in sorted(due, key=lambda c: (c.review_at, c.contact_id)):
            yield contact.contact_id

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
    """Counts slots per (bucket, window) like the DynamoDB send-rate limiter's counter items."""

    def __init__(self) -> None:
        self.taken: Counter[tuple[str, int]] = Counter()

    def try_acquire(self, bucket: str, window: int, limit: int) -> bool:
        if self.taken[(bucket, window)] >= limit:
            return False
        self.taken[(bucket, window)] += 1
        return True


@dataclass(frozen=True, slots=True)
class PendingWakeUp:
    name: str
    at: datetime
    wake_up: StepWakeUp


class MemoryScheduler:
    """Holds one-time schedules; `due(now)` hands back those whose time has come, earliest first."""

    def __init__(self) -> None:
        self.pending: dict[str, PendingWakeUp] = {}
        self.created = 0

    def schedule(self, name: str, at: datetime, wake_up: StepWakeUp) -> bool:
        if name in self.pending:
            return False
        self.pending[name] = PendingWakeUp(name, at, wake_up)
        self.created += 1
        return True

    def cancel(self, name: str) -> None:
        self.pending.pop(name, None)

    def next_due(self) -> datetime | None:
        return min((p.at for p in self.pending.values()), default=None)

    def pop_due(self, now: datetime) -> list[PendingWakeUp]:
        """Remove and return every schedule due at or before now (ActionAfterCompletion=DELETE)."""
        due = sorted((p for p in self.pending.values() if p.at <= now), key=lambda p: (p.at, p.name))
        for item in due:
            del self.pending[item.name]
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

    def link(self, ref: str, contact_id: str, now: datetime) -> None:
        self.refs[ref] = contact_id

    def resolve(self, ref: str) -> str | None:
        return self.refs.get(ref)


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


class MemoryRateLimiter:
    """Fixed windows: counts per (bucket, window start), like the DynamoDB adapter."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}

    def hit(self, bucket: str, *, limit: int, window: timedelta, now: datetime) -> bool:
        slot = (bucket, int(now.timestamp() // window.total_seconds()))
        self.counts[slot] = self.counts.get(slot, 0) + 1
        return self.counts[slot] <= limit
