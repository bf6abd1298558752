"""Use cases: export everything about a contact, and erase it (keeping only hashed suppressions)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from nudge.domain.model import Channel, Contact
from nudge.domain.suppression import Suppression, address_key, tombstone_key
from nudge.ports import AddressBook, Clock, ContactRefs, Contacts, Erasure, EventLog, Outbox, Runs, Scheduler


def _plain(value: Any) -> Any:
    """JSON-ready: datetimes as ISO 8601, enums as their values, sets as sorted lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    return value


class PrivacyStore(Contacts, EventLog, Runs, Outbox, AddressBook, Erasure, Protocol):
    """What an export reads and an erasure deletes: everything held of one person."""


class PrivacyService:
    def __init__(
        self,
        *,
        store: PrivacyStore,
        scheduler: Scheduler,
        clock: Clock,
        refs: ContactRefs | None = None,
        forget: Callable[[str], object] | None = None,
    ) -> None:
        """`forget(contact_id)` takes an erased contact out of every ad audience (ADR 0024)."""
        self._forget: Callable[[str], object] = forget or (lambda contact_id: None)
        self._store = store
        self._scheduler = scheduler
        self._clock = clock
        self._refs = refs

    def erased(self, contact_id: str) -> bool:
        """Whether a contact with this id was erased and not brought back since (by a signup or an API call)."""
        state = self._store.address_state(tombstone_key(contact_id))
        if state is None or Suppression.ERASED not in state.suppressed:
            return False
        return self._store.get_contact(contact_id) is None

    def export(self, contact_id: str) -> dict[str, Any] | None:
        """Everything nudge holds about the contact, as JSON-ready data; None if there is no such contact."""
        contact = self._store.get_contact(contact_id)
        if contact is None:
            return None
        addresses = []
        for channel, key in _keys(contact):
            state = self._store.address_state(key)
            addresses.append(
                {
                    "channel": channel,
                    "suppressed": _plain(state.suppressed) if state else {},
                    "topics_off": _plain(state.topics_off) if state else [],
                    "consent_records": [_plain(asdict(r)) for r in self._store.consent_records(key)],
                }
            )
        return {
            "contact": _plain(asdict(contact)),
            "events": _plain(self._store.events_for(contact_id)),
            "runs": [_plain(asdict(run)) for run in self._store.runs_for(contact_id)],
            "messages": [_plain(asdict(m)) for m in self._store.messages_for(contact_id)],
            "addresses": addresses,
            "exported_at": self._clock.now().isoformat(),
        }

    def erase(self, contact_id: str) -> dict[str, int] | None:
        """Delete every item holding the contact's data and every ref leading to it; their addresses stay
        suppressed and the id is tombstoned, as hashes only (so a later webhook does not recreate them)."""
        contact = self._store.get_contact(contact_id)
        if contact is None:
            return None
        now = self._clock.now()
        self._store.suppress(tombstone_key(contact_id), Suppression.ERASED, now)  # first: webhooks now stop
        for run in self._store.active_runs(contact_id):
            self._scheduler.cancel(run.schedule_name)  # a wake-up that fires anyway finds no run
        self._forget(contact_id)  # out of every ad audience: the removals are queued for upload
        consent_records = 0
        for _, key in _keys(contact):
            consent_records += self._store.erase_consent_records(key)
            self._store.suppress(key, Suppression.ERASED, now)
        counts = self._store.erase_contact(contact_id)
        counts["consent_records"] = consent_records
        counts["contact_refs"] = self._refs.forget(contact_id) if self._refs is not None else 0
        return counts


def _keys(contact: Contact) -> list[tuple[Channel, str]]:
    pairs = [
        (Channel.EMAIL, contact.email),
        (Channel.SMS, contact.phone),
        (Channel.WHATSAPP, contact.phone),
        (Channel.AUDIENCE, contact.email or contact.phone),  # the ad-consent records (ADR 0024)
    ]
    return [(channel, address_key(channel, address)) for channel, address in pairs if address]
