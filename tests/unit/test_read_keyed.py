"""Renders kept by the values they read (expressions.ReadKeyed) give what a fresh render gives, and the
contact's lazy view gives what its whole view gives (ADR 0010, the fifth pass)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jinja2 import Undefined

from nudge.domain import expressions
from nudge.domain.aggregates import VIEW_ATTRIBUTES, Aggregates, updated
from nudge.domain.model import CONTACT_FIELDS, Contact
from nudge.domain.segments import Segment, SegmentCatalog, evaluate
from nudge.domain.validation import validate
from nudge.templating import TemplateRenderer

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)

CONTEXTS: list[dict[str, Any]] = [
    {"event": {}, "contact": {}},
    {"event": {"recovery_url": "https://x/1", "n": 1, "flag": True}, "contact": {"first_name": "Ann"}},
    {"event": {"recovery_url": None, "n": True, "flag": 1}, "contact": {"first_name": None}},
    {"event": {"recovery_url": "", "n": 1.0, "flag": 0}, "contact": {"first_name": ""}},
    {"event": {"n": Decimal("1.00"), "items": "shadowed"}, "contact": {"first_name": "Bo", "tags": ("vip",)}},
    {"event": {"n": "1", "lines": [{"p": 1}]}, "contact": {"first_name": "Bo", "tags": ["vip", "x"]}},
    {"event": {"n": [1]}, "contact": {"tags": ()}},
    {"event": "not a dict", "contact": None},
    {"event": {"recovery_url": "https://x/2", "a": {"b": 0}}, "contact": {"first_name": "Cy"}},
    {"event": {"recovery_url": ["https://x/3"], "a": {}}, "contact": {"first_name": "Cy"}},
    {"event": {"recovery_url": Undefined(), "a": None}, "contact": {}},  # never in a real context: not kept
]
EXPRESSIONS = [
    "event.recovery_url is defined",
    "not (event.flag | default(false))",
    "event.n == 1",
    "event.n | string == '1'",
    "'vip' in contact.tags",
    "event['n'] is defined and event['n']",
    "event.items is defined",
    "event.lines | selectattr('p', 'defined') | list | length > 0",
    "contact.first_name or event.n",
    "event.recovery_url is undefined",
    "event['recovery_url'] is defined or event.a is defined",
    "event.a is defined and event.a.b is defined and event.a.b == 0",
    "event.recovery_url is defined and event.recovery_url",
    "(event.recovery_url or '') ~ (event.recovery_url is defined) | string != 'True'",
    "event.recovery_url is defined(1) if false else true",
]
SUBJECTS = [
    "{{ contact.first_name or 'friend' }}, your cart",
    "Order {{ event.n }} for {{ contact.first_name }}",
    "{{ event.n | default('none') }} {{ brand.name }}",
    "{% set x = event.n %}{{ x }}",
    "{{ contact.tags | join(',') }}",
]


def _fresh_truthy(source: str, context: dict[str, Any]) -> Any:
    try:
        return bool(expressions.evaluate(source, context))
    except Exception as exc:  # noqa: BLE001 - the same failure is what is compared
        return type(exc)


def _keyed_truthy(source: str, context: dict[str, Any]) -> Any:
    try:
        return expressions.truthy(source, context)
    except Exception as exc:  # noqa: BLE001
        return type(exc)


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_a_kept_filter_result_is_the_fresh_evaluation_for_every_context(source: str) -> None:
    for _ in range(2):  # the second round answers from what the first kept
        for context in CONTEXTS:
            assert _keyed_truthy(source, context) == _fresh_truthy(source, context), (source, context)


@pytest.mark.parametrize("source", SUBJECTS)
def test_a_kept_subject_is_the_fresh_render_for_every_context(source: str) -> None:
    templates = Path(__file__).resolve().parents[2] / "templates"
    keyed, fresh = TemplateRenderer(templates), TemplateRenderer(templates)

    def render(renderer: TemplateRenderer, context: dict[str, Any], *, again: bool) -> Any:
        if again:  # a renderer that has seen nothing: every render is fresh
            renderer._keyed.clear()  # noqa: SLF001
        try:
            return renderer.render_string(source, context, label="s")
        except Exception as exc:  # noqa: BLE001
            return (type(exc), str(exc))

    for _ in range(2):
        for context in CONTEXTS:
            assert render(keyed, context, again=False) == render(fresh, context, again=True), (source, context)


def test_only_templates_that_read_plain_leaves_get_a_key() -> None:
    def key(source: str, context: dict[str, Any]) -> Any:
        return expressions.keyed_renders(source, {}, expressions._env()).key(context)  # noqa: SLF001

    # Equal values of another type are another key: 1, True and 1.0 render differently.
    assert key("{{ event.n }}", {"event": {"n": 1}}) != key("{{ event.n }}", {"event": {"n": True}})
    assert key("{{ event.n }}", {"event": {"n": 1.0}}) is None  # floats, decimals, dates: never a key
    assert key("{{ event.n }}", {"event": {"n": Decimal("1")}}) is None
    assert key("{{ event }}", {"event": {"n": 1}}) is None  # a whole dict
    assert key("{{ event.lines }}", {"event": {"lines": [1]}}) is None  # a list
    assert key("{{ event.items }}", {"event": {"items": "x"}}) is None  # a dict's method comes first
    assert key("{% set x = 1 %}{{ x }}", {}) is None  # local names, loops, macros: no key
    assert key("{{ event[event.k] }}", {"event": {"k": "a", "a": 1}}) is None
    # A missing leaf is a key of its own, by how far the lookup got.
    assert key("{{ event.a.b }}", {"event": {}}) != key("{{ event.a.b }}", {"event": {"a": {}}})
    assert key("{{ contact.tags }}", {"contact": {"tags": ("a",)}}) == ((tuple, ("a",)),)
    # A leaf read only by `is defined`: one key whatever its value (lists too), another when it is missing.
    urls = [{"event": {"u": u}} for u in ("https://x/1", "https://x/2", ["x"], None, 1.5)]
    assert {key("{{ event.u is defined }}", context) for context in urls} == {(("defined",),)}
    assert key("{{ event.u is defined }}", {"event": {}}) == (("missing", 1, dict),)
    assert key("{{ event.u is defined and event.u }}", urls[0]) != key("{{ event.u is defined and event.u }}", urls[1])
    assert key("{{ event.u ~ (event.u is defined) }}", urls[0]) != key("{{ event.u ~ (event.u is defined) }}", urls[1])
    assert key("{{ event.items is defined }}", {"event": {"items": 1}}) is None  # a dict's method: by value
    assert key("{{ event.u is defined }}", {"event": {"u": Undefined()}}) is None


def test_the_lazy_view_reads_as_the_whole_view() -> None:
    aggregates = Aggregates()
    for i in range(3):
        aggregates = updated(aggregates, f"o{i}", "order_placed", {"total": 120, "order_id": f"o{i}"}, NOW)
    contact = Contact(contact_id="c", email="a@x.example", first_name="Ann", tags=("vip",), aggregates=aggregates)
    whole, lazy = contact.template_view(), contact.lazy_view()
    assert lazy["aggregates"] == whole["aggregates"]
    # The aggregates, lazy too, have the whole view's keys in its order and its values, before any order,
    # after one (no predicted next order) and after three; the lists are the reader's own.
    spaced = Aggregates()
    for i in range(3):
        order = {"total": 9, "order_id": f"s{i}"}
        spaced = updated(spaced, f"s{i}", "order_placed", order, NOW + timedelta(days=9 * i))
    once = updated(Aggregates(), "o", "order_placed", {"total": 5}, NOW)
    for counted in (Aggregates(), once, aggregates, spaced):
        lazy_aggregates = Contact(contact_id="c", aggregates=counted).lazy_view()["aggregates"]
        whole_aggregates = Contact(contact_id="c", aggregates=counted).template_view()["aggregates"]
        assert list(lazy_aggregates) == list(whole_aggregates) and len(lazy_aggregates) == len(whole_aggregates)
        assert {key: lazy_aggregates[key] for key in lazy_aggregates} == whole_aggregates
        assert "nope" not in lazy_aggregates and "total_spent" in lazy_aggregates
        assert lazy_aggregates["products"] is not lazy_aggregates["products"]
        # What segments read off the aggregates themselves (segments._check_of): the view's values as they are.
        assert {name: getattr(counted, name) for name in VIEW_ATTRIBUTES} == {
            name: whole_aggregates[name] for name in VIEW_ATTRIBUTES
        }
    assert Contact(contact_id="c", aggregates=spaced).lazy_view()["aggregates"]["predicted_next_order_at"] is not None
    assert set(lazy) == set(whole) == CONTACT_FIELDS and len(lazy) == len(whole)
    assert all(key in lazy for key in whole) and "nope" not in lazy
    assert dict(lazy) == whole
    catalog = SegmentCatalog(
        [
            validate(
                Segment,
                {
                    "id": "big",
                    "name": "Big",
                    "conditions": [{"field": "aggregates.total_spent", "op": "gte", "value": 250}],
                },
            ),
            validate(
                Segment,
                {"id": "tagged", "name": "T", "conditions": [{"field": "tags", "op": "contains", "value": "vip"}]},
            ),
        ]
    )
    assert evaluate(catalog, contact.lazy_view(), aggregates, NOW) == evaluate(catalog, whole, aggregates, NOW)
    assert evaluate(catalog, contact.lazy_view(), aggregates, NOW).segments[1:] == ("big", "tagged")
