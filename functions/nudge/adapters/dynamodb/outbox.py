"""The Outbox role (nudge.ports.Outbox) over DynamoDB.

Messages: claimed, settled, read back; the send history; feedback noted once.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from nudge.adapters.dynamodb import send_log
from nudge.adapters.dynamodb.models import (
    RUN_PREFIX,
)
from nudge.adapters.dynamodb.tables import (
    DynamoTables,
    condition_failed,
)
from nudge.domain.feedback import FeedbackKind
from nudge.domain.model import (
    Channel,
    Message,
    MessageStatus,
    RunStatus,
    SentRecord,
)
from nudge.ports import SendClaim

log = logging.getLogger(__name__)


class DynamoOutbox(DynamoTables):
    """Implements nudge.ports.Outbox."""

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
            if not condition_failed(exc):
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
        moved_from: Channel | None = None,
    ) -> Message | None:
        settled = replace(message, status=status, reason=reason, provider_id=provider_id, sent_at=sent_at)
        model = self.models.messages
        try:
            self._message_item(settled).save(
                condition=(model.status == only_from.value) if only_from is not None else None
            )
        except PutError as exc:
            if only_from is not None and condition_failed(exc):
                return None
            raise
        if status in (MessageStatus.SKIPPED, MessageStatus.FAILED):
            # It no longer counts.
            self._update_log(message, send_log.leave_actions(message))
        elif moved_from is not None and moved_from is not message.channel and message.sent_at is not None:
            # It counts on its new channel (a WhatsApp fallback): two updates, as one may not name a day twice.
            self._update_log(message, send_log.leave_actions(replace(message, channel=moved_from)))
            self._update_log(message, send_log.join_actions(message))
        return settled

    def _update_log(self, message: Message, actions: list[Any]) -> None:
        """Change the contact's send log, only a kept one. The settle before it has landed, and its retry would
        find nothing to settle, so a failure here (a throttle, a commit of the contact's in flight) is logged,
        not raised: an entry left over-counts the message until it ages out, never under-counts."""
        if not actions:
            return
        try:
            self.models.runs(contact_id=message.contact_id, sk=send_log.SENDS_SK).update(
                actions=actions, condition=send_log.kept()
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                log.warning(
                    "send log not updated; it counts until it ages out",
                    extra={"message_id": message.message_id, "error": str(exc)},
                )

    def get_message(self, contact_id: str, message_id: str) -> Message | None:
        return self._read_message(contact_id, message_id)

    def messages_for(self, contact_id: str) -> list[Message]:
        items = self.models.messages.query(contact_id, consistent_read=True)
        return sorted((self._message_from(i) for i in items), key=lambda m: m.created_at)

    def recent_sends(self, contact_id: str, since: datetime) -> list[SentRecord]:
        return self._sends_since(contact_id, since)

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
            if condition_failed(exc):
                return False
            raise
        return True
