"""In-memory twins of every port, with the same conditional semantics as the AWS adapters.

For the engine's unit tests and for simulations over weeks of virtual time; never a replacement for
testing the real adapters (tests/component does that on moto).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from nudge.domain.model import Contact, Event, Message, MessageStatus, Run
from nudge.ports import ApiKey, ConflictError, OutgoingEmail, OutgoingSms, PrivacyRequest, StepWakeUp


class MemoryStore:
    def __init__(self) -> None:
        self.contacts: dict[str, Contact] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.runs: dict[tuple[str, str], Run] = {}
        self.active: dict[tuple[str, str], str] = {}  # (contact_id, flow_id) -> run_id
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

    def start_run(self, run: Run) -> Run | None:
        slot = (run.contact_id, run.flow_id)
        if slot in self.active or (run.contact_id, run.run_id) in self.runs:
            return None
        self.active[slot] = run.run_id
        stored = replace(run, version=1)
        self.runs[(run.contact_id, run.run_id)] = stored
        return stored

    def get_run(self, contact_id: str, run_id: str) -> Run | None:
        return self.runs.get((contact_id, run_id))

    def active_runs(self, contact_id: str) -> list[Run]:
        return [self.runs[(c, r)] for (c, _), r in self.active.items() if c == contact_id]

    def save_run(self, run: Run, expected_version: int) -> Run:
        key = (run.contact_id, run.run_id)
        stored = self.runs.get(key)
        if stored is None or stored.version != expected_version:
            raise ConflictError(run.run_id)
        saved = replace(run, version=expected_version + 1)
        self.runs[key] = saved
        if not saved.is_active and self.active.get((run.contact_id, run.flow_id)) == run.run_id:
            del self.active[(run.contact_id, run.flow_id)]
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


class MemoryRateLimiter:
    """Fixed windows: counts per (bucket, window start), like the DynamoDB adapter."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}

    def hit(self, bucket: str, *, limit: int, window: timedelta, now: datetime) -> bool:
        slot = (bucket, int(now.timestamp() // window.total_seconds()))
        self.counts[slot] = self.counts.get(slot, 0) + 1
        return self.counts[slot] <= limit
