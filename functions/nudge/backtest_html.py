"""`nudge backtest --html`: the backtest as one self-contained page (inline CSS, server-drawn SVG, no script).

It writes the same `Backtest` the terminal tables print. The weekly chart stacks each flow's messages per
week; its SVG scales to the page width (a phone gets the whole year, narrower). Flow and step ids come
from files a user wrote, so every text goes through Jinja2's autoescaping.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from importlib import resources

import jinja2

from nudge.domain.frozen import dataclass
from nudge.flow_layout import coordinate
from nudge.local.backtest import BUSY_WEEK, Backtest, FlowRow, Side, StepRow

# One colour per flow, in the order of the flows table; the screenshot test finds the chart by the first.
PALETTE = ("#1f6fd1", "#e07a10", "#2a9d5b", "#b9407a", "#7a5ac8", "#8c6d1f", "#17a2b8", "#d64541", "#5d6d7e")
CADENCE_COLOUR = "#33475b"
CHART_WIDTH = 960.0
CHART_HEIGHT = 220.0
AXIS_PX = 34.0  # left margin for the scale
BASE_PX = 22.0  # bottom margin for the month labels


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: float
    height: float
    bars: list[Bar]
    months: list[Tick]
    scale: list[Tick]
    legend: list[tuple[str, str]]  # flow, colour


@dataclass(frozen=True, slots=True)
class Page:
    title: str
    subtitle: str
    cards: list[tuple[str, str]]
    chart: Chart
    flows: list[list[str]]
    steps: list[list[str]]
    cadence: Chart
    cadence_note: str
    overlaps: list[list[str]]
    attribution: str
    window: str


FLOW_COLUMNS = (
    "flow",
    "entered",
    "contacts",
    "sent",
    "skipped",
    "failed",
    "goal reached",
    "exited",
    "orders",
    "revenue",
)
STEP_COLUMNS = ("flow", "step", "channel", "sent", "skipped, by reason", "failed", "orders", "revenue")
NOTE = (
    "Orders placed within {window} after a message of the flow (last touch). Correlation, not lift: the past "
    "never saw these messages, so these orders happened without them. Only a holdout (a split step's "
    "`holdout:` share, run live) measures what a flow adds."
)


def _money(value: object) -> str:
    return f"{value:,.2f}"


def _reasons(step: StepRow | FlowRow) -> str:
    return ", ".join(f"{r} {n}" for r, n in sorted(step.skipped.items(), key=lambda kv: (-kv[1], kv[0]))) or "–"


def flow_cells(row: FlowRow) -> list[str]:
    return [
        row.flow_id,
        f"{row.entered:,}",
        f"{row.contacts:,}",
        f"{row.sent:,}",
        f"{sum(row.skipped.values()):,}",
        f"{row.failed:,}",
        f"{row.goal_reached:,}",
        f"{sum(row.exited.values()):,}",
        f"{row.orders:,}",
        _money(row.revenue),
    ]


def step_cells(row: StepRow) -> list[str]:
    return [
        row.flow_id,
        row.step_id,
        row.channel,
        f"{row.sent:,}",
        _reasons(row),
        f"{row.failed:,}",
        f"{row.orders:,}",
        _money(row.revenue),
    ]


def weekly_chart(result: Backtest, flows: Sequence[str] | None = None) -> Chart:
    """Stacked bars: per week (every week of the span, empty ones too), each flow's messages sent."""
    order = list(flows if flows is not None else [f.flow_id for f in result.flows])
    colours = {flow: PALETTE[i % len(PALETTE)] for i, flow in enumerate(order)}
    first = result.start.date() - timedelta(days=result.start.date().weekday())
    weeks: list[date] = []
    week = first
    while week < result.end.date():
        weeks.append(week)
        week += timedelta(days=7)
    top = max((sum(c for f, c in result.weekly.get(w, {}).items() if f in colours) for w in weeks), default=0)
    top = max(top, 1)
    plot_w, plot_h = CHART_WIDTH - AXIS_PX, CHART_HEIGHT - BASE_PX - 8
    slot = plot_w / max(len(weeks), 1)
    bars: list[Bar] = []
    months: list[Tick] = []
    for i, week in enumerate(weeks):
        x = AXIS_PX + i * slot
        y = CHART_HEIGHT - BASE_PX
        for flow in order:
            count = result.weekly.get(week, {}).get(flow, 0)
            if not count:
                continue
            height = count / top * plot_h
            y -= height
            title = f"{flow}: {count:,} in the week of {week:%Y-%m-%d}"
            bars.append(Bar(x + slot * 0.1, y, max(slot * 0.8, 1.0), height, colours[flow], title))
        if i == 0 or week.month != weeks[i - 1].month:
            months.append(Tick(x, CHART_HEIGHT - 6, f"{week:%b %y}" if week.month == 1 or i == 0 else f"{week:%b}"))
    scale = [Tick(AXIS_PX - 4, CHART_HEIGHT - BASE_PX - v / top * plot_h + 4, f"{v:,}") for v in _ticks(top)]
    return Chart(CHART_WIDTH, CHART_HEIGHT, bars, _thinned(months), scale, [(f, colours[f]) for f in order])


def _ticks(top: int) -> list[int]:
    """0, the top, and the middle when it is a whole number (a label must sit where its value is)."""
    return [0, top // 2, top] if top % 2 == 0 and top > 2 else [0, top]


def _thinned(months: list[Tick]) -> list[Tick]:
    """Every month's label while they fit; every other one (or fewer) over longer spans."""
    step = 1 + len(months) // 13
    return months[::step]


def cadence_chart(result: Backtest) -> Chart:
    """Contact-weeks by how many messages the contact got that week (1, 2, 3, 4+)."""
    counts = result.cadence.histogram
    top = max(max(counts.values(), default=0), 1)
    width, height = 320.0, 150.0
    plot_h = height - BASE_PX - 12
    slot = (width - AXIS_PX) / max(len(counts), 1)
    bars, labels = [], []
    for i, (label, count) in enumerate(counts.items()):
        x = AXIS_PX + i * slot
        bar_h = count / top * plot_h
        title = f"{count:,} contact-weeks with {label} message(s)"
        bars.append(Bar(x + slot * 0.2, height - BASE_PX - bar_h, slot * 0.6, bar_h, CADENCE_COLOUR, title))
        labels.append(Tick(x + slot * 0.5, height - 6, label))
    scale = [Tick(AXIS_PX - 4, height - BASE_PX - v / top * plot_h + 4, f"{v:,}") for v in _ticks(top)]
    return Chart(width, height, bars, labels, scale, [])


def page(result: Backtest, *, window: str) -> Page:
    sent = sum(f.sent for f in result.flows)
    cadence = result.cadence
    busiest = (
        f"; the busiest: {cadence.busiest[2]} messages in the week of {cadence.busiest[1]:%Y-%m-%d}"
        if cadence.busiest
        else ""
    )
    return Page(
        title="nudge backtest",
        subtitle=f"{result.start:%Y-%m-%d} to {result.end:%Y-%m-%d} · replayed, nothing sent",
        cards=[
            ("contacts", f"{result.contacts:,}"),
            ("messages", f"{sent:,}"),
            ("skipped", f"{sum(sum(f.skipped.values()) for f in result.flows):,}"),
            (f"contact-weeks with {BUSY_WEEK}+", f"{cadence.busy:,}"),
            ("orders in the span", f"{result.orders:,}"),
            (f"after a message ({window})", f"{result.attributed_orders:,}"),
        ],
        chart=weekly_chart(result),
        flows=[flow_cells(f) for f in result.flows],
        steps=[step_cells(s) for s in result.steps],
        cadence=cadence_chart(result),
        cadence_note=(
            f"{cadence.contact_weeks:,} contact-weeks with a message, "
            f"mean {cadence.mean:.2f} per contact-week{busiest}."
        ),
        overlaps=[[o.first, o.second, f"{o.contacts:,}"] for o in result.overlaps],
        attribution=(
            f"{result.orders:,} orders ({_money(result.revenue)}) between {result.start:%Y-%m-%d} and "
            f"{result.end:%Y-%m-%d}; {result.attributed_orders:,} of them ({_money(result.attributed_revenue)}) "
            f"followed a message within {window}."
        ),
        window=window,
    )


def render(result: Backtest, *, window: str) -> str:
    return _template().render(
        page=page(result, window=window),
        compare=None,
        flow_columns=FLOW_COLUMNS,
        step_columns=STEP_COLUMNS,
        note=NOTE.format(window=window),
        busy_week=BUSY_WEEK,
    )


@dataclass(frozen=True, slots=True)
class Version:
    name: str
    flow: list[str]
    steps: list[list[str]]
    chart: Chart
    busy: str


def render_comparison(flow_id: str, a: Side, b: Side, *, window: str) -> str:
    """Two versions of one flow side by side: its figures, its steps and its weekly chart in each."""
    versions = [
        Version(
            name=side.path.name,
            flow=flow_cells(side.flow(flow_id)),
            steps=[step_cells(s) for s in side.steps(flow_id)],
            chart=weekly_chart(side.result, [flow_id]),
            busy=f"{side.result.cadence.busy:,}",
        )
        for side in (a, b)
    ]
    return _template().render(
        page=page(a.result, window=window),
        compare={"flow": flow_id, "versions": versions},
        flow_columns=FLOW_COLUMNS,
        step_columns=STEP_COLUMNS,
        note=NOTE.format(window=window),
        busy_week=BUSY_WEEK,
    )


def _template() -> jinja2.Template:
    source = resources.files("nudge").joinpath("backtest.html.j2").read_text(encoding="utf-8")
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True)
    environment.filters["n"] = coordinate
    return environment.from_string(source)
