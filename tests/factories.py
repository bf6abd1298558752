"""Request bodies for tests, shaped like what a storefront sends."""

from __future__ import annotations

from typing import Any


def contact(name: str = "bob", **overrides: Any) -> dict[str, Any]:
    body = {
        "email": f"{name}@example.com",
        "first_name": name.capitalize(),
        "email_marketing": True,
    }
    body.update(overrides)
    return body


def checkout_started(event_id: str, checkout_id: str, who: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "checkout_started",
        "contact": who or contact(),
        "properties": {
            "checkout_id": checkout_id,
            "recovery_url": f"https://shop.example/checkouts/{checkout_id}",
            "currency": "USD",
            "lines": [{"title": "Linen apron", "quantity": 1, "price": 42.0}],
            "total": 42.0,
        },
    }


def order_placed(event_id: str, checkout_id: str, who: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "order_placed",
        "contact": who or contact(),
        "properties": {
            "checkout_id": checkout_id,
            "order_id": f"ord_{checkout_id}",
            "order_number": "#1001",
            "currency": "USD",
            "lines": [{"title": "Linen apron", "quantity": 1, "price": 42.0}],
            "total": 42.0,
        },
    }


def subscribed(event_id: str, who: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": event_id, "type": "subscribed", "contact": who or contact("alice"), "properties": {}}


def shopify_headers(secret: str, body: bytes, topic: str, webhook_id: str, shop: str) -> dict[str, str]:
    """The headers Shopify sends with a webhook delivery."""
    from nudge.signing import base64_hmac

    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": base64_hmac(secret, body),
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-API-Version": "2026-10",
        "X-Shopify-Triggered-At": "2026-11-02T14:00:00.000000Z",
        "X-Shopify-Event-Id": f"evt-{webhook_id}",
    }


def woocommerce_headers(secret: str, body: bytes, topic: str, delivery_id: str, site: str) -> dict[str, str]:
    """The headers WooCommerce sends with a webhook delivery."""
    from nudge.signing import base64_hmac

    resource, _, event = topic.partition(".")
    return {
        "Content-Type": "application/json",
        "User-Agent": "WooCommerce/9.4.0 Hookshot (WordPress/6.7)",
        "X-WC-Webhook-Source": f"https://{site}/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": base64_hmac(secret, body),
        "X-WC-Webhook-ID": "3",
        "X-WC-Webhook-Delivery-ID": delivery_id,
    }
