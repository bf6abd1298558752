"""Lifecycle stages, RFM and the predicted next order, on a virtual clock."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from nudge.clocks import VirtualClock
from nudge.domain.aggregates import Aggregates, updated
from nudge.domain.lifecycle import (
    Rfm,
    RfmCuts,
    RfmInputs,
    Stage,
    cuts_of,
    predicted_next_order,
    rfm_cuts,
    rfm_score,
    score,
    stage,
    stage_changes_at,
)
from nudge.settings import Settings
from tests.conftest import START
from tests.factories import contact
from tests.flowkit import EMAIL, flows_dir, sent, simulation

DAY = timedelta(days=1)


def history(*orders: tuple[int, float]) -> Aggregates:
    """Aggregates after orders placed `day` days after START, for `total` each."""
    a = Aggregates()
    for index, (day, total) in enumerate(orders):
        a = updated(a, f"e{index}", "order_placed", {"order_id": f"o{index}", "total": total}, START + day * DAY)
    return a


def customer(last_day: int, orders: int, spent: float) -> Aggregates:
    """`orders` orders on consecutive days ending `last_day` days after START, `spent` in all."""
    return history(*[(last_day - k, spent / orders) for k in reversed(range(orders))])


@pytest.mark.parametrize(
    ("orders", "days_later", "expected"),
    [
        ((), 0, Stage.SUBSCRIBER),
        ((), 400, Stage.SUBSCRIBER),
        (((0, 40.0),), 1, Stage.FIRST_TIME_BUYER),
        (((0, 40.0), (10, 40.0)), 11, Stage.REPEAT_BUYER),
        (((0, 40.0), (10, 40.0), (20, 40.0)), 21, Stage.VIP),  # third order
        (((0, 520.0),), 1, Stage.VIP),  # $500 spent at once
        (((0, 40.0),), 59, Stage.FIRST_TIME_BUYER),  # a day before at risk
        (((0, 40.0),), 60, Stage.AT_RISK),
        (((0, 40.0), (10, 40.0), (20, 40.0)), 80, Stage.AT_RISK),  # a VIP gone quiet is at risk
        (((0, 40.0),), 89, Stage.AT_RISK),
        (((0, 40.0),), 90, Stage.LAPSED),
        (((0, 520.0),), 200, Stage.LAPSED),
    ],
)
def test_each_stage_on_the_virtual_clock(
    orders: tuple[tuple[int, float], ...], days_later: int, expected: Stage
) -> None:
    a = history(*orders)
    now = START + days_later * DAY
    assert stage(a, now) is expected


def test_the_stage_changes_with_time_at_60_then_90_quiet_days_then_never() -> None:
    a = history((0, 40.0))

    assert stage_changes_at(a, START) == START + 60 * DAY
    assert stage_changes_at(a, START + 60 * DAY) == START + 90 * DAY
    assert stage_changes_at(a, START + 90 * DAY) is None
    assert stage_changes_at(Aggregates(), START) is None


def test_the_next_order_is_predicted_from_the_median_gap() -> None:
    # Gaps of 10, 30 and 20 days: the median is 20, so 20 days after the last order (day 60).
    assert predicted_next_order(history((0, 10.0), (10, 10.0), (40, 10.0), (60, 10.0))) == START + 80 * DAY
    assert predicted_next_order(history((0, 10.0))) is None
    assert predicted_next_order(history((0, 10.0), (0, 10.0))) is None  # same day: no gap to go by
    assert predicted_next_order(history((0, 10.0), (0, 10.0), (30, 10.0))) == START + 60 * DAY
    # An even number of gaps (10 and 25 days): their mean, 17.5 days
    assert predicted_next_order(history((0, 10.0), (10, 10.0), (35, 10.0))) == START + 52.5 * DAY


def test_the_median_gap_is_statistics_median_of_the_gaps() -> None:
    # Given orders at uneven hours over a year, gaps odd and even in number, some under a day
    days = [0.0, 0.3, 3.25, 9.5, 9.9, 30.125, 31.0, 77.75, 120.5, 121.0, 200.0625, 365.0]
    for count in range(2, len(days) + 1):
        a = Aggregates()
        for index, day in enumerate(days[:count]):
            a = updated(a, f"e{index}", "order_placed", {"order_id": f"o{index}", "total": 1.0}, START + day * DAY)
        times = [order.placed_at for order in a.recent_orders]
        gaps = [(b - a_).total_seconds() for a_, b in zip(times, times[1:], strict=False) if b - a_ >= DAY]
        expected = times[-1] + timedelta(seconds=statistics.median(gaps)) if gaps else None
        # Then the prediction is the last order plus statistics.median of the gaps of a day or more
        assert predicted_next_order(a) == expected, count


def test_rfm_ties_stay_together_and_every_score_occurs_when_half_the_base_bought_once() -> None:
    # Given 100 buyers: 50 bought once, 20 twice, 12 three times, 10 four times, 8 five to twelve times
    orders = [1.0] * 50 + [2.0] * 20 + [3.0] * 12 + [4.0] * 10 + [float(n) for n in (5, 5, 6, 7, 8, 9, 10, 12)]
    spent = [float(n) for n in range(100)]
    recency = [float(n % 37) for n in range(100)]

    cuts = cuts_of(recency, orders, spent)

    # Then one-time buyers are F=1, two orders F=2, ... (nearest-rank percentiles gave (1, 1, 2, 3): no F=2)
    assert cuts is not None and cuts.frequency == (1.0, 2.0, 3.0, 4.0)
    scores = [score(RfmInputs(r, o, m), cuts) for r, o, m in zip(recency, orders, spent, strict=True)]
    assert Counter(s.frequency for s in scores) == {1: 50, 2: 20, 3: 12, 4: 10, 5: 8}
    assert {s.recency for s in scores} == {s.monetary for s in scores} == {1, 2, 3, 4, 5}
    assert Counter(s.monetary for s in scores) == {1: 20, 2: 20, 3: 20, 4: 20, 5: 20}  # no ties: exact fifths


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0] * 10, (1.0, 1.0, 1.0, 1.0)),  # all alike: everyone scores 1
        ([1.0] * 6 + [2.0] * 4, (1.0, 1.0, 1.0, 2.0)),  # under five values: nearest-rank, scores 1 and 5
        ([1.0] * 90 + [2.0, 3.0, 4.0, 5.0, 6.0] * 2, (1.0, 2.0, 3.0, 4.0)),  # a huge tie still leaves 2..5
        ([float(n) for n in range(1, 11)], (2.0, 4.0, 6.0, 8.0)),  # no ties: the quintiles
    ],
)
def test_rfm_cut_rules(values: list[float], expected: tuple[float, ...]) -> None:
    cuts = cuts_of(values, values, values)
    assert cuts is not None and cuts.frequency == expected


def test_rfm_scores_are_quintiles_of_the_customer_base() -> None:
    now = START + 100 * DAY
    # Last orders 10, 20, 30, 40, 50 days before now; 5, 4, 3, 2, 1 orders; $500, $400, ... $100 spent.
    customers = [customer(90, 5, 500.0), customer(80, 4, 400.0), customer(70, 3, 300.0)]
    customers += [customer(60, 2, 200.0), customer(50, 1, 100.0)]
    cuts = rfm_cuts(customers, now)

    assert cuts == RfmCuts((10.0, 20.0, 30.0, 40.0), (1.0, 2.0, 3.0, 4.0), (100.0, 200.0, 300.0, 400.0), buyers=5)
    assert RfmCuts.from_record(cuts.to_record()) == cuts  # as the daily job stores them
    assert [rfm_score(c, cuts, now) for c in customers] == [
        Rfm(5, 5, 5),
        Rfm(4, 4, 4),
        Rfm(3, 3, 3),
        Rfm(2, 2, 2),
        Rfm(1, 1, 1),
    ]
    assert rfm_score(Aggregates(), cuts, now) is None
    assert rfm_cuts([Aggregates()], now) is None
    assert Rfm(5, 4, 3).code == "543" and Rfm.from_code("543") == Rfm(5, 4, 3)
    with pytest.raises(ValueError, match="three digits"):
        Rfm.from_code("605")


def test_recency_moves_with_the_clock_while_the_cuts_stand() -> None:
    cuts = RfmCuts((10.0, 20.0, 30.0, 40.0), (1.0, 2.0, 3.0, 4.0), (100.0, 200.0, 300.0, 400.0))
    a = history((0, 150.0))
    scores = [rfm_score(a, cuts, START + d * DAY) for d in (5, 15, 25, 35, 45)]
    assert [s.recency for s in scores if s] == [5, 4, 3, 2, 1]
    assert {(s.frequency, s.monetary) for s in scores if s} == {(1, 2)}


def test_a_flow_waits_until_three_days_before_the_predicted_next_order(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    flow = f"""
    id: reorder_nudge
    name: Time to reorder
    trigger:
      event: order_placed
      filter: "contact.aggregates.predicted_next_order_at is not none"
    steps:
      - id: until_due
        type: wait_until
        date: "{{{{ contact.aggregates.predicted_next_order_at }}}}"
        offset: -3d
        time: "10:00"
      - id: nudge
        {EMAIL}
        subject: "Running low?"
    """
    sim = simulation(settings, clock, flows_dir(tmp_path, flow))
    for day in (0, 20, 50):  # gaps of 20 and 30 days: the median is 25, so the next order is due on day 75
        sim.run_until(START + day * DAY)
        props = {"order_id": f"o{day}", "total": 20}
        sim.send({"id": f"o{day}", "type": "order_placed", "contact": contact("ann"), "properties": props})
    sim.run_until(START + 80 * DAY)

    [stored] = sim.store.contacts.values()
    assert stored.template_view()["aggregates"]["predicted_next_order_at"] == START + 75 * DAY
    # The first order predicts nothing (one order); the second predicts day 40, the third day 75: three days
    # before each, at 10:00 in the contact's zone (sent() shows UTC).
    assert [(when[:10], subject) for when, _, subject in sent(sim)] == [
        ((START + 37 * DAY).strftime("%Y-%m-%d"), "Running low?"),
        ((START + 72 * DAY).strftime("%Y-%m-%d"), "Running low?"),
    ]
