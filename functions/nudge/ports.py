"""The ports the services need. Adapters implement them for AWS (adapters/) and in memory (adapters/memory.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from nudge.domain.feedback import FeedbackKind
from nudge.domain.model import Contact, Event, Message, MessageStatus, Run
from nudge.domain.suppression import AddressState, ConsentRecord, Suppression


class Clock(Protocol):
    def now(self) -> datetime: ...


class Sleeper(Protocol):
    """Waits: time.sleep in Lambda, a step of the virtual clock in simulations."""

    def sleep(self, seconds: float) -> None: ...


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

    def start_run(self, run: Run) -> Run | None:
        """Create the run (version 1) and take the contact's flow slot; None if either exists already."""
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

    # deliverability (issue #5) -------------------------------------------------------------------------

    def message_by_provider_id(self, provider_id: str) -> Message | None:
        """The message SES or SNS accepted under this id (feedback events carry only that)."""
        ...

    def record_feedback(self, message: Message, kind: FeedbackKind, at: datetime) -> bool:
        """Note the first event of this kind on the message; False if one was already noted (a redelivery)."""
        ...

    def count_step(self, flow_id: str, step_id: str, kind: FeedbackKind) -> None:
        """Add one to the flow step's counter for this kind of feedback."""
        ...

    def step_counts(self, flow_id: str) -> dict[str, dict[str, int]]:
        """step id -> feedback kind -> count."""
        ...

    def address_state(self, key: str) -> AddressState | None: ...

    def suppress(self, key: str, reason: Suppression, at: datetime) -> None:
        """Block the address for this reason (kept since the first time); idempotent."""
        ...

    def lift_suppression(self, key: str, reason: Suppression) -> None: ...

    def set_topic(self, key: str, topic: str, *, subscribed: bool) -> None: ...

    def record_consent(self, record: ConsentRecord) -> None: ...

    def consent_records(self, key: str) -> list[ConsentRecord]: ...

    # privacy (issue #5) --------------------------------------------------------------------------------

    def events_for(self, contact_id: str) -> list[dict[str, Any]]:
        """The raw events recorded for the contact (within their retention period)."""
        ...

    def runs_for(self, contact_id: str) -> list[Run]:
        """Every run of the contact, active or ended."""
        ...

    def erase_contact(self, contact_id: str) -> dict[str, int]:
        """Delete the contact, their events, runs, run slots and messages; items deleted per table."""
        ...

    def erase_consent_records(self, key: str) -> int: ...


class RateLimiter(Protocol):
    def try_acquire(self, bucket: str, window: int, limit: int) -> bool:
        """Take one of `limit` slots in this window (a unix second) of the bucket; False if none is left."""
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
