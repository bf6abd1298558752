"""Use case: what End User Messaging Social relays from WhatsApp — customers' messages and message statuses.

- A customer's message becomes a `whatsapp_received` event (it opens the 24-hour window, and flows may
  start, exit or convert on it); one that answers a message nudge sent is also a `replied` event and a
  reply on that message (KPIs). STOP and its synonyms opt the number out of WhatsApp, START back in,
  as SMS keywords do (services/sms_keywords.py); neither is taken as a conversation.
- A status (sent, delivered, read, failed) is recorded on the message it is about, once per kind.

At-least-once: SNS may deliver a notification twice. Events carry Meta's message id (recorded once by the
ingest service), feedback is recorded conditionally (once per message and kind), suppressions and consent
are idempotent, so a redelivery changes and counts nothing twice.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from nudge.domain import sms
from nudge.domain.feedback import FeedbackKind
from nudge.domain.model import Channel, ContactPatch, Event, Message, MessageStatus, contact_id_for
from nudge.domain.suppression import ConsentRecord, Suppression, address_key
from nudge.domain.whatsapp import INBOUND_EVENT, REPLIED_EVENT, InboundWhatsApp, WhatsAppNotification, WhatsAppStatus
from nudge.ports import AddressBook, Clock, ContactRefs, Outbox, StepCounters
from nudge.services.feedback import FEEDBACK_PATIENCE, MessageNotFoundYet

log = logging.getLogger(__name__)

_KINDS = {"delivered": FeedbackKind.DELIVERY, "read": FeedbackKind.READ, "failed": FeedbackKind.FAILED}
# A message the customer writes without quoting one of ours still answers the last one, if it is this recent.
REPLY_WINDOW = timedelta(days=7)


def phone_ref(phone: str) -> str:
    """The contact ref of a WhatsApp number: its address key (a hash), so the ref holds no readable number."""
    return address_key(Channel.WHATSAPP, phone)


class WhatsAppStore(Outbox, StepCounters, AddressBook, Protocol):
    """What WhatsApp statuses and replies read and write: the message, its step's counters, the number's state."""


class WhatsAppInboundService:
    def __init__(
        self,
        *,
        store: WhatsAppStore,
        refs: ContactRefs,
        clock: Clock,
        ingest: Callable[[Event], object],
        counted: Callable[[str, FeedbackKind], object] | None = None,
    ) -> None:
        self._store = store
        self._refs = refs
        self._clock = clock
        self._ingest = ingest
        self._counted = counted or (lambda flow_id, kind: None)  # flow metrics (flow_counts.record_feedback)

    def handle(self, notification: WhatsAppNotification) -> Counter[str]:
        """What the notification did, counted: received, replied, opted_out, opted_in, status_<kind>, ..."""
        outcomes: Counter[str] = Counter()
        for status in notification.statuses:
            outcomes[self._status(status)] += 1
        for message in notification.messages:
            for outcome in self._inbound(message):
                outcomes[outcome] += 1
        return outcomes

    # statuses ----------------------------------------------------------------------------------------------

    def _status(self, status: WhatsAppStatus) -> str:
        message = self._message_of(status)
        if message is None:
            if self._clock.now() - status.at < FEEDBACK_PATIENCE:
                raise MessageNotFoundYet(status.aws_message_id or status.meta_id)  # the index may lag: retry
            log.info("WhatsApp status for an unknown message", extra={"status": status.status})
            return "unknown_message"
        if message.channel is not Channel.WHATSAPP:
            return "unknown_message"
        if status.recipient:
            # The number answers to this contact: a later message from it is theirs (found by this ref).
            self._refs.link(phone_ref(status.recipient), message.contact_id, status.at)
        if message.status is MessageStatus.UNKNOWN:
            # The send's answer was lost (ADR 0007); any status proves it went out.
            self._store.settle_message(
                message,
                MessageStatus.SENT,
                provider_id=message.provider_id,
                sent_at=status.at,
                only_from=MessageStatus.UNKNOWN,
            )
        kind = _KINDS.get(status.status)
        if kind is None:
            return "status_sent"
        if self._store.record_feedback(message, kind, status.at):
            self._store.count_step(message.flow_id, message.step_id, kind)
            self._counted(message.flow_id, kind)
            if kind is FeedbackKind.FAILED:
                log.warning("WhatsApp message failed after it was accepted", extra={"error": status.error})
            return f"status_{status.status}"
        return "duplicate"

    def _message_of(self, status: WhatsAppStatus) -> Message | None:
        """The message by the id SendWhatsAppMessage answered (the header's), else by Meta's."""
        for provider_id in (status.aws_message_id, status.meta_id):
            if provider_id and (found := self._store.message_by_provider_id(provider_id)) is not None:
                return found
        return None

    # customers' messages -----------------------------------------------------------------------------------

    def _inbound(self, inbound: InboundWhatsApp) -> list[str]:
        phone = inbound.from_number
        known = self._refs.resolve(phone_ref(phone))
        contact_id = known or contact_id_for(external_id=None, email=None, phone=phone)
        found = sms.keyword_of(inbound.text) if inbound.text else None
        if found is not None and found[0] is not sms.Keyword.HELP:
            keyword, word = found
            key = address_key(Channel.WHATSAPP, phone)
            granted = keyword is sms.Keyword.OPT_IN
            if granted:
                self._store.lift_suppression(key, Suppression.WHATSAPP_OPTED_OUT)
            else:
                self._store.suppress(key, Suppression.WHATSAPP_OPTED_OUT, inbound.at)
            record = ConsentRecord(key, Channel.WHATSAPP, granted, inbound.at, f"whatsapp_keyword:{word}", known)
            self._store.record_consent(record)
            return ["opted_in" if granted else "opted_out"]
        # A known contact by id; a stranger by number (a phone-only contact, as an event with only a phone).
        patch = ContactPatch(external_id=contact_id) if known else ContactPatch(phone=phone)
        properties: dict[str, object] = {"message_id": inbound.message_id, "message_type": inbound.kind}
        if inbound.text is not None:
            properties["text"] = inbound.text
        answered = self._answered(contact_id, inbound)
        if answered is not None:
            properties.update(flow_id=answered.flow_id, step_id=answered.step_id, replied_to=answered.message_id)
        self._ingest(Event(f"{INBOUND_EVENT}:{inbound.message_id}", INBOUND_EVENT, patch, properties, inbound.at))
        if answered is None:
            return ["received"]
        if self._store.record_feedback(answered, FeedbackKind.REPLY, inbound.at):
            self._store.count_step(answered.flow_id, answered.step_id, FeedbackKind.REPLY)
            self._counted(answered.flow_id, FeedbackKind.REPLY)
        self._ingest(
            Event(
                f"{REPLIED_EVENT}:{inbound.message_id}",
                REPLIED_EVENT,
                patch,
                {**properties, "channel": Channel.WHATSAPP.value},
                inbound.at,
            )
        )
        return ["received", "replied"]

    def _answered(self, contact_id: str, inbound: InboundWhatsApp) -> Message | None:
        """The message of nudge's this one answers: the one it quotes, else the contact's last WhatsApp
        message sent within REPLY_WINDOW before it."""
        if inbound.in_reply_to and (quoted := self._store.message_by_provider_id(inbound.in_reply_to)):
            return quoted if quoted.contact_id == contact_id else None
        candidates = [
            m
            for m in self._store.messages_for(contact_id)
            if m.channel is Channel.WHATSAPP
            and m.status is MessageStatus.SENT
            and m.sent_at is not None
            and inbound.at - REPLY_WINDOW <= m.sent_at <= inbound.at
        ]
        return max(candidates, key=lambda m: m.sent_at or inbound.at, default=None)
