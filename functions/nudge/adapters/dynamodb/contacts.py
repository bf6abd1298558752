"""The Contacts role (nudge.ports.Contacts) over DynamoDB.

A contact, its consents with it; the review index it sits in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from nudge.adapters.dynamodb.tables import (
    BATCH_GET,
    CONTACT_WRITE_ATTEMPTS,
    TRANSACTION_ITEMS,
    DynamoTables,
    condition_failed,
)
from nudge.domain.model import (
    Contact,
)
from nudge.domain.suppression import ConsentRecord
from nudge.ports import ConflictError, ContactChange


class DynamoContacts(DynamoTables):
    """Implements nudge.ports.Contacts."""

    def get_contact(self, contact_id: str) -> Contact | None:
        return self._read_contact(contact_id)

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
            if condition_failed(exc):
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
            if condition_failed(exc) or getattr(exc, "cause_response_code", None) == "TransactionCanceledException":
                # A version moved, or a live write held an item (TransactionConflict): the caller refolds.
                raise ConflictError(", ".join(c.contact_id for c, _ in contacts[:3])) from exc
            raise
        return saved

    def record_consents(self, records: Sequence[ConsentRecord]) -> None:
        with self.models.consents.batch_write() as batch:
            for record in records:
                batch.save(self._consent_item(record))

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
