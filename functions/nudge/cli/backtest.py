"""`nudge backtest`'s terminal output: the summary of `nudge.local.backtest` as rich tables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal

from rich.console import Console
from rich.table import Table

from nudge.local.backtest import BUSY_WEEK, Backtest, Counts, FlowRow, Replayed, Side

ATTRIBUTION_NOTE = (
    "orders/revenue: orders placed within {window} after a message (last touch). Correlation, not lift: "
    "these customers ordered without the messages, since the past never saw them; only a holdout "
    "(a split step with `holdout:`) run live measures what a flow adds."
)


def reasons(counted: Counter[str]) -> str:
    """`no_email_marketing_consent 3, smart_sending 1`, most frequent first."""
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def money(value: Decimal) -> str:
    return f"{value:,.2f}"


def print_backtest(console: Console, done: Replayed | Counts, result: Backtest, window: str) -> None:
    console.print(
        f"Replayed {done.replayed:,} events from {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d} "
        f"({done.backfilled:,} earlier ones as history), {done.worked:,} steps worked, {done.reviews} daily "
        f"reviews; {result.contacts:,} contacts. Nothing was sent.",
        highlight=False,
    )
    flows = Table(title="Flows", title_justify="left")
    for column in (
        "flow",
        "entered",
        "contacts",
        "sent",
        "skipped",
        "failed",
        "goal reached",
        "exited",
        "completed",
        "active",
    ):
        flows.add_column(column, justify="left" if column == "flow" else "right")
    flows.add_column("orders", justify="right")
    flows.add_column("revenue", justify="right")
    for row in result.flows:
        flows.add_row(
            row.flow_id,
            f"{row.entered:,}",
            f"{row.contacts:,}",
            f"{row.sent:,}",
            f"{sum(row.skipped.values()):,}",
            f"{row.failed:,}",
            f"{row.goal_reached:,}",
            f"{sum(row.exited.values()):,}",
            f"{row.completed:,}",
            f"{row.active_at_end:,}",
            f"{row.orders:,}",
            money(row.revenue),
        )
    console.print(flows)
    steps = Table(title="Steps (messages and webhooks)", title_justify="left")
    for column in ("flow", "step", "channel", "sent", "skipped, by reason", "failed", "orders", "revenue"):
        steps.add_column(column, justify="right" if column in ("sent", "failed", "orders", "revenue") else "left")
    for step in result.steps:
        steps.add_row(
            step.flow_id,
            step.step_id,
            step.channel,
            f"{step.sent:,}",
            reasons(step.skipped),
            f"{step.failed:,}",
            f"{step.orders:,}",
            money(step.revenue),
        )
    console.print(steps)
    exits = [(row.flow_id, row.exited) for row in result.flows if row.exited]
    for flow_id, counted in exits:
        console.print(f"  {flow_id} exits: {reasons(counted)}", highlight=False)
    cadence = result.cadence
    histogram = " · ".join(f"{k}: {v:,}" for k, v in cadence.histogram.items())
    console.print(
        f"\n[bold]Messages per contact per week[/] (email and SMS sent): {cadence.contact_weeks:,} contact-weeks "
        f"with any, mean {cadence.mean:.2f}; by messages that week: {histogram}",
        highlight=False,
    )
    if cadence.busiest is not None:
        contact_id, week, count = cadence.busiest
        console.print(
            f"  busiest: {count} messages in the week of {week:%Y-%m-%d} to {cadence.busiest_to or contact_id}",
            highlight=False,
        )
    if result.overlaps:
        overlaps = Table(title="Overlaps: contacts in two flows at once", title_justify="left")
        for column in ("flow", "flow", "contacts"):
            overlaps.add_column(column, justify="right" if column == "contacts" else "left")
        for overlap in result.overlaps:
            overlaps.add_row(overlap.first, overlap.second, f"{overlap.contacts:,}")
        console.print(overlaps)
    console.print(
        f"\n[bold]Orders[/] between {result.start:%Y-%m-%d} and {result.end:%Y-%m-%d}: {result.orders:,}, "
        f"revenue {money(result.revenue)}; {result.attributed_orders:,} of them ({money(result.attributed_revenue)}) "
        f"followed a message within {window}.",
        highlight=False,
    )
    console.print(ATTRIBUTION_NOTE.format(window=window), highlight=False)


def print_comparison(console: Console, flow_id: str, a: Side, b: Side) -> None:
    table = Table(title=f"{flow_id}: {a.path} vs {b.path}", title_justify="left")
    table.add_column("")
    table.add_column(a.path.name, justify="right")
    table.add_column(b.path.name, justify="right")
    rows: list[tuple[str, Callable[[FlowRow], str]]] = [
        ("entered", lambda f: f"{f.entered:,}"),
        ("sent", lambda f: f"{f.sent:,}"),
        ("skipped", lambda f: f"{sum(f.skipped.values()):,}"),
        ("failed", lambda f: f"{f.failed:,}"),
        ("goal reached", lambda f: f"{f.goal_reached:,}"),
        ("exited", lambda f: f"{sum(f.exited.values()):,}"),
        ("orders after a message", lambda f: f"{f.orders:,}"),
        ("their revenue", lambda f: money(f.revenue)),
    ]
    for label, pick in rows:
        table.add_row(label, pick(a.flow(flow_id)), pick(b.flow(flow_id)))
    table.add_row(
        f"all flows: contact-weeks with {BUSY_WEEK}+", f"{a.result.cadence.busy:,}", f"{b.result.cadence.busy:,}"
    )
    console.print(table)
    steps = Table(title="Steps", title_justify="left")
    for column in ("version", "step", "sent", "skipped, by reason", "orders", "revenue"):
        steps.add_column(column, justify="right" if column in ("sent", "orders", "revenue") else "left")
    for side in (a, b):
        for step in side.steps(flow_id):
            steps.add_row(
                side.path.name,
                step.step_id,
                f"{step.sent:,}",
                reasons(step.skipped),
                f"{step.orders:,}",
                money(step.revenue),
            )
    console.print(steps)
