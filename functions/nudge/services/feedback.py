"""Use case: record what SES tells us after a send; bounces and complaints block the address."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from nudge.domain.feedback import DeliveryFeedback, FeedbackKind
from nudge.domain.frozen import dataclass
from nudge.domain.model import Channel, ContactPatch, Event, Message, MessageStatus
from nudge.domain.suppression import Suppression, address_key
from nudge.ports import AddressBook, Clock, Contacts, Outbox, StepCounters
from nudge.services.consent import set_email_marketing

log = logging.getLogger(__name__)
# SES feedback that is the contact's own doing, and the event type it becomes.
_ENGAGEMENT = {FeedbackKind.OPEN: "email_opened", FeedbackKind.CLICK: "email_clicked"}


@dataclass(frozen=True, slots=True)
class FeedbackOutcome:
    status: str  # recorded | duplicate | unknown_message
    suppressed: tuple[str, ...] = ()  # the suppression reasons applied
    flow_id: str | None = None  # the flow of the message it was about
    reconciled: bool = False  # the message was UNKNOWN: this event proves it went out, so it is SENT now


# The by-provider-id index is eventually consistent (usually under a second); feedback for a message it
# does not show yet is retried this long (Lambda's async retries, about three minutes), then logged and dropped.
FEEDBACK_PATIENCE = timedelta(minutes=15)


class MessageNotFoundYet(LookupError):
    """Feedback for a message the index does not show yet: raise, so the invocation is retried."""


class FeedbackStore(Outbox, StepCounters, AddressBook, Contacts, Protocol):
    """What feedback reads and writes: the message, its step's counters, the address (and a complaint's consent)."""


class FeedbackService:
    """Idempotent: SNS delivers at least once, so each kind is recorded and counted once per message."""

    def __init__(
        self, *, store: FeedbackStore, clock: Clock, engagement: Callable[[Event], object] | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        self._engagement = engagement or (lambda event: None)

    def record(self, feedback: DeliveryFeedback) -> FeedbackOutcome:
        message = self._store.message_by_provider_id(feedback.provider_id)
        reconciled = False
        if message is None and feedback.message_key is not None:
            # Named by our headers: found even before the provider-id index shows it, or never had an id.
            message = self._store.get_message(*feedback.message_key)
            if message is not None and message.status is MessageStatus.UNKNOWN:
                message, reconciled = self._reconcile(message, feedback), True
        if message is None:
            return self._unknown_message(feedback)
        first = self._store.record_feedback(message, feedback.kind, feedback.at)
        if first:
            self._store.count_step(message.flow_id, message.step_id, feedback.kind)
        if feedback.kind in _ENGAGEMENT:
            # An open or click is something the contact did: flows, exits, segments and sunset see it as an
            # event. Its id is the message's, so a redelivery (or a crash before this line) announces it once.
            self._engagement(
                Event(
                    event_id=f"{_ENGAGEMENT[feedback.kind]}:{message.message_id}",
                    type=_ENGAGEMENT[feedback.kind],
                    contact=ContactPatch(external_id=message.contact_id),
                    properties={
                        "flow_id": message.flow_id,
                        "step_id": message.step_id,
                        "message_id": message.message_id,
                        "machine_open": feedback.machine,
                        **(
                            {"link": feedback.detail} if feedback.kind is FeedbackKind.CLICK and feedback.detail else {}
                        ),
                    },
                    occurred_at=feedback.at,
                )
            )
        recipients = feedback.recipients or ((message.recipient,) if message.recipient else ())
        applied: list[str] = []
        # Blocking is idempotent, so it is applied on redeliveries too: a crash between the writes heals.
        if feedback.kind is FeedbackKind.BOUNCE and feedback.permanent:
            for address in recipients:
                self._store.suppress(address_key(Channel.EMAIL, address), Suppression.BOUNCE, feedback.at)
            applied.append(Suppression.BOUNCE.value)
        elif feedback.kind is FeedbackKind.COMPLAINT:
            for address in recipients:
                self._store.suppress(address_key(Channel.EMAIL, address), Suppression.COMPLAINT, feedback.at)
            # Withdrawing consent writes the consent record (source "complaint") too.
            set_email_marketing(self._store, message.contact_id, False, "complaint", self._clock.now())
            applied.append(Suppression.COMPLAINT.value)
        status = "recorded" if first else "duplicate"
        return FeedbackOutcome(status, tuple(applied), message.flow_id, reconciled=reconciled)

    def _reconcile(self, message: Message, feedback: DeliveryFeedback) -> Message:
        """An UNKNOWN send SES has an event for did go out: SENT, with its provider id (ADR 0007)."""
        settled = self._store.settle_message(
            message,
            MessageStatus.SENT,
            provider_id=feedback.provider_id,
            sent_at=message.sent_at,
            only_from=MessageStatus.UNKNOWN,
        )
        log.info("unknown send reconciled", extra={"message_id": message.message_id, "kind": feedback.kind.value})
        return settled or self._store.get_message(message.contact_id, message.message_id) or message

    def _unknown_message(self, feedback: DeliveryFeedback) -> FeedbackOutcome:
        """No record for this provider id: a bounce or complaint still blocks the address the event names."""
        applied: list[str] = []
        reason = (
            Suppression.BOUNCE
            if feedback.kind is FeedbackKind.BOUNCE and feedback.permanent
            else Suppression.COMPLAINT
            if feedback.kind is FeedbackKind.COMPLAINT
            else None
        )
        if reason is not None:
            for address in feedback.recipients:
                self._store.suppress(address_key(Channel.EMAIL, address), reason, feedback.at)
            applied.append(reason.value)
            log.warning(
                "suppressed for feedback about a message not found",
                extra={"provider_id": feedback.provider_id, "kind": feedback.kind.value},
            )
            return FeedbackOutcome("unknown_message", tuple(applied))
        if self._clock.now() - feedback.at < FEEDBACK_PATIENCE:
            # Sent a moment ago: the index may not show it yet. Fail, so Lambda tries again.
            raise MessageNotFoundYet(feedback.provider_id)
        # Mail nudge did not send (the configuration set is shared), or a record already erased.
        log.info("feedback for an unknown message", extra={"provider_id": feedback.provider_id})
        return FeedbackOutcome("unknown_message")
