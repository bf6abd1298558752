"""The flow library, one story per flow, on a virtual clock: exactly who gets what, and when.

All the library's flows are deployed together, as a shop would run them, so guardrails and flows interact
the way they would in production; each test then reads what its own flow sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from nudge.clocks import VirtualClock
from nudge.domain.engine import ProfileUpdate
from nudge.domain.model import Channel, MessageStatus
from nudge.domain.validation import validate
from nudge.local.simulation import Simulation
from nudge.services.inputs import ContactIn, EventIn
from nudge.settings import Settings
from tests.conftest import START
from tests.factories import contact

ORDER = {
    "order_id": "o1",
    "order_number": "#1001",
    "currency": "USD",
    "total": 42.0,
    "lines": [{"title": "Linen apron", "quantity": 1, "price": 42.0, "product_id": "p_apron"}],
}


@pytest.fixture
def sim(settings: Settings, clock: VirtualClock) -> Simulation:
    return Simulation(settings, clock)


def at(offset: timedelta) -> datetime:
    return START + offset


def send(sim: Simulation, when: timedelta, event_id: str, type_: str, who: dict[str, Any], **properties: Any) -> None:
    sim.run_until(at(when))
    sim.container.ingest.ingest(
        validate(EventIn, {"id": event_id, "type": type_, "contact": who, "properties": properties}).to_event(
            sim.clock.now()
        )
    )


def outbox(sim: Simulation, flow_id: str, until: timedelta) -> list[tuple[str, str, str, str]]:
    """(local-free UTC time, recipient, step, subject or SMS text) the flow sent up to START + until."""
    sim.run_until(at(until))
    rows = [
        (m.sent_at.strftime("%a %m-%d %H:%M"), m.recipient or "", m.step_id, m.subject or m.body_preview or "")
        for m in sim.store.messages.values()
        if m.flow_id == flow_id
        and m.status is MessageStatus.SENT
        and m.sent_at is not None
        and m.channel is not Channel.WEBHOOK
    ]
    return sorted(rows, key=lambda r: (datetime.strptime(r[0][4:], "%m-%d %H:%M"), r[1], r[2]))


def skipped(sim: Simulation, flow_id: str) -> list[tuple[str, str | None]]:
    return sorted(
        (m.step_id, m.reason)
        for m in sim.store.messages.values()
        if m.flow_id == flow_id and m.status is MessageStatus.SKIPPED
    )


def test_welcome_series_with_incentive_ends_at_the_first_order(sim: Simulation) -> None:
    alice, bea = contact("alice"), contact("bea")
    send(sim, timedelta(0), "e1", "subscribed", alice)
    send(sim, timedelta(0), "e2", "subscribed", bea)
    send(sim, timedelta(days=1), "e3", "order_placed", bea, **ORDER)  # Bea buys on day 1
    send(sim, timedelta(days=30), "e4", "subscribed", alice)  # subscribing again starts nothing

    assert outbox(sim, "welcome", timedelta(days=40)) == [
        ("Mon 11-02 09:00", "alice@example.com", "welcome_email", "Welcome, Alice!"),
        ("Mon 11-02 09:00", "bea@example.com", "welcome_email", "Welcome, Bea!"),
        ("Wed 11-04 09:00", "alice@example.com", "incentive_email", "Alice, here is 10% off your first order"),
        ("Sat 11-07 09:00", "alice@example.com", "story_email", "Why we started"),
    ]


def test_browse_abandonment_once_a_week_unless_they_check_out(sim: Simulation) -> None:
    dan, eve = contact("dan"), contact("eve")
    viewed = {
        "product_id": "p1",
        "product_title": "Linen apron",
        "product_url": "https://shop.example/p1",
        "price": 42,
        "currency": "USD",
    }
    send(sim, timedelta(0), "e1", "product_viewed", dan, **viewed)
    send(sim, timedelta(hours=1), "e2", "product_viewed", eve, **viewed)
    send(sim, timedelta(hours=2), "e3", "checkout_started", eve, checkout_id="c1")  # no recovery_url: no cart flow
    send(sim, timedelta(days=3), "e4", "product_viewed", dan, **viewed)  # within the week: ignored
    send(sim, timedelta(days=8), "e5", "product_viewed", dan, **viewed)

    assert outbox(sim, "browse_abandonment", timedelta(days=10)) == [
        ("Mon 11-02 11:00", "dan@example.com", "reminder", "Still thinking about the Linen apron?"),
        ("Tue 11-10 11:00", "dan@example.com", "reminder", "Still thinking about the Linen apron?"),
    ]


def test_abandoned_cart_email_and_sms_until_that_cart_is_ordered(sim: Simulation) -> None:
    bob = contact("bob", phone="+14155550101", sms_marketing=True)
    carol = contact("carol")
    cart = {"recovery_url": "https://shop.example/r", "currency": "USD", "total": 42.0, "lines": ORDER["lines"]}
    send(sim, timedelta(0), "e1", "checkout_started", bob, checkout_id="c_bob", **cart)
    send(sim, timedelta(0), "e2", "checkout_started", carol, checkout_id="c_carol", **cart)
    send(sim, timedelta(hours=3), "e3", "order_placed", carol, checkout_id="c_carol", **ORDER)

    assert outbox(sim, "abandoned_cart", timedelta(days=7)) == [
        ("Mon 11-02 10:00", "bob@example.com", "reminder_1", "You left something in your cart"),
        ("Mon 11-02 10:00", "carol@example.com", "reminder_1", "You left something in your cart"),
        ("Tue 11-03 09:00", "bob@example.com", "reminder_2", "Bob, your cart is about to expire"),
        # +1 415 is San Francisco: 09:00 UTC is 01:00 there, so the SMS waits for 08:00 local (16:00 UTC).
        (
            "Tue 11-03 16:00",
            "+14155550101",
            "reminder_2_sms",
            "Linen & Clay: Bob, your cart is still waiting: https://shop.example/r Reply STOP to opt out",
        ),
        ("Thu 11-05 16:00", "bob@example.com", "reminder_3", "Last call: your cart is still waiting"),
    ]
    carol_run = next(
        r for r in sim.store.runs.values() if r.flow_id == "abandoned_cart" and "c_carol" in str(r.trigger)
    )
    assert carol_run.conversion == {"event_id": "e3", "type": "order_placed", "value": 42.0}


def test_post_purchase_thanks_at_once_and_asks_for_a_review_in_two_weeks(sim: Simulation) -> None:
    gus, hal = contact("gus", email_marketing=False), contact("hal")
    send(sim, timedelta(0), "e1", "order_placed", gus, **ORDER)
    send(sim, timedelta(0), "e2", "order_placed", hal, **{**ORDER, "order_id": "o2", "order_number": "#1002"})
    send(sim, timedelta(days=3), "e3", "refund_created", hal, order_id="o2")

    assert outbox(sim, "post_purchase", timedelta(days=20)) == [
        ("Mon 11-02 09:00", "gus@example.com", "thank_you", "Thank you for your order #1001"),
        ("Mon 11-02 09:00", "hal@example.com", "thank_you", "Thank you for your order #1002"),
    ]
    # Gus gets the receipt without marketing consent, but not the review request; Hal was refunded.
    assert skipped(sim, "post_purchase") == [("review_request", "no_email_marketing_consent")]


def test_replenishment_three_days_before_the_shortest_interval(sim: Simulation) -> None:
    ivy = contact("ivy")
    lines = [
        {"title": "Coffee beans", "quantity": 1, "price": 18, "replenish_days": 30},
        {"title": "Paper filters", "quantity": 1, "price": 6, "replenish_days": 60},
        {"title": "Mug", "quantity": 1, "price": 20},
    ]
    send(sim, timedelta(0), "e1", "order_placed", ivy, order_id="o1", order_number="#1", lines=lines)
    send(sim, timedelta(0), "e2", "order_placed", contact("jon"), **ORDER)  # nothing replenishable

    assert outbox(sim, "replenishment", timedelta(days=40)) == [
        ("Sun 11-29 09:00", "ivy@example.com", "reminder", "Running low on Coffee beans?"),  # 30 - 3 days
    ]


def test_review_then_referral_branching_on_whether_they_reviewed(sim: Simulation) -> None:
    kim, lee = contact("kim"), contact("lee")
    send(sim, timedelta(0), "e1", "order_fulfilled", kim, **ORDER)
    send(sim, timedelta(0), "e2", "order_fulfilled", lee, **{**ORDER, "order_id": "o2"})
    sim.run_until(at(timedelta(days=8)))
    lee_id = validate(ContactIn, {"email": "lee@example.com"}).to_patch().contact_id
    sim.store.update_contact(lee_id, ProfileUpdate(lee_id, {}, add_tags=("reviewer",)), sim.clock.now())

    assert outbox(sim, "review_referral", timedelta(days=20)) == [
        ("Mon 11-09 09:00", "kim@example.com", "review_request", "A minute to review your order #1001?"),
        ("Mon 11-09 09:00", "lee@example.com", "review_request", "A minute to review your order #1001?"),
        ("Mon 11-16 09:00", "kim@example.com", "referral", "Give $10, get $10"),
        ("Mon 11-16 09:00", "lee@example.com", "thanks_referral", "Thanks for your review! Give $10, get $10"),
    ]


def test_back_in_stock_email_and_sms_then_a_reminder_unless_bought(sim: Simulation) -> None:
    mia = contact("mia", phone="+447911123456", sms_marketing=True)  # +44: Europe/London
    ned = contact("ned")
    item = {"product_id": "p_apron", "product_title": "Linen apron", "product_url": "https://shop.example/apron"}
    send(sim, timedelta(hours=12), "e1", "back_in_stock", mia, **item)  # 21:00 in London: SMS waits
    send(sim, timedelta(hours=12), "e2", "back_in_stock", ned, **item)
    send(sim, timedelta(hours=14), "e3", "order_placed", ned, **ORDER)

    assert outbox(sim, "back_in_stock", timedelta(days=3)) == [
        ("Mon 11-02 21:00", "mia@example.com", "notice", "Linen apron is back"),
        ("Mon 11-02 21:00", "ned@example.com", "notice", "Linen apron is back"),
        (
            "Tue 11-03 08:00",
            "+447911123456",
            "notice_sms",
            "Linen & Clay: Linen apron is back in stock: https://shop.example/apron Reply STOP to opt out",
        ),
        # the day's wait counts from the deferred SMS, keeping the messages a day apart
        ("Wed 11-04 08:00", "mia@example.com", "reminder", "Linen apron is selling fast"),
    ]


def test_win_back_escalates_after_sixty_days_and_stops_at_an_order(sim: Simulation) -> None:
    oli, pam = contact("oli"), contact("pam")
    send(sim, timedelta(0), "e1", "order_placed", oli, **ORDER)
    send(sim, timedelta(0), "e2", "order_placed", pam, **{**ORDER, "order_id": "o2"})
    send(sim, timedelta(days=65), "e3", "order_placed", pam, **{**ORDER, "order_id": "o3"})  # comes back

    rows = outbox(sim, "win_back", timedelta(days=100))
    assert rows == [
        ("Fri 01-01 09:00", "oli@example.com", "we_miss_you", "We miss you, Oli"),
        ("Fri 01-01 09:00", "pam@example.com", "we_miss_you", "We miss you, Pam"),
        ("Fri 01-15 09:00", "oli@example.com", "offer_10", "10% off to welcome you back"),
        ("Fri 01-29 09:00", "oli@example.com", "offer_20", "20% off, our best offer"),
    ]
    assert "lapsed" in sim.store.contacts[validate(ContactIn, oli).to_patch().contact_id].tags


def test_vip_is_tagged_announced_to_the_loyalty_system_and_welcomed_once(sim: Simulation) -> None:
    quinn = contact("quinn")
    send(sim, timedelta(0), "e1", "order_placed", quinn, **ORDER)
    send(sim, timedelta(days=1), "e2", "order_placed", quinn, **{**ORDER, "order_id": "o2"})
    send(sim, timedelta(days=3), "e3", "order_placed", quinn, **{**ORDER, "order_id": "o3"})  # the third: VIP
    send(sim, timedelta(days=9), "e4", "order_placed", quinn, **{**ORDER, "order_id": "o4"})

    assert outbox(sim, "vip_loyalty", timedelta(days=10)) == [
        ("Thu 11-05 09:00", "quinn@example.com", "vip_email", "You're one of our VIPs now, Quinn"),
    ]
    stored = sim.store.contacts[validate(ContactIn, quinn).to_patch().contact_id]
    assert "vip" in stored.tags and stored.properties["loyalty_tier"] == "vip"
    [(url, body, _)] = sim.container.webhook_sender.posts  # type: ignore[attr-defined]
    assert url == "https://loyalty.example/hooks/vip" and b'"tier":"vip"' in body


def test_birthday_gift_every_year_at_nine_local(settings: Settings, clock: VirtualClock) -> None:
    rae = contact("rae", timezone="America/Los_Angeles", properties={"birthday": "11-20"})
    seen: list[list[str]] = []
    # What the metrics count: the ingest service's observer, passed when the container is made.
    sim = Simulation(settings, clock, observer=lambda outcome: seen.append(outcome.started))
    sim.container.ingest.identify(validate(ContactIn, rae).to_patch())
    assert seen == [["birthday"]]  # the run is lined up (and counted as started) at once; it waits for the day

    assert outbox(sim, "birthday", timedelta(days=400)) == [
        ("Fri 11-20 17:00", "rae@example.com", "gift", "Happy birthday, Rae! A gift inside"),  # 09:00 PST
        ("Sat 11-20 17:00", "rae@example.com", "gift", "Happy birthday, Rae! A gift inside"),
    ]


def test_course_funnel_leads_to_enrollment_which_starts_the_weekly_drip(sim: Simulation) -> None:
    sam = contact("sam", timezone="Europe/Berlin")
    course = {"course_title": "Sourdough 101"}
    send(sim, timedelta(0), "e1", "lead_magnet_downloaded", sam, **course)
    send(sim, timedelta(days=3), "e2", "course_enrolled", sam, **course)

    assert outbox(sim, "course_enrollment_funnel", timedelta(days=30)) == [
        ("Mon 11-02 09:00", "sam@example.com", "lesson_1", "Your free lesson: Sourdough 101"),
        ("Wed 11-04 09:00", "sam@example.com", "lesson_2", "Lesson 2: the one mistake everyone makes"),
    ]
    assert outbox(sim, "course_drip", timedelta(days=30)) == [
        ("Thu 11-05 09:00", "sam@example.com", "course_welcome", "Welcome to Sourdough 101"),
        ("Mon 11-09 07:00", "sam@example.com", "module_1", "Module 1: foundations"),  # 08:00 in Berlin
        ("Mon 11-16 07:00", "sam@example.com", "module_2", "Module 2: practice"),
        ("Mon 11-23 07:00", "sam@example.com", "module_3", "Module 3: your project"),
    ]


def test_client_onboarding_reminds_only_without_intake_and_books_kickoff_on_a_weekday(sim: Simulation) -> None:
    tia = contact("tia", email_marketing=False)
    uma = contact("uma", properties={"intake_completed": True})
    send(sim, timedelta(days=4), "e1", "client_signed", tia)  # Friday
    send(sim, timedelta(days=4), "e2", "client_signed", uma)

    assert outbox(sim, "client_onboarding", timedelta(days=30)) == [
        ("Fri 11-06 09:00", "tia@example.com", "welcome_packet", "Welcome aboard, Tia: your welcome packet"),
        ("Fri 11-06 09:00", "uma@example.com", "welcome_packet", "Welcome aboard, Uma: your welcome packet"),
        ("Sat 11-07 09:00", "tia@example.com", "intake_reminder", "Two minutes: your intake form"),
        ("Mon 11-09 10:00", "tia@example.com", "kickoff", "Let's book your kickoff call"),
        ("Mon 11-09 10:00", "uma@example.com", "kickoff", "Let's book your kickoff call"),
        ("Mon 11-23 10:00", "tia@example.com", "check_in", "Two weeks in: how is it going?"),
        ("Mon 11-23 10:00", "uma@example.com", "check_in", "Two weeks in: how is it going?"),
    ]


def test_product_launch_teaser_launch_and_last_chance_around_the_date(sim: Simulation) -> None:
    vic = contact("vic", phone="+33612345678", sms_marketing=True)  # Paris
    wes = contact("wes", timezone="Europe/Paris")
    launch = {"launch_date": "2026-11-20", "product_title": "Kettle 2"}
    send(sim, timedelta(0), "e1", "launch_waitlist_joined", vic, **launch)
    send(sim, timedelta(days=15), "e2", "launch_waitlist_joined", wes, **launch)  # after the teaser date

    assert outbox(sim, "product_launch", timedelta(days=30)) == [
        ("Fri 11-13 09:00", "vic@example.com", "teaser", "One week to go: Kettle 2"),
        (
            "Fri 11-20 09:00",
            "+33612345678",
            "launch_sms",
            "Linen & Clay: Kettle 2 is live. Waitlist pricing: https://shop.example/collections/new"
            " Reply STOP to opt out",
        ),
        ("Fri 11-20 09:00", "vic@example.com", "launch", "Kettle 2 is here"),
        ("Fri 11-20 09:00", "wes@example.com", "launch", "Kettle 2 is here"),
        ("Mon 11-23 17:00", "vic@example.com", "last_chance", "Last chance: launch pricing ends tonight"),
        ("Mon 11-23 17:00", "wes@example.com", "last_chance", "Last chance: launch pricing ends tonight"),
    ]


def test_sunset_asks_the_silent_then_unsubscribes_them(sim: Simulation) -> None:
    xia, yan = contact("xia"), contact("yan")
    send(sim, timedelta(0), "e1", "subscribed", xia)
    send(sim, timedelta(0), "e2", "subscribed", yan)
    send(sim, timedelta(days=60), "e3", "email_opened", yan)  # Yan reads: the clock restarts

    assert outbox(sim, "sunset", timedelta(days=120)) == [
        ("Sun 01-31 09:00", "xia@example.com", "still_interested", "Should we stop writing, Xia?"),
    ]
    xia_stored = sim.store.contacts[validate(ContactIn, xia).to_patch().contact_id]
    yan_stored = sim.store.contacts[validate(ContactIn, yan).to_patch().contact_id]
    assert (xia_stored.email_marketing, "sunset" in xia_stored.tags) == (False, True)
    assert (yan_stored.email_marketing, "sunset" in yan_stored.tags) == (True, False)


def test_missed_call_is_texted_back_within_a_minute_and_not_twice_the_same_day(sim: Simulation) -> None:
    caller = {"phone": "+14155550101"}  # a stranger by number, as a call brings them
    missed = {"source": "twilio", "line": "+14155550199"}
    send(sim, timedelta(hours=1), "call_missed:twilio:CA1", "call_missed", caller, call_id="CA1", **missed)
    send(sim, timedelta(hours=7), "call_missed:twilio:CA2", "call_missed", caller, call_id="CA2", **missed)
    send(sim, timedelta(days=1, hours=2), "call_missed:twilio:CA3", "call_missed", caller, call_id="CA3", **missed)

    # The first call at 10:00 is answered by text the same minute; the second, six hours later, is not;
    # the next day's call (25 hours after the first) is.
    text = "Linen & Clay: sorry we missed your call! How can we help? Reply here and we will get back to you."
    assert outbox(sim, "missed_call", timedelta(days=2)) == [
        ("Mon 11-02 10:00", "+14155550101", "text_back", text),
        ("Tue 11-03 11:00", "+14155550101", "text_back", text),
    ]
