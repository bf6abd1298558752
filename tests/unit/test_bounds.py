"""Bounds: documents, contacts and names stay within what DynamoDB, JSON and email headers hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from nudge.domain import bounds
from nudge.domain import recommendations as recs
from nudge.domain.model import Contact, ContactPatch

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DYNAMODB_ITEM_LIMIT = 400 * 1024


def test_the_co_purchase_document_fits_one_item_however_long_the_titles() -> None:
    # Given 400 products bought together in every combination, with 100-character ids and long emoji titles
    ids = [f"{i:03d}" + "p" * 97 for i in range(400)]
    orders = [
        [{"product_id": ids[i], "title": "🧶" * 5000} for i in range(start, start + 12)] for start in range(0, 388, 2)
    ]

    table = recs.pruned(recs.from_orders(orders))

    # Then the stored record stays far below DynamoDB's item limit and still recommends the best sellers
    assert recs.record_bytes(table) <= recs.MAX_RECORD_BYTES < DYNAMODB_ITEM_LIMIT
    assert table.products and all(len(t) <= recs.TITLE_MAX for t in table.titles.values())


def test_a_product_key_past_the_limit_is_not_counted() -> None:
    table = recs.from_orders([[{"product_id": "x" * 101}, {"product_id": "ok"}]])
    assert list(table.products) == ["ok"]


def test_a_contact_cannot_grow_past_its_property_budget() -> None:
    contact = Contact("c_1", properties={f"p{i}": "v" for i in range(bounds.MAX_CONTACT_PROPERTIES)})

    with pytest.raises(bounds.OutOfBounds, match="at most 200 properties") as raised:
        contact.merged(ContactPatch(properties={"one_more": 1}), NOW)
    assert raised.value.pointer == "/properties"
    # Changing a property it has, or a patch without properties, is fine
    assert contact.merged(ContactPatch(properties={"p0": "w"}), NOW).properties["p0"] == "w"
    assert contact.merged(ContactPatch(first_name="Al"), NOW).first_name == "Al"
    with pytest.raises(bounds.OutOfBounds, match="bytes"):
        Contact("c_2").merged(ContactPatch(properties={"big": "x" * bounds.MAX_CONTACT_PROPERTIES_BYTES}), NOW)


def test_header_text_refuses_and_header_safe_removes_every_line_break() -> None:
    for name in ("Al\r\nBcc: x@example.com", "Al\nx", "Al\u2028x", "Al\x85x", "Al\tx"):
        with pytest.raises(bounds.OutOfBounds):
            bounds.check_header_text(name, "/first_name")
        assert not any(ch in bounds.header_safe(name) for ch in "\r\n\u2028\x85\t")
    assert bounds.check_header_text("Zoë O'Brien-Søndergaard", "/first_name") == "Zoë O'Brien-Søndergaard"


def test_parsed_json_never_holds_what_json_dumps_could_not_write_back() -> None:
    data = bounds.parse_json(b'{"a":[1,2.5,-0.0,1e125,"NaN"],"b":{"c":null}}')
    assert json.loads(json.dumps(data, allow_nan=False)) == data
