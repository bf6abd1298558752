"""Storefront webhooks on moto: signed deliveries start and end flows; forged ones change nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nudge.domain.model import contact_id_for
from nudge.local.gateway import LocalResponse
from nudge.local.moto_stack import DEV_SHOPIFY_SHOP, DEV_WOOCOMMERCE_SITE, MotoStack
from tests.component.test_ingest_handler import NOTHING, stored_items
from tests.factories import shopify_headers, woocommerce_headers
from tests.unit.test_storefront_mapping import fixture

ERIN = contact_id_for(external_id=None, email="erin@example.com", phone=None)


def shopify(
    stack: MotoStack, topic: str, payload: Any, webhook_id: str, *, tamper: dict[str, str] | None = None
) -> LocalResponse:
    body = json.dumps(payload).encode()
    secret = stack.webhook_secrets["shopify"][DEV_SHOPIFY_SHOP]
    headers = shopify_headers(secret, body, topic, webhook_id, DEV_SHOPIFY_SHOP) | (tamper or {})
    return stack.send("POST", "/webhooks/shopify", body, {k: v for k, v in headers.items() if v})


def woo(stack: MotoStack, topic: str, payload: Any, delivery_id: str) -> LocalResponse:
    body = json.dumps(payload).encode()
    secret = stack.webhook_secrets["woocommerce"][DEV_WOOCOMMERCE_SITE]
    headers = woocommerce_headers(secret, body, topic, delivery_id, DEV_WOOCOMMERCE_SITE)
    return stack.send("POST", "/webhooks/woocommerce", body, headers)


def everything_stored(stack: MotoStack) -> dict[str, int]:
    counts = stored_items(stack)
    counts["refs"] = sum(1 for _ in stack.container.refs._model.scan())  # type: ignore[attr-defined]
    counts["privacy"] = sum(1 for _ in stack.container.privacy_requests._model.scan())  # type: ignore[attr-defined]
    return counts


def test_a_shopify_checkout_starts_the_cart_flow_and_its_order_ends_it(moto_stack: MotoStack) -> None:
    # Given a checkout webhook from the shop
    started = shopify(moto_stack, "checkouts/create", fixture("shopify/checkouts_create.json"), "wh-chk-1")
    # When the order for that checkout arrives (and its orders/paid twin right after)
    placed = shopify(moto_stack, "orders/create", fixture("shopify/orders_create.json"), "wh-ord-1")
    paid = shopify(moto_stack, "orders/paid", fixture("shopify/orders_create.json"), "wh-ord-2")

    # Then the cart run started, the order exited it and started the post-purchase flow, once
    assert (started.status, started.json()["started"]) == (202, ["abandoned_cart"])
    assert placed.status == 202
    assert (placed.json()["exited"], placed.json()["started"]) == (
        ["abandoned_cart"],
        ["post_purchase", "sunset", "win_back"],
    )
    assert (paid.status, paid.json()["ignored"]) == (200, "already seen")
    [thank_you] = moto_stack.sent_emails()
    assert "Subject: Thank you for your order #1001" in thank_you.raw_data
    assert placed.json()["contact_id"] == ERIN


def test_a_checkout_update_after_the_start_is_a_checkout_updated(moto_stack: MotoStack) -> None:
    shopify(moto_stack, "checkouts/create", fixture("shopify/checkouts_create.json"), "wh-chk-1")

    update = shopify(moto_stack, "checkouts/update", fixture("shopify/checkouts_create.json"), "wh-chk-2")

    assert (update.status, update.json()["type"], update.json()["started"]) == (202, "checkout_updated", [])


def test_a_repeated_webhook_id_is_processed_once(moto_stack: MotoStack) -> None:
    first = shopify(moto_stack, "customers/create", fixture("shopify/customers_create.json"), "wh-cus-1")
    again = shopify(moto_stack, "customers/create", fixture("shopify/customers_create.json"), "wh-cus-1")

    assert (first.status, first.json()["type"], first.json()["started"]) == (202, "subscribed", ["sunset", "welcome"])
    assert (again.status, again.json()["duplicate"]) == (200, True)
    assert len(moto_stack.sent_emails()) == 1
    stored = moto_stack.container.store.get_contact(first.json()["contact_id"])
    assert stored is not None and stored.version == 1


def test_a_refund_reaches_the_contact_of_its_order(moto_stack: MotoStack) -> None:
    shopify(moto_stack, "orders/create", fixture("shopify/orders_create.json"), "wh-ord-1")

    refund = shopify(moto_stack, "refunds/create", fixture("shopify/refunds_create.json"), "wh-ref-1")

    assert (refund.status, refund.json()["type"], refund.json()["contact_id"]) == (202, "refund_created", ERIN)


def test_a_redaction_is_recorded_once_and_erases_the_customer_at_once(moto_stack: MotoStack) -> None:
    shopify(moto_stack, "orders/create", fixture("shopify/orders_create.json"), "wh-ord-1")

    first = shopify(moto_stack, "customers/redact", fixture("shopify/customers_redact.json"), "wh-red-1")
    again = shopify(moto_stack, "customers/redact", fixture("shopify/customers_redact.json"), "wh-red-1")

    assert (first.status, first.json()["kind"], first.json()["duplicate"]) == (200, "erase_contact", False)
    assert again.json()["duplicate"] is True
    assert first.json()["erased"] == 1
    request = moto_stack.container.privacy_requests.get("shopify:wh-red-1")  # type: ignore[attr-defined]
    assert request.status == "erased"
    assert ERIN in request.contact_ids
    assert moto_stack.container.store.get_contact(ERIN) is None
    assert moto_stack.container.store.messages_for(ERIN) == []
    assert moto_stack.container.store.runs_for(ERIN) == []


FORGERIES: dict[str, dict[str, str]] = {
    "missing signature": {"X-Shopify-Hmac-Sha256": ""},
    "wrong signature": {"X-Shopify-Hmac-Sha256": "bm90IHRoZSByaWdodCBkaWdlc3Q="},
    "unknown shop": {"X-Shopify-Shop-Domain": "elsewhere.myshopify.com"},
    "no shop": {"X-Shopify-Shop-Domain": ""},
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_forged_shopify_deliveries_get_401_and_store_nothing(moto_stack: MotoStack, case: str) -> None:
    response = shopify(
        moto_stack, "customers/create", fixture("shopify/customers_create.json"), "wh-1", tamper=FORGERIES[case]
    )

    assert response.status == 401
    assert response.json()["type"] == "urn:nudge:problem:unauthorized"
    assert everything_stored(moto_stack) == NOTHING | {"refs": 0, "privacy": 0}


def test_a_body_changed_after_signing_gets_401(moto_stack: MotoStack) -> None:
    body = json.dumps(fixture("shopify/orders_create.json")).encode()
    secret = moto_stack.webhook_secrets["shopify"][DEV_SHOPIFY_SHOP]
    headers = shopify_headers(secret, body, "orders/create", "wh-1", DEV_SHOPIFY_SHOP)

    response = moto_stack.send("POST", "/webhooks/shopify", body.replace(b"75.60", b"0.01"), headers)

    assert response.status == 401
    assert everything_stored(moto_stack) == NOTHING | {"refs": 0, "privacy": 0}


def test_the_woocommerce_ping_is_answered_and_stores_nothing(moto_stack: MotoStack) -> None:
    response = moto_stack.send(
        "POST", "/webhooks/woocommerce", b"webhook_id=3", {"Content-Type": "application/x-www-form-urlencoded"}
    )

    assert (response.status, response.json()) == (200, {"ping": True})
    assert everything_stored(moto_stack) == NOTHING | {"refs": 0, "privacy": 0}


def test_woocommerce_order_status_changes_place_then_fulfil_each_once(moto_stack: MotoStack) -> None:
    order = fixture("woocommerce/order.json")

    placed = woo(moto_stack, "order.created", order, "d-1")
    resaved = woo(moto_stack, "order.updated", order, "d-2")  # a note added: same status
    completed = woo(moto_stack, "order.updated", order | {"status": "completed"}, "d-3")

    assert (placed.status, placed.json()["type"]) == (202, "order_placed")
    assert placed.json()["started"] == ["post_purchase", "sunset", "win_back"]
    assert resaved.json()["ignored"] == "already seen"
    assert (completed.status, completed.json()["type"]) == (202, "order_fulfilled")


def test_a_forged_woocommerce_delivery_gets_401_and_stores_nothing(moto_stack: MotoStack) -> None:
    body = json.dumps(fixture("woocommerce/order.json")).encode()
    headers = woocommerce_headers("not-the-secret", body, "order.created", "d-1", DEV_WOOCOMMERCE_SITE)

    response = moto_stack.send("POST", "/webhooks/woocommerce", body, headers)

    assert response.status == 401
    assert everything_stored(moto_stack) == NOTHING | {"refs": 0, "privacy": 0}


def test_a_woocommerce_customer_updates_the_contact(moto_stack: MotoStack) -> None:
    response = woo(moto_stack, "customer.updated", fixture("woocommerce/customer.json"), "d-9")

    assert (response.status, response.json()["type"]) == (202, "identify")
    contact = moto_stack.container.store.get_contact(response.json()["contact_id"])
    assert contact is not None and contact.properties == {"woocommerce_customer_id": "25"}
