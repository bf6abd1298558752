"""The AddressBook role (nudge.ports.AddressBook) over DynamoDB.

Per hashed address: suppressions, topics and the consent trail.
"""

from __future__ import annotations

from datetime import datetime

from nudge.adapters.dynamodb.models import (
    CONSENT_PREFIX,
    STATE_SK,
)
from nudge.adapters.dynamodb.tables import (
    DynamoTables,
)
from nudge.domain.model import (
    Channel,
)
from nudge.domain.suppression import AddressState, ConsentRecord, Suppression


class DynamoAddressBook(DynamoTables):
    """Implements nudge.ports.AddressBook."""

    def address_state(self, key: str) -> AddressState | None:
        return self._read_address(key)

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
