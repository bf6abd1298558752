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
