"""Predictions from order history: who is still a customer, how many orders to expect, when, and worth what.

Two "buy till you die" models fitted to the whole customer base (docs/adr/0018-predictions.md):
- BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive, a customer
  orders at a rate lambda ~ Gamma(r, alpha); after each order they drop out with probability p ~ Beta(a, b).
- Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"): a customer's order values vary around their own
  mean, which varies across customers (p, q, gamma); independent of how often they order.
A customer is summarised by four numbers (`BuyerSummary`); the fit keeps only counts of distinct
summaries, so it costs the same at 1M buyers as at 50,000 (`FIT_SAMPLE`). Time is in days.
Pure Python: `math.lgamma` and a Nelder-Mead search in log-parameter space; no numpy or scipy.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, overload

from nudge.domain.aggregates import Aggregates
from nudge.domain.frozen import dataclass

DAY = timedelta(days=1)
HORIZONS = (30, 90, 365)  # days ahead for expected orders; the last is also the CLV window (as Klaviyo's)
NEXT_ORDER_WITHIN = 365  # the next-order date is the median wait, given an order within this many days
FIT_SAMPLE = 50_000  # at most this many buyers are fitted (a deterministic stride over the base)


@dataclass(frozen=True, slots=True)
class Requirements:
    """What the base must hold before predictions are made (Klaviyo's published minimums)."""

    buyers: int = 500  # customers with an order
    history_days: int = 180  # from the base's first order to now
    recent_days: int = 30  # some order this recent
    repeat_buyers: int = 10  # "some customers who have placed 3 or more orders"


REQUIREMENTS = Requirements()


@dataclass(frozen=True, slots=True)
class BuyerSummary:
    """What the models need of a customer: repeat orders x, days from first to last order t_x and to now T,
    the number of orders and their mean value. Orders on the day of the previous one count as one repeat."""

    frequency: int
    recency: float
    age: float
    orders: int
    mean_value: float

    @staticmethod
    def of(aggregates: Aggregates, now: datetime) -> BuyerSummary | None:
        """None for a contact without an order."""
        first, last = aggregates.first_order_at, aggregates.last_order_at
        if aggregates.orders_count <= 0 or first is None or last is None:
            return None
        days = [o.placed_at.date() for o in aggregates.recent_orders]
        same_day = sum(1 for earlier, later in zip(days, days[1:], strict=False) if earlier == later)
        return BuyerSummary(
            frequency=max(0, aggregates.orders_count - 1 - same_day),
            recency=max(0.0, (last - first) / DAY),
            age=max(0.0, (now - first) / DAY),
            orders=aggregates.orders_count,
            mean_value=float(aggregates.total_spent) / aggregates.orders_count,
        )


# BG/NBD -------------------------------------------------------------------------------------------------


def bgnbd_log_likelihood(params: Sequence[float], x: int, t_x: float, age: float) -> float:
    """ln L(r, alpha, a, b | x, t_x, T): equation (6) of Fader, Hardie & Lee (2005)."""
    r, alpha, a, b = params
    common = (
        math.lgamma(r + x)
        - math.lgamma(r)
        + r * math.log(alpha)
        + math.lgamma(a + b)
        + math.lgamma(b + x)
        - math.lgamma(b)
        - math.lgamma(a + b + x)
    )
    still = -(r + x) * math.log(alpha + age)
    if x == 0:
        return common + still
    gone = math.log(a) - math.log(b + x - 1) - (r + x) * math.log(alpha + t_x)
    high = max(still, gone)
    return common + high + math.log(math.exp(still - high) + math.exp(gone - high))


def p_alive(params: Sequence[float], x: int, t_x: float, age: float) -> float:
    """P(still a customer | x, t_x, T): Fader, Hardie & Lee (2008), "Computing P(alive) using the BG/NBD model"."""
    r, alpha, a, b = params
    if x == 0:
        return 1.0
    log_odds = math.log(a) - math.log(b + x - 1) + (r + x) * (math.log(alpha + age) - math.log(alpha + t_x))
    return 1.0 / (1.0 + math.exp(min(log_odds, 700.0)))


def expected_orders(params: Sequence[float], x: int, t_x: float, age: float, days: float) -> float:
    """E[orders in (T, T + days] | x, t_x, T]: equation (10) of Fader, Hardie & Lee (2005)."""
    r, alpha, a, b = params
    z = days / (alpha + age + days)
    log_hyp = _log_hyp2f1(r + x, b + x, a + b + x - 1, z)
    tail = math.exp((r + x) * math.log((alpha + age) / (alpha + age + days)) + log_hyp)
    numerator = (a + b + x - 1) / (a - 1) * (1.0 - tail)
    return max(0.0, numerator * p_alive(params, x, t_x, age))


def p_order_within(params: Sequence[float], x: int, t_x: float, age: float, days: float) -> float:
    """P(at least one order in (T, T + days] | x, t_x, T): alive, and the first order of a Gamma(r + x, alpha + T)
    rate comes within `days`. Unlike P(alive), it falls for a one-time buyer as time passes (the model never
    lets one drop out: dropping out happens only right after an order)."""
    r, alpha, _, _ = params
    none_while_alive = math.exp((r + x) * math.log((alpha + age) / (alpha + age + days)))
    return p_alive(params, x, t_x, age) * (1.0 - none_while_alive)


def _log_hyp2f1(a: float, b: float, c: float, z: float) -> float:
    """ln 2F1(a, b; c; z) for 0 <= z < 1 and a, b, c > 0, by its series (every term positive)."""
    term, total, log_scale = 1.0, 1.0, 0.0
    for k in range(100_000):
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z
        total += term
        if total > 1e250:  # rescale: a frequent buyer's terms grow for a while before they shrink
            total, term, log_scale = total / 1e250, term / 1e250, log_scale + math.log(1e250)
        if term < total * 1e-12 and (a + k) * (b + k) * z < (c + k) * (k + 1):
            break
    return math.log(total) + log_scale


# Gamma-Gamma --------------------------------------------------------------------------------------------


def gamma_gamma_log_likelihood(params: Sequence[float], orders: int, mean_value: float) -> float:
    """ln L(p, q, gamma | n orders of mean value m), up to terms free of the parameters (Fader, Hardie & Lee 2005)."""
    p, q, gamma = params
    n, m = orders, mean_value
    return (
        math.lgamma(p * n + q)
        - math.lgamma(p * n)
        - math.lgamma(q)
        + q * math.log(gamma)
        + (p * n - 1) * math.log(m)
        + p * n * math.log(n)
        - (p * n + q) * math.log(gamma + n * m)
    )


def expected_order_value(params: Sequence[float], orders: int, mean_value: float) -> float:
    """E[value of a future order | n orders of mean m]: a weighted mean of the base's and the customer's own."""
    p, q, gamma = params
    return p * (gamma + orders * mean_value) / (p * orders + q - 1)


# Fitting ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Model:
    """A fitted model, or why there is none (`reason`); stored as the daily job's `predictions_model` document."""

    bgnbd: tuple[float, float, float, float] | None = None  # r, alpha (days), a, b
    gamma_gamma: tuple[float, float, float] | None = None  # p, q, gamma
    buyers: int = 0
    fitted_on: int = 0  # buyers in the fit's sample
    reason: str | None = None  # set when the base is below REQUIREMENTS or a fit failed

    @property
    def ready(self) -> bool:
        return self.bgnbd is not None

    def to_record(self) -> dict[str, Any]:
        """Plain numbers as strings (DynamoDB documents hold no floats through every path)."""
        return {
            "bgnbd": [repr(v) for v in self.bgnbd] if self.bgnbd else None,
            "gamma_gamma": [repr(v) for v in self.gamma_gamma] if self.gamma_gamma else None,
            "buyers": self.buyers,
            "fitted_on": self.fitted_on,
            "reason": self.reason,
        }

    @staticmethod
    def from_record(record: Mapping[str, Any]) -> Model:
        bg, gg = record.get("bgnbd"), record.get("gamma_gamma")
        return Model(
            bgnbd=(float(bg[0]), float(bg[1]), float(bg[2]), float(bg[3])) if bg else None,
            gamma_gamma=(float(gg[0]), float(gg[1]), float(gg[2])) if gg else None,
            buyers=int(record.get("buyers") or 0),
            fitted_on=int(record.get("fitted_on") or 0),
            reason=record.get("reason"),
        )


def shortfall(summaries: Sequence[BuyerSummary], requirements: Requirements = REQUIREMENTS) -> str | None:
    """Why this base is too small or too new for predictions, or None if it meets the requirements."""
    if len(summaries) < requirements.buyers:
        return f"predictions need {requirements.buyers} customers with an order; there are {len(summaries)}"
    if max(s.age for s in summaries) < requirements.history_days:
        return f"predictions need {requirements.history_days} days of order history"
    if min(s.age - s.recency for s in summaries) > requirements.recent_days:
        return f"predictions need an order in the last {requirements.recent_days} days"
    if sum(1 for s in summaries if s.orders >= 3) < requirements.repeat_buyers:
        return f"predictions need {requirements.repeat_buyers} customers with 3 or more orders"
    return None


def fit(summaries: Sequence[BuyerSummary], requirements: Requirements = REQUIREMENTS) -> Model:
    """Fit BG/NBD and Gamma-Gamma by maximum likelihood; a Model with a `reason` below the requirements."""
    if reason := shortfall(summaries, requirements):
        return Model(buyers=len(summaries), reason=reason)
    stride = max(1, math.ceil(len(summaries) / FIT_SAMPLE))
    sample = summaries[::stride]
    # Distinct (x, t_x, T) to the day, with their counts: the likelihood is a sum over these.
    groups = Counter((s.frequency, round(s.recency), round(s.age)) for s in sample)
    data = [(x, float(t_x), float(age), n) for (x, t_x, age), n in groups.items()]

    def bg_cost(logs: Sequence[float]) -> float:
        params = [math.exp(v) for v in logs]
        return -sum(n * bgnbd_log_likelihood(params, x, t_x, age) for x, t_x, age, n in data)

    start = [0.0, math.log(max(1.0, sum(s.age for s in sample) / len(sample) / 4)), 0.0, 0.0]
    bg = tuple(math.exp(v) for v in nelder_mead(bg_cost, start))
    repeat = [(s.orders, s.mean_value) for s in sample if s.orders >= 2 and s.mean_value > 0]

    def gg_cost(logs: Sequence[float]) -> float:
        params = [math.exp(v) for v in logs]
        return -sum(gamma_gamma_log_likelihood(params, n, m) for n, m in repeat)

    mean = sum(m for _, m in repeat) / len(repeat) if repeat else 1.0
    gg = tuple(math.exp(v) for v in nelder_mead(gg_cost, [math.log(5.0), math.log(3.0), math.log(mean)]))
    if not all(math.isfinite(v) and v > 0 for v in (*bg, *gg)) or gg[1] <= 1:
        return Model(buyers=len(summaries), reason="the models did not converge on this base")
    return Model(
        bgnbd=(bg[0], bg[1], bg[2], bg[3]),
        gamma_gamma=(gg[0], gg[1], gg[2]),
        buyers=len(summaries),
        fitted_on=len(sample),
    )


def nelder_mead(
    cost: Callable[[Sequence[float]], float], start: Sequence[float], step: float = 1.0, iterations: int = 2000
) -> list[float]:
    """Minimise `cost` from `start` (the downhill simplex of Nelder & Mead, standard coefficients)."""

    def safe(point: Sequence[float]) -> float:
        try:
            value = cost(point)
        except (ValueError, OverflowError, ZeroDivisionError):
            return math.inf
        return value if math.isfinite(value) else math.inf

    dims = len(start)
    simplex = [list(start)] + [[v + (step if i == j else 0.0) for j, v in enumerate(start)] for i in range(dims)]
    values = [safe(p) for p in simplex]
    for _ in range(iterations):
        order = sorted(range(dims + 1), key=values.__getitem__)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if abs(values[-1] - values[0]) <= 1e-9 * (abs(values[0]) + 1e-9) and _spread(simplex) < 1e-7:
            break
        centroid = [sum(p[j] for p in simplex[:-1]) / dims for j in range(dims)]
        worst = simplex[-1]

        def toward(scale: float, c: list[float] = centroid, w: list[float] = worst) -> list[float]:
            return [cj + scale * (wj - cj) for cj, wj in zip(c, w, strict=True)]

        reflected = toward(-1.0)
        r_value = safe(reflected)
        if r_value < values[0]:
            expanded = toward(-2.0)
            e_value = safe(expanded)
            simplex[-1], values[-1] = (expanded, e_value) if e_value < r_value else (reflected, r_value)
        elif r_value < values[-2]:
            simplex[-1], values[-1] = reflected, r_value
        else:
            contracted = toward(0.5) if r_value >= values[-1] else toward(-0.5)
            c_value = safe(contracted)
            if c_value < min(r_value, values[-1]):
                simplex[-1], values[-1] = contracted, c_value
            else:  # shrink towards the best
                best = simplex[0]
                simplex = [best] + [[bj + 0.5 * (pj - bj) for bj, pj in zip(best, p, strict=True)] for p in simplex[1:]]
                values = [values[0]] + [safe(p) for p in simplex[1:]]
    return simplex[min(range(dims + 1), key=values.__getitem__)]


def _spread(simplex: list[list[float]]) -> float:
    return max(abs(a - b) for p in simplex[1:] for a, b in zip(p, simplex[0], strict=True))


# Per contact --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Predictions:
    """What the daily job stores on a contact (`contact.predicted`); every buyer gets one once a model exists."""

    p_alive: float
    churn_risk: float  # P(no order in the next 365 days)
    orders_30d: float
    orders_90d: float
    orders_365d: float
    next_order_at: datetime  # always after the moment it was computed
    order_value: float  # the expected value of a future order
    clv: float  # the expected spend in the next 365 days (Klaviyo's "predicted CLV")

    def template_view(self, historic: float = 0.0) -> dict[str, Any]:
        """`contact.predicted` in templates, conditions and segments."""
        return {
            "p_alive": self.p_alive,
            "churn_risk": self.churn_risk,
            "orders_30d": self.orders_30d,
            "orders_90d": self.orders_90d,
            "orders_365d": self.orders_365d,
            "next_order_at": self.next_order_at,
            "order_value": self.order_value,
            "clv": self.clv,
            "total_clv": round(historic + self.clv, 2),
        }

    def to_record(self) -> dict[str, Any]:
        return {
            "p_alive": repr(self.p_alive),
            "churn_risk": repr(self.churn_risk),
            "orders": [repr(self.orders_30d), repr(self.orders_90d), repr(self.orders_365d)],
            "next_order_at": self.next_order_at.isoformat(),
            "order_value": repr(self.order_value),
            "clv": repr(self.clv),
        }

    @staticmethod
    def from_record(record: Mapping[str, Any]) -> Predictions:
        o30, o90, o365 = (float(v) for v in record["orders"])
        return Predictions(
            p_alive=float(record["p_alive"]),
            churn_risk=float(record["churn_risk"]),
            orders_30d=o30,
            orders_90d=o90,
            orders_365d=o365,
            next_order_at=datetime.fromisoformat(record["next_order_at"]),
            order_value=float(record["order_value"]),
            clv=float(record["clv"]),
        )

    def close_to(self, other: Predictions | None, now: datetime) -> bool:
        """Whether storing `self` over `other` would tell a marketer nothing new (so the daily job skips it).

        Tolerances: 0.02 on the probability, 5 % (at least 0.05) on expected orders and money, 7 days on the
        next-order date; a stored date that has passed is always replaced.
        """
        if other is None or other.next_order_at <= now:
            return False

        def near(a: float, b: float, floor: float) -> bool:
            return abs(a - b) <= max(floor, 0.05 * max(abs(a), abs(b)))

        return (
            abs(self.p_alive - other.p_alive) <= 0.02
            and abs(self.churn_risk - other.churn_risk) <= 0.02
            and near(self.orders_30d, other.orders_30d, 0.05)
            and near(self.orders_90d, other.orders_90d, 0.05)
            and near(self.orders_365d, other.orders_365d, 0.05)
            and near(self.order_value, other.order_value, 0.5)
            and near(self.clv, other.clv, 0.5)
            and abs(self.next_order_at - other.next_order_at) <= 7 * DAY
        )


def predict(model: Model, summary: BuyerSummary, now: datetime) -> Predictions | None:
    """A customer's predictions at `now`; None without a fitted model."""
    if model.bgnbd is None or model.gamma_gamma is None:
        return None
    params = model.bgnbd
    x, t_x, age = summary.frequency, summary.recency, summary.age
    orders = [expected_orders(params, x, t_x, age, days) for days in HORIZONS]
    value = expected_order_value(model.gamma_gamma, summary.orders, summary.mean_value)
    return Predictions(
        p_alive=round(p_alive(params, x, t_x, age), 3),
        churn_risk=round(1.0 - p_order_within(params, x, t_x, age, HORIZONS[-1]), 3),
        orders_30d=round(orders[0], 3),
        orders_90d=round(orders[1], 3),
        orders_365d=round(orders[2], 3),
        next_order_at=now + next_order_wait(params, x, age),
        order_value=round(value, 2),
        clv=round(orders[2] * value, 2),
    )


def next_order_wait(params: Sequence[float], x: int, age: float, within: float = NEXT_ORDER_WITHIN) -> timedelta:
    """The median wait for the next order of a customer still alive, given it comes within `within` days.

    Alive, a customer's rate is Gamma(r + x, alpha + T) a posteriori, so the wait is Lomax:
    P(wait > s) = ((alpha + T) / (alpha + T + s)) ** (r + x). Unconditioned, its median is years away for a
    one-time buyer; conditioned on an order within the year it is the date a reminder is worth aiming at.
    At least one day: the date is always in the future.
    """
    r, alpha, _, _ = params
    shape, scale = r + x, alpha + age
    within_year = 1.0 - (scale / (scale + within)) ** shape
    days = scale * ((1.0 - within_year / 2.0) ** (-1.0 / shape) - 1.0)
    return max(DAY, timedelta(days=days))


CHURN_BANDS = (0.2, 0.5, 0.8)  # churn risk under 0.2, to 0.5, to 0.8, over 0.8


@dataclass(frozen=True, slots=True)
class Outlook:
    """The base as the report shows it: how many customers have predictions and how they spread."""

    buyers: int
    predicted: int
    churn_bands: tuple[int, int, int, int]  # customers by churn risk: < 0.2, < 0.5, < 0.8, >= 0.8
    orders_90d: float  # expected orders in the next 90 days, over the base
    clv: float  # expected spend in the next 365 days, over the base
    reason: str | None = None  # why there is no model, if there is none


def outlook(buyers: Iterable[Predictions | None], model: Model) -> Outlook:
    """Sum up the stored predictions of every buyer (None for a buyer without them)."""
    bands = [0, 0, 0, 0]
    count = predicted = 0
    orders = clv = 0.0
    for found in buyers:
        count += 1
        if found is None:
            continue
        predicted += 1
        bands[sum(1 for edge in CHURN_BANDS if found.churn_risk >= edge)] += 1
        orders += found.orders_90d
        clv += found.clv
    bands_ = (bands[0], bands[1], bands[2], bands[3])
    return Outlook(count, predicted, bands_, round(orders, 1), round(clv, 2), model.reason)


class SummaryColumns(Sequence[BuyerSummary]):
    """Buyer summaries kept as five `array('d')` columns: 40 bytes a buyer (40 MB at 1M) instead of ~200."""

    def __init__(self) -> None:
        self._columns = tuple(array("d") for _ in range(5))

    def append(self, summary: BuyerSummary) -> None:
        for column, value in zip(self._columns, _fields(summary), strict=True):
            column.append(value)

    def __len__(self) -> int:
        return len(self._columns[0])

    @overload
    def __getitem__(self, index: int) -> BuyerSummary: ...
    @overload
    def __getitem__(self, index: slice) -> list[BuyerSummary]: ...
    def __getitem__(self, index: int | slice) -> BuyerSummary | list[BuyerSummary]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        x, t_x, age, orders, mean = (column[index] for column in self._columns)
        return BuyerSummary(int(x), t_x, age, int(orders), mean)


def _fields(s: BuyerSummary) -> tuple[float, float, float, float, float]:
    return (float(s.frequency), s.recency, s.age, float(s.orders), s.mean_value)


def summaries_of(customers: Iterable[Aggregates], now: datetime) -> list[BuyerSummary]:
    """Every buyer's summary (for tests and the bench; the daily job keeps its own compact columns)."""
    return [s for a in customers if (s := BuyerSummary.of(a, now)) is not None]
