"""The ports the services need. Adapters implement them for AWS (adapters/) and in memory (adapters/memory.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from nudge.domain.frozen import dataclass

if TYPE_CHECKING:  # annotations only: a function that reads no flow imports neither pydantic nor the catalog's
    # models through its ports (ADR 0020, Decision 9)
    from nudge.domain.audiences import Audience
    from nudge.domain.feedback import FeedbackKind
    from nudge.domain.kpis import Order
    from nudge.domain.model import Channel, Contact, Event, FlowSlot, Message, MessageStatus, Run, SentRecord
    from nudge.domain.suppression import AddressState, ConsentRecord, Suppression
    from nudge.domain.whatsapp import OutgoingWhatsApp


class Clock(Protocol):
    def now(self) -> datetime: ...


class ContactChange(Protocol):
    def apply(self, contact: Contact, now: datetime) -> Contact: ...


class Sleeper(Protocol):
    """Waits: time.sleep in Lambda, a step of the virtual clock in simulations."""

    def sleep(self, seconds: float) -> None: ...


class ConflictError(Exception):
    """An optimistic-lock or conditional write lost a race; the caller decides whether that is fine."""


class EventDone(Exception):  # noqa: N818 (a state, not a fault: the caller answers "duplicate")
    """The event was already fully processed (`Store.record_event`): nothing was written."""


class TransientSendError(Exception):
    """The provider answered "not now" (throttling, a spent quota) or the request never left: send it later.

    `retry_after` is how long the provider asks us to wait, when it says (a daily quota: hours).
    """

    def __init__(self, message: str, *, retry_after: timedelta | None = None, throttled: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.throttled = throttled  # the account's rate is exhausted: hold every send, not just this one


class UnknownSendOutcome(Exception):
    """The request may have reached the provider (a timeout after it left, a reset connection): never resend."""


class PermanentSendError(Exception):
    """The provider will never accept this message (rejected address, bad content)."""


class Census(Protocol):
    """Whole-table passes for the daily job: every contact, every retained order (scans, once a day)."""

    def all_contacts(self) -> Iterator[Contact]: ...

    def contacts_segment(
        self, segment: int, of: int, cursor: Mapping[str, Any] | None = None
    ) -> Iterator[tuple[Contact, dict[str, Any] | None]]:
        """The contacts of Scan segment `segment` of `of`, from `cursor` on, each with the cursor after it
        (JSON, to resume from; None once the segment is done). Every contact is in exactly one segment."""
        ...

    def contacts_to_review(self, until: datetime) -> Iterator[str]:
        """Contacts whose segment membership may have changed with time by `until` (an index, not a scan)."""
        ...

    def order_lines(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """(event id, its `lines`) of every order_placed event the events table still holds."""
        ...


class Documents(Protocol):
    """Small named JSON documents the daily job computes for everyone: RFM cut points, co-purchases."""

    def get_document(self, name: str) -> dict[str, Any] | None: ...

    def put_document(self, name: str, document: Mapping[str, Any], at: datetime) -> None: ...

    def get_versioned_document(self, name: str) -> tuple[dict[str, Any], int] | None:
        """The document and its version (0: never written by `put_versioned_document`); consistent read."""
        ...

    def put_versioned_document(
        self, name: str, document: Mapping[str, Any], at: datetime, expected_version: int
    ) -> int:
        """Write it if its stored version is still `expected_version` (0: absent or never versioned) and
        return the new version; ConflictError if another writer moved it first (nothing written)."""
        ...


class JobLog(Protocol):
    """What each piece of a day's daily job did: one record per piece, replaced if the piece runs again."""

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
        """Replace the piece's record. With `origin` (where the piece started) and `position` (where it
        stands now), only if the stored record has no position, or stands at `origin`, or was written from
        `origin` (the same piece, earlier or a copy of it): else ConflictError and nothing written."""
        ...

    def pieces_of(self, day: str) -> dict[str, dict[str, Any]]: ...


class ContactBatches(Protocol):
    """Many contacts a request, for a bulk import (services/order_import.py); same items as `Store`'s."""

    def get_contacts(self, contact_ids: Sequence[str]) -> dict[str, Contact]:
        """The stored ones among these (at most 100: one BatchGetItem), by id; consistent reads."""
        ...

    def save_contacts(self, contacts: Sequence[tuple[Contact, int]]) -> list[Contact]:
        """Save each at its expected version, all or none (at most 100: one TransactWriteItems).

        Raises ConflictError if any version moved meanwhile (a live event, another import): nothing is saved.
        """
        ...

    def record_consents(self, records: Sequence[ConsentRecord]) -> None:
        """Append consent records (BatchWriteItem, 25 a request): each is a new item, so no condition."""
        ...


class Contacts(Protocol):
    """Contacts by id, each written at the version it was read at."""

    def get_contact(self, contact_id: str) -> Contact | None: ...

    def save_contact(self, contact: Contact, expected_version: int, consents: Sequence[ConsentRecord] = ()) -> Contact:
        """Write the contact if its stored version is still expected_version (0: new); else ConflictError.

        `consents` (the consent records of this change) are written with it, all or none: one call.
        """
        ...

    def update_contact(self, contact_id: str, change: ContactChange, now: datetime) -> Contact | None:
        """Apply `change` to the stored contact under optimistic locking (retrying on conflict); None if absent."""
        ...


class EventLog(Protocol):
    """Each event once: begun, finished with its outcome, kept for its retention."""

    def begin_event(self, event: Event, now: datetime) -> bool:
        """Record the event; False if an event with this id was already fully processed."""
        ...

    def record_event(
        self,
        event: Event,
        now: datetime,
        contact: Contact | None,
        expected_version: int,
        consents: Sequence[ConsentRecord] = (),
        outcome: Mapping[str, Any] | None = None,
    ) -> Contact | None:
        """`begin_event` and `save_contact(contact, expected_version, consents)` in one write, all or none.

        With `outcome` the event is recorded processed at once (`finish_event`): a request with nothing
        left to do. Raises EventDone if the event was already processed, ConflictError if the contact's
        version moved. Returns the contact as saved (None when none was given: the event alone).
        """
        ...

    def finish_event(self, event_id: str, outcome: Mapping[str, Any]) -> None: ...

    def events_for(self, contact_id: str) -> list[dict[str, Any]]:
        """The raw events recorded for the contact (within their retention period)."""
        ...


class Runs(Protocol):
    """Runs and the contact's slot in each flow (one active run per contact and flow)."""

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

    def run_with_context(
        self,
        contact_id: str,
        run_id: str,
        message_ids: Sequence[str] = (),
        address_keys: Sequence[str] = (),
        sends_since: datetime | None = None,
    ) -> WakeReads:
        """`get_run`, `get_contact`, `get_message` of each of `message_ids` and `address_state` of each of
        `address_keys`, in one strongly consistent call: what a wake-up reads first (issue #20). With
        `sends_since`, also the contact's counted sends since then (`WakeReads.sends`; not `stored` when the
        store keeps no log for the contact yet: then `recent_sends` is asked, and the commit writes it)."""
        ...

    def overdue_runs(self, before: datetime) -> Iterator[tuple[str, str]]:
        """(contact id, run id) of active runs whose next wake-up was due before `before` (eventually consistent)."""
        ...

    def active_runs(self, contact_id: str, slots: Mapping[str, FlowSlot] | None = None) -> list[Run]:
        """The contact's active runs; given `slots` (just read by `flow_slots`), the runs they name, without
        reading the slots again."""
        ...

    def save_run(self, run: Run, expected_version: int) -> Run:
        """Write the run (and free its active slot once it ended); ConflictError if the version moved."""
        ...

    def commit_advance(
        self, run: Run, expected_version: int, messages: Sequence[Message], sends: SendLog | None = None
    ) -> Run:
        """Write the advanced run and the messages it decided on, in one transaction (the outbox).

        The run is stored at expected_version + 1 (its slot freed once it ended); each message is created
        with `run_version` set to that version. ConflictError if the run's version moved: nothing written.
        `sends`: the contact's send log as this advance read it; the commit adds the messages it counts
        (those with a `sent_at` that are not settled otherwise), writes a log not yet `stored`, and drops
        its stale pieces. A message settled `SKIPPED` or `FAILED` later leaves the log with its settle.
        """
        ...

    def runs_for(self, contact_id: str) -> list[Run]:
        """Every run of the contact, active or ended."""
        ...


class Outbox(Protocol):
    """Messages: decided with their run's advance, taken for sending once, settled, and their feedback."""

    def begin_send(self, message: Message, now: datetime) -> SendClaim:
        """Take a PENDING message to SENDING, if its run has not exited since the message was committed."""
        ...

    def settle_message(
        self,
        message: Message,
        status: MessageStatus,
        *,
        reason: str | None = None,
        provider_id: str | None = None,
        sent_at: datetime | None = None,
        only_from: MessageStatus | None = None,
        moved_from: Channel | None = None,
    ) -> Message | None:
        """Record the message's new state; with `only_from`, only if it is still in that state (else None).
        `moved_from`: the channel it was decided on, when it now goes out on another (a WhatsApp fallback):
        the guardrails count it on its new channel."""
        ...

    def messages_for(self, contact_id: str) -> list[Message]: ...

    def get_message(self, contact_id: str, message_id: str) -> Message | None: ...

    def recent_sends(self, contact_id: str, since: datetime) -> list[SentRecord]:
        """Messages sent, or decided and still going out, to the contact at or after `since` (guardrails count them)."""
        ...

    def message_by_provider_id(self, provider_id: str) -> Message | None:
        """The message SES or SNS accepted under this id (feedback events carry only that)."""
        ...

    def record_feedback(self, message: Message, kind: FeedbackKind, at: datetime) -> bool:
        """Note the first event of this kind on the message; False if one was already noted (a redelivery)."""
        ...


class StepCounters(Protocol):
    """Per flow step, how many messages met each kind of feedback."""

    def count_step(self, flow_id: str, step_id: str, kind: FeedbackKind) -> None:
        """Add one to the flow step's counter for this kind of feedback."""
        ...

    def step_counts(self, flow_id: str) -> dict[str, dict[str, int]]:
        """step id -> feedback kind -> count."""
        ...


class AddressBook(Protocol):
    """Per address (email, phone): suppressions, topics and the consent records behind them."""

    def address_state(self, key: str) -> AddressState | None: ...

    def suppress(self, key: str, reason: Suppression, at: datetime) -> None:
        """Block the address for this reason (kept since the first time); idempotent."""
        ...

    def lift_suppression(self, key: str, reason: Suppression) -> None: ...

    def set_topic(self, key: str, topic: str, *, subscribed: bool) -> None: ...

    def record_consent(self, record: ConsentRecord) -> None: ...

    def consent_records(self, key: str) -> list[ConsentRecord]: ...


class Erasure(Protocol):
    """Deleting what the shop holds of a person (privacy requests)."""

    def erase_contact(self, contact_id: str) -> dict[str, int]:
        """Delete the contact, their events, runs, run slots and messages; items deleted per table."""
        ...

    def erase_consent_records(self, key: str) -> int: ...


class Store(Contacts, EventLog, Runs, Outbox, StepCounters, AddressBook, Erasure, Census, Documents, JobLog, Protocol):
    """Every role the DynamoDB tables play, as one adapter implements them. A service takes the roles it uses
    (its own Protocol of them, beside it), so that mypy shows what each one reads and writes."""


class SendClaim(StrEnum):
    TAKEN = "taken"  # this invocation owns the send now: call the provider
    GONE = "gone"  # the message is not PENDING any more (another invocation sent it, or settled it)
    RUN_EXITED = "run_exited"  # the run exited after deciding on it: it must not go out


class SendRateLimiter(Protocol):
    """Shared across invocations: hands out send slots `interval` apart (the SES rate), never two alike."""

    def reserve(self, bucket: str, now: datetime, interval: timedelta) -> datetime:
        """The next free slot at or after `now`, taken for the caller (a slot later than now means: wait)."""
        ...

    def hold(self, bucket: str, until: datetime) -> None:
        """Hand out no slot before `until` (the provider said it is throttling us)."""
        ...

    def reserve_spare(self, bucket: str, now: datetime, interval: timedelta, within: timedelta) -> datetime | None:
        """A slot no later than `now + within`, taken, or None (the horizon is further out): what a campaign's
        send takes, so it only fills what `reserve`'s callers (flows) leave and never queues ahead of them."""
        ...

    def used(self, bucket: str) -> tuple[int, int]:
        """How many slots `reserve` and `reserve_spare` have handed out in the bucket, ever: (flows',
        campaigns'). A campaign measures what flows leave idle, and its own backlog, by their change."""
        ...


@dataclass(frozen=True, slots=True)
class StepWakeUp:
    """A unit of the worker's work: a run's wait is over (wake-up `seq`), or one of its messages is due.

    With `message_id`, it delivers that committed message (deferred for a send slot or a throttled
    provider); `slot` then names the send slot already reserved for it.
    """

    contact_id: str
    run_id: str
    seq: int
    message_id: str | None = None
    slot: datetime | None = None
    audience: str | None = None  # upload this ad audience's pending changes instead (ADR 0024)
    # The run's outbox when this wake-up was armed: read with the run in one call. Only a hint: the worker
    # drains the outbox the run holds, reading any message the hint did not name.
    outbox: tuple[str, ...] = ()
    # The hashed address keys (never an address) of the contact when this was armed, read with the run:
    # a send then needs no read of its own for the suppressions. Also a hint: another key is read apart.
    addresses: tuple[str, ...] = ()

    @staticmethod
    def for_audience(audience_id: str) -> StepWakeUp:
        """The work of uploading an audience's pending membership changes (no run: the id names the audience)."""
        return StepWakeUp(contact_id="-", run_id=f"audience:{audience_id}", seq=0, audience=audience_id)

    def as_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"contact_id": self.contact_id, "run_id": self.run_id, "seq": self.seq}
        if self.message_id is not None:
            payload["message_id"] = self.message_id
        if self.slot is not None:
            payload["slot"] = self.slot.isoformat()
        if self.audience is not None:
            payload["audience"] = self.audience
        if self.outbox:
            payload["outbox"] = list(self.outbox)
        if self.addresses:
            payload["addresses"] = list(self.addresses)
        return payload


@dataclass(frozen=True, slots=True)
class WakeReads:
    """What a wake-up reads in its first call (`Store.run_with_context`)."""

    run: Run | None
    contact: Contact | None
    messages: dict[str, Message] = field(default_factory=dict)  # those of the ids asked for that exist
    addresses: dict[str, AddressState | None] = field(default_factory=dict)  # every key asked for
    sends: SendLog | None = None  # the contact's counted sends since the time asked for; None: not read


@dataclass(frozen=True, slots=True)
class SendLog:
    """A contact's counted sends (`recent_sends`) as a store keeps them beside its runs: read with the run,
    written by the commit that decides a message (ADR 0020, Decision 8).

    `stored` False: the store held no log for the contact yet, and `records` came from `recent_sends`; the
    next commit writes them. `stale`: the store's own pieces of the log past the window, which the next
    commit drops (opaque to callers)."""

    records: tuple[SentRecord, ...]
    stored: bool = True
    stale: tuple[str, ...] = ()


class WorkQueue(Protocol):
    """The worker's queue (SQS): work due now or within MAX_QUEUE_DELAY; later work goes to the Scheduler."""

    def enqueue(self, work: StepWakeUp, delay: timedelta = timedelta(0)) -> None: ...

    def enqueue_many(self, items: Sequence[tuple[StepWakeUp, timedelta]]) -> None:
        """Each (work, delay) as `enqueue` would, ten a request (SendMessageBatch); raises if any failed
        (the caller's retry re-drives them all: the worker ignores a duplicate wake-up)."""
        ...


class JobQueue(Protocol):
    """The daily job's queue (SQS): pieces of work the sweep function consumes, each in its own invocation."""

    def put(self, bodies: Sequence[Mapping[str, Any]], *, delay: timedelta = timedelta(0)) -> None:
        """Queue the bodies, each receivable after `delay` (at most 15 minutes: SQS's DelaySeconds)."""
        ...


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


class WhatsAppSender(Protocol):
    def send(self, message: OutgoingWhatsApp) -> str:
        """Send and return the provider's message id; raise TransientSendError, PermanentSendError or
        UnknownSendOutcome as the Mailer and Texter do."""
        ...


class UnconfiguredWhatsApp:
    """The WhatsAppSender where no WhatsApp number is configured: every send is refused, for good."""

    def send(self, message: OutgoingWhatsApp) -> str:
        raise PermanentSendError("WhatsApp is not configured (no NUDGE_WHATSAPP_PHONE_NUMBER_ID; docs/whatsapp.md)")


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


@dataclass(frozen=True, slots=True)
class PendingSignup:
    """A signup form's submission waiting for the address owner's click; applied only then."""

    signup_id: str
    key_hash: str
    email: str
    first_name: str | None
    phone: str | None
    sms_marketing: bool
    source: str | None
    requested_at: datetime
    expires_at: datetime
    notify_me: str | None = None  # a "notify me" form: the variant to wait on, applied on confirmation too


class PendingSignups(Protocol):
    """Pending signups, kept until they expire (a week): the confirmation link names one by id only."""

    def put(self, signup: PendingSignup) -> None: ...

    def get(self, signup_id: str, now: datetime) -> PendingSignup | None:
        """The signup, unless there is none or it expired by `now`."""
        ...


STOREFRONTS = ("shopify", "woocommerce")


def scope_of(ref: str) -> str | None:
    """The storefront a ref belongs to (`shopify:<shop>` of `shopify:<shop>:order:<id>`), None for others."""
    platform, _, rest = ref.partition(":")
    site, _, ident = rest.partition(":")
    return f"{platform}:{site}" if platform in STOREFRONTS and site and ident else None


WAITING_PREFIX = "waiting:"


def waiting_ref(contact_id: str, item: str) -> str:
    """The ref that remembers a contact joined `item`'s waitlist, so that erasing the contact finds it."""
    return f"{WAITING_PREFIX}{contact_id}:{item}"


def waited_item(ref: str, contact_id: str) -> str | None:
    """The item of the contact's `waiting_ref`, None for any other ref."""
    prefix = waiting_ref(contact_id, "")
    return ref[len(prefix) :] if ref.startswith(prefix) else None


class ContactRefs(Protocol):
    """Outside identifiers (a Shopify order, a Segment anonymousId) that lead to a contact."""

    def link(self, ref: str, contact_id: str, now: datetime, *, claimant: str | None = None) -> None: ...

    def claim(self, ref: str, contact_id: str, claimant: str, now: datetime) -> str | None:
        """Link the ref to the contact, atomically, if no one holds it or `claimant` (an event id) already
        does; None if it now leads to the contact for this claimant, else the contact it leads to."""
        ...

    def resolve(self, ref: str) -> str | None: ...

    def forget(self, contact_id: str) -> int:
        """Delete every ref that leads to the contact (erasure), and take it off every waitlist it joined;
        how many refs there were."""
        ...

    def contacts_of(
        self, scope: str, cursor: dict[str, Any] | None = None, limit: int = 100
    ) -> tuple[list[str], dict[str, Any] | None]:
        """Contacts that refs of `scope` (a storefront: `shopify:<shop>`, the first two parts of its refs) lead
        to, in contact order, a page at a time: up to `limit` refs from `cursor`, and where the next page starts
        (None after the last). A contact with several refs may be named more than once."""
        ...

    # A storefront's catalog, as far as flows need it: who waits for an item, what was last seen of it.

    def wait(self, item: str, contact_id: str, now: datetime) -> None:
        """The contact asked to be told when `item` (a variant) is back in stock (and a `waiting_ref` remembers
        it for the contact's erasure)."""
        ...

    def waiting(self, item: str) -> list[str]: ...

    def unwait(self, item: str, contact_ids: list[str]) -> None: ...

    def observe(self, key: str, record: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        """Store what a catalog delivery says of `key` (stock, price); the record it replaces, None if first."""
        ...

    def recall(self, key: str) -> dict[str, Any] | None:
        """What was last observed of `key`, None if nothing."""
        ...


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


class RequestLimiter(Protocol):
    """The public endpoints' request windows (a signup form's per-address limit); not the send slots,
    which pace what goes out (`SendRateLimiter`)."""

    def hit(self, bucket: str, *, limit: int, window: timedelta, now: datetime) -> bool:
        """Count one request in the bucket's current window; False once the window holds more than `limit`."""
        ...


class ReportReader(Census, Documents, Protocol):
    """Whole-table reads for reports (a CLI, never a handler): scans, fine for a shop, not for 1M contacts."""

    def all_runs(self) -> Iterator[Run]: ...

    def all_messages(self) -> Iterator[Message]: ...

    def orders(self) -> Iterator[Order]:
        """order_placed events still retained (the events table keeps 90 days)."""
        ...


# Ad audiences (ADR 0024) ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudienceEntry:
    """One contact in one ad audience: whether they should be in it, and whether the platform has them.

    The identifiers are hashed as the audience's platform wants them; they are kept only while the entry
    exists, so a removal can still be uploaded after the contact was erased. An entry whose removal was
    uploaded is deleted.
    """

    audience_id: str
    contact_id: str
    wanted: bool
    synced: bool
    email: str | None
    phone: str | None
    changed_at: datetime
    version: int = 1

    @property
    def pending(self) -> bool:
        """An add the platform does not have yet, or any removal: one never uploaded may still be in flight
        (another worker's upload), and removing someone not in an audience is harmless."""
        return not (self.wanted and self.synced)


@dataclass(slots=True)
class AudienceStats:
    """What an audience's uploads did so far (the report's line)."""

    added: int = 0
    removed: int = 0
    requests: int = 0
    invalid: int = 0
    failures: int = 0
    last_sync_at: datetime | None = None
    last_error: str | None = None


class AudienceLedger(Protocol):
    """Who should be and who is in each ad audience; the outbox of membership changes (ADR 0024)."""

    def want(
        self, audience_id: str, contact_id: str, wanted: bool, email: str | None, phone: str | None, now: datetime
    ) -> AudienceEntry | None:
        """Record that the contact should (not) be in the audience; identifiers None keep the stored ones.
        Returns the entry, or None for a removal of someone who was never in it (nothing to do)."""
        ...

    def pending(self, audience_id: str) -> list[AudienceEntry]:
        """Entries the next upload takes (AudienceEntry.pending), oldest change first."""
        ...

    def settle(self, entry: AudienceEntry) -> bool:
        """The platform has this entry's wish: mark it synced (a removal deletes it). False, changing nothing,
        if the entry changed since it was read (a newer wish waits for the next upload)."""
        ...

    def of_contact(self, contact_id: str) -> list[AudienceEntry]: ...

    def members(self, audience_id: str) -> dict[str, AudienceEntry]:
        """Every entry of the audience, by contact id."""
        ...

    def record(self, audience_id: str, update: AudienceStats) -> None:
        """Add an upload's figures to the audience's totals (the last sync and error replace)."""
        ...

    def stats(self, audience_id: str) -> AudienceStats: ...


@dataclass(frozen=True, slots=True)
class UploadResult:
    requests: int  # HTTP requests made
    invalid: int = 0  # identifiers the platform refused (partial failure)


class AudiencePlatform(Protocol):
    """One ad platform's audience API (Meta, Google Ads, TikTok): adds or removes hashed identifiers.

    Idempotent: the same batch sent again (a retry, `upload_key` the same) changes nothing more. Raises
    TransientSendError (rate limit, 5xx, network: retry later) or PermanentSendError (bad token, refused).
    """

    def upload(
        self, audience: Audience, action: str, members: Sequence[AudienceEntry], upload_key: str
    ) -> UploadResult: ...
