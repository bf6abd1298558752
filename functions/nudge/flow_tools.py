"""Tools over flows for people: previews of every message, Mermaid diagrams, the JSON Schema. CLI only."""

from __future__ import annotations

import html as html_lib
import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, assert_never

from nudge.domain import sms
from nudge.domain.engine import template_context
from nudge.domain.flows import (
    WAITS,
    ApiTrigger,
    AudienceStep,
    BranchStep,
    DateTrigger,
    EmailStep,
    EndStep,
    EventTrigger,
    Flow,
    SegmentTrigger,
    SmsStep,
    SplitStep,
    Step,
    UpdateProfileStep,
    WaitStep,
    WaitUntilStep,
    WebhookStep,
    WhatsAppStep,
)
from nudge.domain.frozen import dataclass
from nudge.domain.model import Category, Channel, Contact, Message, MessageStatus, Run, RunStatus
from nudge.domain.validation import validate
from nudge.services.compose import EmailComposer, MailPolicy
from nudge.templating import TemplateRenderer

# What a preview's unsubscribe link and postal address look like when the caller gives none.
PREVIEW_POLICY = MailPolicy(
    unsubscribe_base_url="https://nudge.invalid/v1/unsubscribe",
    postal_address=None,
    utm={"utm_source": "nudge", "utm_medium": "email"},
)
PREVIEW_POSTAL_ADDRESS = "(your postal address: brand.yaml postal_address)"


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
    policy: MailPolicy | None = None,
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
    policy = policy or PREVIEW_POLICY
    if not (policy.postal_address or renderer.brand.postal_address):
        policy = replace(policy, postal_address=PREVIEW_POSTAL_ADDRESS)
    composer = EmailComposer(
        renderer=renderer, from_address="preview@nudge.invalid", policy=policy, unsubscribe_key=lambda: "preview"
    )
    previews = []
    for step in flow.steps:
        step_context = {**context, "step": {"id": step.id}}
        if isinstance(step, EmailStep):
            message = _preview_message(flow, step.id, Channel.EMAIL, flow.category_of(step), contact, now)
            email = composer.compose(step, replace(message, recipient=contact.email), step_context, now)
            previews.append(Preview(step.id, "email", email.subject, email.text, email.html))
        elif isinstance(step, SmsStep):
            text = renderer.sms(step.template, step_context)
            if flow.category_of(step) is Category.MARKETING:
                text = sms.with_opt_out_notice(sms.with_sender_name(text, renderer.brand.name))
            previews.append(Preview(step.id, "sms", None, text, None))
        elif isinstance(step, WhatsAppStep):
            chat = renderer.whatsapp(step, contact.phone or "", step_context)
            previews.append(Preview(step.id, "whatsapp", None, chat.preview, None))
    return previews


def _preview_message(
    flow: Flow, step_id: str, channel: Channel, category: Category, contact: Contact, now: datetime
) -> Message:
    return Message(
        contact_id=contact.contact_id,
        message_id=Message.id_for("preview", step_id),
        run_id="preview",
        flow_id=flow.id,
        step_id=step_id,
        channel=channel,
        category=category,
        status=MessageStatus.PENDING,
        created_at=now,
    )


@dataclass(frozen=True)
class LibraryMessage:
    flow_id: str
    category: str  # of the step: marketing | transactional
    preview: Preview


def library_previews(flows_dir: Path, templates_dir: Path, now: datetime) -> list[LibraryMessage]:
    """Every message of every flow in flows_dir, for the sample contact and each flow's sample event."""
    from nudge.flow_files import load_catalog

    samples = flows_dir / "samples"
    person = contact_from_json(json.loads((samples / "contact.json").read_text(encoding="utf-8")), now)
    recommendations = json.loads((samples / "recommendations.json").read_text(encoding="utf-8"))
    renderer = TemplateRenderer(templates_dir)
    found = []
    for flow in sorted(load_catalog(flows_dir), key=lambda f: f.id):
        sample = samples / f"{flow.id}.event.json"
        event = json.loads(sample.read_text(encoding="utf-8")) if sample.exists() else {}
        steps = {step.id: step for step in flow.steps}
        for item in preview(flow, renderer, person, event, now, recommendations):
            step = steps[item.step_id]
            assert isinstance(step, EmailStep | SmsStep | WhatsAppStep)
            found.append(LibraryMessage(flow.id, flow.category_of(step).value, item))
    return found


def write_preview_site(directory: Path, flows: list[tuple[str, str, list[Preview]]]) -> Path:
    """Write each email as <flow>.<step>.html (and .txt), and an index.html listing every message with its
    subject, the SMS texts inline; the index's path."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for flow_id, flow_name, items in flows:
        rows.append(f"<h2>{html_lib.escape(flow_name)} <small>({html_lib.escape(flow_id)})</small></h2><ul>")
        for item in items:
            label = f"{html_lib.escape(item.step_id)} · {item.channel}"
            if item.html is not None:
                name = f"{flow_id}.{item.step_id}"
                (directory / f"{name}.html").write_text(item.html, encoding="utf-8")
                (directory / f"{name}.txt").write_text(item.text, encoding="utf-8")
                subject = html_lib.escape(item.subject or "")
                rows.append(f'<li>{label}: <a href="{name}.html">{subject}</a> (<a href="{name}.txt">text</a>)</li>')
            else:
                rows.append(f"<li>{label}: <q>{html_lib.escape(item.text)}</q></li>")
        rows.append("</ul>")
    index = directory / "index.html"
    index.write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>nudge: every message</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        '<body style="font-family:sans-serif;max-width:760px;margin:2em auto;padding:0 1em;">'
        f"<h1>Every message</h1>{''.join(rows)}</body></html>",
        encoding="utf-8",
    )
    return index


def contact_from_json(data: dict[str, Any], now: datetime) -> Contact:
    """A sample contact file (the API's contact object, plus `tags`) as a stored contact would be."""
    from nudge.services.inputs import ContactIn

    fields = dict(data)
    tags = tuple(fields.pop("tags", ()))
    patch = validate(ContactIn, fields).to_patch()
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
    """What starts the flow, in words: `on checkout_started if ...`, a date, a segment, or the API."""
    match flow.trigger:
        case EventTrigger() as trigger:
            label = f"on {', '.join(_types(trigger.event))}"
            return label + (f" if {trigger.filter}" if trigger.filter else "")
        case DateTrigger() as trigger:
            return f"{trigger.repeat} on {trigger.date} {trigger.offset} at {trigger.time}"
        case SegmentTrigger() as trigger:
            return f"on {'entering' if trigger.when == 'entered' else 'leaving'} segment {trigger.segment}"
        case ApiTrigger():
            return "enrolled through the API"
        case unknown:
            assert_never(unknown)


def step_label(step: Step) -> str:
    """What a diagram writes in a step's box; the Mermaid graph and the HTML report share it."""
    match step:
        case WaitStep():
            return f"wait {step.duration}"
        case WaitUntilStep():
            when = step.date or ",".join(step.weekdays) or "next day"
            hour = "best hour" if step.best_time else step.time or ""
            return f"wait until {when} {step.offset if step.date else ''} {hour}"
        case EmailStep():
            return f"✉ {step.subject}"
        case SmsStep():
            return f"💬 {step.template}"
        case WhatsAppStep():
            what = f"WhatsApp {step.template}" if step.template else "WhatsApp text (24h window)"
            return what + (f", else {step.fallback.type}" if step.fallback else "")
        case BranchStep():
            return step.condition
        case SplitStep():
            holdout = f"holdout {step.holdout:g}%" if step.holdout else ""
            auto = (
                f"auto winner on {step.auto_winner.metric}s after {step.auto_winner.after}" if step.auto_winner else ""
            )
            notes = ", ".join(note for note in (holdout, auto) if note)
            return f"split{f' ({notes})' if notes else ''}"
        case UpdateProfileStep():
            return "update profile"
        case WebhookStep():
            return f"webhook {step.url}"
        case AudienceStep():
            return f"{'add to' if step.action == 'add' else 'remove from'} audience {step.audience}"
        case EndStep():
            return "end"
        case unknown:
            assert_never(unknown)


def _shape(step: Step) -> str:
    label = _escape(step_label(step))
    if isinstance(step, WAITS):
        return f'[/"{label}"/]'
    if isinstance(step, BranchStep | SplitStep):
        return f'{{"{label}"}}'
    if isinstance(step, UpdateProfileStep | WebhookStep | AudienceStep):
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
        targets = [(v.next or default, f"{v.name} {v.weight * share:.0f}%") for v in step.variants]
        return [(target, label) for target, label in targets if target]
    edges = [(step.next or default, "")] if (step.next or default) else []
    if isinstance(step, WaitUntilStep) and step.if_past != "continue":
        edges.append((step.if_past, "if past"))
    return [(t, label) for t, label in edges if t]


def _escape(text: str) -> str:
    return text.replace('"', "#quot;").replace("{{", "⟨").replace("}}", "⟩")


def flow_json_schema() -> str:
    """The JSON Schema of flow files, for editors (yaml-language-server) and CI."""
    from nudge.domain.validation import json_schema

    schema = json_schema(Flow, by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nudge flow"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def audience_json_schema() -> str:
    """The JSON Schema of audiences/*.yaml (ADR 0024)."""
    from nudge.domain.audiences import Audience
    from nudge.domain.validation import json_schema

    schema = json_schema(Audience, by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nudge ad audience"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
