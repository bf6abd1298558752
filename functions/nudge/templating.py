"""Jinja2 rendering for messages, in a sandbox: templates are data, never code with powers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, TemplateError

from nudge.domain.expressions import make_environment


class TemplateRenderError(Exception):
    """A template is missing or failed to render; the message names the template and the cause."""


class TemplateRenderer:
    """Renders templates/<name>.html.j2, .txt.j2 and .sms.j2 with autoescaping for HTML only."""

    def __init__(self, templates_dir: Path) -> None:
        self._env = make_environment(FileSystemLoader(str(templates_dir)))

    def render_file(self, name: str, context: dict[str, Any]) -> str:
        try:
            return self._env.get_template(name).render(context).strip()
        except TemplateError as exc:
            raise TemplateRenderError(f"{name}: {exc.__class__.__name__}: {exc}") from exc

    def render_string(self, source: str, context: dict[str, Any], *, label: str) -> str:
        try:
            return self._env.from_string(source).render(context).strip()
        except TemplateError as exc:
            raise TemplateRenderError(f"{label}: {exc.__class__.__name__}: {exc}") from exc

    def check(self, name: str) -> str | None:
        """None if the template exists and compiles, else why not."""
        try:
            self._env.get_template(name)
        except TemplateError as exc:
            return f"{name}: {exc.__class__.__name__}: {exc}"
        return None

    def check_string(self, source: str, *, label: str) -> str | None:
        try:
            self._env.parse(source)
        except TemplateError as exc:
            return f"{label}: {exc.__class__.__name__}: {exc}"
        return None

    def email(self, template: str, subject: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """(subject, html, text) for an email step."""
        return (
            self.render_string(subject, context, label=f"{template} subject"),
            self.render_file(f"{template}.html.j2", context),
            self.render_file(f"{template}.txt.j2", context),
        )

    def sms(self, template: str, context: dict[str, Any]) -> str:
        return self.render_file(f"{template}.sms.j2", context)
