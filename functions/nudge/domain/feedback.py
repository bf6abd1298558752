"""What happens to a message after its send: delivered, opened, clicked, bounced, complained, rejected, unsubscribed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class FeedbackKind(StrEnum):
    DELIVERY = "delivery"
    OPEN = "open"
    CLICK = "click"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    REJECT = "reject"
    UNSUBSCRIBE = "unsubscribe"  # the unsubscribe link of this message (ours, not the provider's)


@dataclass(frozen=True, slots=True)
class DeliveryFeedback:
    """One provider event about one sent message, found by the provider's message id."""

    kind: FeedbackKind
    provider_id: str
    at: datetime
    recipients: tuple[str, ...] = ()
    permanent: bool = False  # a bounce the provider will not retry (the mailbox does not exist)
    detail: str | None = None
