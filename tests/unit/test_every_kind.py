"""Every step kind and trigger kind, read off the unions, through validation, `nudge graph`, the engine,
the HTML report and the docs.

A kind added to the `Step` or `Trigger` union fails here until it has an example, a label in the graph
(`flow_tools` dispatches with `match` + `assert_never`, which mypy checks), a run that the engine carries
from the step to the flow's end, a box in the HTML report's diagram, and a line in docs/flows.md.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from nudge.clocks import VirtualClock
from nudge.domain.flows import STEP_KINDS, TRIGGER_KINDS, Flow
from nudge.domain.model import RunStatus
from nudge.domain.validation import validate
from nudge.flow_files import _UNION_TAGS
from nudge.flow_tools import mermaid, step_label, trigger_label
from nudge.report_html import render
from nudge.services.reporting import build_report
from nudge.settings import Settings
from tests.conftest import ROOT, START
from tests.flowkit import flows_dir, simulation

STEPS: dict[str, dict[str, Any]] = {
    "wait": {"duration": "1h"},
    "wait_until": {"time": "09:00"},
    "email": {"template": "welcome/welcome", "subject": "Hello"},
    "sms": {"template": "abandoned_cart/reminder_2"},
    "whatsapp": {
        "template": "cart_reminder",
        "language": "en_US",
        "fallback": {"type": "sms", "template": "abandoned_cart/reminder_2"},
    },
    "branch": {"if": "contact.aggregates.orders_count > 0", "then": "last"},
    "split": {"variants": [{"name": "a", "next": "last"}, {"name": "b", "next": "last"}]},
    "update_profile": {"add_tags": ["seen"]},
    "webhook": {"url": "https://hooks.example/x"},
    "audience": {"action": "add", "audience": "cart_retargeting_meta"},
    "end": {},
}
TRIGGERS: dict[str, tuple[dict[str, Any], str]] = {
    "event": ({"event": "order_placed"}, "on order_placed"),
    "date": ({"type": "date", "date": "contact.properties.birthday", "repeat": "yearly"}, "yearly on"),
    "api": ({"type": "api"}, "enrolled through the API"),
    "segment": ({"type": "segment", "segment": "vip"}, "on entering segment vip"),
}
DOCS = (ROOT / "docs" / "flows.md").read_text(encoding="utf-8")


def _flow(trigger: dict[str, Any], step: dict[str, Any]) -> Flow:
    last = {"id": "last", "type": "end"}
    steps = [step] if step["type"] == "end" else [step, last]
    return validate(Flow, {"id": "every", "name": "Every kind", "trigger": trigger, "steps": steps})


def test_the_examples_cover_exactly_the_unions_kinds() -> None:
    assert set(STEPS) == set(STEP_KINDS)
    assert set(TRIGGERS) == set(TRIGGER_KINDS)
    assert set(STEP_KINDS) | set(TRIGGER_KINDS) <= _UNION_TAGS  # error locations skip every kind's tag


@pytest.mark.parametrize("kind", STEP_KINDS)
def test_every_step_kind_validates_graphs_and_is_documented(kind: str) -> None:
    flow = _flow({"event": "order_placed"}, {"id": "first", "type": kind, **STEPS[kind]})

    (step, *_) = flow.steps
    assert step.type == kind
    label = step_label(step)
    assert label.strip()
    assert "first" in mermaid(flow)
    assert f"type: {kind}" in DOCS or f"`{kind}`" in DOCS, f"docs/flows.md does not describe the {kind} step"


@pytest.mark.parametrize("kind", TRIGGER_KINDS)
def test_every_trigger_kind_validates_graphs_and_is_documented(kind: str) -> None:
    trigger, label = TRIGGERS[kind]
    flow = _flow(trigger, {"id": "first", "type": "end"})

    assert flow.trigger.type == kind
    assert trigger_label(flow).startswith(label)
    assert trigger_label(flow) in mermaid(flow)
    assert f"type: {kind}" in DOCS or f"`{kind}`" in DOCS, f"docs/flows.md does not describe the {kind} trigger"


@pytest.mark.parametrize("kind", STEP_KINDS)
def test_every_step_kind_runs_through_the_engine_and_shows_in_the_html_report(
    kind: str, settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    # A flow of this step then the end, started by an order of a contact who may get every channel
    step = {"id": "first", "type": kind, **STEPS[kind]}
    flow = {"id": "every", "name": "Every kind", "trigger": {"event": "order_placed"}, "steps": [step]}
    if kind != "end":
        flow["steps"].append({"id": "last", "type": "end"})
    directory = flows_dir(tmp_path, yaml.safe_dump(flow, sort_keys=False))
    (directory / "_whatsapp.yaml").write_text(
        "templates:\n  cart_reminder: {languages: [en_US], category: marketing}\n"
    )
    sim = simulation(settings, clock, directory)
    who = {
        "email": "ann@example.com", "phone": "+14155550101", "first_name": "Ann", "email_marketing": True,
        "sms_marketing": True, "whatsapp_marketing": True, "ads_marketing": True,
    }  # fmt: skip
    order = {"order_id": "o1", "total": 42.0, "currency": "USD", "lines": [{"title": "Mug", "price": 42.0}]}

    started = sim.send({"id": "e1", "type": "order_placed", "contact": who, "properties": order})
    sim.run_until(START + timedelta(days=2))

    # Then the engine carried the run from the step to the end, and the report draws the step
    assert started.started == ["every"]
    [run] = sim.store.runs.values()
    assert run.status is RunStatus.COMPLETED, (run.status, run.exit_reason)
    generated = datetime(2026, 11, 23, tzinfo=UTC)
    html = render(build_report(sim.store), sim.container.flows, generated_at=generated, window="all time")
    assert 'data-step="first"' in html
