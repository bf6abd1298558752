"""What every DynamoDB role adapter shares: the bound models, one connection, the item <-> record mappings."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError

from nudge.adapters.dynamodb.models import (
    CONSENT_PREFIX,
    REVIEW_SHARDS,
    RUN_DUE_SHARDS,
    RUN_PREFIX,
    STATE_SK,
    BoundModels,
    condition_check_failed,
    share_connection,
)
from nudge.domain import aggregates
from nudge.domain.feedback import FeedbackKind
from nudge.domain.lifecycle import Rfm
from nudge.domain.model import (
    Category,
    Channel,
    Contact,
    Event,
    Message,
    MessageStatus,
    Run,
    RunStatus,
    SentRecord,
)
from nudge.domain.predictions import Predictions
from nudge.domain.suppression import AddressState, ConsentRecord, Suppression

EVENT_RETENTION = timedelta(days=90)
BATCH_GET = 100  # keys per BatchGetItem
BATCH_GET_ATTEMPTS = 3  # a BatchGetItem may answer part of its keys (UnprocessedKeys): ask again for the rest
TRANSACTION_ITEMS = 100  # actions per TransactWriteItems
COUNTED = tuple(status.value for status in MessageStatus if status.counts)
CONTACT_WRITE_ATTEMPTS = 5
FEEDBACK_KINDS = tuple(FeedbackKind)
DOC_PK = "DOC"
JOB_PK_PREFIX = "JOB#"  # the daily job's log: JOB#<day>, one item per piece
JOB_LOG_KEPT = timedelta(days=35)


def condition_failed(exc: Exception) -> bool:
    """A lost race: a conditional write's condition did not hold. Anything else is an error to retry.

    DynamoDB cancels a transaction for other reasons too (TransactionConflict with another transaction,
    ThrottlingError, ValidationError...): those are not lost races and must not be read as one.
    """
    return condition_check_failed(exc) or cancellation_codes(exc) == {"ConditionalCheckFailed"}


def cancellation_codes(exc: Exception) -> set[str]:
    """Why DynamoDB cancelled a transaction, one code per item that had a reason; empty for anything else."""
    if not (isinstance(exc, TransactWriteError) and exc.cause_response_code == "TransactionCanceledException"):
        return set()
    return {reason.code for reason in exc.cancellation_reasons or () if reason is not None and reason.code != "None"}


class DynamoTables:
    """The tables and the one pynamodb connection every role adapter of the store works on (ADR 0020, Decision 5)."""

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

    @property
    def connection(self) -> Connection:
        """The one pynamodb connection, for other adapters to share."""
        return self._connection

    def botocore_clients(self) -> list[Any]:
        """The botocore clients pynamodb uses (for request counting in the demo)."""
        return [self._connection.client]

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
            **{f"{kind.value}_at": at for kind in FEEDBACK_KINDS if (at := message.feedback.get(kind.value))},  # type: ignore[arg-type]
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
                kind.value: at for kind in FEEDBACK_KINDS if (at := getattr(item, f"{kind.value}_at")) is not None
            },
        )

    @staticmethod
    def _address_from(item: Any) -> AddressState:
        return AddressState(
            key=item.address_key,
            suppressed={reason: at for reason in Suppression if (at := getattr(item, reason.value)) is not None},
            topics_off=frozenset(item.topics_off or ()),
        )

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

    # reads more than one role needs (the wake-up's fallback, erasure)

    def _read_contact(self, contact_id: str) -> Contact | None:
        try:
            item = self.models.contacts.get(contact_id, consistent_read=True)
        except self.models.contacts.DoesNotExist:
            return None
        return self._contact_from(item)

    def _read_message(self, contact_id: str, message_id: str) -> Message | None:
        try:
            return self._message_from(self.models.messages.get(contact_id, message_id, consistent_read=True))
        except self.models.messages.DoesNotExist:
            return None

    def _sends_since(self, contact_id: str, since: datetime) -> list[SentRecord]:
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
            SentRecord(
                Channel(i.channel), Category(i.category), int(i.priority or 0), i.sent_at, i.flow_id, i.message_id
            )
            for i in items
        ]

    def _read_address(self, key: str) -> AddressState | None:
        try:
            item = self.models.addresses.get(key, STATE_SK, consistent_read=True)
        except self.models.addresses.DoesNotExist:
            return None
        return self._address_from(item)

    def _runs_of(self, contact_id: str) -> list[Run]:
        model = self.models.runs
        return [
            self._run_from(i) for i in model.query(contact_id, model.sk.startswith(RUN_PREFIX), consistent_read=True)
        ]


def due_shard(run_id: str) -> str:
    """The by-due index partition of an active run: fixed per run."""
    return str(int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16) % RUN_DUE_SHARDS)


def review_bucket(contact_id: str, review_at: datetime) -> str:
    """The review index partition: the UTC day, and a shard fixed per contact."""
    shard = int(hashlib.sha256(contact_id.encode()).hexdigest()[:8], 16) % REVIEW_SHARDS
    return f"{review_at.astimezone(UTC).date().isoformat()}#{shard}"
