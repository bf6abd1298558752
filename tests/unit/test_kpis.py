"""Attribution and KPIs, against answers computed by hand."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from nudge.clocks import VirtualClock
from nudge.domain.kpis import MessageFacts, Order, attribute, report, two_proportion_z
from nudge.domain.model import MessageStatus, Run
from nudge.local.simulation import Simulation
from nudge.services.reporting import build_report
from nudge.settings import Settings
from tests.conftest import START
from tests.factories import checkout_started, order_placed
from tests.report_sample import run

DAY = timedelta(days=1)
SENT, SKIPPED = MessageStatus.SENT, MessageStatus.SKIPPED


def message(contact: str, step: str, status: MessageStatus = SENT, days: float = 0, **facts: object) -> MessageFacts:
    sent_at = START + days * DAY if status is SENT else None
    return MessageFacts(contact, f"{contact}#{step}", "cart", step, None, status, sent_at=sent_at, **facts)  # type: ignore[arg-type]


MESSAGES = [
    message("ann", "r1"),
    message("ann", "r2", days=2),
    message("bob", "r1", opened_at=START + 4 * DAY),  # opened four days after the send
    message("cy", "r1"),
    message("dee", "r1", SKIPPED),  # no consent: never touched her
]
ORDERS = [
    Order("ann", "o_ann", START + 3 * DAY, Decimal("100.00")),  # 1 day after r2, 3 after r1 -> r2
    Order("bob", "o_bob", START + 8 * DAY, Decimal("50.00")),  # 8 days after the send, 4 after the open -> r1
    Order("cy", "o_cy", START + 6 * DAY, Decimal("70.00")),  # 6 days after r1: outside 5 days -> nobody
    Order("dee", "o_dee", START + 1 * DAY, Decimal("30.00")),  # only a skipped message -> nobody
]


def test_last_touch_within_five_days_of_a_send_open_or_click() -> None:
    credited = attribute(MESSAGES, ORDERS)

    assert {order: m.step_id for order, m in credited.items()} == {"o_ann": "r2", "o_bob": "r1"}
    assert attribute(MESSAGES, ORDERS, window=timedelta(days=7)).keys() == {"o_ann", "o_bob", "o_cy"}


def test_the_receipt_an_order_triggers_takes_no_credit_for_it() -> None:
    receipt = message("ann", "thank_you", days=3)  # sent the moment ann's order came in

    credited = attribute([*MESSAGES, receipt], ORDERS)

    assert credited["o_ann"].step_id == "r2"


@pytest.mark.parametrize("seed", range(5))
def test_the_last_touch_found_by_bisection_is_the_one_each_touch_compared_would_find(seed: int) -> None:
    # Given random sends, opens and clicks to a few contacts, many at the very same moments, and their orders
    import random

    rng = random.Random(seed)
    hours = timedelta(hours=1)
    messages = [
        message(
            rng.choice("abc"),
            f"s{n}",
            rng.choice([SENT, SENT, SKIPPED]),
            days=rng.randrange(60) / 4,
            opened_at=START + rng.randrange(300) * hours if rng.random() < 0.3 else None,
            clicked_at=START + rng.randrange(300) * hours if rng.random() < 0.1 else None,
        )
        for n in range(300)
    ]
    orders = [
        Order(rng.choice("abcd"), f"o{n}", START + rng.randrange(400) * hours, Decimal("1.00")) for n in range(200)
    ]

    # When the last touch is found for each order
    credited = attribute(messages, orders)

    # Then it is the one comparing every touch finds: the latest strictly before the order within five days,
    # and of two at one moment the greater message id
    def by_hand(order: Order) -> str | None:
        eligible = [
            (moment, m.message_id)
            for m in messages
            if m.contact_id == order.contact_id
            for moment in m.touches()
            if moment < order.placed_at and order.placed_at - moment <= timedelta(days=5)
        ]
        return max(eligible)[1] if eligible else None

    expected = {o.order_id: found for o in orders if (found := by_hand(o)) is not None}
    assert {order_id: m.message_id for order_id, m in credited.items()} == expected
    assert len(expected) > 50


def test_flow_and_step_kpis_by_hand() -> None:
    runs = [run("ann", converted=True), run("bob", converted=True), run("cy"), run("dee")]

    result = report(runs, MESSAGES, ORDERS)

    [flow] = result.flows
    assert (flow.entered, flow.converted, flow.conversion_rate) == (4, 2, 0.5)
    assert (flow.sent, flow.skipped, flow.failed, len(flow.recipients)) == (4, 1, 0, 3)
    assert (flow.orders, flow.revenue, flow.aov, flow.revenue_per_recipient) == (
        2,
        Decimal("150.00"),
        Decimal("75.00"),
        Decimal("50.00"),
    )
    assert flow.clv is None  # no lifetime spend given
    with_spend = report(
        runs, MESSAGES, ORDERS, lifetime_spend={"ann": Decimal(300), "bob": Decimal(50), "cy": Decimal(70)}
    )
    # entrants ann, bob, cy, dee (no spend): 420 / 4; step r1 reached ann, bob, cy: 420 / 3; r2 only ann
    assert [row.clv for row in (*with_spend.flows, *with_spend.steps)] == [
        Decimal("105.00"),
        Decimal("140.00"),
        Decimal("300.00"),
    ]
    r1, r2 = result.steps
    assert (r1.step_id, r1.sent, r1.skipped, r1.orders, r1.revenue, r1.revenue_per_recipient) == (
        "r1",
        3,
        1,
        1,
        Decimal("50.00"),
        Decimal("16.67"),
    )
    assert (r2.step_id, r2.sent, r2.orders, r2.revenue, r2.aov) == ("r2", 1, 1, Decimal("100.00"), Decimal("100.00"))


def test_the_z_test_by_hand() -> None:
    # 30/200 against 18/200: pooled 0.12, se = sqrt(0.12 * 0.88 * (1/200 + 1/200)) = 0.032496, z = 0.06 / se.
    z, p = two_proportion_z(30, 200, 18, 200)
    assert (round(z, 3), round(p, 4)) == (1.846, 0.0648)
    assert two_proportion_z(0, 0, 1, 10) == (0.0, 1.0)


def split_runs(name: str, entered: int, converted: int) -> list[Run]:
    return [
        run(f"{name}{i}", "launch", converted=i < converted, variants={"subject_test": name}) for i in range(entered)
    ]


@pytest.mark.parametrize(
    ("a_converted", "winner", "p"),
    [(30, None, 0.0648), (40, "a", 0.0018)],
)
def test_a_split_declares_a_winner_only_at_95_percent(a_converted: int, winner: str | None, p: float) -> None:
    runs = split_runs("a", 200, a_converted) + split_runs("b", 200, 18) + split_runs("holdout", 100, 5)

    [verdict] = report(runs, [], []).splits

    assert (verdict.split_id, verdict.best, verdict.runner_up, verdict.winner) == ("subject_test", "a", "b", winner)
    assert round(verdict.p_value, 4) == p
    # treated (a_converted + 18) / 400 against 5 / 100 in the holdout
    assert verdict.holdout_lift == pytest.approx(((a_converted + 18) / 400 - 0.05) / 0.05)


def test_a_campaigns_rest_is_no_variant_of_its_test_but_counts_for_the_holdouts_lift() -> None:
    def group(name: str, entered: int, converted: int) -> list[Run]:
        return [
            run(f"{name}{i}", "campaign.news", converted=i < converted, variants={"ab": name}) for i in range(entered)
        ]

    runs = group("a", 100, 8) + group("b", 100, 12) + group("rest", 700, 84) + group("holdout", 100, 5)

    [verdict] = report(runs, [], []).splits

    assert (verdict.best, verdict.runner_up) == ("b", "a")  # not `rest`, the winner's send to everyone else
    # treated (8 + 12 + 84) / 900 against 5 / 100 in the holdout
    assert verdict.holdout_lift == pytest.approx((104 / 900 - 0.05) / 0.05)
    # a holdout without a test: one treated group, the lift only
    [only] = report(group("rest", 300, 30) + group("rest_b", 300, 30) + group("holdout", 60, 3), [], []).splits
    assert (only.runner_up, only.winner, only.holdout_lift) == (None, None, pytest.approx((60 / 600 - 0.05) / 0.05))


def test_the_in_memory_store_feeds_the_report(settings: Settings, clock: VirtualClock) -> None:
    sim = Simulation(settings, clock)
    sim.send(checkout_started("e1", "chk_1"))
    sim.run_until(START + timedelta(hours=2))  # reminder_1 goes out at +1 h
    sim.send(order_placed("e2", "chk_1"))

    found = build_report(sim.store)

    [credit] = [r for r in found.steps if r.orders]
    assert (credit.flow_id, credit.step_id, credit.revenue) == ("abandoned_cart", "reminder_1", Decimal("42.00"))
    assert {r.flow_id: r.clv for r in found.flows}["abandoned_cart"] == Decimal("42.00")  # bob's one order


def test_feedback_on_message_records_is_counted_per_step() -> None:
    from nudge.domain.model import Category, Channel, Message

    record = Message(
        contact_id="eve",
        message_id="eve#r1",
        run_id="r",
        flow_id="cart",
        step_id="r1",
        channel=Channel.EMAIL,
        category=Category.MARKETING,
        status=SENT,
        created_at=START,
        sent_at=START,
        feedback={"delivery": START + timedelta(minutes=1), "open": START + DAY, "complaint": START + 2 * DAY},
    )
    facts = [
        MessageFacts.of(record),
        message("fay", "r1", delivered_at=START, opened_at=START, clicked_at=START),
        message("gus", "r1", bounced=True),
        message("hal", "r1", SKIPPED),
    ]

    [step] = report([], facts, []).steps

    assert MessageFacts.of(record).opened_at == START + DAY
    counts = (step.sent, step.skipped, step.delivered, step.opened, step.clicked, step.bounced, step.complained)
    assert counts == (3, 1, 2, 2, 1, 1, 1)


def test_the_report_carries_the_daily_jobs_send_time_curve(settings: Settings, clock: VirtualClock) -> None:
    from nudge.domain.send_time import CURVE_DOCUMENT, ShopCurve

    sim = Simulation(settings, clock)
    assert build_report(sim.store).send_time is None  # no daily job yet
    curve = ShopCurve([float(h == 19) for h in range(24)], 3)
    sim.store.put_document(CURVE_DOCUMENT, curve.to_record(), clock.now())

    assert build_report(sim.store).send_time == curve
