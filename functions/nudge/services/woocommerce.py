"""WooCommerce webhooks to canonical events: a pure function of (topic, delivery id, site, payload).

WooCommerce sends the whole order on every order.updated, whatever changed; what matters to flows is
the status reaching processing (paid: order placed) or completed (fulfilled), once per order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nudge.domain.model import Event
from nudge.services.canonical import (
    Canonical,
    Ignored,
    Track,
    amount_or_none,
    compact,
    contact_patch,
    items,
    line,
    mapping,
    occurred,
    text_or_none,
)

SOURCE = "woocommerce"
STATUS_EVENTS = {
    "processing": "order_placed",
    "completed": "order_fulfilled",
    "cancelled": "order_cancelled",
    "refunded": "refund_created",
}


def ref(site: str, kind: str, ident: Any) -> str:
    return f"{SOURCE}:{site}:{kind}:{ident}"


def map_webhook(topic: str, event_id: str, site: str, payload: Any, received_at: datetime) -> Canonical:
    """What this verified delivery means; never raises on an odd payload (Ignored says why)."""
    body = mapping(payload)
    if not body:
        return Ignored("the payload is not a JSON object")
    if topic in ("customer.created", "customer.updated"):
        return _customer(event_id, site, body, received_at)
    if topic in ("order.created", "order.updated"):
        return _order(event_id, site, body, received_at)
    return Ignored(f"topic {topic or '(none)'} is not one nudge acts on")


def _customer(event_id: str, site: str, body: dict[str, Any], received_at: datetime) -> Canonical:
    billing = mapping(body.get("billing"))
    # WooCommerce core keeps no marketing consent: the contact's consent stays as it was.
    patch = contact_patch(
        email=body.get("email") or billing.get("email"),
        phone=billing.get("phone"),
        first_name=body.get("first_name") or billing.get("first_name"),
        last_name=body.get("last_name") or billing.get("last_name"),
        properties={"woocommerce_customer_id": text_or_none(body.get("id"))},
    )
    if patch is None:
        return Ignored("the customer has no email address or E.164 phone number")
    return Track(Event(event_id, "identify", patch, {"source": SOURCE, "site": site}, _modified(body, received_at)))


def _order(event_id: str, site: str, body: dict[str, Any], received_at: datetime) -> Canonical:
    order_id = text_or_none(body.get("id"))
    status = text_or_none(body.get("status"))
    if order_id is None:
        return Ignored("the order has no id")
    event_type = STATUS_EVENTS.get(status or "")
    if event_type is None:
        return Ignored(f"order status {status or '(none)'} starts nothing")
    billing = mapping(body.get("billing"))
    customer_id = text_or_none(body.get("customer_id"))
    patch = contact_patch(
        email=billing.get("email"),
        phone=billing.get("phone"),
        first_name=billing.get("first_name"),
        last_name=billing.get("last_name"),
        properties={"woocommerce_customer_id": customer_id if customer_id != "0" else None},
    )
    if patch is None:
        return Ignored("the order has no billing email address or E.164 phone number")
    number = text_or_none(body.get("number")) or order_id
    properties = compact(
        {
            "source": SOURCE,
            "site": site,
            "order_id": order_id,
            "order_number": f"#{number}",
            # WooCommerce has no separate checkout object; the order stands in for it.
            "checkout_id": f"wc_{order_id}",
            "status": status,
            "lines": [
                line(
                    title=item.get("name"),
                    quantity=item.get("quantity"),
                    price=item.get("price"),
                    product_id=item.get("product_id"),
                    variant_id=item.get("variation_id") or None,
                    sku=item.get("sku") or None,
                )
                for item in items(body.get("line_items"))
            ],
            "currency": text_or_none(body.get("currency"), 3),
            "total": amount_or_none(body.get("total")),
            "total_discounts": amount_or_none(body.get("discount_total")),
            "discount_codes": [c for c in (text_or_none(x.get("code")) for x in items(body.get("coupon_lines"))) if c],
        }
    )
    event = Event(event_id, event_type, patch, properties, _modified(body, received_at))
    # Every save of an order re-sends it; each status change counts once per order.
    return Track(
        event, once=ref(site, f"order:{order_id}", status), repeat_type=None, links=(ref(site, "order", order_id),)
    )


def _modified(body: dict[str, Any], received_at: datetime) -> datetime:
    """WooCommerce's *_gmt timestamps are UTC without a zone."""
    modified = body.get("date_modified_gmt")
    return occurred(f"{modified}+00:00" if isinstance(modified, str) and modified else None, received_at)
