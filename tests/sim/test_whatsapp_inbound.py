"""WhatsApp inbound on a virtual clock: replies end runs as `replied` and count on the message they answer,
STOP over WhatsApp holds every WhatsApp message and START lifts it, statuses are recorded once each, and a
redelivered notification changes nothing (SNS delivers at least once)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nudge.clocks import VirtualClock
from nudge.domain.model import Channel, Message, MessageStatus
from nudge.domain.suppression import address_key
from nudge.domain.whatsapp import parse_notification
from nudge.local.simulation import Simulation
from nudge.services.feedback import MessageNotFoundYet
from nudge.settings import Settings
from tests.events_helpers import whatsapp_event
from tests.factories import checkout_started, contact
from tests.flowkit import flows_dir, reasons, simulation
from tests.sim.test_whatsapp import REPLY

BOB_PHONE = "+16505551234"  # the number of the documented examples (tests/fixtures/whatsapp/SOURCES.md)
GUARDRAILS = """
smart_sending: {email: "off", sms: "off", whatsapp: "off"}
frequency_caps: {email: {}, sms: {}, whatsapp: {}}
sms_quiet_hours: {enabled: false}
"""
CART = """
id: cart_whatsapp
name: Cart by WhatsApp
trigger: {event: checkout_started}
exit: [{event: replied}]
steps:
  - {id: wait_1h, type: wait, duration: 1h}
  - id: reminder
    type: whatsapp
    template: cart_reminder
    language: en_US
    parameters: {first_name: "{{ contact.first_name or 'there' }}", cart_url: "{{ event.recovery_url }}"}
  - {id: wait_1d, type: wait, duration: 1d}
  - id: last_call
    type: whatsapp
    template: cart_reminder
    language: en_US
    parameters: {first_name: "{{ contact.first_name or 'there' }}", cart_url: "{{ event.recovery_url }}"}
"""


def deliver(sim: Simulation, body: dict[str, Any]) -> dict[str, int]:
    return dict(sim.container.whatsapp_inbound.handle(parse_notification(body)))


def whatsapp_messages(sim: Simulation) -> dict[str, Message]:
    return {m.step_id: m for m in sim.store.messages.values() if m.channel is Channel.WHATSAPP}


@pytest.fixture
def sim(settings: Settings, clock: VirtualClock, tmp_path: Path) -> Simulation:
    return simulation(settings, clock, flows_dir(tmp_path, CART, guardrails=GUARDRAILS))


def bob() -> dict[str, object]:
    return contact("bob", phone=BOB_PHONE, whatsapp_marketing=True)


def test_a_reply_ends_the_cart_reminders_counts_on_the_reminder_and_opens_the_window(
    sim: Simulation, clock: VirtualClock
) -> None:
    # Given Bob got the first WhatsApp reminder (and its statuses link his number to him)
    sim.send(checkout_started("e1", "c1", bob()))
    sim.run_until(clock.now() + timedelta(hours=2))
    [(provider_id, _)] = sim.whatsapp.sent
    assert deliver(sim, whatsapp_event("status_delivered", aws_message_id=provider_id, at=clock.now())) == {
        "status_delivered": 1
    }

    # When he writes back on WhatsApp, and SNS delivers the notification twice
    first = deliver(sim, whatsapp_event("received_text", at=clock.now()))
    again = deliver(sim, whatsapp_event("received_text", at=clock.now()))
    sim.run_until(clock.now() + timedelta(days=2))

    # Then the run ended on `replied`: no last call; the reply is on the reminder once, the window is open
    assert first == again == {"received": 1, "replied": 1}
    assert len(sim.whatsapp.sent) == 1
    assert "last_call" not in whatsapp_messages(sim)
    reminder = whatsapp_messages(sim)["reminder"]
    assert set(reminder.feedback) == {"delivery", "reply"}
    assert sim.store.step_counts("cart_whatsapp")["reminder"] == {"delivery": 1, "reply": 1}
    [run] = sim.store.runs.values()
    assert (run.status.value, run.exit_reason) == ("exited", "exit:replied")
    [stored] = sim.store.contacts.values()  # found by the number the status linked, not a new contact
    assert stored.whatsapp_inbound_at == clock.now() - timedelta(days=2)
    events = [e["event"].type for e in sim.store.events.values()]
    assert sorted(events) == ["checkout_started", "replied", "whatsapp_received"]


def test_a_stranger_writing_opens_a_window_on_a_phone_only_contact(sim: Simulation, clock: VirtualClock) -> None:
    outcome = deliver(sim, whatsapp_event("received_text", at=clock.now()))

    assert outcome == {"received": 1}
    [stored] = sim.store.contacts.values()
    assert stored.phone == BOB_PHONE and stored.whatsapp_inbound_at == clock.now().replace(microsecond=0)
    [event] = [e["event"] for e in sim.store.events.values()]
    assert event.properties["text"] == "Does it come in another color?"


def test_stop_over_whatsapp_holds_every_whatsapp_message_and_start_lifts_it(
    sim: Simulation, clock: VirtualClock
) -> None:
    # Given Bob is in the cart flow and texts STOP on WhatsApp before the first reminder
    sim.send(checkout_started("e1", "c1", bob()))
    assert deliver(sim, whatsapp_event("received_text", text="stop", wamid="wamid.stop", at=clock.now())) == {
        "opted_out": 1
    }
    sim.run_until(clock.now() + timedelta(hours=2))

    # Then the reminder is skipped with the reason, and the opt-out is on record with its source
    assert sim.whatsapp.sent == []
    assert reasons(sim)["reminder"] == "whatsapp_opted_out"
    key = address_key(Channel.WHATSAPP, BOB_PHONE)
    [record] = sim.store.consent_records(key)[-1:]
    assert (record.granted, record.source) == (False, "whatsapp_keyword:STOP")

    # When he writes START, the last call goes out again
    assert deliver(sim, whatsapp_event("received_text", text="START", wamid="wamid.start", at=clock.now())) == {
        "opted_in": 1
    }
    sim.run_until(clock.now() + timedelta(days=2))
    assert [m.template for _, m in sim.whatsapp.sent] == ["cart_reminder"]
    assert whatsapp_messages(sim)["last_call"].status is MessageStatus.SENT


def test_statuses_are_recorded_once_each_and_failed_counts_apart(sim: Simulation, clock: VirtualClock) -> None:
    sim.send(checkout_started("e1", "c1", bob()))
    sim.run_until(clock.now() + timedelta(hours=2))
    [(provider_id, _)] = sim.whatsapp.sent

    outcomes = [
        deliver(sim, whatsapp_event(name, aws_message_id=provider_id, at=clock.now()))
        for name in ("status_delivered", "status_read", "status_read", "status_failed")
    ]

    assert outcomes == [{"status_delivered": 1}, {"status_read": 1}, {"duplicate": 1}, {"status_failed": 1}]
    assert sim.store.step_counts("cart_whatsapp")["reminder"] == {"delivery": 1, "read": 1, "failed": 1}


def test_a_status_for_a_message_not_found_is_retried_while_recent_then_dropped(
    sim: Simulation, clock: VirtualClock
) -> None:
    with pytest.raises(MessageNotFoundYet):
        deliver(sim, whatsapp_event("status_delivered", at=clock.now()))
    old: datetime = clock.now() - timedelta(hours=1)
    assert deliver(sim, whatsapp_event("status_delivered", at=old)) == {"unknown_message": 1}


def test_the_window_a_customers_message_opens_allows_text_for_24_hours_then_refuses_it(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, REPLY, guardrails=GUARDRAILS))

    # The customer writes (the recorded notification): the window opens at the message's own time
    deliver(sim, whatsapp_event("received_text", at=clock.now()))
    sim.run_until(clock.now() + timedelta(hours=26))

    assert [m.text for _, m in sim.whatsapp.sent] == ["Thanks there, we got your message."]
    assert reasons(sim) == {"thanks": None, "follow_up": "whatsapp_window_closed"}
