"""Every step kind and trigger kind, read off the unions, through validation, `nudge graph` and the docs.

A kind added to the `Step` or `Trigger` union fails here until it has an example, a label in the graph
(`flow_tools` dispatches with `match` + `assert_never`, which mypy checks) and a line in docs/flows.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from nudge.domain.flows import STEP_KINDS, TRIGGER_KINDS, Flow
from nudge.flow_files import _UNION_TAGS
from nudge.flow_tools import mermaid, step_label, trigger_label
from tests.conftest import ROOT

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
    "branch": {"if": "contact.orders_count > 0", "then": "last"},
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
    return Flow.model_validate({"id": "every", "name": "Every kind", "trigger": trigger, "steps": steps})


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
