"""The Store port over DynamoDB, through pynamodb: conditional writes and transactions where runs race."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, PutError, TransactWriteError, UpdateError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from nudge.adapters.dynamodb.access import AccessModels
from nudge.adapters.dynamodb.models import (
    CONSENT_PREFIX,
    REVIEW_SHARDS,
    RUN_DUE_SHARDS,
    RUN_PREFIX,
    SLOT_PREFIX,
    STATE_SK,
    STEP_PREFIX,
    BoundModels,
    bind_models,
    share_connection,
)
from nudge.domain import aggregates
from nudge.domain.aggregates import ORDER_PLACED
from nudge.domain.feedback import FeedbackKind
from nudge.domain.kpis import Order, order_of
from nudge.domain.lifecycle import REVIEW_LOOKBACK_DAYS, Rfm
from nudge.domain.model import (
    Category,
    Channel,
    Contact,
    Event,
    FlowSlot,
    Message,
    MessageStatus,
    Run,
    RunStatus,
    SentRecord,
)
from nudge.domain.predictions import Predictions
from nudge.domain.suppression import AddressState, ConsentRecord, Suppression
from nudge.ports import ConflictError, ContactChange, EventDone, SendClaim, WakeReads
from nudge.settings import Settings

EVENT_RETENTION = timedelta(days=90)
BATCH_GET = 100  # keys per BatchGetItem
BATCH_GET_ATTEMPTS = 3  # a BatchGetItem may answer part of its keys (UnprocessedKeys): ask again for the rest
TRANSACTION_ITEMS = 100  # actions per TransactWriteItems
COUNTED = tuple(
    s.value for s in (MessageStatus.PENDING, MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.UNKNOWN)
)
CONTACT_WRITE_ATTEMPTS = 5
_FEEDBACK_KINDS = tuple(FeedbackKind)
DOC_PK = "DOC"
JOB_PK_PREFIX = "JOB#"  # the daily job's log: JOB#<day>, one item per piece
JOB_LOG_KEPT = timedelta(days=35)
_CONDITION_FAILED = "ConditionalCheckFailedException"


def _condition_failed(exc: Exception) -> bool:
    """A lost race: a conditional write's condition did not hold. Anything else is an error to retry.

    DynamoDB cancels a transaction for other reasons too (TransactionConflict with another transaction,
    ThrottlingError, ValidationError...): those are not lost races and must not be read as one.
    """
    cause = getattr(exc, "cause_response_code", None)
    if cause == _CONDITION_FAILED:
        return True
    if not (isinstance(exc, TransactWriteError) and cause == "TransactionCanceledException"):
        return False
    codes = {reason.code for reason in exc.cancellation_reasons if reason is not None and reason.code != "None"}
    return codes == {"ConditionalCheckFailed"}


class DynamoStore:
    """Implements nudge.ports.Store. Each method is one or two DynamoDB calls, never a scan."""

    def __init__(
        self,
        models: BoundModels,
        region: str,
        host: str | None = None,
        *,
        event_retention: timedelta = EVENT_RETENTION,
    ) -> None:
        self.models = models
        self._event_retention = event_retention
        self._connection = Connection(region=region, host=host)
        share_connection(models.all(), self._connection)

    @classmethod
    def for_settings(cls, settings: Settings, *, region: str, host: str | None = None) -> DynamoStore:
        models = bind_models(
            contacts=settings.contacts_table,
            events=settings.events_table,
            runs=settings.runs_table,
            messages=settings.messages_table,
            suppressions=settings.suppressions_table,
            counters=settings.counters_table,
            region=region,
            host=host,
        )
        return cls(models, region, host, event_retention=timedelta(days=settings.event_retention_days))

    @property
    def connection(self) -> Connection:
        """The one pynamodb connection, for other adapters to share."""
        return self._connection

    def botocore_clients(self) -> list[Any]:
        """The botocore clients pynamodb uses (for request counting in the demo)."""
        return [self._connection.client]

    # contacts -----------------------------------------------------------------------------------------

    def get_contact(self, contact_id: str) -> Contact | None:
        try:
            item = self.models.contacts.get(contact_id, consistent_read=True)
        except self.models.contacts.DoesNotExist:
            return None
        return self._contact_from(item)

    @staticmethod
    def _contact_from(item: Any) -> Contact:
        return Contact(
            contact_id=item.contact_id,
            email=item.email,
            phone=item.phone,
            first_name=item.first_name,
            last_name=item.last_name,
            timezone=item.timezone,
            email_marketing=item.email_marketing,
            sms_marketing=item.sms_marketing,
            whatsapp_marketing=item.whatsapp_marketing,
            ads_marketing=item.ads_marketing,
            whatsapp_inbound_at=item.whatsapp_inbound_at,
            properties=item.properties or {},
            tags=tuple(item.tags or ()),
            created_at=item.created_at,
            updated_at=item.updated_at,
            aggregates=aggregates.from_record(item.aggregates),
            segments=tuple(item.segments or ()),
            review_at=item.review_at,
            rfm=Rfm.from_code(item.rfm) if item.rfm else None,
            predicted=Predictions.from_record(item.predicted) if item.predicted else None,
            version=int(item.version),
        )

    def save_contact(self, contact: Contact, expected_version: int, consents: Sequence[ConsentRecord] = ()) -> Contact:
        saved = replace(contact, version=expected_version + 1)
        item, condition = self._contact_write(saved, expected_version)
        try:
            if not consents:
                item.save(condition=condition)
            else:
                # The consent records of this change in the contact's own write: one call, and never a
                # consent change stored without its record (each record is a new item: no condition).
                with TransactWrite(connection=self._connection) as tx:
                    tx.save(item, condition=condition)
                    for record in consents:
                        tx.save(self._consent_item(record))
        except (PutError, TransactWriteError) as exc:
            if _condition_failed(exc):
                raise ConflictError(contact.contact_id) from exc
            raise
        return saved

    def get_contacts(self, contact_ids: Sequence[str]) -> dict[str, Contact]:
        if len(contact_ids) > BATCH_GET:
            raise ValueError(f"at most {BATCH_GET} contacts a batch, not {len(contact_ids)}")
        items = self.models.contacts.batch_get(list(dict.fromkeys(contact_ids)), consistent_read=True)
        return {item.contact_id: self._contact_from(item) for item in items}

    def save_contacts(self, contacts: Sequence[tuple[Contact, int]]) -> list[Contact]:
        if len(contacts) > TRANSACTION_ITEMS:
            raise ValueError(f"at most {TRANSACTION_ITEMS} contacts a transaction, not {len(contacts)}")
        saved = [replace(contact, version=expected + 1) for contact, expected in contacts]
        try:
            with TransactWrite(connection=self._connection) as tx:
                for contact, (_, expected) in zip(saved, contacts, strict=True):
                    item, condition = self._contact_write(contact, expected)
                    tx.save(item, condition=condition)
        except TransactWriteError as exc:
            if _condition_failed(exc) or getattr(exc, "cause_response_code", None) == "TransactionCanceledException":
                # A version moved, or a live write held an item (TransactionConflict): the caller refolds.
                raise ConflictError(", ".join(c.contact_id for c, _ in contacts[:3])) from exc
            raise
        return saved

    def record_consents(self, records: Sequence[ConsentRecord]) -> None:
        with self.models.consents.batch_write() as batch:
            for record in records:
                batch.save(self._consent_item(record))

    def _contact_write(self, saved: Contact, expected_version: int) -> tuple[Any, Any]:
        """The item for `saved` and the condition that the stored version is still `expected_version`."""
        model = self.models.contacts
        item = model(
            contact_id=saved.contact_id,
            email=saved.email,
            phone=saved.phone,
            first_name=saved.first_name,
            last_name=saved.last_name,
            timezone=saved.timezone,
            email_marketing=saved.email_marketing,
            sms_marketing=saved.sms_marketing,
            whatsapp_marketing=saved.whatsapp_marketing,
            ads_marketing=saved.ads_marketing,
            whatsapp_inbound_at=saved.whatsapp_inbound_at,
            properties=saved.properties,
            tags=list(saved.tags) or None,
            created_at=saved.created_at,
            updated_at=saved.updated_at,
            aggregates=aggregates.to_record(saved.aggregates),
            segments=list(saved.segments) or None,
            review_at=saved.review_at,
            review_bucket=review_bucket(saved.contact_id, saved.review_at) if saved.review_at else None,
            rfm=saved.rfm.code if saved.rfm else None,
            predicted=saved.predicted.to_record() if saved.predicted else None,
            version=saved.version,
        )
        condition = model.contact_id.does_not_exist() if expected_version == 0 else model.version == expected_version
        return item, condition

    # events -------------------------------------------------------------------------------------------

    def begin_event(self, event: Event, now: datetime) -> bool:
        item, condition = self._event_write(event, now)
        try:
            item.save(condition=condition)
        except PutError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True

    def _event_write(self, event: Event, now: datetime, outcome: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
        """The event's item (received, or processed with `outcome`) and the condition it may be written under."""
        model = self.models.events
        item = model(
            event_id=event.event_id,
            type=event.type,
            contact_id=event.contact_id,
            status="received" if outcome is None else "processed",
            occurred_at=event.occurred_at,
            received_at=now,
            body={"contact": asdict(event.contact), "properties": event.properties},
            expires_at=now + self._event_retention,
            outcome=None if outcome is None else dict(outcome),
        )
        # A retry after a crash mid-processing may go again (every later step is idempotent);
        # an event that was fully processed may not.
        return item, model.event_id.does_not_exist() | (model.status != "processed")

    def record_event(
        self,
        event: Event,
        now: datetime,
        contact: Contact | None,
        expected_version: int,
        consents: Sequence[ConsentRecord] = (),
        outcome: Mapping[str, Any] | None = None,
    ) -> Contact | None:
        item, condition = self._event_write(event, now, outcome)
        if contact is None:
            try:
                item.save(condition=condition)
            except PutError as exc:
                if _condition_failed(exc):
                    raise EventDone(event.event_id) from exc
                raise
            return None
        saved = replace(contact, version=expected_version + 1)
        contact_item, contact_condition = self._contact_write(saved, expected_version)
        try:
            # The event first: its reason tells a duplicate from a contact that moved.
            with TransactWrite(connection=self._connection) as tx:
                tx.save(item, condition=condition)
                tx.save(contact_item, condition=contact_condition)
                for record in consents:
                    tx.save(self._consent_item(record))
        except TransactWriteError as exc:
            if not _condition_failed(exc):
                raise
            reasons = exc.cancellation_reasons
            if reasons and reasons[0] is not None and reasons[0].code == "ConditionalCheckFailed":
                raise EventDone(event.event_id) from exc
            raise ConflictError(contact.contact_id) from exc
        return saved

    def finish_event(self, event_id: str, outcome: Mapping[str, Any]) -> None:
        model = self.models.events
        model(event_id=event_id).update(actions=[model.status.set("processed"), model.outcome.set(dict(outcome))])

    # runs ---------------------------------------------------------------------------------------------

    def flow_slots(self, contact_id: str) -> dict[str, FlowSlot]:
        model = self.models.flow_slots
        return {
            item.flow_id: FlowSlot(
                flow_id=item.flow_id,
                active_run_id=item.active_run_id,
                last_started_at=item.last_started_at,
                started_count=int(item.started_count or 0),
            )
            for item in model.query(contact_id, model.sk.startswith(SLOT_PREFIX), consistent_read=True)
        }

    def start_run(self, run: Run, expected: FlowSlot | None) -> Run | None:
        stored = replace(run, version=1)
        model = self.models.flow_slots
        starts = expected.started_count if expected else 0
        slot = model(
            contact_id=run.contact_id,
            sk=SLOT_PREFIX + run.flow_id,
            flow_id=run.flow_id,
            active_run_id=run.run_id,
            last_started_at=run.started_at,
            started_count=starts + 1,
        )
        # The slot must be as we read it: no active run, and no other start since.
        if expected is None:
            slot_condition = model.sk.does_not_exist()
        else:
            slot_condition = model.active_run_id.does_not_exist() & (model.started_count == starts)
        try:
            with TransactWrite(connection=self._connection) as tx:
                tx.save(slot, condition=slot_condition)
                tx.save(self._run_item(stored), condition=self.models.runs.sk.does_not_exist())
        except TransactWriteError as exc:
            if _condition_failed(exc):
                return None
            raise
        return stored

    def get_run(self, contact_id: str, run_id: str) -> Run | None:
        try:
            item = self.models.runs.get(contact_id, RUN_PREFIX + run_id, consistent_read=True)
        except self.models.runs.DoesNotExist:
            return None
        return self._run_from(item)

    def run_with_context(
        self, contact_id: str, run_id: str, message_ids: Sequence[str] = (), address_keys: Sequence[str] = ()
    ) -> WakeReads:
        """The run, its contact, the named messages and address states: one strongly consistent BatchGetItem."""
        runs, contacts, messages, addresses = (
            self.models.runs,
            self.models.contacts,
            self.models.messages,
            self.models.addresses,
        )
        keys_wanted = list(dict.fromkeys(address_keys))[:3]
        wanted = list(dict.fromkeys(message_ids))[: BATCH_GET - 2 - len(keys_wanted)]
        request: dict[str, Any] = {
            runs.Meta.table_name: {
                "Keys": [{"contact_id": {"S": contact_id}, "sk": {"S": RUN_PREFIX + run_id}}],
                "ConsistentRead": True,
            },
            contacts.Meta.table_name: {"Keys": [{"contact_id": {"S": contact_id}}], "ConsistentRead": True},
        }
        if wanted:
            request[messages.Meta.table_name] = {
                "Keys": [{"contact_id": {"S": contact_id}, "message_id": {"S": m}} for m in wanted],
                "ConsistentRead": True,
            }
        if keys_wanted:
            request[addresses.Meta.table_name] = {
                "Keys": [{"address_key": {"S": key}, "sk": {"S": STATE_SK}} for key in keys_wanted],
                "ConsistentRead": True,
            }
        found: dict[str, list[dict[str, Any]]] = {}
        for _ in range(BATCH_GET_ATTEMPTS):
            answer = self._connection.client.batch_get_item(RequestItems=request)  # type: ignore[attr-defined]
            for table, items in answer.get("Responses", {}).items():
                found.setdefault(table, []).extend(items)
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
        else:  # DynamoDB kept some keys back (throughput) three times: read them one by one
            return WakeReads(
                run=self.get_run(contact_id, run_id),
                contact=self.get_contact(contact_id),
                messages={m: message for m in wanted if (message := self.get_message(contact_id, m)) is not None},
                addresses={key: self.address_state(key) for key in keys_wanted},
            )
        run_items, contact_items = found.get(runs.Meta.table_name), found.get(contacts.Meta.table_name)
        states = {
            state.key: state
            for state in (
                self._address_from(addresses.from_raw_data(item)) for item in found.get(addresses.Meta.table_name, [])
            )
        }
        return WakeReads(
            run=self._run_from(runs.from_raw_data(run_items[0])) if run_items else None,
            contact=self._contact_from(contacts.from_raw_data(contact_items[0])) if contact_items else None,
            messages={
                message.message_id: message
                for message in (
                    self._message_from(messages.from_raw_data(item)) for item in found.get(messages.Meta.table_name, [])
                )
            },
            addresses={key: states.get(key) for key in keys_wanted},
        )

    def overdue_runs(self, before: datetime) -> Iterator[tuple[str, str]]:
        # One Query per shard of the sparse by-due index (active runs only); eventually consistent, which is
        # fine for a job that looks for wake-ups overdue by minutes and re-reads each run it finds.
        index = self.models.runs.by_due
        for shard in range(RUN_DUE_SHARDS):
            for item in index.query(str(shard), self.models.runs.due_at < before):
                yield item.contact_id, item.sk.removeprefix(RUN_PREFIX)

    def active_runs(self, contact_id: str, slots: Mapping[str, FlowSlot] | None = None) -> list[Run]:
        held = self.flow_slots(contact_id) if slots is None else slots
        keys = [(contact_id, RUN_PREFIX + slot.active_run_id) for slot in held.values() if slot.active_run_id]
        if not keys:
            return []
        return [self._run_from(item) for item in self.models.runs.batch_get(keys, consistent_read=True)]

    def save_run(self, run: Run, expected_version: int) -> Run:
        saved = replace(run, version=expected_version + 1)
        item = self._run_item(saved)
        condition = self.models.runs.version == expected_version
        try:
            if saved.is_active:
                item.save(condition=condition)
            else:
                # Ending a run frees the contact's slot for the flow in the same transaction.
                slots = self.models.flow_slots
                slot = slots(contact_id=run.contact_id, sk=SLOT_PREFIX + run.flow_id)
                with TransactWrite(connection=self._connection) as tx:
                    tx.save(item, condition=condition)
                    tx.update(slot, actions=[slots.active_run_id.remove()], condition=slots.active_run_id == run.run_id)
        except (PutError, TransactWriteError) as exc:
            if _condition_failed(exc):
                raise ConflictError(run.run_id) from exc
            raise
        return saved

    def _run_item(self, run: Run) -> Any:
        return self.models.runs(
            contact_id=run.contact_id,
            sk=RUN_PREFIX + run.run_id,
            run_id=run.run_id,
            flow_id=run.flow_id,
            status=run.status.value,
            cursor=run.cursor,
            seq=run.seq,
            trigger_event_id=run.trigger_event_id,
            trigger=run.trigger,
            started_at=run.started_at,
            updated_at=run.updated_at,
            due_at=run.due_at,
            ended_at=run.ended_at,
            exit_reason=run.exit_reason,
            variants=run.variants or None,
            converted_at=run.converted_at,
            conversion=run.conversion,
            journal=list(run.journal) or None,
            outbox=list(run.outbox) or None,
            due_shard=due_shard(run.run_id) if run.is_active and run.due_at is not None else None,
            version=run.version,
        )

    @staticmethod
    def _run_from(item: Any) -> Run:
        return Run(
            run_id=item.run_id,
            contact_id=item.contact_id,
            flow_id=item.flow_id,
            status=RunStatus(item.status),
            cursor=item.cursor,
            seq=int(item.seq),
            trigger_event_id=item.trigger_event_id,
            trigger=item.trigger or {},
            started_at=item.started_at,
            updated_at=item.updated_at,
            due_at=item.due_at,
            ended_at=item.ended_at,
            exit_reason=item.exit_reason,
            variants=item.variants or {},
            converted_at=item.converted_at,
            conversion=item.conversion,
            journal=tuple(item.journal or ()),
            outbox=tuple(item.outbox or ()),
            version=int(item.version),
        )

    # messages -----------------------------------------------------------------------------------------

    def commit_advance(self, run: Run, expected_version: int, messages: Sequence[Message]) -> Run:
        saved = replace(run, version=expected_version + 1)
        runs, slots, model = self.models.runs, self.models.flow_slots, self.models.messages
        try:
            with TransactWrite(connection=self._connection) as tx:
                tx.save(self._run_item(saved), condition=runs.version == expected_version)
                if not saved.is_active:
                    # Ending a run frees the contact's slot for the flow in the same transaction.
                    slot = slots(contact_id=run.contact_id, sk=SLOT_PREFIX + run.flow_id)
                    tx.update(slot, actions=[slots.active_run_id.remove()], condition=slots.active_run_id == run.run_id)
                for message in messages:
                    item = self._message_item(replace(message, run_version=saved.version))
                    tx.save(item, condition=model.message_id.does_not_exist())
        except TransactWriteError as exc:
            if _condition_failed(exc):
                raise ConflictError(run.run_id) from exc
            raise
        return saved

    def begin_send(self, message: Message, now: datetime) -> SendClaim:
        model, runs = self.models.messages, self.models.runs
        # The run may have moved on (completed, or advanced to later steps): only an exit after this
        # message was committed cancels it.
        still_wanted = (runs.version == message.run_version) | (runs.status != RunStatus.EXITED.value)
        try:
            with TransactWrite(connection=self._connection) as tx:
                tx.condition_check(runs, message.contact_id, RUN_PREFIX + message.run_id, condition=still_wanted)
                tx.update(
                    model(contact_id=message.contact_id, message_id=message.message_id),
                    actions=[model.status.set(MessageStatus.SENDING.value), model.attempt_at.set(now)],
                    condition=model.status == MessageStatus.PENDING.value,
                )
        except TransactWriteError as exc:
            if not _condition_failed(exc):
                raise
            reasons = exc.cancellation_reasons
            if reasons and reasons[0] is not None and reasons[0].code == "ConditionalCheckFailed":
                return SendClaim.RUN_EXITED
            return SendClaim.GONE
        return SendClaim.TAKEN

    def settle_message(
        self,
        message: Message,
        status: MessageStatus,
        *,
        reason: str | None = None,
        provider_id: str | None = None,
        sent_at: datetime | None = None,
        only_from: MessageStatus | None = None,
    ) -> Message | None:
        settled = replace(message, status=status, reason=reason, provider_id=provider_id, sent_at=sent_at)
        model = self.models.messages
        try:
            self._message_item(settled).save(
                condition=(model.status == only_from.value) if only_from is not None else None
            )
        except PutError as exc:
            if only_from is not None and _condition_failed(exc):
                return None
            raise
        return settled

    def get_message(self, contact_id: str, message_id: str) -> Message | None:
        try:
            return self._message_from(self.models.messages.get(contact_id, message_id, consistent_read=True))
        except self.models.messages.DoesNotExist:
            return None

    def messages_for(self, contact_id: str) -> list[Message]:
        items = self.models.messages.query(contact_id, consistent_read=True)
        return sorted((self._message_from(i) for i in items), key=lambda m: m.created_at)

    def recent_sends(self, contact_id: str, since: datetime) -> list[SentRecord]:
        # The sparse local index holds only sent messages, sorted by send time: a week's sends, not the history.
        model = self.models.messages
        items = model.by_sent_at.query(
            contact_id,
            model.sent_at >= since,
            # Decided and not settled otherwise counts too: it is going out (or may have, when unknown).
            filter_condition=model.status.is_in(*COUNTED),
            consistent_read=True,  # a send a moment ago must count against the caps
        )
        return [
            SentRecord(Channel(i.channel), Category(i.category), int(i.priority or 0), i.sent_at, i.flow_id)
            for i in items
        ]

    def update_contact(self, contact_id: str, change: ContactChange, now: datetime) -> Contact | None:
        for _ in range(CONTACT_WRITE_ATTEMPTS):
            stored = self.get_contact(contact_id)
            if stored is None:
                return None
            try:
                return self.save_contact(change.apply(stored, now), stored.version)
            except ConflictError:
                continue
        raise ConflictError(f"contact {contact_id} kept changing; gave up after {CONTACT_WRITE_ATTEMPTS} tries")

    def contacts_to_review(self, until: datetime) -> Iterator[str]:
        # One Query per day bucket and shard over a keys-only sparse index: 7 x 4 small queries a day.
        index = self.models.contacts.review_index
        for days_back in reversed(range(REVIEW_LOOKBACK_DAYS)):
            day = until.date() - timedelta(days=days_back)
            for shard in range(REVIEW_SHARDS):
                for item in index.query(f"{day.isoformat()}#{shard}", self.models.contacts.review_at <= until):
                    yield item.contact_id

    # whole-table passes of the daily job (ADR 0005, 0006) ------------------------------------------------

    def all_contacts(self) -> Iterator[Contact]:
        # Eventually consistent: a contact changed during the pass is scored again tomorrow.
        for item in self.models.contacts.scan():
            yield self._contact_from(item)

    def contacts_segment(
        self, segment: int, of: int, cursor: Mapping[str, Any] | None = None
    ) -> Iterator[tuple[Contact, dict[str, Any] | None]]:
        # A parallel Scan's segment; the cursor is DynamoDB's own key of the last item read.
        found = self.models.contacts.scan(
            segment=segment, total_segments=of, last_evaluated_key=dict(cursor) if cursor else None
        )
        item = next(found, None)
        while item is not None:
            cursor = found.last_evaluated_key  # after this item; None below if it was the segment's last
            following = next(found, None)
            yield self._contact_from(item), cursor if following is not None else None
            item = following

    def order_lines(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        events = self.models.events
        for item in events.scan(events.type == ORDER_PLACED):
            lines = ((item.body or {}).get("properties") or {}).get("lines")
            yield item.event_id, [line for line in lines or () if isinstance(line, dict)]

    def get_document(self, name: str) -> dict[str, Any] | None:
        try:
            item = self.models.counters.get(DOC_PK, name, consistent_read=True)
        except self.models.counters.DoesNotExist:
            return None
        return dict(item.document or {})

    def put_document(self, name: str, document: Mapping[str, Any], at: datetime) -> None:
        self.models.counters(pk=DOC_PK, sk=name, document=dict(document), updated_at=at).save()

    def get_versioned_document(self, name: str) -> tuple[dict[str, Any], int] | None:
        try:
            item = self.models.counters.get(DOC_PK, name, consistent_read=True)
        except self.models.counters.DoesNotExist:
            return None
        return dict(item.document or {}), int(item.version or 0)

    def put_versioned_document(
        self, name: str, document: Mapping[str, Any], at: datetime, expected_version: int
    ) -> int:
        counters = self.models.counters
        if expected_version == 0:
            condition = counters.version.does_not_exist() | (counters.version == 0)
        else:
            condition = counters.version == expected_version
        item = counters(pk=DOC_PK, sk=name, document=dict(document), updated_at=at, version=expected_version + 1)
        try:
            item.save(condition=condition)
        except PutError as exc:
            if _condition_failed(exc):
                raise ConflictError(name) from exc
            raise
        return expected_version + 1

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
        counters = self.models.counters
        item = counters(
            pk=f"{JOB_PK_PREFIX}{day}",
            sk=key,
            document=dict(record),
            updated_at=at,
            expires_at=at + JOB_LOG_KEPT,
            origin=origin,
            position=position,
        )
        if origin is None:
            item.save()
            return
        try:  # a piece moves its record only from where it started, or on from its own earlier write
            item.save(
                condition=counters.position.does_not_exist()
                | (counters.position == origin)
                | (counters.origin == origin)
            )
        except PutError as exc:
            if _condition_failed(exc):
                raise ConflictError(f"{day} {key}") from exc
            raise

    def pieces_of(self, day: str) -> dict[str, dict[str, Any]]:
        return {item.sk: dict(item.document or {}) for item in self.models.counters.query(f"{JOB_PK_PREFIX}{day}")}

    # reports (CLI only) ----------------------------------------------------------------------------------

    def all_runs(self) -> Iterator[Run]:
        runs = self.models.runs
        for item in runs.scan(runs.sk.startswith(RUN_PREFIX)):
            yield self._run_from(item)

    def all_messages(self) -> Iterator[Message]:
        for item in self.models.messages.scan():
            yield self._message_from(item)

    def orders(self) -> Iterator[Order]:
        events = self.models.events
        for item in events.scan(events.type == ORDER_PLACED):
            yield order_of(item.contact_id, item.event_id, (item.body or {}).get("properties", {}), item.occurred_at)

    def _message_item(self, message: Message) -> Any:
        return self.models.messages(
            contact_id=message.contact_id,
            message_id=message.message_id,
            run_id=message.run_id,
            flow_id=message.flow_id,
            step_id=message.step_id,
            channel=message.channel.value,
            category=message.category.value,
            status=message.status.value,
            created_at=message.created_at,
            recipient=message.recipient,
            subject=message.subject,
            body_preview=message.body_preview,
            reason=message.reason,
            provider_id=message.provider_id,
            sent_at=message.sent_at,
            priority=message.priority,
            variant=message.variant,
            sms_encoding=message.sms_encoding,
            sms_segments=message.sms_segments,
            run_version=message.run_version,
            attempt_at=message.attempt_at,
            **{f"{kind.value}_at": at for kind in _FEEDBACK_KINDS if (at := message.feedback.get(kind.value))},  # type: ignore[arg-type]
        )

    @staticmethod
    def _message_from(item: Any) -> Message:
        return Message(
            contact_id=item.contact_id,
            message_id=item.message_id,
            run_id=item.run_id,
            flow_id=item.flow_id,
            step_id=item.step_id,
            channel=Channel(item.channel),
            category=Category(item.category),
            status=MessageStatus(item.status),
            created_at=item.created_at,
            recipient=item.recipient,
            subject=item.subject,
            body_preview=item.body_preview,
            reason=item.reason,
            provider_id=item.provider_id,
            sent_at=item.sent_at,
            priority=int(item.priority or 0),
            variant=item.variant,
            sms_encoding=item.sms_encoding,
            sms_segments=int(item.sms_segments) if item.sms_segments is not None else None,
            run_version=int(item.run_version or 0),
            attempt_at=item.attempt_at,
            feedback={
                kind.value: at for kind in _FEEDBACK_KINDS if (at := getattr(item, f"{kind.value}_at")) is not None
            },
        )

    # feedback -----------------------------------------------------------------------------------------

    def message_by_provider_id(self, provider_id: str) -> Message | None:
        # The index is eventually consistent; feedback arrives seconds after the send was recorded.
        for item in self.models.messages.by_provider_id.query(provider_id, limit=1):
            return self._message_from(item)
        return None

    def record_feedback(self, message: Message, kind: FeedbackKind, at: datetime) -> bool:
        model = self.models.messages
        attribute = getattr(model, f"{kind.value}_at")
        try:
            model(contact_id=message.contact_id, message_id=message.message_id).update(
                actions=[attribute.set(at)],
                condition=model.message_id.exists() & attribute.does_not_exist(),
            )
        except UpdateError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True

    def count_step(self, flow_id: str, step_id: str, kind: FeedbackKind) -> None:
        model = self.models.counters
        model(pk=STEP_PREFIX + flow_id, sk=step_id).update(actions=[getattr(model, kind.value).add(1)])

    def step_counts(self, flow_id: str) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for item in self.models.counters.query(STEP_PREFIX + flow_id, consistent_read=True):
            counts[item.sk] = {
                kind.value: int(value) for kind in _FEEDBACK_KINDS if (value := getattr(item, kind.value)) is not None
            }
        return counts

    # suppressions and consent -------------------------------------------------------------------------

    def address_state(self, key: str) -> AddressState | None:
        try:
            item = self.models.addresses.get(key, STATE_SK, consistent_read=True)
        except self.models.addresses.DoesNotExist:
            return None
        return self._address_from(item)

    @staticmethod
    def _address_from(item: Any) -> AddressState:
        return AddressState(
            key=item.address_key,
            suppressed={reason: at for reason in Suppression if (at := getattr(item, reason.value)) is not None},
            topics_off=frozenset(item.topics_off or ()),
        )

    def suppress(self, key: str, reason: Suppression, at: datetime) -> None:
        model = self.models.addresses
        attribute = getattr(model, reason.value)
        # if_not_exists keeps the first time: "suppressed since" must not move on a redelivered event.
        model(address_key=key, sk=STATE_SK).update(actions=[attribute.set(attribute | at)])

    def lift_suppression(self, key: str, reason: Suppression) -> None:
        model = self.models.addresses
        model(address_key=key, sk=STATE_SK).update(actions=[getattr(model, reason.value).remove()])

    def set_topic(self, key: str, topic: str, *, subscribed: bool) -> None:
        model = self.models.addresses
        action = model.topics_off.delete({topic}) if subscribed else model.topics_off.add({topic})
        model(address_key=key, sk=STATE_SK).update(actions=[action])

    def record_consent(self, record: ConsentRecord) -> None:
        self._consent_item(record).save()

    def _consent_item(self, record: ConsentRecord) -> Any:
        return self.models.consents(
            address_key=record.address_key,
            sk=f"{CONSENT_PREFIX}{record.at.isoformat()}#{record.source}",
            channel=record.channel.value,
            granted=record.granted,
            at=record.at,
            source=record.source,
            contact_id=record.contact_id,
        )

    def consent_records(self, key: str) -> list[ConsentRecord]:
        model = self.models.consents
        return [
            ConsentRecord(
                address_key=item.address_key,
                channel=Channel(item.channel),
                granted=bool(item.granted),
                at=item.at,
                source=item.source,
                contact_id=item.contact_id,
            )
            for item in model.query(key, model.sk.startswith(CONSENT_PREFIX), consistent_read=True)
        ]

    # privacy ------------------------------------------------------------------------------------------

    def events_for(self, contact_id: str) -> list[dict[str, Any]]:
        keys = [item.event_id for item in self.models.events.by_contact.query(contact_id)]
        return [
            {
                "event_id": item.event_id,
                "type": item.type,
                "status": item.status,
                "occurred_at": item.occurred_at.isoformat(),
                "received_at": item.received_at.isoformat(),
                "body": item.body,
            }
            for item in self.models.events.batch_get(keys)
        ]

    def runs_for(self, contact_id: str) -> list[Run]:
        model = self.models.runs
        return [
            self._run_from(i) for i in model.query(contact_id, model.sk.startswith(RUN_PREFIX), consistent_read=True)
        ]

    def erase_contact(self, contact_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        # Events through the index; everything else is under the contact's partition key.
        events = [self.models.events(event_id=i.event_id) for i in self.models.events.by_contact.query(contact_id)]
        slots = self.models.flow_slots
        run_items: list[Model] = [
            slots(contact_id=contact_id, sk=i.sk) for i in slots.query(contact_id, slots.sk.startswith(SLOT_PREFIX))
        ]
        run_items += [
            self.models.runs(contact_id=contact_id, sk=RUN_PREFIX + r.run_id) for r in self.runs_for(contact_id)
        ]
        messages = [
            self.models.messages(contact_id=contact_id, message_id=i.message_id)
            for i in self.models.messages.query(contact_id)
        ]
        for table, items in (("events", events), ("runs", run_items), ("messages", messages)):
            if items:
                with type(items[0]).batch_write() as batch:
                    for item in items:
                        batch.delete(item)
            counts[table] = len(items)
        try:
            self.models.contacts(contact_id=contact_id).delete(condition=self.models.contacts.contact_id.exists())
            counts["contacts"] = 1
        except DeleteError as exc:
            if not _condition_failed(exc):
                raise
            counts["contacts"] = 0
        return counts

    def erase_consent_records(self, key: str) -> int:
        model = self.models.consents
        items = list(model.query(key, model.sk.startswith(CONSENT_PREFIX)))
        with model.batch_write() as batch:
            for item in items:
                batch.delete(item)
        return len(items)


def due_shard(run_id: str) -> str:
    """The by-due index partition of an active run: fixed per run."""
    return str(int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16) % RUN_DUE_SHARDS)


def review_bucket(contact_id: str, review_at: datetime) -> str:
    """The review index partition: the UTC day, and a shard fixed per contact."""
    shard = int(hashlib.sha256(contact_id.encode()).hexdigest()[:8], 16) % REVIEW_SHARDS
    return f"{review_at.astimezone(UTC).date().isoformat()}#{shard}"


def ensure_tables(models: BoundModels | AccessModels) -> None:
    """Create the tables if missing (local runs and tests; deployed stacks get them from CDK)."""
    seen: set[str] = set()
    for model in models.all():
        if model.Meta.table_name in seen:
            continue
        seen.add(model.Meta.table_name)
        if not model.exists():
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
