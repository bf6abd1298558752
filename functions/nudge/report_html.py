"""The KPI report as one self-contained HTML page: inline CSS and server-drawn SVG, no script, font or image.

`nudge report --html` writes it. It draws the same `Report` the terminal tables print, with the figures
written by `report_text`, so the two cannot disagree. The page is a file someone mails or attaches to a
ticket: nothing in it loads from the network (a Content-Security-Policy of `default-src 'none'` says so to
the browser too), and since flow and step ids come from stored data, every text goes through Jinja2's
autoescaping.

Flow diagrams are laid out by `flow_layout` from the edges `flow_tools` gives the Mermaid graph. A flow
with no runs and no messages in the report gets no diagram: it is listed under "no activity".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field, replace
from datetime import datetime
from decimal import Decimal
from importlib import resources
from typing import Any

import jinja2

from nudge.domain.campaigns import Campaign
from nudge.domain.flows import (
    BranchStep,
    EmailStep,
    Flow,
    SmsStep,
    SplitStep,
    Step,
    WaitStep,
    WaitUntilStep,
    WhatsAppStep,
)
from nudge.domain.frozen import dataclass
from nudge.domain.kpis import Kpis, Report, SplitVerdict
from nudge.domain.send_time import HOURS, ShopCurve, best_hour
from nudge.domain.validation import validate
from nudge.flow_layout import coordinate, layout
from nudge.flow_tools import edges, rules_label, step_label, trigger_label
from nudge.report_text import (
    KPI_COLUMNS,
    amount,
    campaign_words,
    curve_shares,
    kpi_cells,
    kpi_tables,
    outlook_lines,
    percent,
    send_time_lines,
    verdict_text,
)

# Fill colours that appear nowhere else on the page: the screenshot test finds the charts by them.
FUNNEL_COLOUR = "#2b6cd8"
REVENUE_COLOUR = "#e8770e"
CURVE_COLOUR = "#7a5cc7"  # the send-time curve's hours
BEST_COLOUR = "#1f9e6e"  # the hour a contact without history gets

TRIGGER = "\0trigger"  # the diagram's root; \0 keeps it apart from every step id
FONT_PX = 11.0
CHAR_EM = 0.58  # about DejaVu Sans's average advance: clips text to a box without font metrics
LINE_PX = 15.0
PAD_PX = 8.0
WIDTHS = {"trigger": 240.0, "email": 240.0, "sms": 240.0, "whatsapp": 240.0, "split": 240.0, "wait": 160.0, "end": 64.0}
STEP_WIDTH = 200.0

BRIEF_COLUMNS = ("entered", "converted", "conv. rate", "sent", "orders", "revenue")
BAR_ROW_PX = 24.0
CHART_LABEL_PX = 124.0
CHART_BAR_PX = 190.0
CHART_WIDTH = 440.0  # label, bar, and the figures after the bar


def clip(text: str, width: float) -> str:
    """Cut text to what fits in `width` pixels (estimated), with an ellipsis."""
    room = int((width - 2 * PAD_PX) / (FONT_PX * CHAR_EM))
    return text if len(text) <= room else text[: max(room - 1, 1)].rstrip() + "…"


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    style: str  # a CSS class: head, sub, num or dim


@dataclass(frozen=True, slots=True)
class Box:
    step_id: str | None  # None: the trigger
    kind: str
    whole: tuple[Line, ...]  # unclipped, for the tooltip
    x: float
    y: float
    width: float
    height: float

    @property
    def lines(self) -> list[tuple[float, Line]]:
        """Each line clipped to the box, with its baseline."""
        return [
            (self.y + PAD_PX + LINE_PX * (i + 1) - 4, Line(clip(line.text, self.width), line.style))
            for i, line in enumerate(self.whole)
        ]

    @property
    def tooltip(self) -> str:
        return "\n".join(line.text for line in self.whole)


@dataclass(frozen=True, slots=True)
class EdgeView:
    path: str
    label: str
    label_x: float
    label_y: float
    back: bool

    @property
    def label_width(self) -> float:
        return len(self.label) * FONT_PX * CHAR_EM + 6


@dataclass(frozen=True, slots=True)
class Diagram:
    width: float
    height: float
    boxes: list[Box]
    edges: list[EdgeView]


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: str
    y: float
    width: float


@dataclass(frozen=True, slots=True)
class BarChart:
    title: str
    caption: str
    colour: str
    bars: list[Bar]
    label_width: float = CHART_LABEL_PX
    width: float = CHART_WIDTH

    @property
    def height(self) -> float:
        return BAR_ROW_PX * len(self.bars) + 4


@dataclass(frozen=True, slots=True)
class HourBar:
    hour: int
    x: float
    y: float
    height: float
    share: str
    best: bool


@dataclass(frozen=True, slots=True)
class HourChart:
    """The shop's send-time curve: one column per local hour, the best hour for a newcomer in its own colour."""

    bars: list[HourBar]
    column: float = 26.0
    base: float = 118.0  # the columns' foot; hour labels below it
    width: float = 26.0 * 24 + 8
    height: float = 140.0
    colour: str = CURVE_COLOUR
    best_colour: str = BEST_COLOUR


def _send_time_chart(curve: ShopCurve | None) -> HourChart | None:
    if curve is None or curve.contacts == 0:
        return None
    shares = curve_shares(curve)
    top = max(shares) or 1.0
    best = best_hour([0] * HOURS, curve.prior())
    chart = HourChart([])
    for hour, share in enumerate(shares):
        height = max(1.0, round(share / top * 100, 1))
        chart.bars.append(
            HourBar(hour, 4 + hour * chart.column, chart.base - height, height, percent(share), hour == best)
        )
    return chart


def brief_cells(row: Kpis) -> list[str]:
    """The few figures (BRIEF_COLUMNS) of the flow index and the split tables."""
    return [
        str(row.entered),
        str(row.converted),
        percent(row.conversion_rate),
        str(row.sent),
        str(row.orders),
        amount(row.revenue),
    ]


@dataclass(frozen=True, slots=True)
class VariantRow:
    name: str
    row: Kpis
    winner: bool


@dataclass(frozen=True, slots=True)
class SplitView:
    split_id: str
    variants: list[VariantRow]
    verdict: str


@dataclass(frozen=True, slots=True)
class FlowSection:
    flow_id: str
    title: str
    row: Kpis
    funnel: BarChart
    step_revenue: BarChart | None
    splits: list[SplitView]
    diagram: Diagram | None = None
    rules: str | None = None
    loose_steps: list[tuple[str, list[str]]] = field(default_factory=list)  # step rows the diagram cannot show
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    generated_at: str
    window: str
    totals: list[tuple[str, str]]
    revenue: BarChart | None
    sections: list[FlowSection]
    idle: list[tuple[str, str]]  # (flow id, what starts it)
    tables: list[tuple[str, str, list[tuple[str, list[str]]]]]  # (title, first column, rows)
    columns: Sequence[str] = KPI_COLUMNS
    brief_columns: Sequence[str] = BRIEF_COLUMNS
    outlook: Sequence[str] = ()  # report_text.outlook_lines: the predictions over the base
    send_time: HourChart | None = None  # the shop's send-time curve
    send_time_text: Sequence[str] = ()  # report_text.send_time_lines, its words


def render(report: Report, flows: Iterable[Flow], *, generated_at: datetime, window: str) -> str:
    """The whole page for this report; `flows` supplies the diagrams (a flow may be missing from it)."""
    content = page(report, flows, generated_at=generated_at, window=window)
    return _template().render(page=content)


def page(report: Report, flows: Iterable[Flow], *, generated_at: datetime, window: str) -> Page:
    """What the page shows, computed: the template only writes it out."""
    by_id = {flow.id: flow for flow in flows}
    active = {row.flow_id for row in report.flows}
    campaigns = {flow_id: _campaign_flow(document) for flow_id, document in report.campaigns.items()}
    return Page(
        generated_at=f"{generated_at:%Y-%m-%d %H:%M} {generated_at.tzname() or ''}".strip(),
        window=window,
        totals=_totals(report.flows),
        revenue=_revenue_per_flow(report.flows),
        sections=[
            _campaign_section(row, campaigns[row.flow_id], report)
            if row.flow_id in campaigns
            else _section(row, by_id.get(row.flow_id), report)
            for row in report.flows
        ],
        idle=[(flow_id, trigger_label(flow)) for flow_id, flow in sorted(by_id.items()) if flow_id not in active],
        tables=kpi_tables(report),
        outlook=outlook_lines(report.outlook),
        send_time=_send_time_chart(report.send_time),
        send_time_text=send_time_lines(report.send_time, spark=False),  # the page draws the columns
    )


def _template() -> jinja2.Template:
    source = resources.files("nudge").joinpath("report.html.j2").read_text(encoding="utf-8")
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True)
    environment.filters["n"] = coordinate
    environment.filters["brief"] = brief_cells
    return environment.from_string(source)


def _totals(flows: list[Kpis]) -> list[tuple[str, str]]:
    """The summary strip, across flows: sums, and the AOV and conversion rate of the sums."""
    total = Kpis("all flows")
    for row in flows:
        total.entered += row.entered
        total.converted += row.converted
        total.sent += row.sent
        total.orders += row.orders
        total.revenue += row.revenue
    return [
        ("entered", str(total.entered)),
        ("messages sent", str(total.sent)),
        ("orders", str(total.orders)),
        ("revenue", amount(total.revenue)),
        ("AOV", amount(total.aov)),
        ("conversion rate", percent(total.conversion_rate)),
    ]


def _bars(rows: list[tuple[str, Decimal | int, str]]) -> list[Bar]:
    """One bar per (label, value, text after the bar), scaled to the largest value."""
    top = max((value for _, value, _ in rows), default=0)
    return [
        Bar(clip(label, CHART_LABEL_PX), text, BAR_ROW_PX * i + 2, CHART_BAR_PX * float(value / top) if top else 0.0)
        for i, (label, value, text) in enumerate(rows)
    ]


def _revenue_per_flow(flows: list[Kpis]) -> BarChart | None:
    ranked = sorted(flows, key=lambda r: (-r.revenue, r.flow_id))
    if not any(r.revenue for r in ranked):
        return None
    bars = _bars([(r.flow_id, r.revenue, f"{amount(r.revenue)} · {r.orders} orders") for r in ranked])
    return BarChart(
        "Attributed revenue per flow", "Last touch: the send, open or click before the order.", REVENUE_COLOUR, bars
    )


def _funnel(row: Kpis) -> BarChart:
    stages = [
        ("entered", row.entered),
        ("sent", row.sent),
        ("delivered", row.delivered),
        ("opened", row.opened),
        ("clicked", row.clicked),
        ("converted", row.converted),
    ]
    bars = _bars(
        [
            (stage, value, f"{value} · {percent(value / row.entered if row.entered else None)}")
            for stage, value in stages
        ]
    )
    caption = "% of entered. Entered and converted count runs; sent to clicked count messages, often several a run."
    return BarChart("Funnel", caption, FUNNEL_COLOUR, bars)


def _step_revenue(steps: list[Kpis]) -> BarChart | None:
    if not any(r.revenue for r in steps):
        return None
    bars = _bars([(r.step_id or "", r.revenue, f"{amount(r.revenue)} · {r.orders} orders") for r in steps])
    return BarChart(
        "Revenue per step", "Credited to the step whose message touched the buyer last.", REVENUE_COLOUR, bars
    )


def _section(row: Kpis, flow: Flow | None, report: Report) -> FlowSection:
    steps = [r for r in report.steps if r.flow_id == row.flow_id]
    variants = [r for r in report.variants if r.flow_id == row.flow_id]
    verdicts = {v.split_id: v for v in report.splits if v.flow_id == row.flow_id}
    if flow is None:
        return FlowSection(
            flow_id=row.flow_id,
            title=row.flow_id,
            row=row,
            funnel=_funnel(row),
            step_revenue=_step_revenue(steps),
            splits=_splits([], variants, verdicts),
            loose_steps=_step_cells(steps),
            note="No flow file with this id in the flows directory: the numbers without a diagram.",
        )
    ids = {step.id for step in flow.steps}
    return FlowSection(
        flow_id=flow.id,
        title=f"{flow.name} ({flow.id})",
        row=row,
        funnel=_funnel(row),
        step_revenue=_step_revenue(steps),
        splits=_splits([s.id for s in flow.steps if isinstance(s, SplitStep)], variants, verdicts),
        diagram=diagram(flow, row, steps, variants),
        rules=rules_label(flow),
        loose_steps=_step_cells([r for r in steps if r.step_id not in ids]),
    )


def _campaign_flow(document: Mapping[str, Any]) -> tuple[Flow, str, str, str | None]:
    """A campaign's one-off flow as its runs follow it (with the A/B winner, once chosen), and its words."""
    campaign = validate(Campaign, document["definition"])
    winner = (document.get("ab_verdict") or {}).get("winner")
    return (campaign.as_flow(winner), *campaign_words(document))


def _campaign_section(row: Kpis, found: tuple[Flow, str, str, str | None], report: Report) -> FlowSection:
    """A campaign's detail: its flow drawn with the figures (the A/B split, its variants' emails, the
    holdout), what and when it sent to whom, and the A/B decision on opens or clicks beside the split's
    verdict on conversion."""
    flow, title, about, ab = found
    section = _section(row, flow, report)
    return replace(section, title=title, rules=about, note=ab)


def _step_cells(steps: list[Kpis]) -> list[tuple[str, list[str]]]:
    return [(r.step_id or "", kpi_cells(r)) for r in steps]


def _variant_name(row: Kpis) -> tuple[str, str]:
    split_id, _, name = (row.variant or "").partition(":")
    return split_id, name


def _splits(split_ids: list[str], variants: list[Kpis], verdicts: dict[str, SplitVerdict]) -> list[SplitView]:
    """Each split of the flow file, then any other the data names, with its variants and verdict."""
    order = split_ids + sorted({_variant_name(r)[0] for r in variants} - set(split_ids))
    views = []
    for split_id in order:
        verdict = verdicts.get(split_id)
        rows = [
            VariantRow(name, r, verdict is not None and verdict.winner == name)
            for r in variants
            for split, name in [_variant_name(r)]
            if split == split_id
        ]
        if verdict is not None:
            text = verdict_text(verdict)
        elif rows:
            text = "fewer than two variants have entries: no test yet"
        else:
            text = "no contact has reached this split yet"
        views.append(SplitView(split_id, rows, text))
    return views


def diagram(flow: Flow, row: Kpis, steps: list[Kpis], variants: list[Kpis]) -> Diagram:
    """The flow drawn top-down: the trigger with entries and conversions, each step with its own figures."""
    by_step = {r.step_id: r for r in steps}
    contents = {TRIGGER: _trigger_box(flow, row)}
    for step in flow.steps:
        contents[step.id] = _step_box(step, by_step.get(step.id), variants)
    out_edges = {TRIGGER: [(flow.first_step_id, "")]} | {step.id: edges(flow, step) for step in flow.steps}
    sizes = {
        node: (WIDTHS.get(kind, STEP_WIDTH), PAD_PX * 2 + LINE_PX * len(lines))
        for node, (kind, lines) in contents.items()
    }
    placed = layout(TRIGGER, out_edges, sizes)
    boxes = [
        Box(None if node == TRIGGER else node, contents[node][0], tuple(contents[node][1]), p.x, p.y, p.width, p.height)
        for node, p in placed.nodes.items()
    ]
    routes = [EdgeView(r.path, r.label, r.label_x, r.label_y, r.back) for r in placed.routes]
    return Diagram(placed.width, placed.height, boxes, routes)


def _trigger_box(flow: Flow, row: Kpis) -> tuple[str, list[Line]]:
    return "trigger", [
        Line("trigger", "head"),
        Line(trigger_label(flow), "sub"),
        Line(f"entered {row.entered} · converted {row.converted}", "num"),
        Line(f"conversion rate {percent(row.conversion_rate)}", "num"),
    ]


def _step_box(step: Step, row: Kpis | None, variants: list[Kpis]) -> tuple[str, list[Line]]:
    """A box's kind and lines: figures for messages and splits, the step's own words for the rest."""
    if isinstance(step, EmailStep | SmsStep | WhatsAppStep):
        return step.type, _message_lines(step, row or Kpis(step.id))
    if isinstance(step, SplitStep):
        return "split", _split_lines(step, variants)
    if isinstance(step, WaitStep | WaitUntilStep):
        return "wait", [Line(step_label(step), "head")]
    if step.type == "end":
        return "end", [Line("end", "head")]
    title = "if" if isinstance(step, BranchStep) else step.type.replace("_", " ")
    return step.type, [Line(f"{title} · {step.id}", "head"), Line(step_label(step), "sub")]


def _message_lines(step: EmailStep | SmsStep | WhatsAppStep, row: Kpis) -> list[Line]:
    email = isinstance(step, EmailStep)
    lines = [
        Line(f"{step.type} · {step.id}", "head"),
        Line(_message_sub(step), "sub"),
        Line(f"sent {row.sent}" + (f" · delivered {row.delivered}" if email else ""), "num"),
    ]
    if email:
        lines.append(Line(f"opened {row.opened} · clicked {row.clicked}", "num"))
    if row.skipped or row.failed:
        lines.append(Line(f"skipped {row.skipped} · failed {row.failed}", "dim"))
    if row.bounced or row.complained or row.unsubscribed:
        lines.append(Line(f"bounced {row.bounced} · spam {row.complained} · unsub. {row.unsubscribed}", "dim"))
    lines.append(Line(f"orders {row.orders} · revenue {amount(row.revenue)}", "num"))
    return lines


def _message_sub(step: EmailStep | SmsStep | WhatsAppStep) -> str:
    if isinstance(step, EmailStep):
        return step.subject
    return step_label(step) if isinstance(step, WhatsAppStep) else step.template


def _split_lines(step: SplitStep, variants: list[Kpis]) -> list[Line]:
    cells = {name: r for r in variants for split, name in [_variant_name(r)] if split == step.id}
    names = [v.name for v in step.variants] + (["holdout"] if step.holdout or "holdout" in cells else [])
    lines = [Line(f"split · {step.id}", "head")]
    if step.holdout:
        lines.append(Line(f"holdout {step.holdout:g}%", "sub"))
    for name in names:
        cell = cells.get(name, Kpis(step.id))
        lines.append(Line(f"{name}: {cell.entered} in · converted {percent(cell.conversion_rate)}", "num"))
    return lines
