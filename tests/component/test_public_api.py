"""The Segment-style API on moto: keys, idempotency, aliasing, batches, limits, and its OpenAPI document."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest

from nudge.local.gateway import LocalResponse
from nudge.local.moto_stack import MotoStack
from nudge.ports import KeyKind
from tests.component.test_ingest_handler import NOTHING, stored_items


@pytest.fixture
def key(moto_stack: MotoStack) -> str:
    plain, _ = moto_stack.container.keys.create(KeyKind.SECRET, "tests")
    return plain


def call(stack: MotoStack, path: str, payload: Any, key: str | None, **headers: str) -> LocalResponse:
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()} if key else {}
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return stack.send("POST", path, body, {"Content-Type": "application/json"} | auth | headers)


CHECKOUT = {
    "type": "track",
    "messageId": "ajs-next-1",
    "userId": "u_42",
    "event": "Checkout Started",
    "timestamp": "2026-11-02T08:59:00Z",
    "context": {"traits": {"email": "gus@example.com", "firstName": "Gus", "email_marketing": True}},
    "properties": {
        "checkout_id": "chk_9",
        "recovery_url": "https://shop.example/c/chk_9",
        "currency": "USD",
        "revenue": 24.0,
        "products": [{"product_id": "p1", "sku": "MUG-1", "name": "Mug", "price": 12.0, "quantity": 2}],
    },
    "integrations": {"All": True},
    "sentAt": "2026-11-02T08:59:01Z",
}


def test_a_segment_track_starts_the_flow_for_its_canonical_event(moto_stack: MotoStack, key: str) -> None:
    response = call(moto_stack, "/v1/track", CHECKOUT, key)

    assert response.status == 202
    assert response.json() | {"event_id": "-"} == {
        "event_id": "-",
        "contact_id": "u_42",
        "duplicate": False,
        "started": ["abandoned_cart"],
        "exited": [],
        "converted": [],
        "segments": {"entered": ["subscriber"], "exited": []},
        "type": "checkout_started",
    }
    [run] = moto_stack.container.store.active_runs("u_42")
    assert run.trigger["lines"] == [
        {"title": "Mug", "quantity": 2, "price": 12.0, "product_id": "p1", "variant_id": None, "sku": "MUG-1"}
    ]
    assert run.trigger["total"] == 24.0
    contact = moto_stack.container.store.get_contact("u_42")
    assert contact is not None and (contact.email, contact.first_name) == ("gus@example.com", "Gus")


def test_the_same_message_id_is_processed_once(moto_stack: MotoStack, key: str) -> None:
    first = call(moto_stack, "/v1/track", CHECKOUT, key)
    again = call(moto_stack, "/v1/track", CHECKOUT | {"sentAt": "2026-11-02T09:00:00Z"}, key)

    assert (first.status, again.status, again.json()["duplicate"]) == (202, 200, True)
    assert again.json()["event_id"] == first.json()["event_id"] == "segment:ajs-next-1"


@pytest.mark.parametrize("presented", [None, "nudge_sk_not-a-real-key", "revoked"])
def test_a_call_without_a_live_key_gets_401_and_writes_nothing(
    moto_stack: MotoStack, key: str, presented: str | None
) -> None:
    if presented == "revoked":
        assert moto_stack.container.keys.revoke(key)
        presented = key

    response = call(moto_stack, "/v1/track", CHECKOUT, presented)

    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="nudge"'
    assert stored_items(moto_stack) == NOTHING


def test_a_bearer_key_works_too(moto_stack: MotoStack, key: str) -> None:
    response = call(
        moto_stack,
        "/v1/identify",
        {"userId": "u_1", "traits": {"email": "a@example.com"}},
        None,
        Authorization=f"Bearer {key}",
    )

    assert (response.status, response.json()["type"]) == (202, "identify")


REFUSALS: dict[str, tuple[dict[str, Any], int, str]] = {
    "far-future timestamp": (CHECKOUT | {"timestamp": "2027-01-01T00:00:00Z"}, 422, "/timestamp"),
    "nobody": ({k: v for k, v in CHECKOUT.items() if k != "userId"}, 422, ""),
    "bad trait": (CHECKOUT | {"context": {"traits": {"email": "nope"}}}, 422, "/context/traits/email"),
    "unusable event name": (CHECKOUT | {"event": "!!!"}, 422, "/event"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bad_calls_get_a_problem_and_write_nothing(moto_stack: MotoStack, key: str, case: str) -> None:
    payload, status, pointer = REFUSALS[case]

    response = call(moto_stack, "/v1/track", payload, key)

    assert response.status == status
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["pointer"] == pointer
    assert stored_items(moto_stack) == NOTHING


def test_a_body_over_32_kib_gets_413(moto_stack: MotoStack, key: str) -> None:
    response = call(moto_stack, "/v1/track", CHECKOUT | {"properties": {"pad": "x" * 33_000}}, key)

    assert (response.status, response.json()["type"]) == (413, "urn:nudge:problem:too-large")


def test_alias_merges_the_anonymous_profile_and_later_calls_follow_it(moto_stack: MotoStack, key: str) -> None:
    # Given an anonymous visitor who left an email address
    call(moto_stack, "/v1/identify", {"anonymousId": "anon-7", "traits": {"email": "hal@example.com"}}, key)
    # When they sign in as u_7
    merged = call(moto_stack, "/v1/alias", {"previousId": "anon-7", "userId": "u_7"}, key)
    later = call(moto_stack, "/v1/track", {"anonymousId": "anon-7", "event": "Viewed Item"}, key)

    # Then u_7 has the address, and the anonymous id now means u_7
    assert merged.status == 200 and merged.json()["merged_from"].startswith("an_")
    contact = moto_stack.container.store.get_contact("u_7")
    assert contact is not None and contact.email == "hal@example.com"
    assert (later.json()["contact_id"], later.json()["type"]) == ("u_7", "viewed_item")


def test_a_batch_answers_each_item(moto_stack: MotoStack, key: str) -> None:
    batch = [
        CHECKOUT,
        {"type": "identify", "userId": "u_2", "traits": {"email": "not-an-email"}},
        {"type": "page", "userId": "u_2"},
        {"type": "identify", "userId": "u_2", "traits": {"email": "ivy@example.com"}, "messageId": "m-2"},
    ]

    response = call(moto_stack, "/v1/batch", {"batch": batch}, key)

    assert response.status == 200
    results = response.json()["results"]
    assert [(r["index"], r["status"]) for r in results] == [(0, 202), (1, 422), (2, 422), (3, 202)]
    assert results[1]["problem"]["errors"][0]["pointer"] == "/traits/email"
    assert results[2]["problem"]["errors"][0]["pointer"] == "/type"


def test_a_batch_over_500_items_is_refused_whole(moto_stack: MotoStack, key: str) -> None:
    item = {"type": "identify", "userId": "u_3"}

    response = call(moto_stack, "/v1/batch", {"batch": [item] * 501}, key)

    assert response.status == 422
    assert response.json()["errors"][0]["pointer"] == "/batch"
    assert stored_items(moto_stack) == NOTHING


def test_the_openapi_document_is_served_without_a_key(moto_stack: MotoStack) -> None:
    from nudge.openapi import document

    response = moto_stack.send("GET", "/v1/openapi.json")

    assert response.status == 200
    assert response.json() == json.loads(json.dumps(document()))


def test_alias_folds_the_visitors_orders_and_activity_into_the_customer_and_ends_their_runs(
    moto_stack: MotoStack, key: str
) -> None:
    # An anonymous visitor with an address orders (post-purchase starts for them), a signed-in u_8 ordered before
    visitor = {"anonymousId": "anon-8", "context": {"traits": {"email": "ida@example.com"}}}
    order = {"products": [{"product_id": "p_mug", "name": "Mug"}], "revenue": 30, "order_id": "o_anon"}
    call(moto_stack, "/v1/track", {**visitor, "event": "Order Completed", "properties": order, "messageId": "m-1"}, key)
    known = {"order_id": "o_known", "revenue": 50, "products": [{"product_id": "p_kettle"}]}
    call(moto_stack, "/v1/track", {"userId": "u_8", "event": "Order Completed", "properties": known}, key)
    anonymous = next(
        c for c in moto_stack.scan_all_tables()["nudge-contacts"] if c["contact_id"]["S"].startswith("an_")
    )
    anon_id = anonymous["contact_id"]["S"]
    assert [r.flow_id for r in moto_stack.container.store.active_runs(anon_id)]

    call(moto_stack, "/v1/alias", {"previousId": "anon-8", "userId": "u_8"}, key)

    store = moto_stack.container.store
    merged = store.get_contact("u_8")
    assert merged is not None
    assert (merged.aggregates.orders_count, merged.aggregates.total_spent) == (2, Decimal("80.00"))
    assert merged.aggregates.products == ("p_mug", "p_kettle") and merged.stage == "repeat_buyer"
    assert store.active_runs(anon_id) == []
    assert {r.exit_reason for r in store.runs_for(anon_id)} == {"merged"}
