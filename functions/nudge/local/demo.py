"""The storefront story `make demo` tells: three weeks of a shop's life on moto, through the real handlers.

Before the story the shop imports its order history (flows/samples/orders_export.csv, a Shopify export);
the stack's daily schedule fires the sweep function at 04:00 UTC (segment reviews, RFM, co-purchases), through
the same local Scheduler pump as the runs' wake-ups. In the second week the shop posts its November
newsletter (campaigns/november_newsletter.yaml) through the signed API: the jobs queue resolves its audience
and each recipient gets it at 09:00 in their own zone.
"""

from __future__ import annotations

import email
from collections import Counter
from collections.abc import Callable
from dataclasses import field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from nudge import names
from nudge.campaign_files import load_campaign
from nudge.clocks import VirtualClock
from nudge.domain.frozen import dataclass
from nudge.domain.kpis import DEFAULT_WINDOW, Report
from nudge.domain.validation import dump
from nudge.local.moto_stack import PROJECT_ROOT, ApiResult, MotoStack, start_moto_stack
from nudge.local.pump import DueSchedule
from nudge.services.order_import import Format, ImportReport, backfill_orders, parse_orders
from nudge.services.reporting import build_report

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday morning
DURATION = timedelta(days=21)
HISTORY = PROJECT_ROOT / "flows" / "samples" / "orders_export.csv"
NEWSLETTER = PROJECT_ROOT / "campaigns" / "november_newsletter.yaml"
# Posted just before it starts (09:00 on 11-10 in UTC+14 is 19:00 UTC on 11-09): its first piece waits for
# the start in 15-minute hops, each a trip through the jobs queue, so a short wait keeps the demo fast.
NEWSLETTER_POSTED = datetime(2026, 11, 9, 18, 45, tzinfo=UTC)


def _cart(checkout_id: str, lines: list[tuple[str, int, float]]) -> dict[str, Any]:
    return {
        "checkout_id": checkout_id,
        "recovery_url": f"https://shop.example/checkouts/{checkout_id}/recover",
        "currency": "USD",
        "lines": [{"title": t, "quantity": q, "price": p} for t, q, p in lines],
        "total": round(sum(q * p for _, q, p in lines), 2),
    }


ALICE = {"email": "alice@example.com", "first_name": "Alice", "email_marketing": True}
BOB = {
    "email": "bob@example.com",
    "phone": "+14155550101",
    "first_name": "Bob",
    "email_marketing": True,
    "sms_marketing": True,
}
CAROL = {"email": "carol@example.com", "first_name": "Carol", "email_marketing": True}
CAROL_CART = _cart("chk_carol", [("Ceramic mug", 2, 18.0), ("Pour-over kettle", 1, 64.0)])

# (offset from START, description, event body)
STORY: list[tuple[timedelta, str, dict[str, Any]]] = [
    (
        timedelta(0),
        "Alice subscribes from the footer form",
        {
            "id": "evt_alice_signup",
            "type": "subscribed",
            "contact": ALICE,
            "properties": {"source": "footer"},
        },
    ),
    (
        timedelta(hours=1),
        "Bob starts a checkout and leaves",
        {
            "id": "evt_bob_checkout",
            "type": "checkout_started",
            "contact": BOB,
            "properties": _cart("chk_bob", [("Linen apron", 1, 42.0)]),
        },
    ),
    (
        timedelta(days=1, hours=5),
        "Carol starts a checkout and leaves",
        {"id": "evt_carol_checkout", "type": "checkout_started", "contact": CAROL, "properties": CAROL_CART},
    ),
    (
        timedelta(days=1, hours=9),
        "Carol comes back and orders",
        {
            "id": "evt_carol_order",
            "type": "order_placed",
            "contact": CAROL,
            "properties": {**CAROL_CART, "order_id": "ord_1001", "order_number": "#1001"},
        },
    ),
    (
        timedelta(days=1, hours=9, minutes=1),
        "the storefront retries Carol's order webhook (same id)",
        {
            "id": "evt_carol_order",
            "type": "order_placed",
            "contact": CAROL,
            "properties": {**CAROL_CART, "order_id": "ord_1001", "order_number": "#1001"},
        },
    ),
]


@dataclass(frozen=True)
class TimelineRow:
    at: datetime
    contact: str
    flow: str
    step: str
    channel: str
    text: str


@dataclass
class DemoResult:
    api_calls: list[tuple[datetime, str, ApiResult]]
    timeline: list[TimelineRow]
    per_flow: dict[str, int]
    requests: Counter[tuple[str, str]]
    wake_ups: int
    report: Report | None = None
    imported: ImportReport | None = None
    # What each day's daily job did, added up from its pieces' log (DailyOutcome.as_dict)
    daily_runs: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)
    contacts: list[ContactLine] = field(default_factory=list)  # every contact at the end: stage, RFM, spend
    recommended: dict[str, list[str]] = field(default_factory=dict)  # review request recipient -> products shown
    campaign: ApiResult | None = None  # the newsletter's POST /v1/campaigns
    campaign_status: dict[str, Any] = field(default_factory=dict)  # GET /v1/campaigns/<id> at the end


@dataclass(frozen=True)
class ContactLine:
    email: str
    stage: str
    rfm: str
    orders: int
    spent: str
    segments: tuple[str, ...]


def read_timeline(stack: MotoStack) -> list[TimelineRow]:
    """Every message moto's SES and SNS received, joined to nudge's message records for flow and step."""
    store = stack.container.store
    records = {m.provider_id: m for m in store.models.messages.scan()}  # type: ignore[attr-defined]
    rows = []
    for raw in stack.sent_emails():
        mime = email.message_from_string(raw.raw_data)
        record = records.get(raw.id)
        rows.append(
            TimelineRow(
                at=parsedate_to_datetime(mime["Date"]).astimezone(UTC),
                contact=str(mime["To"]),
                flow=record.flow_id if record else "?",
                step=record.step_id if record else "?",
                channel="email",
                text=str(mime["Subject"]),
            )
        )
    for provider_id, (phone, text) in stack.sent_sms().items():
        record = records.get(provider_id)
        rows.append(
            TimelineRow(
                at=record.sent_at if record and record.sent_at else stack.clock.now(),
                contact=phone,
                flow=record.flow_id if record else "?",
                step=record.step_id if record else "?",
                channel="sms",
                text=text,
            )
        )
    return sorted(rows, key=lambda r: (r.at, r.contact, r.channel, r.step))


def run_demo(
    *,
    on_event: Callable[[datetime, str, ApiResult], None] | None = None,
    on_progress: Callable[[datetime], None] | None = None,
    on_import: Callable[[ImportReport], None] | None = None,
    window: timedelta = DEFAULT_WINDOW,
) -> DemoResult:
    """Import the history, play STORY through the ingest handler, run the daily job each day, to the end."""
    clock = VirtualClock(START)
    stack = start_moto_stack(clock, daily_job=True)
    try:
        imported = import_history(stack)
        if on_import:
            on_import(imported)
        planned: list[tuple[datetime, str]] = []  # the daily job's days; its pieces run off the jobs queue

        def fired(due: DueSchedule, result: Any) -> None:
            if due.name == names.DAILY_SCHEDULE:
                planned.append((due.at, result["day"]))

        def advance_to(moment: datetime) -> None:
            """Pump schedules up to `moment`: run wake-ups, and the daily job at 04:00 UTC."""
            stack.pump.run_until(moment, on_fire=fired)

        calls = []
        for offset, description, body in STORY:
            advance_to(START + offset)
            result = stack.call_api("POST", "/v1/events", body)
            calls.append((clock.now(), description, result))
            if on_event:
                on_event(clock.now(), description, result)
        day = START
        campaign = load_campaign(NEWSLETTER)
        posted: ApiResult | None = None
        while day < START + DURATION:
            day = min(day + timedelta(days=1), START + DURATION)
            if day - timedelta(days=1) < NEWSLETTER_POSTED <= day:
                advance_to(NEWSLETTER_POSTED)
                posted = stack.call_api("POST", "/v1/campaigns", dump(campaign, mode="json", exclude_none=True))
            advance_to(day)
            if on_progress:
                on_progress(day)
        requests = Counter(stack.requests.counts)  # before reading the timeline back, which scans
        campaign_status = stack.call_api("GET", f"/v1/campaigns/{campaign.id}").body
        daily_runs = [(at, stack.container.daily.status(day).as_dict()) for at, day in planned]
        timeline = read_timeline(stack)
        per_flow = Counter(row.flow for row in timeline)
        return DemoResult(
            api_calls=calls,
            timeline=timeline,
            per_flow=dict(per_flow),
            requests=requests,
            wake_ups=stack.pump.worked,  # records the worker took from the queue: first steps and wake-ups
            report=build_report(stack.container.store, window, stack.container.daily.predictions_model()),  # type: ignore[arg-type]
            imported=imported,
            daily_runs=daily_runs,
            contacts=contact_lines(stack),
            recommended=recommended(stack),
            campaign=posted,
            campaign_status=campaign_status,
        )
    finally:
        stack.stop()


def campaign_line(result: DemoResult) -> str:
    """The newsletter's line: its status and progress from the API, its report row (sends, opens, clicks,
    last-touch orders and revenue, as for a flow)."""
    status, progress = result.campaign_status, result.campaign_status.get("progress", {})
    if not status:
        return "no campaign"
    row = next((r for r in (result.report.flows if result.report else []) if r.flow_id == status["flow_id"]), None)
    sent = (
        f"{row.sent} sent, {row.opened} opened, {row.clicked} clicked, {row.orders} orders ({row.revenue})"
        if row
        else "none sent"
    )
    return (
        f"{status['id']}: {status['status']}; {progress.get('recipients', 0)} recipients of "
        f"{progress.get('contacts', 0)} contacts ({progress.get('unreachable', 0)} without consent); {sent}"
    )


def import_history(stack: MotoStack) -> ImportReport:
    """What `nudge import orders` does: backfill contacts and aggregates, then the co-purchase table."""
    container = stack.container
    with HISTORY.open(newline="", encoding="utf-8") as lines:
        parsed = parse_orders(lines, Format.SHOPIFY, container.clock.now())
    report = backfill_orders(container.ingest, parsed)
    container.daily.copurchases.add_imported(report.new_orders)
    return report


def contact_lines(stack: MotoStack) -> list[ContactLine]:
    store = stack.container.store
    lines = []
    for contact in store.all_contacts():
        a = contact.aggregates
        lines.append(
            ContactLine(
                email=contact.email or contact.contact_id,
                stage=contact.stage or "-",
                rfm=contact.rfm.code if contact.rfm else "-",
                orders=a.orders_count,
                spent=f"{a.total_spent:,.2f}",
                segments=tuple(s for s in contact.segments if s != contact.stage),
            )
        )
    return sorted(lines, key=lambda line: line.email)


def recommended(stack: MotoStack) -> dict[str, list[str]]:
    """The "You may also like" lines of every review request SES received (the text part)."""
    shown: dict[str, list[str]] = {}
    for raw in stack.sent_emails():
        mime = email.message_from_string(raw.raw_data)
        for part in mime.walk():
            if part.get_content_type() != "text/plain":
                continue
            text = part.get_payload(decode=True).decode().replace("\r\n", "\n")  # type: ignore[union-attr]
            if "You may also like:" in text:
                block = text.split("You may also like:", 1)[1].split("\n\n", 1)[0]
                shown[str(mime["To"])] = [line[2:].split(":", 1)[0] for line in block.strip().splitlines()]
    return shown
