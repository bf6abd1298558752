"""Conditions and filters: Jinja2 expressions in the same sandbox as the templates.

`event.total > 50`, `'vip' in contact.tags`, `trigger.checkout_id == event.checkout_id`. The sandbox is
immutable (no attribute writes, no method calls that mutate) and undefined names are errors, so a typo
in a flow fails loudly at validation or on first use instead of silently evaluating to false.

Jinja is imported when the first expression is compiled, not with this module: the engine imports it, and
a function whose catalog comes compiled from the bundle evaluates no expression before its first flow with
a condition (ADR 0020, Decision 9).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from nudge.domain.durations import parse_duration

if TYPE_CHECKING:
    from jinja2 import BaseLoader, Template
    from jinja2.sandbox import ImmutableSandboxedEnvironment

_CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$", "JPY": "¥"}


class ExpressionError(ValueError):
    """An expression did not compile or failed to evaluate; the message says which and why."""


def money(amount: Any, currency: str = "USD") -> str:
    """Format an amount for humans: money(19.5, 'EUR') -> '€19.50'."""
    try:
        value = Decimal(str(amount)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return str(amount)
    symbol = _CURRENCY_SYMBOLS.get(str(currency).upper())
    return f"{symbol}{value:,}" if symbol else f"{value:,} {currency}"


def as_datetime(value: Any) -> datetime:
    """A date, datetime or ISO string as an aware UTC datetime (dates at midnight UTC)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = str(value).strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _days_between(earlier: Any, later: Any) -> float:
    return (as_datetime(later) - as_datetime(earlier)) / timedelta(days=1)


def make_environment(loader: BaseLoader | None = None) -> ImmutableSandboxedEnvironment:
    """The one sandbox for templates and expressions: strict undefined, HTML autoescape for *.html.j2."""
    from jinja2 import StrictUndefined, select_autoescape
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        loader=loader,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,  # templates ship with the function; no stat() per render
    )
    env.filters["money"] = money
    env.filters["datetime"] = as_datetime
    env.globals["days_between"] = _days_between
    env.globals["duration"] = parse_duration
    return env


@lru_cache(maxsize=1)
def _env() -> ImmutableSandboxedEnvironment:
    """The expressions' sandbox, made at the first expression compiled."""
    return make_environment()


def flat_globals(template: Template) -> Template:
    """The template with its globals (a ChainMap of its own and the environment's) copied into one dict.

    Rendering copies the globals into every context, and a ChainMap is slow to copy: for a short template
    (a subject, a filter) that was three quarters of a render. For templates compiled once and kept, after
    the environment's globals are set (they never change afterwards).
    """
    template.globals = dict(template.globals)
    return template


@lru_cache(maxsize=512)
def _compiled(source: str) -> Callable[..., Any]:
    from jinja2 import TemplateError

    try:
        compiled = _env().compile_expression(source, undefined_to_none=False)
    except TemplateError as exc:
        raise ExpressionError(f"{source!r} does not compile: {exc}") from exc
    flat_globals(compiled._template)  # noqa: SLF001 - jinja's TemplateExpression keeps its template there
    return compiled


def check(source: str) -> str | None:
    """None if the expression compiles, else why not."""
    try:
        _compiled(source)
    except ExpressionError as exc:
        return str(exc)
    return None


def unknown_fields(source: str, name: str, known: frozenset[str]) -> list[str]:
    """The fields of `name` the (compiling) expression reads that are not in `known`: `contact.orders_count`
    where the contact has `aggregates.orders_count`. Only `name.field` and `name['field']` are seen."""
    from jinja2 import nodes

    found = set()
    field: object
    for node in _env().parse("{{ " + source + " }}").find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            target, field = node.node, node.attr
        elif isinstance(node, nodes.Getitem):
            target, field = node.node, getattr(node.arg, "value", None)
        else:
            continue
        if isinstance(target, nodes.Name) and target.name == name and isinstance(field, str) and field not in known:
            found.add(field)
    return sorted(found)


def evaluate(source: str, context: dict[str, Any]) -> Any:
    """Evaluate the expression over the context; ExpressionError names it and the cause."""
    try:
        return _compiled(source)(**context)
    except ExpressionError:
        raise
    except Exception as exc:  # undefined names, type errors, sandbox refusals: all the author's to fix
        raise ExpressionError(f"{source!r} failed: {exc.__class__.__name__}: {exc}") from exc


def truthy(source: str, context: dict[str, Any]) -> bool:
    return bool(evaluate(source, context))


@lru_cache(maxsize=512)
def _template(source: str) -> Any:
    from jinja2 import TemplateError

    try:
        return flat_globals(_env().from_string(source))
    except TemplateError as exc:
        raise ExpressionError(f"{source!r} does not compile: {exc}") from exc


def render(source: str, context: dict[str, Any]) -> str:
    """Render a short inline template ("{{ event.days }}d") over the context."""
    try:
        return str(_template(source).render(context)).strip()
    except ExpressionError:
        raise
    except Exception as exc:
        raise ExpressionError(f"{source!r} failed: {exc.__class__.__name__}: {exc}") from exc
