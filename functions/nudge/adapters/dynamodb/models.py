"""PynamoDB models, one per table, bound to table names at wiring time (names come from settings).

contacts   PK contact_id                          one item per contact
           GSI review: PK review_bucket "<YYYY-MM-DD>#<shard>", SK review_at; sparse (only contacts whose
           segment membership can change with time), keys only; the daily sweep queries it (ADR 0005)
events     PK event_id                            dedupe + raw event, expires_at TTL (90 days)
           GSI by-contact: contact_id (KEYS_ONLY)  an erased or exported contact's events
runs       PK contact_id, SK "RUN#<run_id>"       a run
           PK contact_id, SK "FLOW#<flow_id>"     the contact's slot in a flow: active run id (while one is
                                                  active), last start, number of starts (re-entry rules)
messages   PK contact_id, SK message_id           "<run_id>#<seq>#<step_id>": one record per step visit
           GSI by-provider-id: provider_id (ALL)  feedback events name only the provider's message id
suppressions PK address_key, SK "STATE"           suppressions and topic opt-outs of one hashed address
           PK address_key, SK "CONSENT#<at>#<n>"  consent records (when, where from) of that address
counters   PK "STEP#<flow_id>", SK step_id        feedback counters per flow step (delivery, open, ...)
           PK "RATE#<bucket>", SK <unix second>   send-rate window, expires_at TTL (1 hour)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.indexes import (
    AllProjection,
    GlobalSecondaryIndex,
    IncludeProjection,
    KeysOnlyProjection,
    LocalSecondaryIndex,
)
from pynamodb.models import Model

from nudge import names
from nudge.domain.frozen import dataclass

RUN_PREFIX = "RUN#"
SLOT_PREFIX = "FLOW#"
STATE_SK = "STATE"
CONSENT_PREFIX = "CONSENT#"
STEP_PREFIX = "STEP#"
RATE_PREFIX = "RATE#"


class EventsByContact(GlobalSecondaryIndex["EventModel"]):
    class Meta:
        index_name = names.EVENTS_BY_CONTACT_INDEX
        projection = KeysOnlyProjection()

    contact_id = UnicodeAttribute(hash_key=True)


class MessagesByProviderId(GlobalSecondaryIndex["MessageModel"]):
    class Meta:
        index_name = names.MESSAGES_BY_PROVIDER_ID_INDEX
        projection = AllProjection()

    provider_id = UnicodeAttribute(hash_key=True)


class MessagesBySentAt(LocalSecondaryIndex["MessageModel"]):
    """A contact's sent messages by send time: guardrails read the last week without the whole history."""

    class Meta:
        index_name = names.MESSAGES_SENT_INDEX
        projection = IncludeProjection(list(names.SENT_INDEX_ATTRIBUTES))

    contact_id = UnicodeAttribute(hash_key=True)
    sent_at = UTCDateTimeAttribute(range_key=True)


class RunsByDue(GlobalSecondaryIndex["RunModel"]):
    """Sparse: active runs only, by when their next wake-up is due, spread over shards (the repair job)."""

    class Meta:
        index_name = names.RUNS_BY_DUE_INDEX
        projection = KeysOnlyProjection()

    due_shard = UnicodeAttribute(hash_key=True)
    due_at = UTCDateTimeAttribute(range_key=True)


class ReviewIndex(GlobalSecondaryIndex["ContactModel"]):
    """Sparse: contacts due for a segment review, bucketed by day and spread over shards."""

    class Meta:
        index_name = names.CONTACTS_REVIEW_INDEX
        projection = KeysOnlyProjection()

    review_bucket = UnicodeAttribute(hash_key=True)
    review_at = UTCDateTimeAttribute(range_key=True)


RUN_DUE_SHARDS = 8  # active runs' due times spread over eight index partitions
REVIEW_SHARDS = 4  # a day's bucket spread over four partitions, so a bulk import does not heat one


class ContactModel(Model):
    """PK: contact_id. Version is checked explicitly on write (optimistic locking)."""

    class Meta:
        table_name = "nudge-contacts"

    contact_id = UnicodeAttribute(hash_key=True)
    email = UnicodeAttribute(null=True)
    phone = UnicodeAttribute(null=True)
    first_name = UnicodeAttribute(null=True)
    last_name = UnicodeAttribute(null=True)
    timezone = UnicodeAttribute(null=True)
    email_marketing = BooleanAttribute(null=True)
    sms_marketing = BooleanAttribute(null=True)
    whatsapp_marketing = BooleanAttribute(null=True)
    ads_marketing = BooleanAttribute(null=True)
    whatsapp_inbound_at = UTCDateTimeAttribute(null=True)
    properties = JSONAttribute(null=True)
    tags = ListAttribute(of=UnicodeAttribute, null=True)
    created_at = UTCDateTimeAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)
    aggregates = JSONAttribute(null=True)  # nudge.domain.aggregates.to_record
    segments = ListAttribute(of=UnicodeAttribute, null=True)  # lifecycle stage first
    review_at = UTCDateTimeAttribute(null=True)
    review_bucket = UnicodeAttribute(null=True)
    review_index = ReviewIndex()
    rfm = UnicodeAttribute(null=True)  # "541", written by the daily job
    predicted = JSONAttribute(null=True)  # nudge.domain.predictions.Predictions.to_record, by the daily job
    version = NumberAttribute(default=0)


class EventModel(Model):
    """PK: event_id. `status` is received until processing finished, then processed."""

    class Meta:
        table_name = "nudge-events"

    event_id = UnicodeAttribute(hash_key=True)
    type = UnicodeAttribute()
    contact_id = UnicodeAttribute()
    status = UnicodeAttribute()
    occurred_at = UTCDateTimeAttribute()
    received_at = UTCDateTimeAttribute()
    body = JSONAttribute()
    outcome = JSONAttribute(null=True)
    expires_at = TTLAttribute(null=True)
    by_contact = EventsByContact()


class RunModel(Model):
    """PK: contact_id, SK: RUN#<run_id>."""

    class Meta:
        table_name = "nudge-runs"

    contact_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    run_id = UnicodeAttribute()
    flow_id = UnicodeAttribute()
    status = UnicodeAttribute()
    cursor = UnicodeAttribute(null=True)
    seq = NumberAttribute()
    trigger_event_id = UnicodeAttribute()
    trigger = JSONAttribute()
    started_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    due_at = UTCDateTimeAttribute(null=True)
    ended_at = UTCDateTimeAttribute(null=True)
    exit_reason = UnicodeAttribute(null=True)
    variants = JSONAttribute(null=True)
    converted_at = UTCDateTimeAttribute(null=True)
    conversion = JSONAttribute(null=True)
    journal = JSONAttribute(null=True)
    outbox = ListAttribute(of=UnicodeAttribute, null=True)  # message ids the last advance committed
    due_shard = UnicodeAttribute(null=True)  # set while active: the by-due index holds active runs only
    by_due = RunsByDue()
    version = NumberAttribute()


class FlowSlotModel(Model):
    """PK: contact_id, SK: FLOW#<flow_id>. active_run_id is present while a run of the flow is active."""

    class Meta:
        table_name = "nudge-runs"

    contact_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    flow_id = UnicodeAttribute()
    active_run_id = UnicodeAttribute(null=True)
    last_started_at = UTCDateTimeAttribute(null=True)
    started_count = NumberAttribute(default=0)


class MessageModel(Model):
    """PK: contact_id, SK: message_id (<run_id>#<step_id>)."""

    class Meta:
        table_name = "nudge-messages"

    contact_id = UnicodeAttribute(hash_key=True)
    message_id = UnicodeAttribute(range_key=True)
    run_id = UnicodeAttribute()
    flow_id = UnicodeAttribute()
    step_id = UnicodeAttribute()
    channel = UnicodeAttribute()
    category = UnicodeAttribute()
    status = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    recipient = UnicodeAttribute(null=True)
    subject = UnicodeAttribute(null=True)
    body_preview = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    provider_id = UnicodeAttribute(null=True)
    sent_at = UTCDateTimeAttribute(null=True)
    priority = NumberAttribute(default=0)
    variant = UnicodeAttribute(null=True)
    sms_encoding = UnicodeAttribute(null=True)
    sms_segments = NumberAttribute(null=True)
    run_version = NumberAttribute(null=True)  # the run version that committed it (an exit after cancels it)
    attempt_at = UTCDateTimeAttribute(null=True)  # when it went SENDING
    # The first feedback event of each kind, one attribute per kind so a conditional update can
    # record it exactly once ("attribute_not_exists(opened_at)") however often SNS redelivers it.
    delivery_at = UTCDateTimeAttribute(null=True)
    open_at = UTCDateTimeAttribute(null=True)
    click_at = UTCDateTimeAttribute(null=True)
    bounce_at = UTCDateTimeAttribute(null=True)
    complaint_at = UTCDateTimeAttribute(null=True)
    reject_at = UTCDateTimeAttribute(null=True)
    unsubscribe_at = UTCDateTimeAttribute(null=True)
    read_at = UTCDateTimeAttribute(null=True)
    failed_at = UTCDateTimeAttribute(null=True)
    reply_at = UTCDateTimeAttribute(null=True)
    by_provider_id = MessagesByProviderId()
    by_sent_at = MessagesBySentAt()


class AddressModel(Model):
    """PK: address_key (a hash), SK: STATE. One attribute per suppression reason, so each is set atomically."""

    class Meta:
        table_name = "nudge-suppressions"

    address_key = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    bounce = UTCDateTimeAttribute(null=True)
    complaint = UTCDateTimeAttribute(null=True)
    unsubscribed = UTCDateTimeAttribute(null=True)
    sms_opted_out = UTCDateTimeAttribute(null=True)
    whatsapp_opted_out = UTCDateTimeAttribute(null=True)
    erased = UTCDateTimeAttribute(null=True)
    topics_off = UnicodeSetAttribute(null=True)


class ConsentModel(Model):
    """PK: address_key, SK: CONSENT#<iso time>#<source>."""

    class Meta:
        table_name = "nudge-suppressions"

    address_key = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    channel = UnicodeAttribute()
    granted = BooleanAttribute()
    at = UTCDateTimeAttribute()
    source = UnicodeAttribute()
    contact_id = UnicodeAttribute(null=True)


class CounterModel(Model):
    """PK: STEP#<flow_id>, RATE#<bucket> or DOC; SK: step id, unix second or document name.

    Counts are updated with ADD; DOC items hold one small JSON document each, recomputed by the daily job.
    """

    class Meta:
        table_name = "nudge-counters"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    delivery = NumberAttribute(null=True)
    open = NumberAttribute(null=True)
    click = NumberAttribute(null=True)
    bounce = NumberAttribute(null=True)
    complaint = NumberAttribute(null=True)
    reject = NumberAttribute(null=True)
    unsubscribe = NumberAttribute(null=True)
    read = NumberAttribute(null=True)
    failed = NumberAttribute(null=True)
    reply = NumberAttribute(null=True)
    document = JSONAttribute(null=True)  # DOC items: the RFM cut points, the co-purchase table
    version = NumberAttribute(null=True)  # DOC items written conditionally (a campaign's status): +1 a write
    updated_at = UTCDateTimeAttribute(null=True)
    taken = NumberAttribute(null=True)  # RATE# items: the next free send slot, epoch milliseconds
    used = NumberAttribute(null=True)  # RATE# items: slots reserved by flows, ever (campaigns fill the rest)
    spared = NumberAttribute(null=True)  # RATE# items: spare slots campaigns took, ever
    # JOB# items of a campaign's segments: where the piece that wrote it started, and where it stands (a
    # retry resumes from there; a write is conditional on them, so a stale copy of a piece cannot rewind)
    origin = UnicodeAttribute(null=True)
    position = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(null=True)


@dataclass(frozen=True)
class BoundModels:
    """The model classes bound to one deployment's table names and region."""

    contacts: type[ContactModel]
    events: type[EventModel]
    runs: type[RunModel]
    flow_slots: type[FlowSlotModel]
    messages: type[MessageModel]
    addresses: type[AddressModel]
    consents: type[ConsentModel]
    counters: type[CounterModel]

    def all(self) -> tuple[type[Model], ...]:
        return (
            self.contacts,
            self.events,
            self.runs,
            self.flow_slots,
            self.messages,
            self.addresses,
            self.consents,
            self.counters,
        )


def condition_check_failed(exc: Exception) -> bool:
    """A single-item conditional write whose condition did not hold: a lost race, not an error to retry.
    (A transaction's cancellation is read by `tables.condition_failed`.)"""
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


def share_connection(models: Iterable[type[Model]], connection: Connection) -> None:
    """Make every model use one connection.

    pynamodb gives every model class a connection, and every connection its own botocore session, which
    loads the DynamoDB service model again (~40 ms each, paid at cold start). One serves them all.
    """
    shared: set[str] = set()
    for model in models:
        table = model._get_connection()
        if table.table_name not in shared:  # models sharing a table share its schema too
            with contextlib.suppress(ValueError):  # already known to the connection through another binding
                connection.add_meta_table(table.connection.get_meta_table(table.table_name))
            shared.add(table.table_name)
        table.connection = connection


def bind_model(
    model: type[Model], table_name: str, region: str, host: str | None, indexes: dict[str, object] | None = None
) -> type[Model]:
    """Subclass the model with this deployment's table name, region and endpoint (and fresh `indexes`)."""
    meta = type("Meta", (), {"table_name": table_name, "region": region, "host": host})
    namespace: dict[str, object] = {"Meta": meta, "__module__": __name__, **(indexes or {})}
    if model is ContactModel:
        # pynamodb points an index at the last model class that declared it: each binding needs its own.
        namespace["review_index"] = ReviewIndex()
    return type(model.__name__, (model,), namespace)


def bind_models(
    *,
    contacts: str,
    events: str,
    runs: str,
    messages: str,
    suppressions: str = names.SUPPRESSIONS_TABLE,
    counters: str = names.COUNTERS_TABLE,
    region: str,
    host: str | None = None,
) -> BoundModels:
    """Subclass each model with this deployment's table name, so two deployments can coexist in one process."""
    return BoundModels(
        contacts=bind_model(ContactModel, contacts, region, host),  # type: ignore[arg-type]
        events=bind_model(EventModel, events, region, host),  # type: ignore[arg-type]
        runs=bind_model(RunModel, runs, region, host),  # type: ignore[arg-type]
        flow_slots=bind_model(FlowSlotModel, runs, region, host),  # type: ignore[arg-type]
        messages=bind_model(MessageModel, messages, region, host),  # type: ignore[arg-type]
        addresses=bind_model(AddressModel, suppressions, region, host),  # type: ignore[arg-type]
        consents=bind_model(ConsentModel, suppressions, region, host),  # type: ignore[arg-type]
        counters=bind_model(CounterModel, counters, region, host),  # type: ignore[arg-type]
    )
