"""Guardrails: consent, smart sending (skip, delay, priority), frequency caps, SMS quiet hours."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from nudge.clocks import VirtualClock
from nudge.settings import Settings
from tests.conftest import START
from tests.factories import contact
from tests.flowkit import flows_dir, sent, simulation


def newsletter(
    flow_id: str, priority: int = 0, *, channel: str = "email", category: str = "marketing", overrides: str = ""
) -> str:
    """A one-message flow triggered by the event type of its own name."""
    if channel == "email":
        step = f"{{id: msg, type: email, template: welcome/welcome, subject: '{flow_id}'}}"
    else:
        step = "{id: msg, type: sms, template: abandoned_cart/reminder_2}"
    return (
        f"id: {flow_id}\nname: {flow_id}\ncategory: {category}\npriority: {priority}\n"
        f"trigger: {{event: {flow_id}}}\n{overrides}steps:\n  - {step}\n"
    )


def event(event_id: str, type_: str, who: dict | None = None) -> dict:
    return {
        "id": event_id,
        "type": type_,
        "contact": who or contact("bob"),
        "properties": {"recovery_url": "https://shop.example/c"},
    }


def test_smart_sending_skips_a_second_marketing_email_within_the_window(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    directory = flows_dir(tmp_path, newsletter("news"), newsletter("promo"), guardrails="smart_sending: {email: 16h}\n")
    sim = simulation(settings, clock, directory)

    sim.send(event("e1", "news"))
    clock.advance(timedelta(hours=15))
    sim.send(event("e2", "promo"))
    clock.advance(timedelta(hours=2))
    sim.send(event("e3", "promo", contact("bob")))  # 17 h after the first: the window has passed

    assert [(t, s) for t, _, s in sent(sim)] == [("2026-11-02 09:00", "news"), ("2026-11-03 02:00", "promo")]
    skipped = [m for m in sim.store.messages.values() if m.reason]
    assert [m.reason for m in skipped] == ["smart_sending:email"]


def test_smart_sending_lets_higher_priority_through(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    directory = flows_dir(
        tmp_path, newsletter("news", 0), newsletter("cart", 10), guardrails="smart_sending: {email: 16h}\n"
    )
    sim = simulation(settings, clock, directory)

    sim.send(event("e1", "news"))
    clock.advance(timedelta(hours=1))
    sim.send(event("e2", "cart"))
    clock.advance(timedelta(hours=1))
    sim.send(event("e3", "news", contact("bob")))

    assert [s for _, _, s in sent(sim)] == ["news", "cart"]


def test_smart_sending_delay_mode_holds_the_message_until_the_window_ends(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    directory = flows_dir(
        tmp_path, newsletter("news"), newsletter("promo"), guardrails="smart_sending: {email: 16h, mode: delay}\n"
    )
    sim = simulation(settings, clock, directory)

    sim.send(event("e1", "news"))
    clock.advance(timedelta(hours=4))
    sim.send(event("e2", "promo"))
    sim.run_until(START + timedelta(days=2))

    assert sent(sim) == [
        ("2026-11-02 09:00", "bob@example.com", "news"),
        ("2026-11-03 01:00", "bob@example.com", "promo"),
    ]
    promo = next(r for r in sim.store.runs.values() if r.flow_id == "promo")
    assert promo.journal[0]["action"] == "deferred" and promo.journal[0]["reason"] == "smart_sending:email"


def test_transactional_messages_bypass_guardrails_but_not_consent_rules_for_marketing(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    directory = flows_dir(
        tmp_path,
        newsletter("news"),
        newsletter("receipt", category="transactional"),
        guardrails="smart_sending: {email: 16h}\nfrequency_caps: {email: {day: 1}}\n",
    )
    sim = simulation(settings, clock, directory)

    sim.send(event("e1", "news"))
    sim.send(event("e2", "receipt"))
    sim.send(event("e3", "news", contact("dan", email_marketing=False)))
    sim.send(event("e4", "receipt", contact("dan", email_marketing=False)))

    assert sorted((to, s) for _, to, s in sent(sim)) == [
        ("bob@example.com", "news"),
        ("bob@example.com", "receipt"),
        ("dan@example.com", "receipt"),
    ]
    assert [m.reason for m in sim.store.messages.values() if m.reason] == ["no_email_marketing_consent"]


def test_frequency_caps_per_rolling_day_and_week(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    flows = [newsletter(f"n{i}") for i in range(6)]
    directory = flows_dir(
        tmp_path, *flows, guardrails='smart_sending: {email: "off"}\nfrequency_caps: {email: {day: 2, week: 3}}\n'
    )
    sim = simulation(settings, clock, directory)

    sim.send(event("e0", "n0"))
    sim.send(event("e1", "n1"))
    sim.send(event("e2", "n2"))  # third in a day: capped
    clock.advance(timedelta(days=1, minutes=1))
    sim.send(event("e3", "n3"))  # third in the week: allowed
    sim.send(event("e4", "n4"))  # fourth in the week: capped
    clock.advance(timedelta(days=7))
    sim.send(event("e5", "n5"))  # the window has rolled

    assert [s for _, _, s in sent(sim)] == ["n0", "n1", "n3", "n5"]
    capped = sorted(m.reason for m in sim.store.messages.values() if m.reason)
    assert capped == ["frequency_cap:email:day", "frequency_cap:email:week"]


def test_sms_quiet_hours_defer_to_the_next_morning_in_the_contacts_zone(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    directory = flows_dir(
        tmp_path, newsletter("text", channel="sms"), guardrails='sms_quiet_hours: {start: "21:00", end: "08:00"}\n'
    )
    sim = simulation(settings, clock, directory)
    # 09:00 UTC is 01:00 in Los Angeles (PST): inside the quiet hours
    la = contact("bob", phone="+14155550101", sms_marketing=True, timezone="America/Los_Angeles")
    paris = contact("zoe", phone="+33612345678", sms_marketing=True)  # +33: Europe/Paris, 10:00 there

    sim.send(event("e1", "text", la))
    sim.send(event("e2", "text", paris))
    sim.run_until(START + timedelta(days=1))

    assert [(t, to) for t, to, _ in sent(sim)] == [
        ("2026-11-02 09:00", "+33612345678"),
        ("2026-11-02 16:00", "+14155550101"),
    ]  # 08:00 PST
    run = next(r for r in sim.store.runs.values() if r.trigger_event_id == "e1")
    assert run.journal[0]["reason"] == "sms_quiet_hours"


def test_a_flow_may_override_a_guardrail(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    override = "guardrails:\n  smart_sending: {email: 'off'}\n"
    directory = flows_dir(
        tmp_path,
        newsletter("news"),
        newsletter("sunset", overrides=override),
        guardrails="smart_sending: {email: 16h}\n",
    )
    sim = simulation(settings, clock, directory)

    sim.send(event("e1", "news"))
    sim.send(event("e2", "sunset"))

    assert [s for _, _, s in sent(sim)] == ["news", "sunset"]
