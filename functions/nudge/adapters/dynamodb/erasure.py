"""The Erasure role (nudge.ports.Erasure) over DynamoDB: a contact erased whole, and an address's consent trail."""

from __future__ import annotations

from pynamodb.exceptions import DeleteError
from pynamodb.models import Model

from nudge.adapters.dynamodb import send_log
from nudge.adapters.dynamodb.models import (
    CONSENT_PREFIX,
    RUN_PREFIX,
    SLOT_PREFIX,
)
from nudge.adapters.dynamodb.tables import (
    DynamoTables,
    condition_failed,
)


class DynamoErasure(DynamoTables):
    """Implements nudge.ports.Erasure."""

    def erase_contact(self, contact_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        # Events through the index; everything else is under the contact's partition key.
        events = [self.models.events(event_id=i.event_id) for i in self.models.events.by_contact.query(contact_id)]
        slots = self.models.flow_slots
        run_items: list[Model] = [
            slots(contact_id=contact_id, sk=i.sk) for i in slots.query(contact_id, slots.sk.startswith(SLOT_PREFIX))
        ]
        run_items += [
            self.models.runs(contact_id=contact_id, sk=RUN_PREFIX + r.run_id) for r in self._runs_of(contact_id)
        ]
        runs = self.models.runs
        if runs.count(contact_id, runs.sk == send_log.SENDS_SK, consistent_read=True):
            run_items.append(runs(contact_id=contact_id, sk=send_log.SENDS_SK))  # its send log
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
            if not condition_failed(exc):
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
