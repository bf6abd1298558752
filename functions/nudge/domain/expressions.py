"""Conditions and filters: Jinja2 expressions in the same sandbox as the templates.

`event.total > 50`, `'vip' in contact.tags`, `trigger.checkout_id == event.checkout_id`. The sandbox is
immutable (no attribute writes, no method calls that mutate) and undefined names are errors, so a typo
in a flow fails loudly at validation or on first use instead of silently evaluating to false.

Jinja is imported when the first expression is compiled, not with this module: the engine imports it, and
a function whose catalog comes compiled from the bundle evaluates no expression before its first flow with
a condition (ADR 0020, Decision 9).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from nudge.domain.durations import parse_duration

if TYPE_CHECKING:
    from jinja2 import BaseLoader, Environment, Template, nodes
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


@lru_cache(maxsize=512)
def names_read(source: str) -> frozenset[str] | None:
    """The names the expression reads (`event`, `contact`, a global), or None if it does not parse.

    A context need not hold a name the expression never reads: no global or filter of the sandbox reads
    the context itself, so leaving it out changes nothing (the engine builds a contact's view only for a
    filter that reads `contact`)."""
    from jinja2 import TemplateError, nodes

    try:
        tree = _env().parse("{{ " + source + " }}")
    except TemplateError:
        return None
    return frozenset(node.name for node in tree.find_all(nodes.Name) if node.ctx == "load")


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
    keyed = _keyed_expression(source)
    key = keyed.key(context)
    if key is not None and (found := keyed.get(key)) is not _MISSING:
        return bool(found)
    result = bool(evaluate(source, context))
    if key is not None:
        keyed.put(key, result)
    return result


@lru_cache(maxsize=512)
def _keyed_expression(source: str) -> ReadKeyed:
    template: Template = _compiled(source)._template  # type: ignore[attr-defined]  # noqa: SLF001 - as flat_globals
    return keyed_renders("{{ " + source + " }}", template.globals, _env())


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
        keyed = _keyed_template(source)
        key = keyed.key(context)
        if key is not None and (found := keyed.get(key)) is not _MISSING:
            return str(found)
        result = str(_template(source).render(context)).strip()
        if key is not None:
            keyed.put(key, result)
        return result
    except ExpressionError:
        raise
    except Exception as exc:
        raise ExpressionError(f"{source!r} failed: {exc.__class__.__name__}: {exc}") from exc


# Renders keyed by what they read --------------------------------------------------------------------------
# A subject or a filter reads a few leaves of its context (`contact.first_name`, `event.recovery_url`), and
# a render is a function of those leaves alone, so a render seen once need not be rendered again: a
# replay asks the same few questions of the same few values tens of thousands of times. The key is the
# value (and type) of every leaf the template reads; a template that reads anything else (a whole
# dict, a list, a float, a date, a method, a local name) gets no key and is rendered every time.

_MISSING = object()
_KEYABLE = (str, int, bool, type(None))  # equal values render alike (not 1.0 == 1, Decimal("1.0"), or zoned dates)
_DICT_ATTRS = frozenset(dir(dict))  # what a Jinja `d.name` finds on a dict before its items
_PLAIN = frozenset({str, int, float, bool, type(None), dict, list, tuple})  # JSON's values: never Undefined


@lru_cache(maxsize=1)
def _node_kinds() -> tuple[tuple[type[nodes.Node], ...], tuple[type[nodes.Node], ...]]:
    """The nodes that read a leaf, and the nodes that only combine what their children compute (Jinja is
    imported at the first expression or template, not with this module: ADR 0020, Decision 9)."""
    from jinja2 import nodes

    leaf = (nodes.Name, nodes.Getattr, nodes.Getitem)
    pure = (
        nodes.Template, nodes.Output, nodes.TemplateData, nodes.Const, nodes.Slice, nodes.Filter, nodes.Test,
        nodes.Call, nodes.Keyword, nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos, nodes.Compare,
        nodes.Operand, nodes.CondExpr, nodes.Concat, nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair, nodes.Add,
        nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow,
    )  # fmt: skip
    return leaf, pure


_CACHED_RENDERS = 512  # per template (a Lambda keeps them between invocations); cleared when full


_Steps = tuple[tuple[bool, str | int], ...]  # (an item lookup?, the name or index) from the root
_Leaf = tuple[str, _Steps, bool]  # the root name, the steps, and whether only its being defined is read
_DEFINED_TESTS = frozenset({"defined", "undefined"})


def _chain(node: nodes.Node) -> tuple[str, _Steps] | None:
    """`contact.first_name`, `event['x']`: the root name and the steps, or None if not rooted in a name."""
    from jinja2 import nodes

    steps: list[tuple[bool, str | int]] = []
    while True:
        if isinstance(node, nodes.Name):
            return (node.name, tuple(reversed(steps))) if node.ctx == "load" else None
        if isinstance(node, nodes.Getattr):
            steps.append((False, node.attr))
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if type(node.arg.value) not in (str, int):
                return None
            steps.append((True, node.arg.value))
            node = node.node
        else:
            return None


def _leaves(tree: nodes.Node) -> tuple[_Leaf, ...] | None:
    """Every leaf the template reads (each name with the longest chain of constant lookups on it), or None
    if it does anything else (sets, loops, macros, blocks, a computed index): then it gets no key.

    A leaf read only by `is defined` / `is undefined` (`event.recovery_url is defined`) is marked so: the
    render reads whether it is there, not its value."""
    from jinja2 import nodes

    found: dict[tuple[str, _Steps], bool] = {}  # chain -> only its definedness read so far
    leaf_nodes, pure_nodes = _node_kinds()

    def visit(node: nodes.Node) -> bool:
        if (
            isinstance(node, nodes.Test)
            and node.name in _DEFINED_TESTS
            and not (node.args or node.kwargs or node.dyn_args or node.dyn_kwargs)
            and isinstance(node.node, leaf_nodes)
            and (chain := _chain(node.node)) is not None
            and chain[1]  # a lookup on a name (a bare name resolves through the globals too: by value)
        ):
            found[chain] = found.get(chain, True)
            return True
        if isinstance(node, leaf_nodes) and (chain := _chain(node)) is not None:
            found[chain] = False
            return True
        if isinstance(node, nodes.Getitem):  # a computed index: the container and the index both read
            return visit(node.node) and visit(node.arg)
        if not isinstance(node, pure_nodes):
            return False
        return all(visit(child) for child in node.iter_child_nodes())

    return tuple((root, steps, only) for (root, steps), only in found.items()) if visit(tree) else None


def _step(value: Any, item: bool, name: str | int) -> Any:
    """One lookup as Jinja makes it: `a.b` an attribute first, then an item (a dict's methods before its
    items); `a['b']` an item first, then an attribute."""
    if type(value) is dict and name not in _DICT_ATTRS:
        return value.get(name, _MISSING)
    if item:
        try:
            return value[name]
        except (TypeError, LookupError):
            pass
    if isinstance(name, str):
        try:
            return getattr(value, name)
        except AttributeError:
            pass
    if not item:
        try:
            return value[name]
        except (TypeError, LookupError):
            pass
    return _MISSING


class ReadKeyed:
    """Results of one compiled template or expression, by the values of the leaves it reads."""

    __slots__ = ("_leaves", "_globals", "_results")

    def __init__(self, tree: nodes.Node | None, template_globals: Mapping[str, Any]) -> None:
        self._leaves = _leaves(tree) if tree is not None else None
        self._globals = template_globals
        self._results: dict[tuple[Any, ...], Any] = {}

    def key(self, context: dict[str, Any]) -> tuple[Any, ...] | None:
        """The values read, with their types; None when one of them cannot key a render."""
        leaves = self._leaves
        if leaves is None:
            return None
        key: list[Any] = []
        for root, steps, only_defined in leaves:
            value = context.get(root, _MISSING)
            if value is _MISSING:
                value = self._globals.get(root, _MISSING)
                if value is not _MISSING and not steps and type(value) not in _KEYABLE:
                    key.append(("global", root))  # a function or object of the environment: fixed
                    continue
            depth = 0
            parent = None
            for item, name in steps:
                if value is _MISSING:
                    break
                parent, value = value, _step(value, item, name)
                depth += 1
            if value is _MISSING:
                key.append(("missing", depth, type(parent)))
            elif only_defined and type(parent) is dict and steps[-1][1] not in _DICT_ATTRS and type(value) in _PLAIN:
                # Found as a dict's item (what Jinja's lookup finds too, the sandbox having no say over
                # items): defined, whatever its value.
                key.append(("defined",))
            elif type(value) in _KEYABLE or type(value) in (tuple, frozenset) and all(type(v) is str for v in value):
                key.append((type(value), value))
            else:
                return None
        return tuple(key)

    def get(self, key: tuple[Any, ...]) -> Any:
        return self._results.get(key, _MISSING)

    def put(self, key: tuple[Any, ...], result: Any) -> None:
        if len(self._results) >= _CACHED_RENDERS:
            self._results.clear()
        self._results[key] = result


def is_missing(value: Any) -> bool:
    return value is _MISSING


def keyed_renders(source: str, template_globals: Mapping[str, Any], env: Environment) -> ReadKeyed:
    """The read-keyed results of a template compiled from `source` in `env` (its globals as compiled)."""
    from jinja2 import TemplateError

    try:
        tree: nodes.Node | None = env.parse(source)
    except TemplateError:
        tree = None
    return ReadKeyed(tree, template_globals)


@lru_cache(maxsize=512)
def _keyed_template(source: str) -> ReadKeyed:
    return keyed_renders(source, _template(source).globals, _env())
