"""Send-time optimisation (ADR 0019): each contact's best hour of the day, from their own opens and clicks.

A contact keeps a 24-bucket histogram of when they engaged (UTC hours, on the contact's aggregates: an open
counts 1, a click 2; halved when it passes DECAY_AT, so recent habits weigh more). The daily job adds
every contact's histogram, read in their own time zone, into the shop-wide curve (a document). A contact's
best local hour is the mode of their own histogram shrunk toward that curve:

    score(h) = (own(h) + PRIOR_STRENGTH * prior(h)) / (own_total + PRIOR_STRENGTH)

so with a few engagements the shop's curve decides, and after a dozen their own habit does. The prior is
the shop curve once MIN_SHOP_CONTACTS engaged contacts feed it; below that it is blended, in proportion,
with DEFAULT_HOUR (10:00 local), which is also what a shop with no history at all gets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import field
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from nudge.domain.frozen import dataclass

HOURS = 24
OPEN_WEIGHT, CLICK_WEIGHT = 1, 2
DECAY_AT = 240  # a histogram past this many points is halved: the recent weighs more
PRIOR_STRENGTH = 8.0  # the curve counts as eight engagements of the contact's own
MIN_SHOP_CONTACTS = 1000  # engaged contacts before the shop curve stands alone (Klaviyo needs 12,000)
DEFAULT_HOUR = 10
CURVE_DOCUMENT = "send_time_curve"


def engaged(hours: Sequence[int], at: datetime, weight: int) -> tuple[int, ...]:
    """The histogram with one engagement at `at` added (its UTC hour)."""
    counts = list(hours) if len(hours) == HOURS else [0] * HOURS
    counts[at.astimezone(UTC).hour] += weight
    if sum(counts) > DECAY_AT:
        counts = [c // 2 for c in counts]
    return tuple(counts)


def local_hours(utc_hours: Sequence[int], zone: ZoneInfo, day: date) -> list[int]:
    """The UTC histogram read in `zone` on `day` (its offset at noon there; a half-hour zone rounds down)."""
    if len(utc_hours) != HOURS:
        return [0] * HOURS
    offset = datetime.combine(day, time(12), zone).utcoffset()
    shift = int((offset.total_seconds() if offset else 0) // 3600)
    local = [0] * HOURS
    for hour, count in enumerate(utc_hours):
        local[(hour + shift) % HOURS] += count
    return local


@dataclass(slots=True)
class ShopCurve:
    """Engagement by local hour over the shop's contacts, and how many engaged contacts it holds."""

    hours: list[float] = field(default_factory=lambda: [0.0] * HOURS)
    contacts: int = 0

    def add(self, local: Sequence[int]) -> None:
        """One contact's local histogram, normalised: each engaged contact weighs the same."""
        total = sum(local)
        if total <= 0:
            return
        self.contacts += 1
        for hour, count in enumerate(local):
            self.hours[hour] += count / total

    def prior(self) -> list[float]:
        """What a contact's own history is shrunk toward: the curve, blended with the default hour while
        fewer than MIN_SHOP_CONTACTS feed it. Sums to 1."""
        share = min(1.0, self.contacts / MIN_SHOP_CONTACTS)
        total = sum(self.hours)
        return [
            share * (self.hours[h] / total if total else 0.0) + (1 - share) * (h == DEFAULT_HOUR) for h in range(HOURS)
        ]

    def to_record(self) -> dict[str, Any]:
        return {"hours": [round(h, 4) for h in self.hours], "contacts": self.contacts}

    @staticmethod
    def from_record(record: Mapping[str, Any] | None) -> ShopCurve:
        hours = list((record or {}).get("hours") or [])
        if len(hours) != HOURS:
            return ShopCurve()
        return ShopCurve([float(h) for h in hours], int((record or {}).get("contacts", 0)))


def best_hour(local: Sequence[int], prior: Sequence[float]) -> int:
    """The contact's best local hour: their histogram shrunk toward the prior; a tie goes nearest 10:00."""
    own = sum(local)

    def score(hour: int) -> tuple[float, int]:
        return (local[hour] + PRIOR_STRENGTH * prior[hour]) / (own + PRIOR_STRENGTH), -abs(hour - DEFAULT_HOUR)

    return max(range(HOURS), key=score)


def explore_hour(key: str) -> int:
    """Exploration: an hour spread evenly over the day by a hash, to learn the curve."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % HOURS
