"""The EventLog role (nudge.ports.EventLog) over DynamoDB.

The event record: begun, recorded with the contact's write, finished.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from nudge.adapters.dynamodb import send_log
from nudge.adapters.dynamodb.tables import (
    DynamoTables,
    condition_failed,
)
from nudge.domain.model import (
    Contact,
    Event,
)
from nudge.domain.suppression import ConsentRecord
from nudge.ports import ConflictError, EventDone


class DynamoEventLog(DynamoTables):
    """Implements nudge.ports.EventLog."""

    def begin_event(self, event: Event, now: datetime) -> bool:
        item, condition = self._event_write(event, now)
        try:
            item.save(condition=condition)
        except PutError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

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
                if condition_failed(exc):
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
                if expected_version == 0:  # a new contact: its send log starts whole (nothing to look up)
                    sends = self.models.runs(contact_id=contact.contact_id, sk=send_log.SENDS_SK)
                    tx.update(sends, actions=send_log.started(now))
        except TransactWriteError as exc:
            if not condition_failed(exc):
                raise
            reasons = exc.cancellation_reasons
            if reasons and reasons[0] is not None and reasons[0].code == "ConditionalCheckFailed":
                raise EventDone(event.event_id) from exc
            raise ConflictError(contact.contact_id) from exc
        return saved

    def finish_event(self, event_id: str, outcome: Mapping[str, Any]) -> None:
        model = self.models.events
        model(event_id=event_id).update(actions=[model.status.set("processed"), model.outcome.set(dict(outcome))])

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
