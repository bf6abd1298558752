"""A KPI report over hand-made runs, messages and orders, for the KPI and HTML report tests and the docs screenshot.

`spring_launch` has a split (a, b, 10 % holdout) and a branch; its figures are chosen so a wins at 95 %:
a converts 40 of 200, b 16 of 160, the holdout 2 of 40. `abandoned_cart` is the shipped flow with a few
runs; `welcome` is in the catalog with no activity.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from nudge.domain.flows import Flow
from nudge.domain.kpis import MessageFacts, Order, Report, report
from nudge.domain.model import MessageStatus, Run, RunStatus
from nudge.domain.validation import validate
from nudge.flow_files import load_flow
from tests.conftest import ROOT, START

DAY = timedelta(days=1)
SENT, SKIPPED = MessageStatus.SENT, MessageStatus.SKIPPED
HOSTILE = "<script>alert(1)</script>"

SPRING_LAUNCH = validate(
    Flow,
    {
        "id": "spring_launch",
        "name": "Spring launch",
        "trigger": {"event": "subscribed"},
        "goal": {"event": "order_placed"},
        "steps": [
            {
                "id": "subject_test",
                "type": "split",
                "holdout": 10,
                "variants": [{"name": "a", "next": "launch_a"}, {"name": "b", "next": "launch_b"}],
            },
            {"id": "launch_a", "type": "email", "template": "launch/a", "subject": "Spring is here", "next": "wait_2d"},
            {"id": "launch_b", "type": "email", "template": "launch/b", "subject": "Twelve new things for spring"},
            {"id": "wait_2d", "type": "wait", "duration": "2d"},
            {"id": "is_vip", "type": "branch", "if": "'vip' in contact.tags", "then": "vip_sms", "else": "reminder"},
            {"id": "vip_sms", "type": "sms", "template": "launch/vip", "next": "done"},
            {"id": "reminder", "type": "email", "template": "launch/reminder", "subject": "Last days of the edit"},
            {"id": "done", "type": "end"},
        ],
    },
)


def flows() -> list[Flow]:
    return [
        SPRING_LAUNCH,
        load_flow(ROOT / "flows" / "abandoned_cart.yaml"),
        load_flow(ROOT / "flows" / "welcome.yaml"),
    ]


def run(contact: str, flow: str = "cart", *, converted: bool = False, variants: dict[str, str] | None = None) -> Run:
    """A finished run that started at START and, if `converted`, met its goal a day later."""
    return Run(
        run_id=f"r_{flow}_{contact}",
        contact_id=contact,
        flow_id=flow,
        status=RunStatus.COMPLETED,
        cursor=None,
        seq=1,
        trigger_event_id="e",
        trigger={},
        started_at=START,
        updated_at=START,
        converted_at=START + DAY if converted else None,
        variants=variants or {},
    )


def _sent(contact: str, flow: str, step: str, days: float, variant: str | None, i: int) -> MessageFacts:
    """A message sent `days` after START. An email is delivered but one in 20 that bounces, every third is
    opened, every ninth clicked; an SMS has no such feedback."""
    at = START + days * DAY
    if step.endswith("sms"):
        return MessageFacts(contact, f"{contact}#{step}", flow, step, variant, SENT, sent_at=at)
    bounced = i % 20 == 19
    return MessageFacts(
        contact,
        f"{contact}#{step}",
        flow,
        step,
        variant,
        SENT,
        sent_at=at,
        delivered_at=None if bounced else at,
        opened_at=at + timedelta(hours=2) if i % 3 == 0 else None,
        clicked_at=at + timedelta(hours=3) if i % 9 == 0 else None,
        bounced=bounced,
    )


def _spring_launch() -> tuple[list[Run], list[MessageFacts], list[Order]]:
    runs, messages, orders = [], [], []
    groups = [("a", 200, 40), ("b", 160, 16), ("holdout", 40, 2)]
    for name, entered, converted in groups:
        for i in range(entered):
            contact = f"{name}{i}"
            converts = i < converted
            runs.append(run(contact, "spring_launch", converted=converts, variants={"subject_test": name}))
            if converts:
                # Half the converts order the day after the launch email, half after the reminder.
                day = 1 if i % 2 == 0 or name == "holdout" else 3
                orders.append(Order(contact, f"o_{contact}", START + day * DAY, Decimal(40 + 10 * (i % 4))))
            if name == "holdout":
                continue
            variant = f"subject_test:{name}"
            messages.append(_sent(contact, "spring_launch", f"launch_{name}", 0, variant, i))
            if converts and i % 2 == 0:
                continue  # converted (the goal) before the branch: the run ended
            if i % 10 == 0:  # vip
                status_ok = i % 20 == 0
                sms = _sent(contact, "spring_launch", "vip_sms", 2, variant, i)
                messages.append(
                    sms
                    if status_ok
                    else MessageFacts(contact, sms.message_id, "spring_launch", "vip_sms", variant, SKIPPED)
                )
            else:
                messages.append(_sent(contact, "spring_launch", "reminder", 2, variant, i))
    return runs, messages, orders


def _abandoned_cart() -> tuple[list[Run], list[MessageFacts], list[Order]]:
    runs, messages, orders = [], [], []
    for i in range(12):
        contact = f"cart{i}"
        runs.append(run(contact, "abandoned_cart", converted=i < 3))
        messages.append(_sent(contact, "abandoned_cart", "reminder_1", 1 / 24, None, i))
        if i >= 3:
            messages.append(_sent(contact, "abandoned_cart", "reminder_2", 1, None, i))
        if i < 3:
            orders.append(Order(contact, f"o_{contact}", START + DAY / 2, Decimal("64.00")))
    return runs, messages, orders


def _hostile() -> tuple[list[Run], list[MessageFacts], list[Order]]:
    """A flow id and a step id no flow file could carry, as stored data might: the page must escape them."""
    runs = [run("eve", HOSTILE, converted=False)]
    messages = [_sent("eve", HOSTILE, '<img src=x onerror="alert(2)">', 0, None, 1)]
    return runs, messages, []


def sample_report(*, hostile: bool = False) -> Report:
    parts = [_spring_launch(), _abandoned_cart()] + ([_hostile()] if hostile else [])
    runs = [r for part in parts for r in part[0]]
    messages = [m for part in parts for m in part[1]]
    orders = [o for part in parts for o in part[2]]
    return report(runs, messages, orders)
