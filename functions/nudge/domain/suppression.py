"""Suppressions, topic preferences and consent records, kept per address under a hash of the address.

Keyed by a hash rather than by contact so they outlive an erased contact: an address that bounced,
complained or was erased stays blocked when a later import or webhook brings it back.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import field
from datetime import datetime
from enum import StrEnum

from nudge.domain.addresses import email_or_none
from nudge.domain.frozen import dataclass
from nudge.domain.model import Category, Channel


class Suppression(StrEnum):
    """Why an address is blocked. The value doubles as the skip reason's suffix."""

    BOUNCE = "bounce"  # a permanent bounce: the mailbox does not exist, so no email of any kind
    COMPLAINT = "complaint"  # marked as spam: no marketing email
    UNSUBSCRIBED = "unsubscribed"  # one-click or the preference page: no marketing email
    SMS_OPTED_OUT = "sms_opted_out"  # STOP and its synonyms: no SMS of any kind (carrier rules)
    WHATSAPP_OPTED_OUT = "whatsapp_opted_out"  # STOP over WhatsApp: no WhatsApp message of any kind
    ERASED = "erased"  # the contact was erased: no marketing, so a stale import cannot re-add them


# (channel it applies to or None for both, whether transactional messages are blocked too)
_SCOPE: dict[Suppression, tuple[Channel | None, bool]] = {
    Suppression.BOUNCE: (Channel.EMAIL, True),
    Suppression.COMPLAINT: (Channel.EMAIL, False),
    Suppression.UNSUBSCRIBED: (Channel.EMAIL, False),
    Suppression.SMS_OPTED_OUT: (Channel.SMS, True),
    Suppression.WHATSAPP_OPTED_OUT: (Channel.WHATSAPP, True),
    Suppression.ERASED: (None, False),
}

# The topic that stands for "every marketing email" on the preference page.
EVERYTHING = "everything"


def normalized_address(channel: Channel, address: str) -> str:
    """Email addresses as nudge.domain.addresses normalizes them; phone numbers are already E.164.

    An address that does not normalize (only ever a stored legacy value) is hashed lower-cased and stripped.
    """
    if channel is Channel.EMAIL:
        return email_or_none(address) or address.strip().lower()
    return address.strip()


@functools.lru_cache(maxsize=1 << 16)  # pure; asked on every send and consent change
def address_key(channel: Channel, address: str) -> str:
    """The hashed key of an address: `email#<sha256>` or `sms#<sha256>`; holds no readable personal data."""
    digest = hashlib.sha256(f"nudge-address:{channel.value}:{normalized_address(channel, address)}".encode())
    return f"{channel.value}#{digest.hexdigest()}"


def tombstone_key(contact_id: str) -> str:
    """Where an erased contact's tombstone is kept (with the address suppressions, as a hash of the id).

    It says only "a contact with this id was erased", so webhooks about them are not taken as a new
    customer; the id itself, personal data in its own right, is not stored.
    """
    return "contact#" + hashlib.sha256(f"nudge-contact:{contact_id}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AddressState:
    """What blocks an address (reason -> since when) and which marketing topics it switched off."""

    key: str
    suppressed: dict[Suppression, datetime] = field(default_factory=dict)
    topics_off: frozenset[str] = frozenset()


def block_reason(state: AddressState | None, channel: Channel, category: Category, topic: str) -> str | None:
    """Why this address must not get this message, or None; `topic` is the flow id."""
    if state is None:
        return None
    for reason in Suppression:  # in declaration order: the strongest reason is reported
        if reason not in state.suppressed:
            continue
        applies_to, blocks_transactional = _SCOPE[reason]
        if applies_to not in (None, channel):
            continue
        if category is Category.TRANSACTIONAL and not blocks_transactional:
            continue
        if reason in (Suppression.SMS_OPTED_OUT, Suppression.WHATSAPP_OPTED_OUT):
            return reason.value
        if reason is Suppression.UNSUBSCRIBED:
            return "unsubscribed"
        return f"suppressed:{reason.value}"
    if channel is Channel.EMAIL and category is Category.MARKETING and topic in state.topics_off:
        return f"unsubscribed:{topic}"
    return None


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """Evidence of a consent change: who, which channel, given or withdrawn, when and where from."""

    address_key: str
    channel: Channel
    granted: bool
    at: datetime
    source: str  # e.g. "sms_keyword:STOP", "unsubscribe:one_click", "event:subscribed:evt_1", "complaint"
    contact_id: str | None = None
