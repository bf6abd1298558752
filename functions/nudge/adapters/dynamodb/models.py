"""PynamoDB models, one per table, bound to table names at wiring time (names come from settings).

contacts   PK contact_id                          one item per contact
           GSI review: PK review_bucket "<YYYY-MM-DD>#<shard>", SK review_at; sparse (only contacts whose
           segment membership can change with time), keys only; the daily sweep queries it (ADR 0005)
events     PK event_id                            dedupe + raw event, expires_at TTL (90 days)
runs       PK contact_id, SK "RUN#<run_id>"       a run
           PK contact_id, SK "FLOW#<flow_id>"     the contact's slot in a flow: active run id (while one is
                                                  active), last start, number of starts (re-entry rules)
messages   PK contact_id, SK message_id           "<run_id>#<seq>#<step_id>": one record per step visit
"""

from __future__ import annotations

from dataclasses import dataclass

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

RUN_PREFIX = "RUN#"
SLOT_PREFIX = "FLOW#"


class ReviewIndex(GlobalSecondaryIndex["ContactModel"]):
    """Sparse: contacts due for a segment review, bucketed by day and spread over shards."""

    class Meta:
        index_name = "review"
        projection = KeysOnlyProjection()

    review_bucket = UnicodeAttribute(hash_key=True)
    review_at = UTCDateTimeAttribute(range_key=True)


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
    properties = JSONAttribute(null=True)
    tags = ListAttribute(of=UnicodeAttribute, null=True)
    created_at = UTCDateTimeAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)
    aggregates = JSONAttribute(null=True)  # nudge.domain.aggregates.to_record
    segments = ListAttribute(of=UnicodeAttribute, null=True)  # lifecycle stage first
    review_at = UTCDateTimeAttribute(null=True)
    review_bucket = UnicodeAttribute(null=True)
    review_index = ReviewIndex()
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


@dataclass(frozen=True)
class BoundModels:
    """The model classes bound to one deployment's table names and region."""

    contacts: type[ContactModel]
    events: type[EventModel]
    runs: type[RunModel]
    flow_slots: type[FlowSlotModel]
    messages: type[MessageModel]

    def all(self) -> tuple[type[Model], ...]:
        return (self.contacts, self.events, self.runs, self.flow_slots, self.messages)


def _bind(model: type[Model], table_name: str, region: str, host: str | None) -> type[Model]:
    meta = type("Meta", (), {"table_name": table_name, "region": region, "host": host})
    namespace: dict[str, object] = {"Meta": meta, "__module__": __name__}
    if model is ContactModel:
        # pynamodb points an index at the last model class that declared it: each binding needs its own.
        namespace["review_index"] = ReviewIndex()
    return type(model.__name__, (model,), namespace)


def bind_models(
    *, contacts: str, events: str, runs: str, messages: str, region: str, host: str | None = None
) -> BoundModels:
    """Subclass each model with this deployment's table name, so two deployments can coexist in one process."""
    return BoundModels(
        contacts=_bind(ContactModel, contacts, region, host),  # type: ignore[arg-type]
        events=_bind(EventModel, events, region, host),  # type: ignore[arg-type]
        runs=_bind(RunModel, runs, region, host),  # type: ignore[arg-type]
        flow_slots=_bind(FlowSlotModel, runs, region, host),  # type: ignore[arg-type]
        messages=_bind(MessageModel, messages, region, host),  # type: ignore[arg-type]
    )
