"""Tools over flows for people: previews of every message, Mermaid diagrams, the JSON Schema. CLI only."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from nudge.domain.engine import template_context
from nudge.domain.flows import (
    WAITS,
    BranchStep,
    DateTrigger,
    EmailStep,
    EndStep,
    EventTrigger,
    Flow,
    SmsStep,
    SplitStep,
    Step,
    UpdateProfileStep,
    WaitStep,
    WaitUntilStep,
    WebhookStep,
)
from nudge.domain.model import Contact, Run, RunStatus
from nudge.templating import TemplateRenderer


@dataclass(frozen=True)
class Preview:
    step_id: str
    channel: str
    subject: str | None
    text: str
    html: str | None


def preview(
    flow: Flow,
    renderer: TemplateRenderer,
    contact: Contact,
    event: dict[str, Any],
    now: datetime,
    recommendations: list[dict[str, Any]] | None = None,
) -> list[Preview]:
    """Every message step of the flow, rendered for this contact and trigger event (all branches).

    `recommendations` stands in for what the shop's co-purchase table would give the contact.
    """
    run = Run(
        run_id="preview",
        contact_id=contact.contact_id,
        flow_id=flow.id,
        status=RunStatus.ACTIVE,
        cursor=flow.first_step_id,
        seq=0,
        trigger_event_id="preview",
        trigger={"type": "preview", **event},
        started_at=now,
        updated_at=now,
    )
    context = {
        **template_context(run, contact, {}, now),
        "flow": {"id": flow.id, "name": flow.name},
        "recommendations": list(recommendations or ()),
    }
    previews = []
    for step in flow.steps:
        step_context = {**context, "step": {"id": step.id}}
        if isinstance(step, EmailStep):
            subject, html, text = renderer.email(step.template, step.subject, step_context)
            previews.append(Preview(step.id, "email", subject, text, html))
        elif isinstance(step, SmsStep):
            previews.append(Preview(step.id, "sms", None, renderer.sms(step.template, step_context), None))
    return previews


def contact_from_json(data: dict[str, Any], now: datetime) -> Contact:
    """A sample contact file (the API's contact object, plus `tags`) as a stored contact would be."""
    from nudge.services.inputs import ContactIn

    fields = dict(data)
    tags = tuple(fields.pop("tags", ()))
    patch = ContactIn.model_validate(fields).to_patch()
    return replace(Contact(contact_id=patch.contact_id).merged(patch, now), tags=tags)


def mermaid(flow: Flow) -> str:
    """The flow as a Mermaid flowchart: trigger, steps, and the edges between them."""
    lines = ["flowchart TD", f'    trigger(["{_escape(trigger_label(flow))}"])']
    lines.append(f"    trigger --> {flow.first_step_id}")
    for step in flow.steps:
        lines.append(f"    {step.id}{_shape(step)}")
        for target, label in edges(flow, step):
            arrow = f" -->|{_escape(label)}| " if label else " --> "
            lines.append(f"    {step.id}{arrow}{target}")
    if rules := rules_label(flow):
        lines.append(f'    rules[/"{_escape(rules)}"/]')
    return "\n".join(lines) + "\n"


def rules_label(flow: Flow) -> str | None:
    """What ends a run early and what counts as its success: `exit on a, b; goal: order_placed`."""
    ends = [f"exit on {', '.join(_types(rule.event))}" for rule in flow.exit]
    if flow.goal:
        ends.append(f"goal: {', '.join(_types(flow.goal.event))}")
    return "; ".join(ends) or None


def _types(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def trigger_label(flow: Flow) -> str:
    """What starts the flow, in words: `on checkout_started if ...`, a date, or the API."""
    trigger = flow.trigger
    if isinstance(trigger, EventTrigger):
        label = f"on {', '.join(_types(trigger.event))}"
        return label + (f" if {trigger.filter}" if trigger.filter else "")
    if isinstance(trigger, DateTrigger):
        return f"{trigger.repeat} on {trigger.date} {trigger.offset} at {trigger.time}"
    return "enrolled through the API"


def step_label(step: Step) -> str:
    """What a diagram writes in a step's box; the Mermaid graph and the HTML report share it."""
    if isinstance(step, WaitStep):
        return f"wait {step.duration}"
    if isinstance(step, WaitUntilStep):
        when = step.date or ",".join(step.weekdays) or "next day"
        return f"wait until {when} {step.offset if step.date else ''} {step.time or ''}"
    if isinstance(step, EmailStep):
        return f"✉ {step.subject}"
    if isinstance(step, SmsStep):
        return f"💬 {step.template}"
    if isinstance(step, BranchStep):
        return step.condition
    if isinstance(step, SplitStep):
        return f"split{f' (holdout {step.holdout:g}%)' if step.holdout else ''}"
    if isinstance(step, UpdateProfileStep):
        return "update profile"
    if isinstance(step, WebhookStep):
        return f"webhook {step.url}"
    assert isinstance(step, EndStep)
    return "end"


def _shape(step: Step) -> str:
    label = _escape(step_label(step))
    if isinstance(step, WAITS):
        return f'[/"{label}"/]'
    if isinstance(step, BranchStep | SplitStep):
        return f'{{"{label}"}}'
    if isinstance(step, UpdateProfileStep | WebhookStep):
        return f'[["{label}"]]'
    if isinstance(step, EndStep):
        return f'(("{label}"))'
    return f'["{label}"]'


def edges(flow: Flow, step: Step) -> list[tuple[str, str]]:
    """(target step id, label) for every way out of a step: yes/no, a variant and its share, if past."""
    default = flow.following(step.id)
    if isinstance(step, EndStep):
        return []
    if isinstance(step, BranchStep):
        other = step.otherwise or default
        return [(step.then, "yes")] + ([(other, "no")] if other else [])
    if isinstance(step, SplitStep):
        total = sum(v.weight for v in step.variants)
        share = (100 - step.holdout) / total
        return [(v.next or default, f"{v.name} {v.weight * share:.0f}%") for v in step.variants if v.next or default]
    edges = [(step.next or default, "")] if (step.next or default) else []
    if isinstance(step, WaitUntilStep) and step.if_past != "continue":
        edges.append((step.if_past, "if past"))
    return [(t, label) for t, label in edges if t]


def _escape(text: str) -> str:
    return text.replace('"', "#quot;").replace("{{", "⟨").replace("}}", "⟩")


def flow_json_schema() -> str:
    """The JSON Schema of flow files, for editors (yaml-language-server) and CI."""
    schema = Flow.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nudge flow"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
