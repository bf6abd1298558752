"""Aggregates kept on every event: orders, spend, AOV, products, engagement; counted once per event."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from nudge.clocks import VirtualClock
from nudge.domain.aggregates import Aggregates, Tally, from_record, to_record, updated
from nudge.local.simulation import Simulation
from nudge.settings import Settings
from tests.conftest import START
from tests.factories import contact

DAY = timedelta(days=1)


def order(order_id: str, total: float, *lines: tuple[str, str]) -> dict[str, object]:
    return {
        "order_id": order_id,
        "total": total,
        "lines": [{"product_id": product, "category": category, "quantity": 1} for product, category in lines],
    }


def test_orders_add_up_to_count_spend_aov_and_products() -> None:
    a = updated(Aggregates(), "e1", "order_placed", order("o1", 40.0, ("mug", "kitchen")), START)
    a = updated(a, "e2", "order_placed", order("o2", 25.5, ("apron", "textile"), ("mug", "kitchen")), START + DAY)

    assert a.orders_count == 2
    assert a.total_spent == Decimal("65.50")
    assert a.aov == Decimal("32.75")
    assert (a.first_order_at, a.last_order_at, a.last_activity_at) == (START, START + DAY, START + DAY)
    assert a.products == ("apron", "mug")  # distinct, most recently bought last
    assert a.categories == ("textile", "kitchen")


def test_a_reprocessed_event_or_a_resent_order_counts_once() -> None:
    once = updated(Aggregates(), "e1", "order_placed", order("o1", 40.0), START)

    same_event = updated(once, "e1", "order_placed", order("o1", 40.0), START)
    same_order_new_id = updated(once, "e1-retry", "order_placed", order("o1", 40.0), START)

    assert same_event == once
    assert (same_order_new_id.orders_count, same_order_new_id.total_spent) == (1, Decimal("40.00"))


def test_an_order_or_refund_counts_once_for_good_past_the_recent_ones_kept() -> None:
    # Given 40 orders and a refund: more than the 24 recent orders and 20 event ids the aggregates keep
    a = Aggregates()
    for n in range(40):
        a = updated(a, f"e{n}", "order_placed", order(f"o{n}", 10.0), START + n * DAY)
    a = updated(a, "r1", "refund_created", {"order_id": "o1", "amount": 5}, START + 41 * DAY)
    stored = from_record(to_record(a))

    # When the first order and the refund come again (a re-import after the events table forgot them)
    again = updated(stored, "e0", "order_placed", order("o0", 10.0), START)
    again = updated(again, "r1", "refund_created", {"order_id": "o1", "amount": 5}, START + 41 * DAY)

    # Then nothing moves, and the record stays compact (under 11 characters an order)
    assert (again.orders_count, again.total_spent) == (40, Decimal("395.00"))
    assert len(to_record(a)["counted"]) == 440  # 41 digests of 8 bytes, base64: 4 characters per 3 bytes


def test_refunds_and_cancellations_take_spend_back() -> None:
    a = updated(Aggregates(), "e1", "order_placed", order("o1", 40.0), START)
    a = updated(a, "e2", "order_placed", order("o2", 60.0), START + DAY)

    refunded = updated(a, "e3", "refund_created", {"order_id": "o1", "amount": 15}, START + 2 * DAY)
    cancelled = updated(refunded, "e4", "order_cancelled", {"order_id": "o2"}, START + 3 * DAY)

    assert (refunded.orders_count, refunded.total_spent) == (2, Decimal("85.00"))
    assert (cancelled.orders_count, cancelled.total_spent, cancelled.last_order_at) == (1, Decimal("25.00"), START)


def test_engagement_and_activity_keep_the_latest_moment() -> None:
    a = updated(Aggregates(), "e1", "email_opened", {}, START + DAY)
    a = updated(a, "e2", "email_clicked", {}, START + 2 * DAY)
    a = updated(a, "e3", "email_opened", {}, START)  # arrives late: older than what we know

    assert (a.last_open_at, a.last_click_at, a.last_activity_at) == (START + DAY, START + 2 * DAY, START + 2 * DAY)
    assert a.orders_count == 0 and a.aov is None
    assert a.last_event_at == {"email_opened": START + DAY, "email_clicked": START + 2 * DAY}


def test_the_persisted_record_round_trips() -> None:
    a = updated(Aggregates(), "e1", "order_placed", order("o1", 19.99, ("mug", "kitchen")), START)
    a = updated(a, "e2", "email_clicked", {}, START + DAY)

    assert from_record(to_record(a)) == a
    assert from_record(None) == Aggregates()


def test_ingest_keeps_aggregates_on_the_contact_and_templates_see_them(settings: Settings, clock: VirtualClock) -> None:
    sim = Simulation(settings, clock)
    who = contact("dora")

    sim.send({"id": "e1", "type": "order_placed", "contact": who, "properties": order("o1", 30.0, ("mug", "kitchen"))})
    clock.advance(DAY)
    sim.send(
        {"id": "e2", "type": "order_placed", "contact": who, "properties": order("o2", 50.0, ("kettle", "kitchen"))}
    )
    sim.send({"id": "e2", "type": "order_placed", "contact": who, "properties": order("o2", 50.0)})  # duplicate

    stored = next(iter(sim.store.contacts.values()))
    view = stored.template_view()["aggregates"]
    assert (view["orders_count"], view["total_spent"], view["aov"]) == (2, Decimal("80.00"), Decimal("40.00"))
    assert view["products"] == ["mug", "kettle"]
    assert view["last_order_at"] == START + DAY


def test_two_records_of_one_person_combine_counting_a_shared_order_once() -> None:
    from nudge.domain.aggregates import combined

    kept = updated(Aggregates(), "k1", "order_placed", order("o1", 10.0, ("mug", "kitchen")), START + 5 * DAY)
    kept = updated(kept, "k2", "order_placed", order("o2", 20.0, ("kettle", "kitchen")), START + 9 * DAY)
    absorbed = updated(Aggregates(), "a1", "product_viewed", {}, START + 12 * DAY)
    absorbed = updated(absorbed, "a2", "order_placed", order("o2", 20.0, ("kettle", "kitchen")), START + 9 * DAY)
    absorbed = updated(absorbed, "a3", "order_placed", order("o3", 30.0, ("apron", "textile")), START + 2 * DAY)

    both = combined(kept, absorbed)

    # o1 + o2 + o3: o2 is in both records and counts once
    assert (both.orders_count, both.total_spent, both.aov) == (3, Decimal("60.00"), Decimal("20.00"))
    assert (both.first_order_at, both.last_order_at) == (START + 2 * DAY, START + 9 * DAY)
    assert [o.order_id for o in both.recent_orders] == ["o3", "o1", "o2"]
    assert both.products == ("apron", "mug", "kettle")  # the kept record's stay the most recent
    assert both.last_event_at["product_viewed"] == START + 12 * DAY == both.last_activity_at
    assert combined(kept, Aggregates()) == kept


def test_a_tally_of_many_events_is_the_events_updated_one_at_a_time() -> None:
    # Given a long, messy history: more products, categories, orders and event types than the windows keep,
    # repeated ids, orders out of time order and in the same second, cancellations and refunds of kept and
    # forgotten orders, opens and clicks
    rng = random.Random(15)
    events = []
    for n in range(400):
        at = START + timedelta(hours=rng.randrange(0, 5000) if n % 5 else n)
        roll, order_id = rng.random(), f"o{rng.randrange(0, n + 1)}"
        if roll < 0.55:
            lines = [(f"p{rng.randrange(150)}", f"c{rng.randrange(70)}") for _ in range(rng.randint(0, 3))]
            events.append((f"e{n}", "order_placed", order(f"o{n}", rng.randint(1, 300) / 4, *lines), at))
        elif roll < 0.65:
            events.append((f"x{n}", "order_cancelled", {"order_id": order_id}, at))
        elif roll < 0.75:
            events.append((f"r{n}", "refund_created", {"order_id": order_id, "amount": rng.randint(1, 90)}, at))
        elif roll < 0.85:
            events.append((f"m{n}", rng.choice(("email_opened", "email_clicked")), {}, at))
        elif roll < 0.92:
            events.append((f"t{n}", f"custom_{rng.randrange(90)}", {}, at))
        else:
            events.append(events[rng.randrange(len(events))] if events else (f"z{n}", "order_placed", {}, at))
    start = from_record(to_record(updated(Aggregates(), "e-first", "order_placed", order("first", 5.0), START)))

    one_by_one = start
    for event in events:
        one_by_one = updated(one_by_one, *event)
    tally = Tally(start)
    counted = [tally.add(*event) for event in events]

    # Then folding them through one tally gives the same aggregates, and says which events counted
    assert to_record(tally.frozen()) == to_record(one_by_one)
    assert tally.frozen() == one_by_one
    assert counted.count(False) > 10 and len(one_by_one.products) == 100 and len(one_by_one.event_ids) == 20
