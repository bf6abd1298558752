"""WhatsApp steps on a virtual clock: templates with parameters, the 24-hour window, consent and its fallback,
and the guardrails WhatsApp shares with SMS (quiet hours, smart sending across the phone's channels, caps)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from nudge.clocks import VirtualClock
from nudge.domain.model import Channel, MessageStatus
from nudge.domain.suppression import address_key
from nudge.local.simulation import Simulation
from nudge.ports import PermanentSendError, TransientSendError, UnknownSendOutcome
from nudge.settings import Settings
from tests.factories import checkout_started, contact
from tests.flowkit import flows_dir, reasons, simulation

BOB_PHONE = "+14155550101"
GUARDRAILS = """
smart_sending: {email: "off", sms: 24h, whatsapp: 24h}
frequency_caps: {email: {}, sms: {day: 5}, whatsapp: {day: 1}}
sms_quiet_hours: {enabled: false}
"""

CART = """
id: cart_whatsapp
name: Cart by WhatsApp
trigger: {event: checkout_started}
exit: [{event: order_placed, match: {checkout_id: checkout_id}}]
steps:
  - {id: wait_1h, type: wait, duration: 1h}
  - id: reminder
    type: whatsapp
    template: cart_reminder
    language: en_US
    parameters:
      first_name: "{{ contact.first_name or 'there' }}"
      cart_url: "{{ event.recovery_url }}"
    fallback: {type: sms, template: abandoned_cart/reminder_2}
"""

REPLY = """
id: whatsapp_reply
name: Reply on WhatsApp
category: transactional
trigger: {event: whatsapp_received}
steps:
  - {id: thanks, type: whatsapp, text: "Thanks {{ contact.first_name or 'there' }}, we got your message."}
  - {id: wait_25h, type: wait, duration: 25h}
  - {id: follow_up, type: whatsapp, text: "Did that answer your question?"}
"""

SMS_NEWS = """
id: sms_news
name: SMS news
trigger: {event: news}
steps:
  - {id: news, type: sms, template: abandoned_cart/reminder_2}
"""

SHIPPED = """
id: shipped
name: Shipping update
category: transactional
trigger: {event: order_shipped}
steps:
  - {id: open, type: branch, if: whatsapp.window_open, then: chat, else: template}
  - {id: chat, type: whatsapp, text: "Your order is on its way, {{ contact.first_name }}!", next: done}
  - {id: template, type: whatsapp, template: order_update, language: en_US, parameters: {"1": "{{ event.order_id }}"}}
  - {id: done, type: end}
"""


def bob(**consent: object) -> dict[str, object]:
    return contact("bob", phone=BOB_PHONE, **consent)


def test_a_cart_reminder_goes_out_by_whatsapp_with_its_template_parameters(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, CART, guardrails=GUARDRAILS))

    sim.send(checkout_started("e1", "c1", bob(whatsapp_marketing=True)))
    sim.run_until(clock.now() + timedelta(hours=2))

    [(provider_id, message)] = sim.whatsapp.sent
    assert (message.to, message.template, message.language) == (BOB_PHONE, "cart_reminder", "en_US")
    assert message.parameters == (("first_name", "Bob"), ("cart_url", "https://shop.example/checkouts/c1"))
    [record] = sim.store.messages.values()
    assert (record.channel, record.status, record.provider_id) == (Channel.WHATSAPP, MessageStatus.SENT, provider_id)
    assert record.sent_at is not None and record.sent_at.strftime("%H:%M") == "10:00"
    assert record.body_preview == "[cart_reminder/en_US] first_name=Bob, cart_url=https://shop.example/checkouts/c1"
    assert sim.texter.sent == []


def test_without_whatsapp_consent_the_step_falls_back_to_sms(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, CART, guardrails=GUARDRAILS))

    sim.send(checkout_started("e1", "c1", bob(sms_marketing=True)))  # SMS consent is not WhatsApp consent
    sim.run_until(clock.now() + timedelta(hours=2))

    assert sim.whatsapp.sent == []
    [(_, sms)] = sim.texter.sent
    assert sms.to == BOB_PHONE and "Bob, your cart is still waiting: https://shop.example/checkouts/c1" in sms.text
    [record] = sim.store.messages.values()
    assert (record.step_id, record.channel, record.status) == ("reminder", Channel.SMS, MessageStatus.SENT)


def test_without_any_consent_the_fallback_is_skipped_under_its_own_reason(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, CART, guardrails=GUARDRAILS))
    without_fallback = CART.replace("    fallback: {type: sms, template: abandoned_cart/reminder_2}\n", "")
    (tmp_path / "other").mkdir()
    other = simulation(settings, clock, flows_dir(tmp_path / "other", without_fallback, guardrails=GUARDRAILS))

    sim.send(checkout_started("e1", "c1", bob()))
    other.send(checkout_started("e1", "c1", bob()))
    sim.run_until(clock.now() + timedelta(hours=2))
    other.run_until(clock.now())

    assert reasons(sim) == {"reminder": "no_sms_marketing_consent"}
    assert reasons(other) == {"reminder": "no_whatsapp_marketing_consent"}
    assert (sim.whatsapp.sent, sim.texter.sent, other.whatsapp.sent) == ([], [], [])


def test_free_text_goes_out_inside_the_24_hour_window_and_is_refused_after_it(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, REPLY, guardrails=GUARDRAILS))

    sim.send({"id": "in1", "type": "whatsapp_received", "contact": bob(), "properties": {"text": "Hi!"}})
    sim.run_until(clock.now() + timedelta(hours=26))

    assert [m.text for _, m in sim.whatsapp.sent] == ["Thanks Bob, we got your message."]
    assert reasons(sim) == {"thanks": None, "follow_up": "whatsapp_window_closed"}
    statuses = {m.step_id: m.status for m in sim.store.messages.values()}
    assert statuses == {"thanks": MessageStatus.SENT, "follow_up": MessageStatus.SKIPPED}


def test_a_new_message_from_the_customer_reopens_the_window(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, REPLY, guardrails=GUARDRAILS))

    sim.send({"id": "in1", "type": "whatsapp_received", "contact": bob(), "properties": {}})
    sim.run_until(clock.now() + timedelta(hours=20))
    sim.send({"id": "in2", "type": "whatsapp_received", "contact": bob(), "properties": {}})  # the run is active
    sim.run_until(clock.now() + timedelta(hours=6))  # 26 h after the first message, 6 h after the second

    assert [m.text for _, m in sim.whatsapp.sent] == [
        "Thanks Bob, we got your message.",
        "Did that answer your question?",
    ]
    stored = sim.store.get_contact(next(iter(sim.store.contacts)))
    assert stored is not None and stored.whatsapp_inbound_at == clock.now() - timedelta(hours=6)


def test_text_committed_inside_the_window_but_delivered_after_it_is_skipped(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    late = REPLY.replace("{id: wait_25h, type: wait, duration: 25h}", "{id: wait, type: wait, duration: 86390s}")
    sim = simulation(settings, clock, flows_dir(tmp_path, late, guardrails=GUARDRAILS))
    sim.send({"id": "in1", "type": "whatsapp_received", "contact": bob(), "properties": {}})
    # 10 s before the window closes the follow-up is committed; the provider throttles it for 30 s.
    sim.whatsapp.fail_next = [TransientSendError("WhatsApp ThrottledRequestException", throttled=True)]

    sim.run_until(clock.now() + timedelta(hours=25))

    assert reasons(sim) == {"thanks": None, "follow_up": "whatsapp_window_closed"}
    assert len(sim.whatsapp.sent) == 1


def test_whatsapp_keeps_the_phones_quiet_hours(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    quiet = GUARDRAILS.replace("sms_quiet_hours: {enabled: false}", 'sms_quiet_hours: {start: "21:00", end: "08:00"}')
    sim = simulation(settings, clock, flows_dir(tmp_path, CART, guardrails=quiet))
    clock.advance(timedelta(hours=11))  # 20:00 UTC: the reminder comes due at 21:00

    sim.send(checkout_started("e1", "c1", bob(whatsapp_marketing=True, timezone="UTC")))
    sim.run_until(clock.now() + timedelta(hours=14))

    [record] = sim.store.messages.values()
    assert record.sent_at is not None and record.sent_at.strftime("%d %H:%M") == "03 08:00"
    assert [j["reason"] for j in sim.store.runs[next(iter(sim.store.runs))].journal] == ["whatsapp_quiet_hours"]


def test_smart_sending_counts_sms_and_whatsapp_together(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, SMS_NEWS, CART, guardrails=GUARDRAILS))
    who = bob(sms_marketing=True, whatsapp_marketing=True)

    sim.send({"id": "n1", "type": "news", "contact": who, "properties": {"recovery_url": "https://shop.example/c"}})
    sim.send(checkout_started("e1", "c1", who))
    sim.run_until(clock.now() + timedelta(hours=2))

    assert reasons(sim) == {"news": None, "reminder": "smart_sending:whatsapp"}
    assert sim.whatsapp.sent == []


def test_the_whatsapp_cap_holds_a_second_message_the_same_day(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    no_smart = GUARDRAILS.replace("whatsapp: 24h}", 'whatsapp: "off"}')
    sim = simulation(settings, clock, flows_dir(tmp_path, CART, guardrails=no_smart))
    who = bob(whatsapp_marketing=True)

    sim.send(checkout_started("e1", "c1", who))
    sim.run_until(clock.now() + timedelta(hours=2))
    sim.send({**checkout_started("e2", "c2", who), "id": "e2"})
    sim.run_until(clock.now() + timedelta(hours=2))

    assert sorted(m.reason or "sent" for m in sim.store.messages.values()) == ["frequency_cap:whatsapp:day", "sent"]


def test_a_throttled_send_waits_and_a_lost_response_is_never_resent(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, CART, guardrails=GUARDRAILS))
    sim.whatsapp.fail_next = [TransientSendError("WhatsApp ThrottledRequestException", throttled=True)]

    sim.send(checkout_started("e1", "c1", bob(whatsapp_marketing=True)))
    sim.run_until(clock.now() + timedelta(hours=2))

    [record] = sim.store.messages.values()
    assert record.status is MessageStatus.SENT
    assert record.sent_at is not None and record.sent_at.strftime("%H:%M:%S") == "10:00:30"  # after the pause
    assert len(sim.whatsapp.sent) == 1

    sim.whatsapp.fail_next = [UnknownSendOutcome("WhatsApp: ReadTimeoutError")]
    sim.send(checkout_started("e2", "c2", contact("carol", phone="+14155550102", whatsapp_marketing=True)))
    sim.run_until(clock.now() + timedelta(days=2))

    carol = [m for m in sim.store.messages.values() if m.recipient == "+14155550102"]
    assert [(m.status, m.reason) for m in carol] == [(MessageStatus.UNKNOWN, "WhatsApp: ReadTimeoutError")]
    assert len(sim.whatsapp.sent) == 1  # never sent again


def test_whatsapp_consent_is_its_own_record_with_its_source(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, CART, guardrails=GUARDRAILS))

    sim.send(checkout_started("e1", "c1", bob(whatsapp_marketing=True)))

    [record] = sim.store.consent_records(address_key(Channel.WHATSAPP, BOB_PHONE))
    assert (record.channel, record.granted, record.source) == (Channel.WHATSAPP, True, "event:checkout_started:e1")
    assert sim.store.consent_records(address_key(Channel.SMS, BOB_PHONE)) == []


def test_a_branch_on_the_window_sends_text_while_it_is_open_and_a_template_otherwise(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, SHIPPED, guardrails=GUARDRAILS))

    sim.send({"id": "s1", "type": "order_shipped", "contact": bob(), "properties": {"order_id": "1001"}})
    sim.send({"id": "in1", "type": "whatsapp_received", "contact": bob(), "properties": {}})
    sim.send({"id": "s2", "type": "order_shipped", "contact": bob(), "properties": {"order_id": "1002"}})

    first, second = (m for _, m in sim.whatsapp.sent)
    assert (first.template, first.parameters) == ("order_update", (("1", "1001"),))
    assert second.text == "Your order is on its way, Bob!"


def refused_cart(
    settings: Settings, clock: VirtualClock, tmp_path: Path, failure: Exception, **consent: object
) -> Simulation:
    """Bob in the cart flow, whose WhatsApp reminder the provider answers with `failure`; 2 hours later."""
    sim = simulation(settings, clock, flows_dir(tmp_path, CART, guardrails=GUARDRAILS))
    sim.whatsapp.fail_next = [failure]
    sim.send(checkout_started("e1", "c1", bob(whatsapp_marketing=True, **consent)))
    sim.run_until(clock.now() + timedelta(hours=2))
    return sim


def test_a_permanent_whatsapp_refusal_sends_the_fallback_sms_instead(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    # Meta refuses the template for good (a number not on WhatsApp, an unapproved template)
    refusal = PermanentSendError("WhatsApp ValidationException: invalid recipient")
    sim = refused_cart(settings, clock, tmp_path, refusal, sms_marketing=True)

    assert sim.whatsapp.sent == []
    [(_, sms)] = sim.texter.sent
    assert sms.to == BOB_PHONE and "Bob, your cart is still waiting" in sms.text
    [record] = sim.store.messages.values()  # one message per step: the same record, on the SMS channel
    assert (record.channel, record.status) == (Channel.SMS, MessageStatus.SENT)
    assert record.reason == "whatsapp_failed: WhatsApp ValidationException: invalid recipient"


def test_a_permanent_refusal_without_consent_for_the_fallback_stays_failed(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    refusal = PermanentSendError("WhatsApp ValidationException: invalid recipient")
    sim = refused_cart(settings, clock, tmp_path, refusal)  # no SMS consent

    assert sim.texter.sent == [] and sim.whatsapp.sent == []
    [record] = sim.store.messages.values()
    assert (record.channel, record.status) == (Channel.WHATSAPP, MessageStatus.FAILED)
    assert record.reason == "WhatsApp ValidationException: invalid recipient"


def test_an_unknown_whatsapp_outcome_never_falls_back(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    sim = refused_cart(
        settings, clock, tmp_path, UnknownSendOutcome("WhatsApp DependencyException"), sms_marketing=True
    )

    assert sim.texter.sent == []  # it may have gone out: a fallback could reach the customer twice
    [record] = sim.store.messages.values()
    assert (record.channel, record.status) == (Channel.WHATSAPP, MessageStatus.UNKNOWN)
