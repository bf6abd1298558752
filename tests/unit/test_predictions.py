"""BG/NBD and Gamma-Gamma: the likelihood checked against the model's definition, fits, and per-contact predictions."""

from __future__ import annotations

import math
import random
from datetime import timedelta
from pathlib import Path

import pytest

from nudge.clocks import VirtualClock
from nudge.domain.aggregates import Aggregates, updated
from nudge.domain.predictions import (
    BuyerSummary,
    Model,
    Predictions,
    Requirements,
    SummaryColumns,
    bgnbd_log_likelihood,
    expected_orders,
    fit,
    p_alive,
    predict,
    shortfall,
)
from nudge.report_text import outlook_lines
from nudge.services.reporting import build_report
from nudge.settings import Settings
from tests.conftest import START
from tests.factories import contact
from tests.flowkit import EMAIL, flows_dir, segments_dir, simulation

DAY = timedelta(days=1)
PARAMS = (2.0, 3.0, 2.0, 3.0)  # r, alpha, a, b: shapes above 1, so plain quadrature converges
TINY = [(0, 0.0, 10.0), (1, 4.0, 10.0), (3, 8.0, 12.0)]  # (x, t_x, T)


def _integral(f: object, low: float, high: float, steps: int = 4000) -> float:
    """Midpoint rule: independent of the closed forms under test."""
    h = (high - low) / steps
    return h * sum(f(low + (i + 0.5) * h) for i in range(steps))  # type: ignore[operator]


def _by_definition(x: int, t_x: float, age: float) -> float:
    """L(x, t_x, T) straight from the model's story: integrate the individual likelihood over lambda and p.

    Alive throughout: (1 - p)^x lambda^x e^(-lambda T); dead after the last order: p (1 - p)^(x - 1) lambda^x
    e^(-lambda t_x); lambda ~ Gamma(r, alpha), p ~ Beta(a, b).
    """
    r, alpha, a, b = PARAMS
    gamma = lambda lam: alpha**r * lam ** (r - 1) * math.exp(-alpha * lam) / math.gamma(r)  # noqa: E731
    beta = lambda p: p ** (a - 1) * (1 - p) ** (b - 1) * math.gamma(a + b) / (math.gamma(a) * math.gamma(b))  # noqa: E731
    survive = _integral(lambda p: (1 - p) ** x * beta(p), 0, 1)
    stay = _integral(lambda lam: lam**x * math.exp(-lam * age) * gamma(lam), 0, 6, 20_000)
    if x == 0:
        return survive * stay
    drop = _integral(lambda p: p * (1 - p) ** (x - 1) * beta(p), 0, 1)
    leave = _integral(lambda lam: lam**x * math.exp(-lam * t_x) * gamma(lam), 0, 6, 20_000)
    return survive * stay + drop * leave


def test_the_bgnbd_likelihood_is_the_models_own_on_a_tiny_data_set() -> None:
    for x, t_x, age in TINY:
        assert bgnbd_log_likelihood(PARAMS, x, t_x, age) == pytest.approx(
            math.log(_by_definition(x, t_x, age)), abs=1e-5
        )
    # By hand for the one-time buyer: B(2, 3)/B(2, 3) * Gamma(2)/Gamma(2) * 3^2 / 13^2 = 9/169.
    assert math.exp(bgnbd_log_likelihood(PARAMS, 0, 0.0, 10.0)) == pytest.approx(9 / 169)


def test_p_alive_and_expected_orders_by_hand() -> None:
    # x=1, t_x=4, T=10: 1 / (1 + a/(b + x - 1) * ((alpha + T)/(alpha + t_x))^(r + x)) = 1 / (1 + 2/3 * (13/7)^3)
    assert p_alive(PARAMS, 1, 4.0, 10.0) == pytest.approx(1 / (1 + 2 / 3 * 2197 / 343))
    assert p_alive(PARAMS, 0, 0.0, 10.0) == 1.0  # no repeat order, no chance to have dropped out yet
    # Alive, lambda ~ Gamma(r + x, alpha + T) and p ~ Beta(a, b + x); a living customer makes (1 - e^(-lambda p t))/p
    # orders in t on average (equation 7): integrate that over both and weigh by P(alive).
    r, alpha, a, b = PARAMS
    x, t_x, age, t = 1, 4.0, 10.0, 30.0
    shape, rate, pa, pb = r + x, alpha + age, a, b + x
    density = lambda lam: rate**shape * lam ** (shape - 1) * math.exp(-rate * lam) / math.gamma(shape)  # noqa: E731
    weight = lambda p: p ** (pa - 1) * (1 - p) ** (pb - 1) * math.gamma(pa + pb) / (math.gamma(pa) * math.gamma(pb))  # noqa: E731
    inner = lambda p: _integral(lambda lam: (1 - math.exp(-lam * p * t)) / p * density(lam), 0, 8, 300)  # noqa: E731
    alive_mean = _integral(lambda p: inner(p) * weight(p), 0, 1, 300)
    assert expected_orders(PARAMS, x, t_x, age, t) == pytest.approx(p_alive(PARAMS, x, t_x, age) * alive_mean, rel=1e-3)


def _history(*days: int, total: str = "20") -> Aggregates:
    a = Aggregates()
    for n, day in enumerate(days):
        a = updated(a, f"e{n}", "order_placed", {"order_id": f"o{n}", "total": total}, START + day * DAY)
    return a


def test_a_summary_counts_same_day_orders_once() -> None:
    summary = BuyerSummary.of(_history(0, 0, 10, 30), START + 40 * DAY)
    assert summary == BuyerSummary(frequency=2, recency=30.0, age=40.0, orders=4, mean_value=20.0)
    assert BuyerSummary.of(Aggregates(), START) is None


def _simulated_base(customers: int, seed: int = 7) -> list[BuyerSummary]:
    """Customers drawn from a BG/NBD world (r=0.5, alpha=20 days, a=1.5, b=4) over 300 days, order values ~ 30."""
    rng = random.Random(seed)
    base = []
    for n in range(customers):
        rate, drop = rng.gammavariate(0.5, 1 / 20), rng.betavariate(1.5, 4)
        born = n % 120  # first orders over the first 120 days; the base is looked at on day 300
        t, last, x = float(born), float(born), 0
        while rate > 0:
            t += rng.expovariate(rate)
            if t > 300:
                break
            x, last = x + 1, t
            if rng.random() < drop:
                break
        base.append(BuyerSummary(x, last - born, 300.0 - born, x + 1, rng.gammavariate(6, 5)))
    return base


def test_the_fit_recovers_a_simulated_world_and_every_buyer_gets_a_future_next_order() -> None:
    base = _simulated_base(1500)
    columns = SummaryColumns()
    for summary in base:
        columns.append(summary)

    model = fit(columns)

    assert model.ready and model.bgnbd is not None and model.gamma_gamma is not None
    r, alpha, a, b = model.bgnbd
    assert (0.3 < r < 0.8, 10 < alpha < 35, 0.5 < a < 4, 1.5 < b < 12) == (True, True, True, True)
    assert Model.from_record(model.to_record()) == model
    now = START + 300 * DAY
    one_time = predict(model, BuyerSummary(0, 0.0, 200.0, 1, 30.0), now)
    frequent = predict(model, BuyerSummary(8, 170.0, 180.0, 9, 30.0), now)
    gone = predict(model, BuyerSummary(8, 20.0, 180.0, 9, 30.0), now)
    assert one_time is not None and frequent is not None and gone is not None
    assert one_time.next_order_at > now and frequent.next_order_at > now
    assert frequent.next_order_at < one_time.next_order_at
    assert frequent.churn_risk < 0.3 < gone.churn_risk  # eight orders, then silent for 160 days
    assert frequent.orders_30d < frequent.orders_90d < frequent.orders_365d
    assert frequent.clv == pytest.approx(frequent.orders_365d * frequent.order_value, rel=1e-3)
    assert Predictions.from_record(frequent.to_record()) == frequent


def test_below_the_requirements_there_is_no_model_and_no_prediction() -> None:
    base = _simulated_base(1500)
    assert shortfall(base[:499]) == "predictions need 500 customers with an order; there are 499"
    assert shortfall(base, Requirements(history_days=400)) == "predictions need 400 days of order history"
    model = fit(base[:100])
    assert not model.ready and model.reason is not None
    assert predict(model, base[0], START) is None


def test_small_daily_drift_is_not_worth_a_write() -> None:
    now = START + 100 * DAY
    stored = Predictions(0.8, 0.3, 0.3, 0.9, 3.0, now + 20 * DAY, 30.0, 90.0)
    drift = Predictions(0.79, 0.31, 0.3, 0.91, 3.05, now + 23 * DAY, 30.0, 91.0)
    assert drift.close_to(stored, now)
    assert not drift.close_to(stored, now + 21 * DAY)  # the stored date has passed: replace it
    assert not Predictions(0.7, 0.3, 0.3, 0.9, 3.0, now + 20 * DAY, 30.0, 90.0).close_to(stored, now)


AT_RISK = """
id: likely_gone
name: Likely gone (churn risk over 0.8)
conditions:
  - {field: predicted.churn_risk, op: gt, value: 0.8}
"""
AT_RISK_FLOW = f"""
id: come_back
name: Come back
trigger: {{type: segment, segment: likely_gone}}
steps:
  - id: note
    {EMAIL}
    subject: "We miss you"
"""


def test_the_daily_job_fits_the_base_and_predictions_reach_segments_templates_and_flows(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    # Given 30 customers over 200 days: 10 order every 12 days, 10 ordered 5 times early then stopped, 10 once
    segments_dir(tmp_path, AT_RISK)
    sim = simulation(settings, clock, flows_dir(tmp_path, AT_RISK_FLOW))
    plan = {f"steady{n}": list(range(n, 200, 12)) for n in range(10)}
    plan |= {f"gone{n}": [n, n + 4, n + 8, n + 12, n + 16] for n in range(10)}
    plan |= {f"once{n}": [20 * n] for n in range(10)}
    for day, name in sorted((day, name) for name, days in plan.items() for day in days):
        clock.set(START + day * DAY)
        order = {"order_id": f"{name}-{day}", "total": 40}
        sim.send({"id": f"{name}-{day}", "type": "order_placed", "contact": contact(name), "properties": order})
    clock.set(START + 200 * DAY)
    daily = sim.container.daily
    daily.requirements = Requirements(buyers=30, history_days=180, repeat_buyers=10)

    # When the daily job runs twice
    first = daily.rescore()
    again = daily.rescore()

    # Then every buyer has predictions, the model is stored, and a second run writes nothing new
    assert first.model is not None and first.model.ready and daily.predictions_model() == first.model
    assert (first.predicted, again.predicted) == (30, 0)
    view = {c.email.split("@")[0]: c.template_view()["predicted"] for c in sim.store.contacts.values()}  # type: ignore[union-attr]
    assert all(v is not None and v["next_order_at"] > START + 200 * DAY for v in view.values())
    assert max(view[f"steady{n}"]["churn_risk"] for n in range(10)) < 0.2
    assert min(view[f"gone{n}"]["churn_risk"] for n in range(10)) > 0.8
    assert view["steady0"]["total_clv"] == pytest.approx(17 * 40 + view["steady0"]["clv"])
    started = sorted(sim.store.contacts[o.contact_id].email for o in first.outcomes if o.started == ["come_back"])
    assert started == [f"gone{n}@example.com" for n in range(10)]
    report = build_report(sim.store, model=daily.predictions_model())  # type: ignore[arg-type]
    assert outlook_lines(report.outlook) == [
        "Predictions for 30 of 30 customers: 68.7 orders expected in the next 90 days, 9,120.37 in the next 365.",
        "Churn risk: under 0.2 10 · 0.2–0.5 5 · 0.5–0.8 5 · over 0.8 10.",  # one-time buyers spread by age
    ]


def test_auc_counts_ties_as_half() -> None:
    from nudge.local.prediction_check import auc

    # Positives scored 3 and 2, negatives 2 and 1: of the 4 pairs, 3 are won and 1 tied -> 3.5 / 4.
    assert auc([(3.0, True), (2.0, True), (2.0, False), (1.0, False)]) == 0.875
