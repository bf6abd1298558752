"""Reading flows/*.yaml into the domain's Flow models, with errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from nudge.domain.flows import EmailStep, Flow, FlowCatalog, SmsStep
from nudge.templating import FOOTER_HTML, FOOTER_TEXT, TemplateRenderer


class FlowFileError(ValueError):
    """One or more flow files are invalid; the message lists each problem as `file: path: message`."""


def load_flow(path: Path) -> Flow:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FlowFileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise FlowFileError(f"{path}: a flow file holds one mapping (id, name, trigger, steps)")
    try:
        return Flow.model_validate(data)
    except ValidationError as exc:
        problems = [f"{path}: {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()]
        raise FlowFileError("\n".join(problems)) from exc


def load_catalog(flows_dir: Path) -> FlowCatalog:
    """Every *.yaml under flows_dir; all problems are reported together."""
    if not flows_dir.is_dir():
        raise FlowFileError(f"{flows_dir}: no such flows directory")
    flows, problems = [], []
    for path in sorted(flows_dir.glob("*.yaml")):
        try:
            flows.append(load_flow(path))
        except FlowFileError as exc:
            problems.append(str(exc))
    if problems:
        raise FlowFileError("\n".join(problems))
    try:
        return FlowCatalog(flows)
    except ValueError as exc:
        raise FlowFileError(f"{flows_dir}: {exc}") from exc


def template_problems(flow: Flow, renderer: TemplateRenderer) -> list[str]:
    """Every template a flow's steps name must exist and compile; subjects must compile too."""
    problems = []
    for step in flow.steps:
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
    return problems
