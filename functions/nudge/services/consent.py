"""Changing a contact's marketing consent, with a consent record of when and where from."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from nudge.domain.model import Channel, Contact, ContactPatch
from nudge.domain.suppression import ConsentRecord, address_key
from nudge.ports import AddressBook, ConflictError, Contacts

_ATTEMPTS = 5


class ConsentStore(Contacts, AddressBook, Protocol):
    """What a consent change reads and writes: the contact, and the records behind its consent."""


def record_changes(store: AddressBook, before: Contact | None, after: Contact, source: str, now: datetime) -> None:
    """Write a consent record for each channel whose marketing consent this change set or flipped."""
    for record in consent_changes(before, after, source, now):
        store.record_consent(record)


def consent_changes(before: Contact | None, after: Contact, source: str, now: datetime) -> list[ConsentRecord]:
    """A consent record for each channel whose marketing consent this change set or flipped."""
    if before is not None and (
        before.email_marketing is after.email_marketing
        and before.sms_marketing is after.sms_marketing
        and before.whatsapp_marketing is after.whatsapp_marketing
        and before.ads_marketing is after.ads_marketing
    ):
        return []  # no consent set or flipped (most changes: an order, a segment move)
    return [
        ConsentRecord(
            address_key=address_key(channel, address),
            channel=channel,
            granted=now_is,
            at=now,
            source=source,
            contact_id=after.contact_id,
        )
        for channel, was, now_is, address in (
            (Channel.EMAIL, before.email_marketing if before else None, after.email_marketing, after.email),
            (Channel.SMS, before.sms_marketing if before else None, after.sms_marketing, after.phone),
            (Channel.WHATSAPP, before.whatsapp_marketing if before else None, after.whatsapp_marketing, after.phone),
            (
                Channel.AUDIENCE,
                before.ads_marketing if before else None,
                after.ads_marketing,
                after.email or after.phone,
            ),
        )
        if now_is is not None and now_is != was and address
    ]


def set_email_marketing(
    store: ConsentStore, contact_id: str, granted: bool, source: str, now: datetime
) -> Contact | None:
    """Set the contact's email-marketing consent (optimistic retries); None if there is no such contact."""
    for _ in range(_ATTEMPTS):
        stored = store.get_contact(contact_id)
        if stored is None:
            return None
        if stored.email_marketing is granted:
            return stored
        changed = stored.merged(ContactPatch(email_marketing=granted), now)
        try:
            return store.save_contact(changed, stored.version, consents=consent_changes(stored, changed, source, now))
        except ConflictError:
            continue
    raise ConflictError(f"contact {contact_id} kept changing; gave up after {_ATTEMPTS} tries")
