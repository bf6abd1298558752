"""Helpers for tests that write their own small flows and watch what they send."""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path

from nudge.clocks import VirtualClock
from nudge.local.simulation import Simulation
from nudge.settings import Settings

GUARDRAILS_OFF = """
smart_sending: {email: "off", sms: "off"}
frequency_caps: {email: {}, sms: {}}
sms_quiet_hours: {enabled: false}
"""


def flows_dir(tmp_path: Path, *flows: str, guardrails: str | None = GUARDRAILS_OFF) -> Path:
    """A flows directory holding these YAML texts (and guardrails, off unless given)."""
    directory = tmp_path / "flows"
    directory.mkdir(exist_ok=True)
    for index, text in enumerate(flows):
        (directory / f"flow_{index}.yaml").write_text(_expand(textwrap.dedent(text)))
    if guardrails is not None:
        (directory / "_guardrails.yaml").write_text(textwrap.dedent(guardrails))
    return directory


def segments_dir(tmp_path: Path, *segments: str) -> Path:
    """A segments directory (beside flows_dir's) holding these YAML texts."""
    directory = tmp_path / "segments"
    directory.mkdir(exist_ok=True)
    for index, text in enumerate(segments):
        (directory / f"segment_{index}.yaml").write_text(textwrap.dedent(text))
    return directory


EMAIL = "@EMAIL@"  # stands for an email step using a shipped template, at the line's own indentation


def _expand(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if EMAIL in line:
            indent = line[: len(line) - len(line.lstrip())]
            lines.append(line.replace(EMAIL, "type: email"))
            lines.append(f"{indent}template: welcome/welcome")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def simulation(settings: Settings, clock: VirtualClock, directory: Path) -> Simulation:
    return Simulation(settings.model_copy(update={"flows_dir": directory}), clock)


def sent(sim: Simulation) -> list[tuple[str, str, str]]:
    """(UTC time, recipient, subject or SMS text) of everything sent, in order, once the worker did what is due."""
    sim.settle()
    rows = [(e.date, e.to, e.subject) for _, e in sim.mailer.sent]
    rows += [
        (m.sent_at, m.recipient or "", m.body_preview or "")
        for m in sim.store.messages.values()
        if m.channel.value == "sms" and m.sent_at is not None
    ]
    return [(at.strftime("%Y-%m-%d %H:%M"), to, text) for at, to, text in sorted(rows, key=lambda r: (r[0], r[1]))]


def reasons(sim: Simulation) -> dict[str, str | None]:
    """step id -> skip reason (or None if sent) for every message record."""
    return {m.step_id: m.reason for m in sim.store.messages.values()}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)
