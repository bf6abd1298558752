"""Lifecycle stages, RFM scores and the predicted next order: pure functions of aggregates and `now`."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from nudge.domain.aggregates import Aggregates


class Stage(StrEnum):
    """Exactly one per contact. Checked in this order: a lapsed VIP is lapsed (a win-back target)."""

    SUBSCRIBER = "subscriber"  # no order yet
    LAPSED = "lapsed"
    AT_RISK = "at_risk"
    VIP = "vip"
    REPEAT_BUYER = "repeat_buyer"
    FIRST_TIME_BUYER = "first_time_buyer"


STAGES = tuple(s.value for s in Stage)


@dataclass(frozen=True, slots=True)
class StageRules:
    """The thresholds behind the stages; the defaults match the win-back and VIP flows of the library."""

    at_risk_after: timedelta = timedelta(days=60)
    lapsed_after: timedelta = timedelta(days=90)
    vip_orders: int = 3
    vip_spent: Decimal = Decimal(500)


DEFAULT_RULES = StageRules()


def stage(aggregates: Aggregates, now: datetime, rules: StageRules = DEFAULT_RULES) -> Stage:
    """The contact's lifecycle stage at `now`."""
    if aggregates.orders_count <= 0 or aggregates.last_order_at is None:
        return Stage.SUBSCRIBER
    quiet = now - aggregates.last_order_at
    if quiet >= rules.lapsed_after:
        return Stage.LAPSED
    if quiet >= rules.at_risk_after:
        return Stage.AT_RISK
    if aggregates.orders_count >= rules.vip_orders or aggregates.total_spent >= rules.vip_spent:
        return Stage.VIP
    if aggregates.orders_count >= 2:
        return Stage.REPEAT_BUYER
    return Stage.FIRST_TIME_BUYER


def stage_changes_at(aggregates: Aggregates, now: datetime, rules: StageRules = DEFAULT_RULES) -> datetime | None:
    """The next moment the stage changes with time alone (no new event), or None if it never will."""
    if aggregates.orders_count <= 0 or aggregates.last_order_at is None:
        return None
    for threshold in (rules.at_risk_after, rules.lapsed_after):
        moment = aggregates.last_order_at + threshold
        if moment > now:
            return moment
    return None


def predicted_next_order(aggregates: Aggregates) -> datetime | None:
    """The last order plus the median gap between the contact's recent orders; None under two orders."""
    times = [order.placed_at for order in aggregates.recent_orders]
    if len(times) < 2:
        return None
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    median_seconds = statistics.median(gap.total_seconds() for gap in gaps)
    return times[-1] + timedelta(seconds=median_seconds)


# RFM ---------------------------------------------------------------------------------------------------
# Scores are quintiles of the customer base. The cut points need every buyer, so they are recomputed by
# the daily job (one pass); a contact's score is then a lookup, always current for its recency.


@dataclass(frozen=True, slots=True)
class RfmCuts:
    """The 20th, 40th, 60th and 80th percentiles of recency (days), frequency (orders) and monetary value."""

    recency_days: tuple[float, float, float, float]
    frequency: tuple[float, float, float, float]
    monetary: tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Rfm:
    recency: int
    frequency: int
    monetary: int

    @property
    def code(self) -> str:
        return f"{self.recency}{self.frequency}{self.monetary}"


def rfm_cuts(customers: Iterable[Aggregates], now: datetime) -> RfmCuts | None:
    """Quintile cut points over every contact with an order; None if nobody has ordered."""
    buyers = [a for a in customers if a.orders_count > 0 and a.last_order_at is not None]
    if not buyers:
        return None
    recency = sorted(_days_since(a, now) for a in buyers)
    frequency = sorted(float(a.orders_count) for a in buyers)
    monetary = sorted(float(a.total_spent) for a in buyers)
    return RfmCuts(_quintiles(recency), _quintiles(frequency), _quintiles(monetary))


def rfm_score(aggregates: Aggregates, cuts: RfmCuts, now: datetime) -> Rfm | None:
    """Scores 1-5 each (5 best: most recent, most frequent, biggest spender); None for non-buyers."""
    if aggregates.orders_count <= 0 or aggregates.last_order_at is None:
        return None
    recency = 5 - _bucket(_days_since(aggregates, now), cuts.recency_days) + 1
    frequency = _bucket(float(aggregates.orders_count), cuts.frequency)
    monetary = _bucket(float(aggregates.total_spent), cuts.monetary)
    return Rfm(recency=recency, frequency=frequency, monetary=monetary)


def _days_since(aggregates: Aggregates, now: datetime) -> float:
    assert aggregates.last_order_at is not None
    return (now - aggregates.last_order_at) / timedelta(days=1)


def _quintiles(values: list[float]) -> tuple[float, float, float, float]:
    """Nearest-rank percentiles of sorted values."""
    n = len(values)
    p20, p40, p60, p80 = (values[max(0, math.ceil(q * n / 5) - 1)] for q in (1, 2, 3, 4))
    return (p20, p40, p60, p80)


def _bucket(value: float, cuts: tuple[float, float, float, float]) -> int:
    """1 for values up to the first cut, ..., 5 above the last."""
    return 1 + sum(1 for cut in cuts if value > cut)
