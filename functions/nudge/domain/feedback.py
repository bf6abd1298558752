"""What happens to a message after its send: delivered, opened, clicked, bounced, complained, rejected,
unsubscribed; for WhatsApp also read, failed and replied to."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from nudge.domain.frozen import dataclass


class FeedbackKind(StrEnum):
    DELIVERY = "delivery"
    OPEN = "open"
    CLICK = "click"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    REJECT = "reject"
    UNSUBSCRIBE = "unsubscribe"  # the unsubscribe link of this message (ours, not the provider's)
    # WhatsApp (End User Messaging Social relays Meta's statuses): the recipient opened the chat, the
    # message could not be delivered after it was accepted, the customer wrote back after it.
    READ = "read"
    FAILED = "failed"
    REPLY = "reply"


@dataclass(frozen=True, slots=True)
class DeliveryFeedback:
    """One provider event about one sent message, found by the provider's message id."""

    kind: FeedbackKind
    provider_id: str
    at: datetime
    recipients: tuple[str, ...] = ()
    permanent: bool = False  # a bounce the provider will not retry (the mailbox does not exist)
    detail: str | None = None
    machine: bool = False  # an open no person made (Apple Mail Privacy Protection fetched the pixel)
    # (contact id, message id) from the mail's X-Nudge-* headers, when the event carries them (SES's do)
    message_key: tuple[str, str] | None = None


# Apple Mail Privacy Protection loads every image through Apple's proxy soon after delivery, read or not,
# and reports a bare "Mozilla/5.0" as its user agent (a person's mail client names its platform).
_MACHINE_USER_AGENTS = frozenset({"Mozilla/5.0"})


def is_machine_open(user_agent: str | None) -> bool:
    """True for an open a privacy proxy made by prefetching, not a person reading."""
    return user_agent is not None and user_agent.strip() in _MACHINE_USER_AGENTS
