"""The ports the services need. Adapters implement them for AWS (adapters/) and in memory (adapters/memory.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from nudge.domain.kpis import Order
from nudge.domain.model import Contact, Event, FlowSlot, Message, MessageStatus, Run, SentRecord


class Clock(Protocol):
    def now(self) -> datetime: ...


class ContactChange(Protocol):
    def apply(self, contact: Contact, now: datetime) -> Contact: ...


class ConflictError(Exception):
    """An optimistic-lock or conditional write lost a race; the caller decides whether that is fine."""


class TransientSendError(Exception):
    """The provider may accept the message later (throttling, timeouts): retry the step."""


class PermanentSendError(Exception):
    """The provider will never accept this message (rejected address, bad content)."""


class Store(Protocol):
    def get_contact(self, contact_id: str) -> Contact | None: ...

    def save_contact(self, contact: Contact, expected_version: int) -> Contact:
        """Write the contact if its stored version is still expected_version (0: new); else ConflictError."""
        ...

    def begin_event(self, event: Event, now: datetime) -> bool:
        """Record the event; False if an event with this id was already fully processed."""
        ...

    def finish_event(self, event_id: str, outcome: Mapping[str, Any]) -> None: ...

    def flow_slots(self, contact_id: str) -> dict[str, FlowSlot]:
        """The contact's slot in each flow it ever entered, by flow id."""
        ...

    def start_run(self, run: Run, expected: FlowSlot | None) -> Run | None:
        """Create the run (version 1) and take the contact's slot in its flow.

        None if the run exists, the slot holds an active run, or the slot changed since it was read as
        `expected` (another start raced this one).
        """
        ...

    def get_run(self, contact_id: str, run_id: str) -> Run | None: ...

    def active_runs(self, contact_id: str) -> list[Run]: ...

    def save_run(self, run: Run, expected_version: int) -> Run:
        """Write the run (and free its active slot once it ended); ConflictError if the version moved."""
        ...

    def claim_message(self, message: Message) -> bool:
        """Create the message record in CLAIMED state; False if it exists (unless it is RETRYABLE)."""
        ...

    def settle_message(
        self,
        message: Message,
        status: MessageStatus,
        *,
        reason: str | None = None,
        provider_id: str | None = None,
        sent_at: datetime | None = None,
    ) -> Message: ...

    def messages_for(self, contact_id: str) -> list[Message]: ...

    def recent_sends(self, contact_id: str, since: datetime) -> list[SentRecord]:
        """Messages sent to the contact at or after `since` (what guardrails count)."""
        ...

    def update_contact(self, contact_id: str, change: ContactChange, now: datetime) -> Contact | None:
        """Apply `change` to the stored contact under optimistic locking (retrying on conflict); None if absent."""
        ...

    def contacts_to_review(self, until: datetime) -> Iterator[str]:
        """Ids of contacts whose `review_at` is at or before `until` (recent days only; see ADR 0005)."""
        ...


@dataclass(frozen=True, slots=True)
class StepWakeUp:
    """What the scheduler hands back to the step function when a run's wait is over."""

    contact_id: str
    run_id: str
    seq: int

    def as_payload(self) -> dict[str, Any]:
        return {"contact_id": self.contact_id, "run_id": self.run_id, "seq": self.seq}


class Scheduler(Protocol):
    def schedule(self, name: str, at: datetime, wake_up: StepWakeUp) -> bool:
        """Create a one-time schedule; False if one with this name already exists (a retry)."""
        ...

    def cancel(self, name: str) -> None:
        """Delete the schedule if it is still pending; a missing one is fine."""
        ...


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    to: str
    from_address: str
    subject: str
    html: str
    text: str
    date: datetime
    headers: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    to: str
    text: str
    transactional: bool = False


class Mailer(Protocol):
    def send(self, email: OutgoingEmail) -> str:
        """Send and return the provider's message id; raise TransientSendError or PermanentSendError."""
        ...


class Texter(Protocol):
    def send(self, sms: OutgoingSms) -> str: ...


class WebhookSender(Protocol):
    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_seconds: float) -> int:
        """POST and return the HTTP status; raise TransientSendError on timeouts and connection failures."""
        ...


class ReportReader(Protocol):
    """Whole-table reads for reports (a CLI, never a handler): scans, fine for a shop, not for 1M contacts."""

    def all_runs(self) -> Iterator[Run]: ...

    def all_messages(self) -> Iterator[Message]: ...

    def orders(self) -> Iterator[Order]:
        """order_placed events still retained (the events table keeps 90 days)."""
        ...
