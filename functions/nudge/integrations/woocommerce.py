"""WooCommerce webhooks to canonical events: a pure function of (topic, delivery id, site, payload).

WooCommerce sends the whole order on every order.updated, whatever changed; what matters to flows is
the status reaching processing (paid: order placed) or completed (fulfilled), once per order, and each
refund in the order's `refunds` list, once per refund. An order that goes straight from pending to
completed (digital goods) is placed and fulfilled by the same delivery.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nudge.domain.model import Event
from nudge.integrations.canonical import (
    Batch,
    Canonical,
    CatalogChange,
    Ignored,
    Track,
    amount_or_none,
    compact,
    contact_patch,
    first_phone,
    items,
    line,
    mapping,
    occurred,
    stock_level,
    text_or_none,
)

SOURCE = "woocommerce"
STATUS_EVENTS = {
    "processing": "order_placed",
    "completed": "order_fulfilled",
    "cancelled": "order_cancelled",
    "refunded": "refund_created",
}
PLACED = "processing"  # the status whose first sighting places an order (completed places it too, if first)


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
    if topic in ("product.updated", "product.created"):
        return _product(event_id, site, body)
    return Ignored(f"topic {topic or '(none)'} is not one nudge acts on")


def _customer(event_id: str, site: str, body: dict[str, Any], received_at: datetime) -> Canonical:
    billing = mapping(body.get("billing"))
    # WooCommerce core keeps no marketing consent: the contact's consent stays as it was.
    patch = contact_patch(
        email=body.get("email") or billing.get("email"),
        phone=first_phone((billing.get("phone"), billing.get("country"))),
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
    billing = mapping(body.get("billing"))
    customer_id = text_or_none(body.get("customer_id"))
    patch = contact_patch(
        email=billing.get("email"),
        phone=first_phone((billing.get("phone"), billing.get("country"))),
        first_name=billing.get("first_name"),
        last_name=billing.get("last_name"),
        properties={"woocommerce_customer_id": customer_id if customer_id != "0" else None},
    )
    event_type = STATUS_EVENTS.get(status or "")
    refunds = items(body.get("refunds"))
    if event_type is None and not refunds:
        return Ignored(f"order status {status or '(none)'} starts nothing")
    if patch is None:
        return Ignored("the order has no billing email address or valid phone number")
    properties = _order_properties(site, order_id, status, body)
    when = _modified(body, received_at)
    order_ref = ref(site, "order", order_id)

    def status_track(part_id: str, kind: str, state: str, extra: dict[str, Any] | None = None) -> Track:
        # Every save of an order re-sends it; each status change counts once per order.
        event = Event(part_id, kind, patch, properties | (extra or {}), when)
        return Track(event, once=ref(site, f"order:{order_id}", state), repeat_type=None, links=(order_ref,))

    parts: list[Track] = []
    if status == "completed":
        parts.append(status_track(f"{event_id}:placed", "order_placed", PLACED))
    for refund in refunds:
        refund_id = text_or_none(refund.get("id"))
        amount = amount_or_none(refund.get("total"))
        if refund_id is None or amount is None:
            continue
        refunded = {"refund_id": refund_id, "amount": abs(amount), "note": text_or_none(refund.get("reason"), 500)}
        event = Event(f"{event_id}:refund:{refund_id}", "refund_created", patch, properties | compact(refunded), when)
        parts.append(Track(event, once=ref(site, "refund", refund_id), repeat_type=None, links=(order_ref,)))
    if event_type is not None:
        # A refunded order's whole total: what its listed refunds already took back is not taken twice.
        extra = {"amount": properties.get("total"), "full_refund": True} if status == "refunded" else None
        parts.append(status_track(event_id, event_type, status or "", extra))
    return parts[0] if len(parts) == 1 else Batch(tuple(parts))


def _order_properties(site: str, order_id: str, status: str | None, body: dict[str, Any]) -> dict[str, Any]:
    number = text_or_none(body.get("number")) or order_id
    return compact(
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


def _product(event_id: str, site: str, body: dict[str, Any]) -> Canonical:
    """A product (or a variation: `parent_id` set): stock from `stock_quantity` when WooCommerce manages it,
    else from `stock_status` (in stock counts as one); price from `price`."""
    product_id = text_or_none(body.get("id"))
    if product_id is None:
        return Ignored("the product has no id")
    status = body.get("stock_status")
    quantity = body.get("stock_quantity") if body.get("manage_stock") is True else None
    if quantity is None and isinstance(status, str):
        quantity = 1 if status in ("instock", "onbackorder") else 0
    parent = text_or_none(body.get("parent_id"))
    level = stock_level(
        key=ref(site, "product", product_id),
        quantity=quantity,
        price=body.get("price"),
        item=product_id,
        product_id=parent if parent not in (None, "0") else product_id,
        variant_id=product_id if parent not in (None, "0") else None,
        product_title=body.get("name"),
        product_url=body.get("permalink"),
    )
    return CatalogChange(event_id, (level,))


def _modified(body: dict[str, Any], received_at: datetime) -> datetime:
    """WooCommerce's *_gmt timestamps are UTC without a zone."""
    modified = body.get("date_modified_gmt")
    return occurred(f"{modified}+00:00" if isinstance(modified, str) and modified else None, received_at)
