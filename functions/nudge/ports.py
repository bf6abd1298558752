"""The ports the services need. Adapters implement them for AWS (adapters/) and in memory (adapters/memory.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from nudge.domain.feedback import FeedbackKind
from nudge.domain.kpis import Order
from nudge.domain.model import Contact, Event, FlowSlot, Message, MessageStatus, Run, SentRecord
from nudge.domain.suppression import AddressState, ConsentRecord, Suppression


class Clock(Protocol):
    def now(self) -> datetime: ...


class ContactChange(Protocol):
    def apply(self, contact: Contact, now: datetime) -> Contact: ...


class Sleeper(Protocol):
    """Waits: time.sleep in Lambda, a step of the virtual clock in simulations."""

    def sleep(self, seconds: float) -> None: ...


class ConflictError(Exception):
    """An optimistic-lock or conditional write lost a race; the caller decides whether that is fine."""


class TransientSendError(Exception):
    """The provider may accept the message later (throttling, timeouts): retry the step."""


class PermanentSendError(Exception):
    """The provider will never accept this message (rejected address, bad content)."""


class Census(Protocol):
    """Whole-table passes for the daily job: every contact, every retained order (scans, once a day)."""

    def all_contacts(self) -> Iterator[Contact]: ...

    def order_lines(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """(event id, its `lines`) of every order_placed event the events table still holds."""
        ...


class Documents(Protocol):
    """Small named JSON documents the daily job computes for everyone: RFM cut points, co-purchases."""

    def get_document(self, name: str) -> dict[str, Any] | None: ...

    def put_document(self, name: str, document: Mapping[str, Any], at: datetime) -> None: ...


class Store(Census, Documents, Protocol):
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

    def get_message(self, contact_id: str, message_id: str) -> Message | None: ...

    def recent_sends(self, contact_id: str, since: datetime) -> list[SentRecord]:
        """Messages sent to the contact at or after `since` (what guardrails count)."""
        ...

    def update_contact(self, contact_id: str, change: ContactChange, now: datetime) -> Contact | None:
        """Apply `change` to the stored contact under optimistic locking (retrying on conflict); None if absent."""
        ...

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

    def contacts_to_review(self, until: datetime) -> Iterator[str]:
        """Ids of contacts whose `review_at` is at or before `until` (recent days only; see ADR 0005)."""
        ...


class SendRateLimiter(Protocol):
    """Shared across invocations: at most `limit` sends per one-second window (the SES quota)."""

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

    def opt_in(self, phone: str) -> None:
        """Take the number off the provider's own opt-out list (after START), so sends reach it again."""
        ...


class WebhookSender(Protocol):
    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_seconds: float) -> int:
        """POST and return the HTTP status; raise TransientSendError on timeouts and connection failures."""
        ...


class KeyKind(StrEnum):
    """Secret keys call the server-side API; publishable keys sit in a shop's page for the signup form."""

    SECRET = "secret"
    PUBLISHABLE = "publishable"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key: only the SHA-256 of the key is kept, never the key."""

    key_hash: str
    kind: KeyKind
    name: str
    created_at: datetime
    origins: tuple[str, ...] = ()  # publishable keys: the sites allowed to call /v1/subscribe (CORS)
    double_opt_in: bool = False  # publishable keys: confirm the address by email before subscribing
    revoked_at: datetime | None = None


class ApiKeys(Protocol):
    def put(self, key: ApiKey) -> None: ...

    def get(self, key_hash: str) -> ApiKey | None: ...

    def revoke(self, key_hash: str, at: datetime) -> bool:
        """Mark the key revoked; False if there is no such key."""
        ...


class ContactRefs(Protocol):
    """Outside identifiers (a Shopify order, a Segment anonymousId) that lead to a contact."""

    def link(self, ref: str, contact_id: str, now: datetime) -> None: ...

    def resolve(self, ref: str) -> str | None: ...


class PrivacyKind(StrEnum):
    EXPORT = "export"  # the customer asked for their data
    ERASE_CONTACT = "erase_contact"
    ERASE_SHOP = "erase_shop"


@dataclass(frozen=True, slots=True)
class PrivacyRequest:
    """A data request or redaction to carry out; recorded durably so none is lost before it is done."""

    request_id: str
    kind: PrivacyKind
    source: str  # "shopify", "api", ...
    subject: dict[str, Any]  # what the source said: shop, customer id, email, phone, orders
    contact_ids: tuple[str, ...]
    received_at: datetime
    status: str = "pending"


class PrivacyRequests(Protocol):
    def record(self, request: PrivacyRequest) -> bool:
        """Store the request; False if one with this id is already recorded."""
        ...

    def complete(self, request_id: str, status: str) -> None:
        """Mark the request carried out (e.g. "erased"), so an operator can tell done from pending."""
        ...


class RateLimiter(Protocol):
    def hit(self, bucket: str, *, limit: int, window: timedelta, now: datetime) -> bool:
        """Count one request in the bucket's current window; False once the window holds more than `limit`."""
        ...


class ReportReader(Census, Protocol):
    """Whole-table reads for reports (a CLI, never a handler): scans, fine for a shop, not for 1M contacts."""

    def all_runs(self) -> Iterator[Run]: ...

    def all_messages(self) -> Iterator[Message]: ...

    def orders(self) -> Iterator[Order]:
        """order_placed events still retained (the events table keeps 90 days)."""
        ...
