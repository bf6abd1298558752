"""How the KPI report writes its figures, in one place: the terminal tables and the HTML page print the same text."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from nudge.domain.campaigns import Campaign, campaign_id_of
from nudge.domain.kpis import CONFIDENCE, Kpis, Report, SplitVerdict
from nudge.domain.predictions import Outlook
from nudge.domain.send_time import DEFAULT_HOUR, HOURS, MIN_SHOP_CONTACTS, ShopCurve, best_hour
from nudge.domain.validation import validate

KPI_COLUMNS = (
    "entered",
    "converted",
    "conv. rate",
    "sent",
    "skipped",
    "failed",
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "complaints",
    "unsub.",
    "orders",
    "revenue",
    "AOV",
    "rev/recip.",
    "CLV",
)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def amount(value: Decimal | None) -> str:
    return "–" if value is None else f"{value:,}"


def kpi_cells(row: Kpis) -> list[str]:
    """One row under KPI_COLUMNS. Entries and conversions belong to runs, so a step row leaves them blank."""
    per_run = row.step_id is None
    return [
        str(row.entered) if per_run else "",
        str(row.converted) if per_run else "",
        percent(row.conversion_rate) if per_run else "",
        str(row.sent),
        str(row.skipped),
        str(row.failed),
        str(row.delivered),
        str(row.opened),
        str(row.clicked),
        str(row.bounced),
        str(row.complained),
        str(row.unsubscribed),
        str(row.orders),
        amount(row.revenue),
        amount(row.aov),
        amount(row.revenue_per_recipient),
        amount(row.clv),
    ]


def kpi_tables(report: Report) -> list[tuple[str, str, list[tuple[str, list[str]]]]]:
    """(title, first column, [(row label, cells)]) for flows, steps and split variants; empty tables too.
    Campaigns (ADR 0019) get a table of their own, after the flows', when there are any."""
    flows = [r for r in report.flows if campaign_id_of(r.flow_id) is None]
    campaigns = [(campaign_id_of(r.flow_id) or r.flow_id, kpi_cells(r)) for r in report.flows if r not in flows]
    return [
        ("Flows", "flow", [(r.flow_id, kpi_cells(r)) for r in flows]),
        *([("Campaigns", "campaign", campaigns)] if campaigns else []),
        ("Steps", "flow · step", [(f"{r.flow_id} · {r.step_id}", kpi_cells(r)) for r in report.steps]),
        ("Split variants", "flow · variant", [(f"{r.flow_id} · {r.variant}", kpi_cells(r)) for r in report.variants]),
    ]


def verdict_text(verdict: SplitVerdict) -> str:
    """`a vs b, z=…, p=… → winner: a at 95% confidence; holdout lift +12.0%`."""
    outcome = f"winner: {verdict.winner}" if verdict.winner else "no winner yet"
    lift = "" if verdict.holdout_lift is None else f"; holdout lift {verdict.holdout_lift:+.1%}"
    if verdict.runner_up is None:  # a holdout against one treated group: no test, only the lift
        return f"treated vs holdout{lift or ': no conversions in the holdout yet'}"
    return (
        f"{verdict.best} vs {verdict.runner_up}, z={verdict.z:.2f}, p={verdict.p_value:.4f} → "
        f"{outcome} at {CONFIDENCE:.0%} confidence{lift}"
    )


def outlook_lines(outlook: Outlook | None) -> list[str]:
    """The predictions over the base, in a few lines (the terminal and the page print the same)."""
    if outlook is None:
        return []
    if outlook.reason is not None:
        return [f"Predictions: none ({outlook.reason})."]
    low, some, high, likely_gone = outlook.churn_bands
    return [
        f"Predictions for {outlook.predicted} of {outlook.buyers} customers: "
        f"{outlook.orders_90d:,.1f} orders expected in the next 90 days, {outlook.clv:,.2f} in the next 365.",
        f"Churn risk: under 0.2 {low} · 0.2–0.5 {some} · 0.5–0.8 {high} · over 0.8 {likely_gone}.",
    ]


SPARKS = "▁▂▃▄▅▆▇█"


def curve_shares(curve: ShopCurve) -> list[float]:
    """Each local hour's share of the shop's engagement (sums to 1; all 0 without history)."""
    total = sum(curve.hours)
    return [h / total if total else 0.0 for h in curve.hours]


def send_time_lines(curve: ShopCurve | None, *, spark: bool = True) -> list[str]:
    """The shop's send-time curve in a few lines: who feeds it, the hour a contact without history gets,
    the curve as a spark line over the 24 local hours, and its peak hours (the terminal and the page)."""
    if curve is None or curve.contacts == 0:
        return [
            "Send-time curve: none yet (the daily job builds it from opens and clicks); "
            f"best-time sends go at {DEFAULT_HOUR:02d}:00 local until then."
        ]
    shares = curve_shares(curve)
    top = max(shares) or 1.0
    blend = (
        ""
        if curve.contacts >= MIN_SHOP_CONTACTS
        else f", blended with {DEFAULT_HOUR:02d}:00 until {MIN_SHOP_CONTACTS:,}"
    )
    peaks = sorted(range(HOURS), key=lambda h: (-shares[h], h))[:3]
    return [
        f"Send-time curve: {curve.contacts:,} engaged contacts, by local hour{blend}; "
        f"a contact without history gets {best_hour([0] * HOURS, curve.prior()):02d}:00.",
        *(["  " + "".join(SPARKS[min(7, int(s / top * 8))] for s in shares) + "  (00:00 to 23:00)"] if spark else []),
        "  peak hours: " + ", ".join(f"{h:02d}:00 ({shares[h]:.1%})" for h in peaks),
    ]


def campaign_words(document: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """A campaign's stored document in words: (title, status · schedule · audience · holdout, the A/B test
    and its decision or None), for the page's campaign section and the terminal."""
    campaign = validate(Campaign, document["definition"])
    schedule = campaign.schedule
    if schedule.at is not None:
        when = f"at {schedule.at:%Y-%m-%d %H:%M} UTC"
    elif schedule.local_time is not None:
        when = f"at {schedule.local_time} local on {schedule.date}"
    elif schedule.best_time == "explore":
        when = f"spread over {schedule.date} to learn the curve"
    elif schedule.best_time:
        when = f"at each recipient's best hour on {schedule.date}"
    else:
        when = "at once"
    audience = campaign.audience
    named = [*audience.segments, *audience.stages, *(f"#{tag}" for tag in audience.tags)]
    excluded = [*audience.exclude_segments, *(f"#{tag}" for tag in audience.exclude_tags)]
    who = (", ".join(named) or "every contact") + (f" minus {', '.join(excluded)}" if excluded else "")
    about = f"campaign · {document.get('status', '?')} · sent {when} · to {who}"
    if campaign.holdout:
        about += f" · holdout {campaign.holdout:g}%"
    return f"{campaign.name} (campaign {campaign.id})", about, _ab_words(campaign, document.get("ab_verdict"))


def _ab_words(campaign: Campaign, verdict: Mapping[str, Any] | None) -> str | None:
    test = campaign.ab_test
    if test is None:
        return None
    metric = test.metric.replace("_", " ")
    if verdict is None:
        after = "the last zone's send" if campaign.schedule.per_recipient else "the start"
        return (
            f"A/B on {metric}: {len(test.variants)} variants on {test.test_percent:g}% of the audience; "
            f"the winner is chosen {test.wait} after {after}"
        )
    hits = "opens" if test.metric == "open_rate" else "clicks"
    rates = ", ".join(
        f"{name} {percent(v[hits] / v['delivered'] if v['delivered'] else None)} of {v['delivered']}"
        for name, v in verdict["variants"].items()
    )
    judged = "significant" if verdict["significant"] else "not significant"
    return (
        f"A/B on {metric}: {verdict['winner']} went to the rest ({rates} delivered; "
        f"z={verdict['z']:.2f}, p={verdict['p_value']:.4f}, {judged} at {verdict['confidence']:.0%})"
    )
