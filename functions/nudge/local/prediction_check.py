"""`nudge bench --predictions`: the prediction models checked on CDNOW against the literature and the future.

1. The published fit: BG/NBD and Gamma-Gamma on the 2,357-customer CDNOW sample `lifetimes` ships (weeks),
   beside the figures of Fader, Hardie & Lee (2005).
2. A backtest on the whole cohort (23,570 customers, CDNOW_master.txt): aggregates built from the orders
   before a cutoff, exactly as the daily job sees a contact, predictions made at the cutoff, and compared
   with the orders of the following six months: AUC for "orders again" and the median absolute error of
   the next order's date, beside naive baselines.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from nudge.domain import predictions
from nudge.domain.aggregates import Aggregates, updated
from nudge.domain.lifecycle import RfmInputs, cuts_of, predicted_next_order, score
from nudge.local.datasets import fetch_cdnow

CUTOFF = datetime(1998, 1, 1, tzinfo=UTC)  # calibrate on 1997, test on the first half of 1998
TEST_END = datetime(1998, 7, 1, tzinfo=UTC)
PUBLISHED_BGNBD = (0.243, 4.414, 0.793, 2.426)  # r, alpha (weeks), a, b; log-likelihood -9582.4
PUBLISHED_GAMMA_GAMMA = (6.25, 3.74, 15.44)  # p, q, gamma


def check(cache_dir: Path) -> Iterator[str]:
    """Lines to print: the published fit, then the backtest."""
    master = fetch_cdnow(cache_dir)
    yield from _published(master.parent / "cdnow_customers_summary_with_transactions.csv")
    yield from _backtest(master)


def _published(summary_csv: Path) -> Iterator[str]:
    with summary_csv.open(encoding="utf-8") as rows:
        data = [(int(r["x"]), float(r["t_x"]), float(r["T"]), float(r["zbar"])) for r in csv.DictReader(rows)]
    started = time.perf_counter()

    def bg_cost(logs: Sequence[float]) -> float:
        params = [math.exp(v) for v in logs]
        return -sum(predictions.bgnbd_log_likelihood(params, x, t_x, age) for x, t_x, age, _ in data)

    bg = [math.exp(v) for v in predictions.nelder_mead(bg_cost, [0.0, math.log(10.0), 0.0, 0.0])]
    repeat = [(x, z) for x, _, _, z in data if x > 0]

    def gg_cost(logs: Sequence[float]) -> float:
        params = [math.exp(v) for v in logs]
        return -sum(predictions.gamma_gamma_log_likelihood(params, n, m) for n, m in repeat)

    gg = [math.exp(v) for v in predictions.nelder_mead(gg_cost, [math.log(5.0), math.log(3.0), math.log(30.0)])]
    elapsed = time.perf_counter() - started
    yield f"published fit: CDNOW sample, {len(data):,} customers (lifetimes' cdnow_customers_summary), in weeks"
    yield (
        f"  BG/NBD r, alpha, a, b = {', '.join(f'{v:.3f}' for v in bg)} (paper: "
        f"{', '.join(f'{v:.3f}' for v in PUBLISHED_BGNBD)}); log-likelihood {-bg_cost([math.log(v) for v in bg]):.1f} "
        "(paper: -9582.4)"
    )
    yield (
        f"  Gamma-Gamma p, q, gamma = {', '.join(f'{v:.2f}' for v in gg)} (paper: "
        f"{', '.join(f'{v:.2f}' for v in PUBLISHED_GAMMA_GAMMA)}); both fits {elapsed:.1f} s in pure Python"
    )


def _orders(master: Path) -> dict[str, list[tuple[datetime, str]]]:
    """customer -> [(placed at noon UTC, dollars)], oldest first."""
    found: dict[str, list[tuple[datetime, str]]] = {}
    with master.open(encoding="utf-8") as lines:
        for raw in lines:
            cells = raw.split()
            if len(cells) != 4 or not cells[0].isdigit():
                continue
            customer, day, _, dollars = cells
            placed = datetime.combine(date(int(day[:4]), int(day[4:6]), int(day[6:])), datetime.min.time(), UTC)
            found.setdefault(customer, []).append((placed + timedelta(hours=12), dollars))
    return found


def _backtest(master: Path) -> Iterator[str]:
    history = _orders(master)
    calibration: dict[str, Aggregates] = {}
    for customer, orders in history.items():
        before = Aggregates()
        for n, (placed, dollars) in enumerate(orders):
            if placed < CUTOFF:
                order = {"order_id": f"{customer}-{n}", "total": dollars}
                before = updated(before, f"{customer}-{n}", "order_placed", order, placed)
        if before.orders_count:
            calibration[customer] = before
    now = CUTOFF
    summaries = {c: s for c, held in calibration.items() if (s := predictions.BuyerSummary.of(held, now)) is not None}
    built = time.perf_counter()
    model = predictions.fit(list(summaries.values()))
    fitted = time.perf_counter()
    if not model.ready or model.bgnbd is None:
        yield f"backtest: no model ({model.reason})"
        return
    test_window = (TEST_END - CUTOFF) / timedelta(days=1)
    predicted = {c: predictions.predict(model, s, now) for c, s in summaries.items()}
    done = time.perf_counter()
    came_back = {
        c: min(placed for placed, _ in history[c] if CUTOFF <= placed < TEST_END)
        for c in summaries
        if any(CUTOFF <= placed < TEST_END for placed, _ in history[c])
    }
    labels = {c: c in came_back for c in summaries}
    r, alpha, a, b = model.bgnbd
    yield (
        f"backtest: CDNOW, {len(summaries):,} customers; calibrated on orders before {CUTOFF:%Y-%m-%d}, tested on "
        f"{CUTOFF:%Y-%m-%d} to {TEST_END:%Y-%m-%d}: {len(came_back):,} ordered again "
        f"({sum(1 for c in came_back if summaries[c].orders == 1):,} of them one-time buyers)"
    )
    yield (
        f"  model (days): r={r:.3f} alpha={alpha:.2f} a={a:.3f} b={b:.3f}; fitted on {model.fitted_on:,} buyers in "
        f"{fitted - built:.1f} s; {len(predicted):,} predictions in {done - fitted:.1f} s"
    )
    params = model.bgnbd
    window_score = {
        c: predictions.p_order_within(params, s.frequency, s.recency, s.age, test_window) for c, s in summaries.items()
    }
    cuts = cuts_of(*_rfm_columns(calibration, now))
    assert cuts is not None
    rfm = {c: score(i, cuts) for c, a in calibration.items() if (i := RfmInputs.of(a, now)) is not None}
    scorers: list[tuple[str, Callable[[str], float]]] = [
        ("BG/NBD P(order within the test window)", window_score.__getitem__),
        ("BG/NBD 1 - churn_risk (365 days), as stored", lambda c: 1 - _stored(predicted[c]).churn_risk),
        ("BG/NBD expected orders, 90 days, as stored", lambda c: _stored(predicted[c]).orders_90d),
        ("RFM code (nudge's quintiles, R then F then M)", lambda c: float(rfm[c].code)),
        ("recency alone (days since the last order)", lambda c: -(now - calibration[c].last_order_at).days),  # type: ignore[operator]
        ("frequency alone (orders)", lambda c: calibration[c].orders_count),
    ]
    yield "  AUC for 'orders again in the test window' (0.5 is chance):"
    for name, scorer in scorers:
        yield f"    {auc([(scorer(c), labels[c]) for c in summaries]):.3f}  {name}"
    errors = {
        "BG/NBD next_order_at, as stored": [
            abs((_stored(predicted[c]).next_order_at - came_back[c]) / timedelta(days=1)) for c in came_back
        ],
        "due now (the cutoff)": [(came_back[c] - now) / timedelta(days=1) for c in came_back],
    }
    rule = {c: predicted_next_order(calibration[c]) for c in came_back}
    errors["last order + median gap (contact.aggregates.predicted_next_order_at), where it exists"] = [
        abs((moment - came_back[c]) / timedelta(days=1)) for c, moment in rule.items() if moment is not None
    ]
    yield "  median absolute error of the next order's date, days, over those who ordered again:"
    for name, values in errors.items():
        yield f"    {statistics.median(values):6.1f}  {name} ({len(values):,} customers)"
    past = sum(1 for c in came_back if (m := rule[c]) is not None and m < now)
    future = sum(1 for p in predicted.values() if p is not None and p.next_order_at > now)
    yield (
        f"  next_order_at after the cutoff: {future:,} of {len(predicted):,} customers "
        f"(the median-gap rule: {past:,} of its {sum(1 for m in rule.values() if m is not None):,} lie before it)"
    )


def _stored(found: predictions.Predictions | None) -> predictions.Predictions:
    assert found is not None
    return found


def _rfm_columns(calibration: dict[str, Aggregates], now: datetime) -> tuple[list[float], list[float], list[float]]:
    inputs = [i for a in calibration.values() if (i := RfmInputs.of(a, now)) is not None]
    return [i.recency_days for i in inputs], [i.orders for i in inputs], [i.spent for i in inputs]


def auc(scored: Sequence[tuple[float, bool]]) -> float:
    """Area under the ROC curve: P(a positive outranks a negative), ties counting half (Mann-Whitney)."""
    ordered = sorted(scored, key=lambda item: item[0])
    rank_sum, i, n = 0.0, 0, len(ordered)
    while i < n:
        j = i
        while j < n and ordered[j][0] == ordered[i][0]:
            j += 1
        mid_rank = (i + 1 + j) / 2  # ranks i+1..j share their mean
        rank_sum += mid_rank * sum(1 for k in range(i, j) if ordered[k][1])
        i = j
    positives = sum(1 for _, label in ordered if label)
    negatives = n - positives
    if not positives or not negatives:
        return math.nan
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
