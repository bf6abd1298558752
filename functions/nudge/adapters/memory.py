"""In-memory twins of every port, with the same conditional semantics as the AWS adapters.

For the engine's unit tests and for simulations over weeks of virtual time; never a replacement for
testing the real adapters (tests/component does that on moto).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from nudge.domain.aggregates import ORDER_PLACED
from nudge.domain.kpis import Order, order_of
from nudge.domain.model import Contact, Event, FlowSlot, Message, MessageStatus, Run, SentRecord
from nudge.domain.segments import REVIEW_LOOKBACK_DAYS
from nudge.ports import ConflictError, ContactChange, OutgoingEmail, OutgoingSms, StepWakeUp, TransientSendError


class MemoryStore:
    def __init__(self) -> None:
        self.contacts: dict[str, Contact] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.runs: dict[tuple[str, str], Run] = {}
        self.slots: dict[tuple[str, str], FlowSlot] = {}  # (contact_id, flow_id)
        self.messages: dict[tuple[str, str], Message] = {}

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
        self._ids = itertools.count(1)

    def send(self, sms: OutgoingSms) -> str:
        provider_id = f"mem-sms-{next(self._ids)}"
        self.sent.append((provider_id, sms))
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
