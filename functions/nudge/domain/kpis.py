"""KPIs per flow, step and split variant, with last-touch revenue attribution. Pure, over small read models.

`MessageFacts` is what the KPIs need of a message record: its status and the first delivery, open,
click, bounce and complaint SES reported for it (issue #5's feedback). The attribution counts an open
or a click as a touch, like the send itself.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import field
from datetime import datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any

from nudge.domain.aggregates import money
from nudge.domain.frozen import dataclass
from nudge.domain.model import Channel, Message, MessageStatus, Run
from nudge.domain.predictions import Outlook
from nudge.domain.send_time import ShopCurve

DEFAULT_WINDOW = timedelta(days=5)
CONFIDENCE = 0.95
CAMPAIGN_FLOW_PREFIX = "campaign."  # domain/campaigns.FLOW_PREFIX (which imports this module)


@dataclass(frozen=True, slots=True)
class MessageFacts:
    contact_id: str
    message_id: str
    flow_id: str
    step_id: str
    variant: str | None  # "<split step>:<variant>"
    status: MessageStatus
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    opened_at: datetime | None = None
    clicked_at: datetime | None = None
    bounced: bool = False
    complained: bool = False  # a spam complaint: the address is unsubscribed from marketing email
    unsubscribed: bool = False  # the message's own unsubscribe link was used
    # An audience step's record counts as its step's "sent" (members added) but touches nobody: an ad
    # audience is not a message the shopper saw, so it takes no last-touch credit from one (ADR 0024).
    touching: bool = True

    @staticmethod
    def of(message: Message) -> MessageFacts:
        feedback = message.feedback
        return MessageFacts(
            contact_id=message.contact_id,
            message_id=message.message_id,
            flow_id=message.flow_id,
            step_id=message.step_id,
            variant=message.variant,
            status=message.status,
            sent_at=message.sent_at,
            delivered_at=feedback.get("delivery"),
            opened_at=feedback.get("open"),
            clicked_at=feedback.get("click"),
            bounced="bounce" in feedback,
            complained="complaint" in feedback,
            unsubscribed="unsubscribe" in feedback,
            touching=message.channel is not Channel.AUDIENCE,
        )

    def touches(self) -> list[datetime]:
        """The moments this message touched the contact: sent, opened, clicked."""
        if self.status is not MessageStatus.SENT or not self.touching:
            return []
        return [t for t in (self.sent_at, self.opened_at, self.clicked_at) if t is not None]


@dataclass(frozen=True, slots=True)
class Order:
    contact_id: str
    order_id: str
    placed_at: datetime
    total: Decimal


def order_of(contact_id: str, event_id: str, properties: Mapping[str, Any], placed_at: datetime) -> Order:
    """An order_placed event as an Order (`order_id`, else the event id; `total`)."""
    return Order(contact_id, str(properties.get("order_id") or event_id), placed_at, money(properties.get("total")))


def attribute(
    messages: Iterable[MessageFacts], orders: Iterable[Order], window: timedelta = DEFAULT_WINDOW
) -> dict[str, MessageFacts]:
    """Order id -> the message whose touch came last before the order, within the window (last touch); of two
    touches at one moment, the message with the greater id.

    Each contact's touches in order (by moment, then message id), so an order's is found by bisection: the
    last one strictly before it (the receipt an order triggers is sent at its moment and earns no credit for
    it), if that is within the window (an earlier one is further away). A contact's orders times their
    touches, compared one by one, was a tenth of a backtest's summary."""
    touches: dict[str, list[tuple[datetime, str, MessageFacts]]] = {}
    for message in messages:
        for moment in message.touches():
            touches.setdefault(message.contact_id, []).append((moment, message.message_id, message))
    for found in touches.values():
        found.sort(key=_MOMENT_THEN_ID)
    credited = {}
    for order in orders:
        theirs = touches.get(order.contact_id)
        if not theirs:
            continue
        last = bisect_left(theirs, order.placed_at, key=_MOMENT) - 1
        if last >= 0 and order.placed_at - theirs[last][0] <= window:
            credited[order.order_id] = theirs[last][2]
    return credited


_MOMENT = itemgetter(0)
_MOMENT_THEN_ID = itemgetter(0, 1)


@dataclass(slots=True)
class Kpis:
    """One row: a flow (step and variant None), a step, or a split variant."""

    flow_id: str
    step_id: str | None = None
    variant: str | None = None
    entered: int = 0
    converted: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    complained: int = 0
    unsubscribed: int = 0
    orders: int = 0
    revenue: Decimal = Decimal("0.00")
    recipients: set[str] = field(default_factory=set)
    entrants: set[str] = field(default_factory=set)  # contacts who entered (flow and variant rows)
    # Historic CLV: the mean net lifetime spend to date of the row's contacts (entrants of a flow or variant,
    # recipients of a step), buyers or not; None when the report was made without contacts' spend.
    clv: Decimal | None = None

    @property
    def conversion_rate(self) -> float | None:
        return self.converted / self.entered if self.entered else None

    @property
    def revenue_per_recipient(self) -> Decimal | None:
        return (self.revenue / len(self.recipients)).quantize(Decimal("0.01")) if self.recipients else None

    @property
    def aov(self) -> Decimal | None:
        return (self.revenue / self.orders).quantize(Decimal("0.01")) if self.orders else None


@dataclass(frozen=True, slots=True)
class SplitVerdict:
    """A split's winner on conversion rate, if the best variant beats the runner-up at CONFIDENCE."""

    flow_id: str
    split_id: str
    best: str
    runner_up: str | None  # None: one treated group (a campaign's holdout without a test): lift only
    z: float
    p_value: float
    winner: str | None
    holdout_lift: float | None  # (treated rate - holdout rate) / holdout rate


@dataclass(frozen=True, slots=True)
class Report:
    flows: list[Kpis]
    steps: list[Kpis]
    variants: list[Kpis]
    splits: list[SplitVerdict]
    outlook: Outlook | None = None  # the daily job's predictions over the base, when the report has them
    send_time: ShopCurve | None = None  # the shop's send-time curve (the daily job's), when the report has it
    # campaign flow id -> the campaign's stored document (definition, status, A/B verdict), when it has them
    campaigns: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def report(
    runs: Iterable[Run],
    messages: Iterable[MessageFacts],
    orders: Iterable[Order],
    window: timedelta = DEFAULT_WINDOW,
    lifetime_spend: Mapping[str, Decimal] | None = None,
) -> Report:
    """Every KPI row, and a verdict for every split. `lifetime_spend` (contact id -> net spend) gives CLV."""
    runs, messages, orders = list(runs), list(messages), list(orders)
    credited = attribute(messages, orders, window)
    flows: dict[str, Kpis] = {}
    steps: dict[tuple[str, str], Kpis] = {}
    variants: dict[tuple[str, str], Kpis] = {}
    for run in runs:
        row = flows.setdefault(run.flow_id, Kpis(run.flow_id))
        row.entered += 1
        row.converted += run.converted_at is not None
        row.entrants.add(run.contact_id)
        for split_id, name in run.variants.items():
            key = f"{split_id}:{name}"
            cell = variants.setdefault((run.flow_id, key), Kpis(run.flow_id, variant=key))
            cell.entered += 1
            cell.converted += run.converted_at is not None
            cell.entrants.add(run.contact_id)
    for message in messages:
        rows = [
            flows.setdefault(message.flow_id, Kpis(message.flow_id)),
            steps.setdefault((message.flow_id, message.step_id), Kpis(message.flow_id, step_id=message.step_id)),
        ]
        if message.variant:
            rows.append(
                variants.setdefault((message.flow_id, message.variant), Kpis(message.flow_id, variant=message.variant))
            )
        for row in rows:
            if message.status is MessageStatus.SENT:
                row.sent += 1
                row.recipients.add(message.contact_id)
                row.delivered += message.delivered_at is not None
                row.opened += message.opened_at is not None
                row.clicked += message.clicked_at is not None
                row.bounced += message.bounced
                row.complained += message.complained
                row.unsubscribed += message.unsubscribed
            elif message.status is MessageStatus.SKIPPED:
                row.skipped += 1
            elif message.status is MessageStatus.FAILED:
                row.failed += 1
    by_id = {o.order_id: o for o in orders}
    for order_id, message in credited.items():
        rows = [flows[message.flow_id], steps[(message.flow_id, message.step_id)]]
        if message.variant:
            rows.append(variants[(message.flow_id, message.variant)])
        for row in rows:
            row.orders += 1
            row.revenue += by_id[order_id].total
    if lifetime_spend is not None:
        for row in [*flows.values(), *variants.values()]:
            row.clv = _mean_spend(row.entrants, lifetime_spend)
        for row in steps.values():
            row.clv = _mean_spend(row.recipients, lifetime_spend)
    return Report(
        flows=sorted(flows.values(), key=lambda r: r.flow_id),
        steps=sorted(steps.values(), key=lambda r: (r.flow_id, r.step_id or "")),
        variants=sorted(variants.values(), key=lambda r: (r.flow_id, r.variant or "")),
        splits=_verdicts(variants.values()),
    )


def _mean_spend(contacts: set[str], lifetime_spend: Mapping[str, Decimal]) -> Decimal | None:
    if not contacts:
        return None
    total = sum((lifetime_spend.get(c, Decimal(0)) for c in contacts), Decimal(0))
    return (total / len(contacts)).quantize(Decimal("0.01"))


def leader_test(variants: Iterable[tuple[str, int, int]], confidence: float) -> tuple[str, str, float, float, bool]:
    """(name, base, hits) per variant, in their order: the leader on hits / base against the runner-up in a
    two-proportion z-test; (leader, runner-up, z, p, whether the leader is ahead at `confidence`). A tie
    goes to the variant listed first."""
    rows = list(variants)
    ranked = sorted(range(len(rows)), key=lambda i: (-(rows[i][2] / rows[i][1]) if rows[i][1] else 0.0, i))
    leader, runner_up = rows[ranked[0]], rows[ranked[1]]
    z, p = two_proportion_z(leader[2], leader[1], runner_up[2], runner_up[1])
    return leader[0], runner_up[0], z, p, z > 0 and p < 1 - confidence


def two_proportion_z(successes_a: int, n_a: int, successes_b: int, n_b: int) -> tuple[float, float]:
    """z and two-sided p-value for the difference of two proportions (pooled standard error)."""
    if n_a == 0 or n_b == 0:
        return 0.0, 1.0
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return 0.0, 1.0
    z = (successes_a / n_a - successes_b / n_b) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def _verdicts(cells: Iterable[Kpis]) -> list[SplitVerdict]:
    by_split: dict[tuple[str, str], list[Kpis]] = {}
    for cell in cells:
        if cell.variant and cell.entered:
            split_id = cell.variant.split(":", 1)[0]
            by_split.setdefault((cell.flow_id, split_id), []).append(cell)
    verdicts = []
    for (flow_id, split_id), group in sorted(by_split.items()):
        holdout = next((c for c in group if c.variant == f"{split_id}:holdout"), None)
        treated = [c for c in group if c is not holdout]
        # A campaign's `rest` groups got the A/B test's winner (or, without a test, the one email): they
        # count for the holdout's lift, but are no variant of the test (ADR 0019).
        contenders = sorted(
            (c for c in treated if not (flow_id.startswith(CAMPAIGN_FLOW_PREFIX) and _name(c).startswith("rest"))),
            key=lambda c: (-(c.conversion_rate or 0), c.variant or ""),
        )
        if len(contenders) < 2 and holdout is None:
            continue
        best = contenders[0] if contenders else treated[0]
        runner_up = contenders[1] if len(contenders) > 1 else None
        z, p = (0.0, 1.0)
        if runner_up is not None:
            z, p = two_proportion_z(best.converted, best.entered, runner_up.converted, runner_up.entered)
        lift = None
        if holdout is not None and holdout.converted:
            treated_rate = sum(c.converted for c in treated) / sum(c.entered for c in treated)
            holdout_rate = holdout.converted / holdout.entered
            lift = (treated_rate - holdout_rate) / holdout_rate
        verdicts.append(
            SplitVerdict(
                flow_id=flow_id,
                split_id=split_id,
                best=_name(best) if runner_up is not None else "",
                runner_up=_name(runner_up) if runner_up is not None else None,
                z=z,
                p_value=p,
                winner=_name(best) if runner_up is not None and p < 1 - CONFIDENCE and z > 0 else None,
                holdout_lift=lift,
            )
        )
    return verdicts


def _name(cell: Kpis) -> str:
    return (cell.variant or "").split(":", 1)[1]
