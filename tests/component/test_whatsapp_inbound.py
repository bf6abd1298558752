"""The WhatsApp inbound function on moto: recorded End User Messaging Social events through the real handler,
DynamoDB through pynamodb. Statuses, replies and STOP land once however often SNS delivers them."""

from __future__ import annotations

from datetime import timedelta

from nudge.domain.model import Category, Channel, Message, MessageStatus
from nudge.domain.suppression import Suppression, address_key
from nudge.local.moto_stack import MotoStack
from nudge.services.whatsapp_inbound import phone_ref
from tests.conftest import START
from tests.events_helpers import whatsapp_event

PHONE = "+16505551234"  # the documented examples' customer


def sent_whatsapp(stack: MotoStack) -> Message:
    """A cart reminder nudge sent to PHONE an hour ago (as the worker settles it), contact c1."""
    message = Message(
        "c1",
        "r1#reminder",
        "r1",
        "cart_whatsapp",
        "reminder",
        Channel.WHATSAPP,
        Category.MARKETING,
        MessageStatus.PENDING,
        START - timedelta(hours=1),
        recipient=PHONE,
    )
    settled = stack.container.store.settle_message(
        message, MessageStatus.SENT, provider_id="aws-msg-1", sent_at=START - timedelta(hours=1)
    )
    assert settled is not None
    return settled


def test_statuses_and_a_reply_are_recorded_once_on_the_message(moto_stack: MotoStack) -> None:
    sent_whatsapp(moto_stack)
    store = moto_stack.container.store
    notifications = [
        whatsapp_event(name, aws_message_id="aws-msg-1", at=START)
        for name in ("status_delivered", "status_read", "status_failed")
    ]

    first = moto_stack.deliver_sns("whatsapp_inbound", notifications)
    again = moto_stack.deliver_sns("whatsapp_inbound", notifications)  # SNS delivers at least once
    reply = moto_stack.deliver_sns("whatsapp_inbound", [whatsapp_event("received_text", at=START)] * 2)

    assert first == {"status_delivered": 1, "status_read": 1, "status_failed": 1}
    assert again == {"duplicate": 3}
    assert reply == {"received": 2, "replied": 2}  # the second is the same message: recorded once below
    message = store.get_message("c1", "r1#reminder")
    assert message is not None and set(message.feedback) == {"delivery", "read", "failed", "reply"}
    assert store.step_counts("cart_whatsapp") == {"reminder": {"delivery": 1, "read": 1, "failed": 1, "reply": 1}}
    # the status linked the number to c1: the reply is c1's, and one whatsapp_received and one replied event
    assert moto_stack.container.refs.resolve(phone_ref(PHONE)) == "c1"
    contact = store.get_contact("c1")
    assert contact is not None and contact.whatsapp_inbound_at == START
    types = sorted(e["type"] for e in store.events_for("c1"))
    assert types == ["replied", "whatsapp_received"]


def test_stop_suppresses_the_number_for_whatsapp_only_and_start_lifts_it(moto_stack: MotoStack) -> None:
    store = moto_stack.container.store
    key = address_key(Channel.WHATSAPP, PHONE)

    stopped = moto_stack.deliver_sns("whatsapp_inbound", [whatsapp_event("received_text", text="STOP", at=START)])

    state = store.address_state(key)
    assert stopped == {"opted_out": 1}
    assert state is not None and Suppression.WHATSAPP_OPTED_OUT in state.suppressed
    assert store.address_state(address_key(Channel.SMS, PHONE)) is None  # SMS is another opt-in

    started = moto_stack.deliver_sns(
        "whatsapp_inbound", [whatsapp_event("received_text", text="start", wamid="w2", at=START + timedelta(minutes=1))]
    )
    state = store.address_state(key)
    assert started == {"opted_in": 1}
    assert state is None or Suppression.WHATSAPP_OPTED_OUT not in state.suppressed
    assert [(r.granted, r.source) for r in store.consent_records(key)] == [
        (False, "whatsapp_keyword:STOP"),
        (True, "whatsapp_keyword:START"),
    ]


def test_records_that_are_not_whatsapp_events_are_skipped(moto_stack: MotoStack) -> None:
    outcome = moto_stack.deliver_sns(
        "whatsapp_inbound", [{"eventType": "Delivery"}, {"whatsAppWebhookEntry": "not json"}]
    )
    assert outcome == {"skipped": 2}
