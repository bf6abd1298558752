"""The domain's entities: contacts, events, runs and messages. Plain frozen dataclasses, no I/O."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from nudge.domain import bounds
from nudge.domain.addresses import email_or_none
from nudge.domain.aggregates import VIEW_ATTRIBUTES, Aggregates
from nudge.domain.frozen import MARK, dataclass, slot_setter, writable
from nudge.domain.lifecycle import STAGES, Rfm, predicted_next_order
from nudge.domain.predictions import Predictions

JsonDict = dict[str, Any]
_STAGE_SET = frozenset(STAGES)

_Record = TypeVar("_Record")
_COPIERS: dict[tuple[Any, ...], Callable[[Any, dict[str, Any]], Any]] = {}


def evolve(record: _Record, /, **changes: Any) -> _Record:
    """`dataclasses.replace` for these records (no `__post_init__`, no init-only field), without calling
    `__init__`: a run or a message is copied on every step it takes, and replace was a third of a backtest.

    Each class gets a copier compiled once per set of changed fields (a call site's keywords), that fills
    every slot from the record or from the changes, without asking for each field whether it changed: by
    plain assignment on the class's writable twin for a class `nudge.domain.frozen` made (then swapped
    back to the class, as its `__init__` does), else through each slot's own setter."""
    key = (type(record), *changes)
    copier = _COPIERS.get(key)
    if copier is None:
        copier = _COPIERS[key] = _copier(type(record), frozenset(changes))
    return copier(record, changes)  # type: ignore[no-any-return]


class _Versioned(Protocol):
    @property
    def version(self) -> int: ...


_V = TypeVar("_V", bound=_Versioned)


def at_version(record: _V, version: int) -> _V:
    """The record (a contact, a run) at this version: itself when it already is, as a write that sets that
    version hands it over (a record is never changed in place, so an equal copy would buy nothing)."""
    return record if record.version == version else evolve(record, version=version)


def _copier(cls: type, changed: frozenset[str]) -> Callable[[Any, dict[str, Any]], Any]:
    names = tuple(f.name for f in fields(cls))
    if unknown := changed - set(names):
        raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    scope: dict[str, Any] = {"cls": cls, "new_of": object.__new__}
    if cls.__dict__.get(MARK):  # made by nudge.domain.frozen: filled in as its writable twin (`writable`)
        scope["twin"] = writable(cls)
        lines = [
            "def copy(record, changes):",
            "    new = new_of(twin)",
            *(
                f"    new.{name} = changes[{name!r}]" if name in changed else f"    new.{name} = record.{name}"
                for name in names
            ),
            "    new.__class__ = cls",
            "    return new",
        ]
    else:
        lines = [
            "def copy(record, changes):",
            "    new = new_of(cls)",
            *(
                f"    set_{i}(new, changes[{name!r}])" if name in changed else f"    set_{i}(new, record.{name})"
                for i, name in enumerate(names)
            ),
            "    return new",
        ]
        for i, name in enumerate(names):
            scope[f"set_{i}"] = slot_setter(cls, name)
    exec("\n".join(lines), scope)  # noqa: S102 - code built from the class's own field names
    return scope["copy"]  # type: ignore[no-any-return]


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WEBHOOK = "webhook"
    WHATSAPP = "whatsapp"
    AUDIENCE = "audience"  # an ad audience: an `audience` step's membership change, not a message


class Category(StrEnum):
    """Marketing messages need consent; transactional ones (receipts, confirmations) do not."""

    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"


class RunStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    EXITED = "exited"


class MessageStatus(StrEnum):
    """A message's life (ADR 0007): PENDING -> SENDING -> SENT, or SKIPPED / FAILED / UNKNOWN.

    PENDING is written with the run's advance in one transaction (the outbox), so a message a run decided
    on is never forgotten. SENDING is taken just before the provider call, by that same transaction when
    the message is cleared to go at once, else in one that checks the run has not exited since; only one
    invocation can take it, so none is sent twice.
    """

    PENDING = "pending"  # decided by an advance; not handed to the provider yet (any retry may send it)
    SENDING = "sending"  # handed to the provider; its answer not recorded yet
    SENT = "sent"
    SKIPPED = "skipped"  # a guardrail, a suppression or the run's exit stopped it; `reason` says which
    FAILED = "failed"  # permanent failure (rejected address, broken template)
    UNKNOWN = "unknown"  # the provider call may have happened (lost response, death mid-call): never resent

    @property
    def settled(self) -> bool:
        return self not in (MessageStatus.PENDING, MessageStatus.SENDING)

    @property
    def counts(self) -> bool:
        """Counted by the guardrails (frequency caps, smart sending) once decided: going out, gone, or may have."""
        return self not in (MessageStatus.SKIPPED, MessageStatus.FAILED)


def _digest(*parts: str, length: int = 20) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:length]


@functools.lru_cache(maxsize=1 << 17)  # pure: every event of a contact derives the same id (an import: every order)
def contact_id_for(*, external_id: str | None, email: str | None, phone: str | None) -> str:
    """Derive the stable contact id: the shop's own id if given, else a hash of email, else of phone."""
    if external_id:
        return external_id
    if email:
        return "em_" + _digest(email_or_none(email) or email.strip().lower(), length=24)
    if phone:
        return "ph_" + _digest(phone, length=24)
    raise ValueError("a contact needs an id, an email or a phone number")


# What conditions and templates may read as `contact.<field>` (Contact.template_view's keys, which a test
# keeps equal): flow validation refuses a condition that reads any other.
CONTACT_FIELDS = frozenset(
    {
        "id", "email", "phone", "first_name", "last_name", "timezone", "email_marketing", "sms_marketing",
        "whatsapp_marketing", "ads_marketing", "whatsapp_inbound_at", "tags", "properties", "aggregates", "stage",
        "segments", "rfm", "predicted",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Contact:
    """A person the shop may message. Consent is None until the shop tells us either way."""

    contact_id: str
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    email_marketing: bool | None = None
    sms_marketing: bool | None = None
    whatsapp_marketing: bool | None = None  # a separate opt-in: SMS consent is not WhatsApp consent
    ads_marketing: bool | None = None  # consent to be shown ads as one of an ad audience (ADR 0024)
    properties: JsonDict = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    aggregates: Aggregates = field(default_factory=Aggregates)
    segments: tuple[str, ...] = ()  # the lifecycle stage first, then the segments/*.yaml it meets
    review_at: datetime | None = None  # when membership may next change with time alone (the daily sweep)
    rfm: Rfm | None = None  # scored by the daily job against the whole customer base; None for non-buyers
    predicted: Predictions | None = None  # by the daily job's model of the base; None for non-buyers or no model
    # The customer's last WhatsApp message to the shop: it opens the 24-hour window for free-form text.
    whatsapp_inbound_at: datetime | None = None
    version: int = 0

    def merged(self, patch: ContactPatch, now: datetime, aggregates: Aggregates | None = None) -> Contact:
        """Apply what an event or identify call says about the contact; absent fields keep their value.
        With `aggregates`, those too (the event counted), in the same copy.

        New properties must keep the contact within its property budget (bounds.OutOfBounds, naming
        `/properties`): one DynamoDB item holds the whole contact.
        """
        properties = {**self.properties, **patch.properties}
        if patch.properties and properties != self.properties:
            bounds.check_contact_properties(properties, "/properties")
        return evolve(  # replace() without __init__: once per event
            self,
            aggregates=self.aggregates if aggregates is None else aggregates,
            email=patch.email or self.email,
            phone=patch.phone or self.phone,
            first_name=patch.first_name or self.first_name,
            last_name=patch.last_name or self.last_name,
            timezone=patch.timezone or self.timezone,
            email_marketing=self.email_marketing if patch.email_marketing is None else patch.email_marketing,
            sms_marketing=self.sms_marketing if patch.sms_marketing is None else patch.sms_marketing,
            whatsapp_marketing=(
                self.whatsapp_marketing if patch.whatsapp_marketing is None else patch.whatsapp_marketing
            ),
            ads_marketing=self.ads_marketing if patch.ads_marketing is None else patch.ads_marketing,
            properties=properties,
            created_at=self.created_at or now,
            updated_at=now,
        )

    def template_view(self) -> JsonDict:
        """What templates and conditions see as `contact` (its keys: CONTACT_FIELDS)."""
        return {
            "id": self.contact_id,
            "email": self.email,
            "phone": self.phone,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "timezone": self.timezone,
            "email_marketing": self.email_marketing,
            "sms_marketing": self.sms_marketing,
            "whatsapp_marketing": self.whatsapp_marketing,
            "ads_marketing": self.ads_marketing,
            "whatsapp_inbound_at": self.whatsapp_inbound_at,
            "tags": list(self.tags),
            "properties": dict(self.properties),
            "aggregates": _aggregates_view(self.aggregates),
            "stage": self.stage,
            "segments": list(self.segments),
            "rfm": self.rfm.template_view() if self.rfm else None,
            "predicted": (
                self.predicted.template_view(historic=float(self.aggregates.total_spent)) if self.predicted else None
            ),
        }

    def lazy_view(self) -> Mapping[str, Any]:
        """`template_view()` built only when read, and only as far as read: `aggregates` alone is what a
        segment on `aggregates.*` reads (evaluated on every event of the contact), and it is cached."""
        return _LazyContactView(self)

    @property
    def stage(self) -> str | None:
        """The lifecycle stage as of the last evaluation (None before the first)."""
        for segment in self.segments:  # the stage comes first: a loop, not a generator, for a view per step
            if segment in _STAGE_SET:
                return segment
        return None


# Aggregates object id -> (it, its scalar view with the predicted next order): a contact's view is built
# several times per event and per wake-up, and its aggregates change only with an order. The object is
# held, so its id is not reused while cached; only immutable values are shared between views.
_AGGREGATE_VIEWS: dict[int, tuple[Aggregates, JsonDict]] = {}
_AGGREGATE_VIEWS_KEPT = 4096


def _aggregates_view(aggregates: Aggregates) -> JsonDict:
    """`contact.aggregates`: the aggregates' view and the predicted next order; a new dict, and new lists,
    for each contact view (only the immutable values are shared)."""
    cached = _AGGREGATE_VIEWS.get(id(aggregates))
    if cached is None or cached[0] is not aggregates:
        if len(_AGGREGATE_VIEWS) >= _AGGREGATE_VIEWS_KEPT:
            _AGGREGATE_VIEWS.clear()
        view = {**aggregates.template_view(), "predicted_next_order_at": predicted_next_order(aggregates)}
        cached = _AGGREGATE_VIEWS[id(aggregates)] = (aggregates, view)
    view = dict(cached[1])  # the same keys in the same order; the lists replaced in place by new ones
    view["products"] = list(aggregates.products)
    view["categories"] = list(aggregates.categories)
    return view


# `contact.aggregates`'s keys, in the view's order: the aggregates' attributes read as they are, the two lists
# copied, and the predicted next order (`_aggregates_view`; a test keeps the two equal).
_AGGREGATE_KEYS = (*VIEW_ATTRIBUTES, "products", "categories", "predicted_next_order_at")
_AGGREGATE_KEY_SET = frozenset(_AGGREGATE_KEYS)
_AGGREGATE_ATTRIBUTE_SET = frozenset(VIEW_ATTRIBUTES)


class _LazyAggregatesView(Mapping[str, Any]):
    """`_aggregates_view` as a mapping that works out only the value read: a segment reads one leaf of it
    (`aggregates.total_spent`) on every event and every review, and each order makes new aggregates, whose
    whole view (the average order value, the predicted next order) would be built for that one leaf."""

    __slots__ = ("_aggregates",)

    def __init__(self, aggregates: Aggregates) -> None:
        self._aggregates = aggregates

    def __getitem__(self, key: str) -> Any:
        if key in _AGGREGATE_ATTRIBUTE_SET:
            return getattr(self._aggregates, key)
        if key == "products" or key == "categories":
            return list(getattr(self._aggregates, key))
        if key == "predicted_next_order_at":
            return predicted_next_order(self._aggregates)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in _AGGREGATE_KEY_SET

    def __iter__(self) -> Iterator[str]:
        return iter(_AGGREGATE_KEYS)

    def __len__(self) -> int:
        return len(_AGGREGATE_KEYS)


class _LazyContactView(Mapping[str, Any]):
    """A contact's template view as a mapping that builds only what is read (the same values), for readers
    that change nothing (a segment's lookup): its `aggregates` is itself lazy."""

    __slots__ = ("_contact", "_view")

    def __init__(self, contact: Contact) -> None:
        self._contact = contact
        self._view: JsonDict | None = None

    def _whole(self) -> JsonDict:
        if self._view is None:
            self._view = self._contact.template_view()
        return self._view

    def __getitem__(self, key: str) -> Any:
        if key == "aggregates" and self._view is None:
            return _LazyAggregatesView(self._contact.aggregates)
        return self._whole()[key]

    def __contains__(self, key: object) -> bool:
        return key in CONTACT_FIELDS

    def __iter__(self) -> Iterator[str]:
        return iter(self._whole())

    def __len__(self) -> int:
        return len(CONTACT_FIELDS)


@dataclass(frozen=True, slots=True)
class ContactPatch:
    """The contact fields an inbound event or identify call carries."""

    external_id: str | None = None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    email_marketing: bool | None = None
    sms_marketing: bool | None = None
    whatsapp_marketing: bool | None = None
    ads_marketing: bool | None = None
    properties: JsonDict = field(default_factory=dict)

    @property
    def contact_id(self) -> str:
        # Asked several times per event: a plain dict by position first (lru_cache's keywords cost more).
        found = _CONTACT_IDS.get((self.external_id, self.email, self.phone))
        if found is None:
            found = contact_id_for(external_id=self.external_id, email=self.email, phone=self.phone)
            if len(_CONTACT_IDS) >= _CONTACT_IDS_KEPT:
                _CONTACT_IDS.clear()
            _CONTACT_IDS[(self.external_id, self.email, self.phone)] = found
        return found


_CONTACT_IDS: dict[tuple[str | None, str | None, str | None], str] = {}
_CONTACT_IDS_KEPT = 1 << 14  # a Lambda keeps it between invocations: bounded, then cleared


@dataclass(frozen=True, slots=True)
class SentRecord:
    """A message that went out: what the guardrails count."""

    channel: Channel
    category: Category
    priority: int
    sent_at: datetime
    flow_id: str
    message_id: str = ""  # the message counted (a store's own log of sends keys on it)


@dataclass(frozen=True, slots=True)
class FlowSlot:
    """A contact's standing in one flow: its active run, if any, and when it last started one."""

    flow_id: str
    active_run_id: str | None = None
    last_started_at: datetime | None = None
    started_count: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """A canonical storefront event: something a contact did, once, at a time."""

    event_id: str
    type: str
    contact: ContactPatch
    properties: JsonDict
    occurred_at: datetime

    @property
    def contact_id(self) -> str:
        return self.contact.contact_id


@dataclass(frozen=True, slots=True)
class Run:
    """One contact's way through one flow. `cursor` is the next step to execute; `seq` counts wake-ups."""

    run_id: str
    contact_id: str
    flow_id: str
    status: RunStatus
    cursor: str | None
    seq: int
    trigger_event_id: str
    trigger: JsonDict
    started_at: datetime
    updated_at: datetime
    due_at: datetime | None = None
    ended_at: datetime | None = None
    exit_reason: str | None = None
    variants: dict[str, str] = field(default_factory=dict)  # split step id -> variant name
    converted_at: datetime | None = None
    conversion: JsonDict | None = None  # the goal event: id, type, value
    journal: tuple[JsonDict, ...] = ()  # branch, split, skip and deferral decisions, newest last
    outbox: tuple[str, ...] = ()  # message ids the last advance committed: delivered by whoever gets there first
    version: int = 0

    @staticmethod
    def id_for(flow_id: str, contact_id: str, trigger_event_id: str) -> str:
        """Deterministic, so a retried or duplicated trigger names the same run."""
        return "r" + _digest(flow_id, contact_id, trigger_event_id)

    @property
    def schedule_name(self) -> str:
        """Name of the one-time schedule for the pending wake-up (unique per run, seq and due time).

        The due time is part of it: an advance retried later may arm the same wake-up for another moment,
        and that one must not be refused as a duplicate of the first.
        """
        due = int(self.due_at.timestamp()) if self.due_at is not None else 0
        return f"{self.run_id}-{self.seq:04d}-{due}"

    @property
    def is_active(self) -> bool:
        return self.status is RunStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class Message:
    """A message a run decided to send, keyed by run and step so a step fired twice maps to one record."""

    contact_id: str
    message_id: str
    run_id: str
    flow_id: str
    step_id: str
    channel: Channel
    category: Category
    status: MessageStatus
    created_at: datetime
    recipient: str | None = None
    subject: str | None = None
    body_preview: str | None = None
    reason: str | None = None
    provider_id: str | None = None
    sent_at: datetime | None = None
    priority: int = 0
    variant: str | None = None
    sms_encoding: str | None = None  # gsm7 | ucs2
    sms_segments: int | None = None  # what the carrier bills
    feedback: dict[str, datetime] = field(default_factory=dict)  # first delivery/open/click/... seen, by kind
    run_version: int = 0  # the run version that committed it: an exit after that version cancels it
    attempt_at: datetime | None = None  # when it went SENDING

    @staticmethod
    def id_for(run_id: str, step_id: str) -> str:
        return f"{run_id}#{step_id}"

    def at_run_version(self, version: int) -> Message:
        """The message as a commit at this run version stores it (itself when it already says so: no copy)."""
        return self if self.run_version == version else evolve(self, run_version=version)
