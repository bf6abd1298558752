"""Jinja2 rendering for messages, in a sandbox: templates are data, never code with powers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import css_inline
from jinja2 import FileSystemLoader, Template, TemplateError, meta, nodes

from nudge.domain.expressions import make_environment

# The variables every message template may use (services.runs builds exactly these; a test checks it).
TEMPLATE_VARIABLES = frozenset(
    {
        "contact",
        "event",
        "trigger",
        "flow",
        "step",
        "run",
        "now",
        "channel",
        "unsubscribe_url",
        "postal_address",
        "recommendations",
    }
)
# Appended to every email (postal address; unsubscribe link on marketing mail), whatever its layout.
FOOTER_HTML = "layouts/footer.html.j2"
FOOTER_TEXT = "layouts/footer.txt.j2"
# Remote stylesheets would be a network call per render, and a way for a template to reach out.
_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False)


class TemplateRenderError(Exception):
    """A template is missing or failed to render; the message names the template and the cause."""


def inline_css(markup: str) -> str:
    """Move <style> rules into style attributes: many mail clients drop <style> blocks."""
    return str(_INLINER.inline(markup))


class TemplateRenderer:
    """Renders templates/<name>.html.j2, .txt.j2 and .sms.j2 with autoescaping for HTML only."""

    def __init__(self, templates_dir: Path) -> None:
        self._env = make_environment(FileSystemLoader(str(templates_dir)))
        self._strings: dict[str, Template] = {}

    def render_file(self, name: str, context: dict[str, Any]) -> str:
        try:
            return self._env.get_template(name).render(context).strip()
        except TemplateError as exc:
            raise TemplateRenderError(f"{name}: {exc.__class__.__name__}: {exc}") from exc

    def render_string(self, source: str, context: dict[str, Any], *, label: str) -> str:
        try:
            # Subjects and preheaders are few and fixed (they come from flow files): compile each once.
            template = self._strings.get(source)
            if template is None:
                template = self._strings[source] = self._env.from_string(source)
            return template.render(context).strip()
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
            unknown = (
                meta.find_undeclared_variables(self._env.parse(source)) - TEMPLATE_VARIABLES - set(self._env.globals)
            )
        except TemplateError as exc:
            return f"{label}: {exc.__class__.__name__}: {exc}"
        return f"{label}: unknown variable(s) {', '.join(sorted(unknown))}" if unknown else None

    def unknown_variables(self, name: str) -> set[str]:
        """Top-level names the template and the layouts it extends use that no message context provides.

        Included partials are not checked on their own: they see the variables their includer sets.
        """
        unknown: set[str] = set()
        seen: set[str] = set()
        pending = [name]
        while pending:
            current = pending.pop()
            if current in seen or self._env.loader is None:
                continue
            seen.add(current)
            source = self._env.loader.get_source(self._env, current)[0]
            tree = self._env.parse(source)
            unknown |= meta.find_undeclared_variables(tree) - TEMPLATE_VARIABLES - set(self._env.globals)
            pending += [
                str(n.template.value) for n in tree.find_all(nodes.Extends) if isinstance(n.template, nodes.Const)
            ]
        return unknown

    def email(self, template: str, subject: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """(subject, html, text) for an email step."""
        return (
            self.render_string(subject, context, label=f"{template} subject"),
            self.render_file(f"{template}.html.j2", context),
            self.render_file(f"{template}.txt.j2", context),
        )

    def sms(self, template: str, context: dict[str, Any]) -> str:
        return self.render_file(f"{template}.sms.j2", context)
