"""Lifecycle stages, RFM scores and the predicted next order: pure functions of aggregates and `now`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from nudge.domain.aggregates import Aggregates
from nudge.domain.frozen import dataclass

DAY = timedelta(days=1)
# The sweep looks this many days back for reviews it missed (a failed or late daily run); older ones wait
# for the contact's next event. Longer costs one more index query per day per shard. Here rather than in
# domain.segments (which re-exports it), so the store reads it without importing pydantic (ADR 0020).
REVIEW_LOOKBACK_DAYS = 7


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
    """The last order plus the median gap between the contact's recent orders; None under two orders.

    Gaps under a day (two orders the same day) do not count, so the date is never the last order itself.
    A rule of thumb that needs no model and may lie in the past: `predictions.Predictions.next_order_at`
    (the daily job's, for every buyer) is the one to aim at.
    """
    if len(aggregates.recent_orders) < 2:
        return None  # no gap yet (asked for every contact view, most of them of one order or none)
    times = [order.placed_at for order in aggregates.recent_orders]
    gaps = sorted(
        gap.total_seconds() for earlier, later in zip(times, times[1:], strict=False) if (gap := later - earlier) >= DAY
    )
    if not gaps:
        return None
    # statistics.median's own rule, without its checks and copies: asked for every contact view after an order
    middle = len(gaps) // 2
    median_seconds = gaps[middle] if len(gaps) % 2 else (gaps[middle - 1] + gaps[middle]) / 2
    return times[-1] + timedelta(seconds=median_seconds)


# RFM ---------------------------------------------------------------------------------------------------
# Scores are quintiles of the customer base by rank, ties kept together (`_quintiles` has the cut rules).
# The cut points need every buyer, so they are recomputed by the daily job (one pass); a contact's score is
# then a lookup, always current for its recency.


@dataclass(frozen=True, slots=True)
class RfmCuts:
    """Where recency (days), frequency (orders) and monetary value are cut into five scores (~ the quintiles)."""

    recency_days: tuple[float, float, float, float]
    frequency: tuple[float, float, float, float]
    monetary: tuple[float, float, float, float]
    buyers: int = 0  # how many customers they were cut from

    def to_record(self) -> dict[str, Any]:
        return {
            "recency_days": list(self.recency_days),
            "frequency": list(self.frequency),
            "monetary": list(self.monetary),
            "buyers": self.buyers,
        }

    @staticmethod
    def from_record(record: Mapping[str, Any]) -> RfmCuts:
        def four(values: Any) -> tuple[float, float, float, float]:
            a, b, c, d = (float(v) for v in values)
            return (a, b, c, d)

        return RfmCuts(
            four(record["recency_days"]), four(record["frequency"]), four(record["monetary"]), int(record["buyers"])
        )


@dataclass(frozen=True, slots=True)
class Rfm:
    recency: int
    frequency: int
    monetary: int

    @property
    def code(self) -> str:
        """ "541": recency 5, frequency 4, monetary 1 (how marketers write RFM cells)."""
        return f"{self.recency}{self.frequency}{self.monetary}"

    @staticmethod
    def from_code(code: str) -> Rfm:
        if len(code) != 3 or any(c not in "12345" for c in code):
            raise ValueError(f"an RFM code is three digits 1-5, not {code!r}")
        return Rfm(int(code[0]), int(code[1]), int(code[2]))

    def template_view(self) -> dict[str, Any]:
        return {"recency": self.recency, "frequency": self.frequency, "monetary": self.monetary, "code": self.code}


@dataclass(frozen=True, slots=True)
class RfmInputs:
    """What RFM needs of a customer: three numbers (the daily job keeps only these for the whole base)."""

    recency_days: float
    orders: float
    spent: float

    @staticmethod
    def of(aggregates: Aggregates, now: datetime) -> RfmInputs | None:
        """None for a contact without an order: RFM scores customers only."""
        if aggregates.orders_count <= 0 or aggregates.last_order_at is None:
            return None
        recency = (now - aggregates.last_order_at) / timedelta(days=1)
        return RfmInputs(recency, float(aggregates.orders_count), float(aggregates.total_spent))


def cuts_of(recency_days: Sequence[float], orders: Sequence[float], spent: Sequence[float]) -> RfmCuts | None:
    """Quintile cut points of the three columns (one value per buyer, any order); None if empty.

    Each column is sorted in turn, so at most one sorted copy exists at a time (the daily job passes
    compact `array('d')` columns: 8 bytes a value instead of a Python float's 32).
    """
    if not recency_days:
        return None
    return RfmCuts(
        _quintiles(sorted(recency_days)), _quintiles(sorted(orders)), _quintiles(sorted(spent)), len(recency_days)
    )


def rfm_cuts(customers: Iterable[Aggregates], now: datetime) -> RfmCuts | None:
    """Quintile cut points over every contact with an order; None if nobody has ordered."""
    buyers = [found for a in customers if (found := RfmInputs.of(a, now)) is not None]
    return cuts_of([b.recency_days for b in buyers], [b.orders for b in buyers], [b.spent for b in buyers])


def score(inputs: RfmInputs, cuts: RfmCuts) -> Rfm:
    """Scores 1-5 each (5 best: most recent, most frequent, biggest spender)."""
    recency = 5 - _bucket(inputs.recency_days, cuts.recency_days) + 1
    return Rfm(recency, _bucket(inputs.orders, cuts.frequency), _bucket(inputs.spent, cuts.monetary))


def rfm_score(aggregates: Aggregates, cuts: RfmCuts, now: datetime) -> Rfm | None:
    """The contact's scores at `now` against these cut points; None for non-buyers."""
    inputs = RfmInputs.of(aggregates, now)
    return score(inputs, cuts) if inputs is not None else None


def _quintiles(values: list[float]) -> tuple[float, float, float, float]:
    """Four cut points of sorted values: quintiles by rank, ties kept together, every score reachable.

    A score is 1 + the number of cuts a value exceeds, so a cut must fall between two distinct values and a
    tie group (half the base bought once) lands whole in one score. The rules, cut k = 1..4 in turn:
    among the distinct values, pick the one whose count of buyers at or below it is nearest ceil(k * n / 5),
    the nearest rank of the k-th quintile (the earlier on a tie; so without ties these are the classic
    nearest-rank percentiles), above the previous cut and leaving a distinct value for each score to come.
    So with five or more distinct values all five scores occur, each as close to a fifth of the base as the
    ties allow: with orders 1 (half the base), 2, 3, 4 and 5+, those are scores 1 to 5. With fewer than five
    distinct values no rule lets every score occur; the cuts are then the plain nearest-rank percentiles.
    """
    n = len(values)
    distinct: list[float] = []
    cumulative: list[int] = []  # buyers at or below each distinct value
    for i, value in enumerate(values, start=1):
        if distinct and distinct[-1] == value:
            cumulative[-1] = i
        else:
            distinct.append(value)
            cumulative.append(i)
    m = len(distinct)
    if m < 5:  # five scores cannot all occur: the plain nearest-rank percentiles, as before ties were handled
        p20, p40, p60, p80 = (values[math.ceil(k * n / 5) - 1] for k in range(1, 5))
        return (p20, p40, p60, p80)
    cuts: list[float] = []
    lowest = 0
    for k in range(1, 5):
        target = math.ceil(k * n / 5)  # nearest-rank: without ties, exactly the classic percentile
        highest = m - (5 - k)  # exclusive: leave a distinct value above for each later score
        j = min(range(lowest, highest), key=lambda i: (abs(cumulative[i] - target), i))
        cuts.append(distinct[j])
        lowest = j + 1
    return (cuts[0], cuts[1], cuts[2], cuts[3])


def _bucket(value: float, cuts: tuple[float, float, float, float]) -> int:
    """1 for values up to the first cut, ..., 5 above the last."""
    return 1 + sum(1 for cut in cuts if value > cut)
