"""Reading flows/*.yaml and segments/*.yaml into domain models, with errors that name the file and the field."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import yaml

from nudge.domain.audiences import SOURCES, Audience, AudienceCatalog
from nudge.domain.flows import (
    STEP_KINDS,
    TRIGGER_KINDS,
    AudienceStep,
    BranchStep,
    EmailStep,
    EventTrigger,
    Flow,
    FlowCatalog,
    SegmentTrigger,
    SmsStep,
    WhatsAppStep,
)
from nudge.domain.frozen import dataclass
from nudge.domain.guardrails import Guardrails
from nudge.domain.model import Category
from nudge.domain.records import message
from nudge.domain.segments import CONDITION_TAGS, Segment, SegmentCatalog
from nudge.domain.validation import ValidationError, validate
from nudge.domain.whatsapp import INBOUND_EVENT
from nudge.domain.whatsapp_templates import WhatsAppTemplates

if TYPE_CHECKING:  # loading flows needs no renderer: a cold start reads them without Jinja's templates
    from nudge.templating import TemplateRenderer


class FlowFileError(ValueError):
    """One or more flow files are invalid; the message lists each problem as `file: path: message`."""


# libyaml's parser where PyYAML was built with it (its wheels are, the Lambda bundle's included): the
# same documents as the pure-Python SafeLoader, about five times faster, at every cold start (ADR 0020).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506  (a safe loader: plain data, no Python objects)


def load_flow(path: Path) -> Flow:
    return _load_model(path, Flow, "a flow file holds one mapping (id, name, trigger, steps)")


def load_audience(path: Path) -> Audience:
    return _load_model(path, Audience, "an audience file holds one mapping (id, name, platform, audience_id, source)")


def load_audiences(audiences_dir: Path | None) -> AudienceCatalog:
    """Every *.yaml under audiences_dir (none, or no such directory: no audiences)."""
    if audiences_dir is None or not audiences_dir.is_dir():
        return AudienceCatalog()
    return _load_all(audiences_dir, load_audience, AudienceCatalog)


def audience_problems(flows: FlowCatalog, audiences: AudienceCatalog, segments: SegmentCatalog) -> list[str]:
    """Every audience a flow step names exists and is managed by flows; every segment an audience follows exists."""
    problems = []
    for flow in flows:
        for step in flow.steps:
            if not isinstance(step, AudienceStep):
                continue
            audience = audiences.get(step.audience)
            if audience is None:
                known = ", ".join(sorted(audiences.ids())) or "none"
                problems.append(f"{flow.id}: steps.{step.id}.audience: no audience {step.audience!r} (known: {known})")
            elif audience.segment is not None:
                problems.append(
                    f"{flow.id}: steps.{step.id}.audience: {step.audience!r} follows segment {audience.segment!r}; "
                    "flows may only change audiences whose source is flows"
                )
    known_segments = segments.ids()
    problems += [
        f"{audience.id}: source.segment: no segment {audience.segment!r}"
        for audience in audiences
        if audience.segment is not None and audience.segment not in known_segments
    ]
    return problems


def load_segment(path: Path) -> Segment:
    return _load_model(path, Segment, "a segment file holds one mapping (id, name, conditions)")


M = TypeVar("M")
C = TypeVar("C")


def _load_model(path: Path, model: type[M], shape: str) -> M:
    """Parse one YAML file into `model`; FlowFileError lists each problem with its file and line."""
    text = path.read_text(encoding="utf-8")
    try:
        data = _safe_load(text)
    except yaml.YAMLError as exc:
        raise FlowFileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise FlowFileError(f"{path}: {shape}")
    try:
        return validate(model, data)
    except ValidationError as exc:
        # The node tree, for the lines the problems are on: only for a file that has problems.
        root = yaml.compose(text, Loader=_Loader)  # noqa: S506  (composes nodes, constructs nothing)
        raise FlowFileError("\n".join(_located(path, root, err) for err in exc.errors())) from exc


def _located(path: Path, root: yaml.Node | None, error: Any) -> str:
    """`file:line: dotted.path: message`, the line being where the offending value starts in the YAML."""
    node, parts = root, []
    previous: Any = None
    for part in error["loc"]:
        # pydantic names the union member it tried (a step's, a trigger's or a condition's kind) in the
        # location; it is not a key in the file.
        is_tag = (
            isinstance(part, str)
            and part in _UNION_TAGS
            and (isinstance(previous, int) or previous in ("trigger", "source"))  # an audience's source too
        )
        previous = part
        if is_tag:
            continue
        parts.append(str(part))
        node = _child(node, part) or node
    line = node.start_mark.line + 1 if node is not None else 1
    return f"{path}:{line}: {'.'.join(parts) or '<root>'}: {message(error)}"


# The unions' own lists of kinds (nudge.domain.records.Tagged); an audience's source kinds too.
_UNION_TAGS = {*STEP_KINDS, *TRIGGER_KINDS, *CONDITION_TAGS, *SOURCES.tags}


def _child(node: yaml.Node | None, part: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return cast(yaml.Node, value)
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return cast(yaml.Node, node.value[part])
    return None


def load_catalog(flows_dir: Path) -> FlowCatalog:
    """Every *.yaml under flows_dir; all problems are reported together."""
    if not flows_dir.is_dir():
        raise FlowFileError(f"{flows_dir}: no such flows directory")
    return _load_all(flows_dir, load_flow, FlowCatalog)


def _load_all(directory: Path, load: Callable[[Path], M], build: Callable[[list[M]], C]) -> C:
    """Load every *.yaml (but _settings files) in `directory`, report all problems at once, then build."""
    loaded: list[M] = []
    problems: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name.startswith("_"):
            continue  # _guardrails.yaml and other account-wide settings
        try:
            loaded.append(load(path))
        except FlowFileError as exc:
            problems.append(str(exc))
    if problems:
        raise FlowFileError("\n".join(problems))
    try:
        return build(loaded)
    except ValueError as exc:
        raise FlowFileError(f"{directory}: {exc}") from exc


# A URL written into a template: shop URLs belong in the brand kit (brand.urls) or come with the event.
_WRITTEN_URL = re.compile(r"https?://[^\s\"'<>)]+")
_COMMENTS = re.compile(r"{#.*?#}|<!--.*?-->", re.DOTALL)
# A call to action: an <mj-button> (it compiles to class="cta" through layouts/head.mjml), or any element
# of a shop's own HTML layout with the class `cta`.
_CALL_TO_ACTION = re.compile(r"""class=["'][^"']*\bcta\b""")


def template_problems(flow: Flow, renderer: TemplateRenderer, whatsapp: WhatsAppTemplates | None = None) -> list[str]:
    """Every template a flow's steps name must exist and compile; subjects must compile too. Templates write
    no URL of their own (the brand kit has the shop's), and every marketing email has a call to action.
    WhatsApp steps name a declared template (`whatsapp`: flows/_whatsapp.yaml) or send text in the window."""
    from nudge.templating import FOOTER_HTML, FOOTER_TEXT

    problems = []
    for step in flow.steps:
        if isinstance(step, WhatsAppStep):
            problems += whatsapp_problems(flow, step, renderer, whatsapp or WhatsAppTemplates())
            if (fallback := step.fallback_step()) is None:
                continue
            step = fallback  # its SMS or email templates are checked as any other's
        if isinstance(step, EmailStep):
            names = [f"{step.template}.html.j2", f"{step.template}.txt.j2", FOOTER_HTML, FOOTER_TEXT]
            for label, source in (("subject", step.subject), ("preheader", step.preheader)):
                found = renderer.check_string(source, label=f"steps.{step.id}.{label}") if source else None
                problems += [found] if found else []
        elif isinstance(step, SmsStep):
            names = [f"{step.template}.sms.j2"]
        else:
            continue
        for name in names:
            if problem := renderer.check(name):
                problems.append(f"steps.{step.id}: {problem}")
            elif unknown := renderer.unknown_variables(name):
                problems.append(f"steps.{step.id}: {name}: unknown variable(s) {', '.join(sorted(unknown))}")
            else:
                problems += [f"steps.{step.id}: {found}" for found in _written_urls(renderer, name)]
        is_marketing_email = isinstance(step, EmailStep) and flow.category_of(step) is Category.MARKETING
        html = f"{step.template}.html.j2"
        if is_marketing_email and not renderer.check(html) and not _CALL_TO_ACTION.search(renderer.source(html)):
            problems.append(
                f"steps.{step.id}: {step.template}: a marketing email needs a call to action "
                '(an <mj-button>, or an element with class="cta")'
            )
    return problems


def whatsapp_problems(
    flow: Flow, step: WhatsAppStep, renderer: TemplateRenderer, declared: WhatsAppTemplates
) -> list[str]:
    """A template step names an approved template in one of its languages with exactly its parameters; a
    text step is guarded by the 24-hour window. Every parameter and text compiles in the sandbox."""
    where = f"steps.{step.id}"
    sources = {f"{where}.parameters.{name}": source for name, source in step.parameters.items()}
    problems = []
    if step.text is not None:
        sources[f"{where}.text"] = step.text
        if not _window_guarded(flow, step):
            problems.append(
                f"{where}: free-form text goes out only inside the 24-hour window: trigger the flow on "
                f"{INBOUND_EVENT}, or reach this step as the `then` of a branch on whatsapp.window_open "
                "(or send an approved template)"
            )
    elif step.template is not None:
        template = declared.templates.get(step.template)
        if template is None:
            problems.append(
                f"{where}: no WhatsApp template {step.template!r} in {WHATSAPP_FILE} (declare what Meta approved)"
            )
        else:
            if step.language not in template.languages:
                problems.append(
                    f"{where}: {step.template} is approved in {', '.join(template.languages)}, not {step.language}"
                )
            if unknown := sorted(set(step.parameters) - set(template.parameters)):
                problems.append(f"{where}: {step.template} has no parameter(s) {', '.join(unknown)}")
            if missing := [name for name in template.parameters if name not in step.parameters]:
                problems.append(f"{where}: {step.template} needs parameter(s) {', '.join(missing)}")
            if template.category == "marketing" and flow.category_of(step) is Category.TRANSACTIONAL:
                problems.append(f"{where}: {step.template} is a marketing template; it needs marketing consent")
    for label, source in sources.items():
        if found := renderer.check_string(source, label=label):
            problems.append(found)
    return problems


def _window_guarded(flow: Flow, step: WhatsAppStep) -> bool:
    """Does the flow start on the customer's own message, or does a branch on the window lead to the step?"""
    trigger = flow.trigger
    if isinstance(trigger, EventTrigger) and trigger.accepts(INBOUND_EVENT):
        return True
    return any(
        isinstance(s, BranchStep) and s.then == step.id and "whatsapp.window_open" in s.condition for s in flow.steps
    )


WHATSAPP_FILE = "_whatsapp.yaml"


def load_whatsapp_templates(flows_dir: Path) -> WhatsAppTemplates:
    """The approved WhatsApp templates declared in flows/_whatsapp.yaml; none if the file is absent."""
    path = flows_dir / WHATSAPP_FILE
    if not path.exists():
        return WhatsAppTemplates()
    return _load_model(path, WhatsAppTemplates, "a _whatsapp.yaml holds one mapping: templates")


def _written_urls(renderer: TemplateRenderer, name: str) -> list[str]:
    found = []
    for path, text in renderer.written_sources(name).items():
        for url in _WRITTEN_URL.findall(_COMMENTS.sub("", text)):
            found.append(f"{path}: writes the URL {url}; use the brand kit (brand.urls) or the event's")
    return found


GUARDRAILS_FILE = "_guardrails.yaml"


def load_guardrails(flows_dir: Path) -> Guardrails:
    """The account-wide guardrails in flows/_guardrails.yaml; the defaults if the file is absent."""
    path = flows_dir / GUARDRAILS_FILE
    if not path.exists():
        return Guardrails()
    try:
        data = _safe_load(path.read_text(encoding="utf-8")) or {}
        return validate(Guardrails, data)
    except yaml.YAMLError as exc:
        raise FlowFileError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = [f"{path}: {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()]
        raise FlowFileError("\n".join(problems)) from exc


def load_segments(segments_dir: Path | None) -> SegmentCatalog:
    """Every *.yaml under segments_dir (none, or no such directory: the built-in stages only)."""
    if segments_dir is None or not segments_dir.is_dir():
        return SegmentCatalog()
    return _load_all(segments_dir, load_segment, SegmentCatalog)


def segment_problems(flows: FlowCatalog, segments: SegmentCatalog) -> list[str]:
    """Every segment a flow triggers on must exist (a built-in stage or a segments/*.yaml)."""
    known = segments.ids()
    return [
        f"{flow.id}: trigger.segment: no segment {flow.trigger.segment!r} (known: {', '.join(sorted(known))})"
        for flow in flows
        if isinstance(flow.trigger, SegmentTrigger) and flow.trigger.segment not in known
    ]


@dataclass(frozen=True)
class Catalog:
    """Flows, guardrails and segments, each file parsed and validated, the flows' segments checked."""

    flows: FlowCatalog
    guardrails: Guardrails
    segments: SegmentCatalog


def load_all(flows_dir: Path, segments_dir: Path | None) -> Catalog:
    """What a function reads at its first use of the flows: flows/, flows/_guardrails.yaml, segments/."""
    flows = load_catalog(flows_dir)
    segments = load_segments(segments_dir)
    if problems := segment_problems(flows, segments):
        raise FlowFileError("\n".join(problems))
    return Catalog(flows=flows, guardrails=load_guardrails(flows_dir), segments=segments)
