"""Shopify and WooCommerce payloads, shaped like their documentation's examples, map to canonical events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from nudge.domain.model import contact_id_for
from nudge.integrations import shopify, woocommerce
from nudge.integrations.canonical import Batch, Disconnect, Ignored, Privacy, Track, TrackByRef
from nudge.ports import PrivacyKind
from tests.conftest import ROOT

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
SHOP = "dev-shop.myshopify.com"
ERIN = contact_id_for(external_id=None, email="erin@example.com", phone=None)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "tests" / "fixtures" / name).read_text())
    return data


def shopify_track(topic: str, name: str) -> Track:
    result = shopify.map_webhook(topic, "wh-1", SHOP, fixture(f"shopify/{name}.json"), NOW)
    assert isinstance(result, Track), result
    return result


def test_a_subscribed_shopify_customer_is_a_signup_once_then_an_identify() -> None:
    track = shopify_track("customers/create", "customers_create")

    assert track.event.event_id == "shopify:wh-1"
    assert (track.event.type, track.repeat_type) == ("subscribed", "identify")
    patch = track.event.contact
    assert (patch.email, patch.phone, patch.first_name, patch.last_name) == (
        "dana@example.com",
        "+16135550142",
        "Dana",
        "Diaz",
    )
    assert (patch.email_marketing, patch.sms_marketing) == (True, False)
    assert patch.properties == {"shopify_customer_id": "706405506930370084"}
    assert track.links == (f"shopify:{SHOP}:customer:706405506930370084",)


def test_a_customer_without_consent_is_an_identify() -> None:
    payload = fixture("shopify/customers_create.json")
    payload["email_marketing_consent"]["state"] = "pending"  # double opt-in under way: not yet consent

    result = shopify.map_webhook("customers/update", "wh-2", SHOP, payload, NOW)

    assert isinstance(result, Track)
    assert result.event.type == "identify"
    assert result.event.contact.email_marketing is None


def test_a_shopify_checkout_starts_a_cart_with_its_lines_and_recovery_url() -> None:
    track = shopify_track("checkouts/create", "checkouts_create")

    assert (track.event.type, track.repeat_type) == ("checkout_started", "checkout_updated")
    assert track.once == f"shopify:{SHOP}:checkout:981820079255243537"
    assert track.event.contact_id == ERIN
    assert track.event.contact.email_marketing is True  # buyer_accepts_marketing
    assert track.event.properties == {
        "source": "shopify",
        "shop": SHOP,
        "checkout_id": "981820079255243537",
        "checkout_token": "c1a0d2b3e4f5a6b7c8d9e0f1a2b3c4d5",
        "recovery_url": "https://dev-shop.myshopify.com/548380009/checkouts/c1a0d2b3e4f5a6b7c8d9e0f1a2b3c4d5/recover?key=example",
        "lines": [
            {
                "title": "Linen apron",
                "quantity": 2,
                "price": 42.0,
                "product_id": "632910392",
                "variant_id": "808950810",
                "sku": "APRON-SAND",
            }
        ],
        "currency": "USD",
        "total": 75.6,
        "subtotal": 75.6,
        "discount_codes": ["WELCOME10"],
    }
    assert track.event.occurred_at == datetime(2026, 11, 2, 14, 12, tzinfo=UTC)


def test_a_checkout_before_the_buyer_typed_an_address_is_ignored() -> None:
    payload = fixture("shopify/checkouts_create.json")
    payload["email"] = None
    payload["customer"] = None

    result = shopify.map_webhook("checkouts/create", "wh-3", SHOP, payload, NOW)

    assert isinstance(result, Ignored)


def test_a_shopify_order_is_placed_once_and_names_the_checkout_it_came_from() -> None:
    track = shopify_track("orders/create", "orders_create")
    paid = shopify_track("orders/paid", "orders_create")

    assert track.event.type == paid.event.type == "order_placed"
    assert track.once == paid.once == f"shopify:{SHOP}:order:820982911946154508"
    assert track.repeat_type is None  # orders/paid after orders/create changes nothing
    assert track.event.contact_id == ERIN  # the same contact as the checkout's
    properties = track.event.properties
    assert properties["checkout_id"] == "981820079255243537"  # equals the checkout's checkout_id
    assert (properties["order_id"], properties["order_number"]) == ("820982911946154508", "#1001")
    assert (properties["currency"], properties["total"], properties["discount_codes"]) == ("USD", 75.6, ["WELCOME10"])
    assert properties["lines"][0]["title"] == "Linen apron"
    # The billing phone is not E.164, so it cannot take SMS: dropped rather than guessed at.
    assert track.event.contact.phone is None


@pytest.mark.parametrize(
    ("topic", "event_type"), [("orders/fulfilled", "order_fulfilled"), ("orders/cancelled", "order_cancelled")]
)
def test_later_order_topics_map_to_their_events(topic: str, event_type: str) -> None:
    track = shopify_track(topic, "orders_create")

    assert track.event.type == event_type
    assert track.once is None
    assert track.links == (
        f"shopify:{SHOP}:order:820982911946154508",
        f"shopify:{SHOP}:customer:603851970716743426",
    )


def test_a_refund_finds_its_contact_through_the_order() -> None:
    result = shopify.map_webhook("refunds/create", "wh-4", SHOP, fixture("shopify/refunds_create.json"), NOW)

    assert isinstance(result, TrackByRef)
    assert result.ref == f"shopify:{SHOP}:order:820982911946154508"
    assert result.type == "refund_created"
    assert result.properties["amount"] == 37.8
    assert result.properties["lines"][0] == {
        "title": "Linen apron",
        "quantity": 1,
        "price": 42.0,
        "product_id": "632910392",
        "variant_id": "808950810",
        "sku": "APRON-SAND",
    }


@pytest.mark.parametrize(
    ("topic", "name", "kind", "contacts"),
    [
        ("customers/data_request", "customers_data_request", PrivacyKind.EXPORT, 2),
        ("customers/redact", "customers_redact", PrivacyKind.ERASE_CONTACT, 2),
        ("shop/redact", "shop_redact", PrivacyKind.ERASE_SHOP, 0),
    ],
)
def test_privacy_topics_become_privacy_requests(topic: str, name: str, kind: PrivacyKind, contacts: int) -> None:
    result = shopify.map_webhook(topic, "wh-5", SHOP, fixture(f"shopify/{name}.json"), NOW)

    assert isinstance(result, Privacy)
    assert (result.request_id, result.kind, len(result.contacts)) == ("shopify:wh-5", kind, contacts)


@pytest.mark.parametrize("payload", [[], "text", None, {"id": None}])
def test_odd_payloads_are_ignored_not_errors(payload: Any) -> None:
    for topic in shopify.TOPICS:
        result = shopify.map_webhook(topic, "wh-6", SHOP, payload, NOW)
        # An uninstall is in the verified headers, whatever the object says of the shop
        expected = Ignored | Privacy | (Disconnect if topic == "app/uninstalled" and payload else Ignored)
        assert isinstance(result, expected), (topic, result)


def test_an_unknown_topic_is_ignored() -> None:
    assert isinstance(shopify.map_webhook("products/update", "wh-7", SHOP, {"id": 1}, NOW), Ignored)


def test_a_woocommerce_customer_is_an_identify_without_consent() -> None:
    result = woocommerce.map_webhook(
        "customer.created", "woocommerce:d1", "woo.example", fixture("woocommerce/customer.json"), NOW
    )

    assert isinstance(result, Track)
    assert result.event.type == "identify"
    patch = result.event.contact
    assert (patch.email, patch.first_name, patch.email_marketing) == ("frank@example.com", "Frank", None)
    assert patch.phone is None  # "(555) 555-5555" has no country code
    assert result.event.occurred_at == datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "event_type"),
    [("processing", "order_placed"), ("completed", "order_fulfilled"), ("cancelled", "order_cancelled")],
)
def test_woocommerce_order_statuses_map_once_each(status: str, event_type: str) -> None:
    payload = fixture("woocommerce/order.json") | {"status": status}

    mapped = woocommerce.map_webhook("order.updated", "woocommerce:d2", "woo.example", payload, NOW)

    # A completed order is placed too (once, whichever status came first), then fulfilled.
    result = mapped.parts[-1] if isinstance(mapped, Batch) else mapped
    assert isinstance(result, Track)
    assert result.event.type == event_type
    assert result.once == f"woocommerce:woo.example:order:727:{status}"
    assert result.repeat_type is None


def test_a_woocommerce_order_carries_lines_totals_and_coupons() -> None:
    result = woocommerce.map_webhook(
        "order.created", "woocommerce:d3", "woo.example", fixture("woocommerce/order.json"), NOW
    )

    assert isinstance(result, Track)
    properties = result.event.properties
    assert (properties["order_id"], properties["order_number"], properties["checkout_id"]) == ("727", "#727", "wc_727")
    assert (properties["currency"], properties["total"], properties["discount_codes"]) == ("EUR", 35.35, ["autumn5"])
    assert [line["title"] for line in properties["lines"]] == ["Ceramic mug", "Pour-over kettle - Black"]
    assert properties["lines"][1]["variant_id"] == "23"
    assert result.event.contact.phone == "+14155550177"


def test_a_pending_woocommerce_order_starts_nothing() -> None:
    payload = fixture("woocommerce/order.json") | {"status": "pending"}

    assert isinstance(woocommerce.map_webhook("order.created", "woocommerce:d4", "woo.example", payload, NOW), Ignored)
