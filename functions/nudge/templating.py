"""Jinja2 rendering for messages, in a sandbox: templates are data, never code with powers.

Email layouts are MJML (templates/**/*.mjml, with Jinja inside): MJML turns them into the table-and-media-
query HTML that renders in every mail client. They are compiled once, when flows are validated or
previewed, or when the Lambda bundle is built (which ships the compiled `.html.j2` and not the compiler);
a send only renders Jinja.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import BaseLoader, Environment, FileSystemLoader, Template, TemplateError, TemplateNotFound, meta, nodes

# Re-exported: the brand kit is read apart from the renderer (nudge.brand_file).
from nudge.brand_file import BRAND_FILE as BRAND_FILE
from nudge.brand_file import TemplateRenderError as TemplateRenderError
from nudge.brand_file import load_brand as load_brand
from nudge.domain.brand import Brand
from nudge.domain.expressions import ReadKeyed, flat_globals, is_missing, keyed_renders, make_environment
from nudge.domain.flows import WhatsAppStep
from nudge.domain.whatsapp import MAX_TEXT, OutgoingWhatsApp

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
        "whatsapp",
    }
)
# Appended to every email (postal address; unsubscribe link on marketing mail) whose layout has no footer
# of its own; the MJML layouts carry theirs inside the card, marked with FOOTER_MARK.
FOOTER_HTML = "layouts/footer.html.j2"
FOOTER_TEXT = "layouts/footer.txt.j2"
FOOTER_MARK = 'class="nudge-footer'
MJML_SUFFIX = ".mjml"
# What a template names as another file: <mj-include path="…">, {% include "…" %}, {% extends "…" %}.
_INCLUDES = re.compile(r"""<mj-include\s+path=["']([^"']+)["']|{%-?\s*(?:include|extends)\s+["']([^"']+)["']""")
# Remote stylesheets would be a network call per render, and a way for a template to reach out. The <style>
# blocks stay after inlining: they hold the media queries that stack columns on a phone (clients that drop
# them still get the inlined, single-column-safe styles).
_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_style_tags=True)


def inline_css(markup: str) -> str:
    """Move <style> rules into style attributes: many mail clients drop <style> blocks."""
    return str(_INLINER.inline(markup))


def compile_mjml(source: str, templates_dir: Path) -> str:
    """MJML (Jinja left in place) -> HTML; <mj-include path="layouts/x.mjml"/> reads from templates_dir.

    Imported here, not at module level: the Lambda bundle ships compiled templates and not the compiler.
    """
    import mjml

    root = templates_dir.resolve()

    def include(path: str) -> str:
        target = (root / path).resolve()
        if root not in target.parents:
            raise TemplateRenderError(f"mj-include outside the templates directory: {path}")
        return target.read_text(encoding="utf-8")

    try:
        return str(mjml.mjml2html(source, include_loader=include, disable_comments=True))
    except TemplateRenderError:
        raise
    except Exception as exc:  # MRML raises its own error type with the parser's message
        raise TemplateRenderError(f"MJML: {exc}") from exc


def compile_templates(source_dir: Path, out_dir: Path) -> list[Path]:
    """Write <name>.html.j2 beside every <name>.mjml (layouts/ are includes, not emails); the files written."""
    written = []
    for mjml_file in sorted(source_dir.rglob(f"*{MJML_SUFFIX}")):
        relative = mjml_file.relative_to(source_dir)
        if relative.parts[0] == "layouts":
            continue
        target = out_dir / relative.with_suffix(".html.j2")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(compile_mjml(mjml_file.read_text(encoding="utf-8"), source_dir), encoding="utf-8")
        written.append(target)
    return written


class _MjmlLoader(FileSystemLoader):
    """<name>.html.j2 from the file if there is one (the Lambda bundle), else compiled from <name>.mjml."""

    def __init__(self, templates_dir: Path) -> None:
        super().__init__(str(templates_dir))
        self._dir = templates_dir

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        try:
            return super().get_source(environment, template)
        except TemplateNotFound:
            if not template.endswith(".html.j2"):
                raise
            mjml_file = self._dir / (template.removesuffix(".html.j2") + MJML_SUFFIX)
            if not mjml_file.is_file():
                raise
        try:
            html = compile_mjml(mjml_file.read_text(encoding="utf-8"), self._dir)
        except TemplateRenderError as exc:
            raise TemplateError(f"{mjml_file.name}: {exc}") from exc
        return html, str(mjml_file), lambda: True


class TemplateRenderer:
    """Renders templates/<name>.html.j2 (or .mjml), .txt.j2 and .sms.j2, autoescaping HTML only.

    Every template sees the brand kit as `brand`.
    """

    # False for a renderer that renders subjects and preheaders only (the backtest's): the composer then
    # skips the body, footer, UTM tagging and CSS inlining, which would only produce empty strings.
    renders_bodies = True

    def __init__(self, templates_dir: Path, brand: Brand | None = None) -> None:
        self._dir = templates_dir
        self.brand = brand or load_brand(templates_dir)
        self._env = make_environment(_MjmlLoader(templates_dir))
        self._env.globals["brand"] = self.brand
        self._strings: dict[str, Template | str] = {}
        self._keyed: dict[str, ReadKeyed] = {}  # a string's renders by the values it reads

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
                template = self._strings[source] = _plain(source) or flat_globals(self._env.from_string(source))
            if isinstance(template, str):
                return template
            keyed = self._keyed.get(source)
            if keyed is None:
                keyed = self._keyed[source] = keyed_renders(source, template.globals, self._env)
            key = keyed.key(context)
            if key is not None and not is_missing(found := keyed.get(key)):
                return str(found)
            rendered = template.render(context).strip()
            if key is not None:
                keyed.put(key, rendered)
            return rendered
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
            source = self.source(current)
            tree = self._env.parse(source)
            unknown |= meta.find_undeclared_variables(tree) - TEMPLATE_VARIABLES - set(self._env.globals)
            pending += [
                str(n.template.value) for n in tree.find_all(nodes.Extends) if isinstance(n.template, nodes.Const)
            ]
        return unknown

    def written_sources(self, name: str) -> dict[str, str]:
        """The files as written (an .mjml rather than its compiled HTML) for a template and everything it
        includes or extends, by path relative to the templates directory."""
        found: dict[str, str] = {}
        pending = [name]
        while pending:
            current = pending.pop()
            path = self._dir / current
            if not path.is_file() and current.endswith(".html.j2"):
                path = self._dir / (current.removesuffix(".html.j2") + MJML_SUFFIX)
            if current in found or not path.is_file():
                continue
            text = path.read_text(encoding="utf-8")
            found[str(path.relative_to(self._dir))] = text
            pending += [mjml or jinja for mjml, jinja in _INCLUDES.findall(text)]
        return found

    def source(self, name: str) -> str:
        """The template's Jinja source (an MJML template's compiled HTML)."""
        loader: BaseLoader | None = self._env.loader
        if loader is None:
            raise TemplateRenderError(f"{name}: no template loader")
        try:
            return loader.get_source(self._env, name)[0]
        except TemplateError as exc:
            raise TemplateRenderError(f"{name}: {exc.__class__.__name__}: {exc}") from exc

    def email(self, template: str, subject: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """(subject, html, text) for an email step."""
        return (
            self.render_string(subject, context, label=f"{template} subject"),
            self.render_file(f"{template}.html.j2", context),
            self.render_file(f"{template}.txt.j2", context),
        )

    def sms(self, template: str, context: dict[str, Any]) -> str:
        return self.render_file(f"{template}.sms.j2", context)

    def whatsapp(self, step: WhatsAppStep, to: str, context: dict[str, Any]) -> OutgoingWhatsApp:
        """A WhatsApp step's message: its text, or its template's body parameters, rendered in the sandbox."""
        if step.text is not None:
            text = self.render_string(step.text, context, label=f"{step.id} text")
            if not text or len(text) > MAX_TEXT:
                raise TemplateRenderError(f"{step.id}: the WhatsApp text is {len(text)} characters; 1 to {MAX_TEXT} go")
            return OutgoingWhatsApp(to=to, text=text)
        names = list(step.parameters)
        if all(name.isdigit() for name in names):
            names.sort(key=int)  # positional: {{1}}, {{2}}, ... in order
        values = []
        for name in names:
            value = self.render_string(step.parameters[name], context, label=f"{step.id} {name}")
            if not value:
                raise TemplateRenderError(f"{step.id}: the WhatsApp template parameter {name!r} rendered empty")
            values.append((name, value))
        return OutgoingWhatsApp(to=to, template=step.template, language=step.language, parameters=tuple(values))


def _plain(source: str) -> str | None:
    """The rendering of a string with no Jinja syntax at all (most subjects and preheaders): itself, stripped.

    Conservative: any `{` (or a carriage return, which Jinja would normalize) goes through Jinja."""
    if "{" in source or "\r" in source:
        return None
    return source.strip()
