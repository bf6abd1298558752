"""Shopify webhooks to canonical events: a pure function of (topic, webhook id, shop, payload).

Contacts are keyed by email (else phone), exactly as POST /v1/events keys them, so a guest checkout
and the order that follows it land on the same contact and the order ends the cart's run.
`checkout_id` is the checkout's numeric id: checkouts carry it as `id`, orders as `checkout_id`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nudge.domain.model import ContactPatch, Event, contact_id_for
from nudge.ports import PrivacyKind
from nudge.services.canonical import (
    Canonical,
    Ignored,
    Privacy,
    Track,
    TrackByRef,
    amount_or_none,
    compact,
    contact_patch,
    email_or_none,
    items,
    line,
    mapping,
    occurred,
    phone_or_none,
    text_or_none,
)

SOURCE = "shopify"
# Shopify's consent states; "pending" (double opt-in under way) and unknown ones say nothing yet.
_CONSENT = {"subscribed": True, "not_subscribed": False, "unsubscribed": False, "redacted": False, "invalid": False}

TOPICS = (
    "customers/create",
    "customers/update",
    "checkouts/create",
    "checkouts/update",
    "orders/create",
    "orders/paid",
    "orders/fulfilled",
    "orders/cancelled",
    "refunds/create",
    "customers/data_request",
    "customers/redact",
    "shop/redact",
)


def ref(shop: str, kind: str, ident: Any) -> str:
    return f"{SOURCE}:{shop}:{kind}:{ident}"


def map_webhook(topic: str, webhook_id: str, shop: str, payload: Any, received_at: datetime) -> Canonical:
    """What this verified delivery means; never raises on an odd payload (Ignored says why)."""
    body = mapping(payload)
    if not body:
        return Ignored("the payload is not a JSON object")
    event_id = f"{SOURCE}:{webhook_id}"
    if topic in ("customers/create", "customers/update"):
        return _customer(event_id, shop, body, received_at)
    if topic in ("checkouts/create", "checkouts/update"):
        return _checkout(event_id, shop, body, received_at)
    if topic in ("orders/create", "orders/paid"):
        return _order(event_id, shop, body, received_at, "order_placed", once=True)
    if topic == "orders/fulfilled":
        return _order(event_id, shop, body, received_at, "order_fulfilled")
    if topic == "orders/cancelled":
        return _order(event_id, shop, body, received_at, "order_cancelled")
    if topic == "refunds/create":
        return _refund(event_id, shop, body, received_at)
    if topic in ("customers/data_request", "customers/redact", "shop/redact"):
        return _privacy(event_id, topic, shop, body)
    return Ignored(f"topic {topic or '(none)'} is not one nudge acts on")


def _consent(value: Any) -> bool | None:
    state = mapping(value).get("state")
    return _CONSENT.get(state) if isinstance(state, str) else None


def _customer_contact(
    customer: dict[str, Any], *, email: Any = None, phone: Any = None, accepts_marketing: Any = None
) -> ContactPatch | None:
    email_marketing = _consent(customer.get("email_marketing_consent"))
    if accepts_marketing is True:
        # The box ticked at this checkout is newer than the customer record it came with;
        # an unticked box withdraws nothing.
        email_marketing = True
    address = mapping(customer.get("default_address"))
    return contact_patch(
        email=customer.get("email") or email,
        phone=phone_or_none(customer.get("phone")) or phone_or_none(phone) or address.get("phone"),
        first_name=customer.get("first_name") or address.get("first_name"),
        last_name=customer.get("last_name") or address.get("last_name"),
        email_marketing=email_marketing,
        sms_marketing=_consent(customer.get("sms_marketing_consent")),
        properties={"shopify_customer_id": text_or_none(customer.get("id"))},
    )


def _customer(event_id: str, shop: str, body: dict[str, Any], received_at: datetime) -> Canonical:
    patch = _customer_contact(body)
    if patch is None:
        return Ignored("the customer has no email address or E.164 phone number")
    links = (ref(shop, "customer", body["id"]),) if text_or_none(body.get("id")) else ()
    when = occurred(body.get("updated_at"), received_at)
    if patch.email_marketing is True:
        # The first time nudge sees this customer subscribed is a signup (the welcome flow's trigger);
        # later updates of a subscribed customer are plain profile updates.
        event = Event(event_id, "subscribed", patch, {"source": SOURCE, "shop": shop}, when)
        return Track(event, once=ref(shop, "subscribed", patch.contact_id), repeat_type="identify", links=links)
    return Track(Event(event_id, "identify", patch, {"source": SOURCE, "shop": shop}, when), links=links)


def _lines(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        line(
            title=item.get("title") or item.get("name"),
            quantity=item.get("quantity"),
            price=item.get("price"),
            product_id=item.get("product_id"),
            variant_id=item.get("variant_id"),
            sku=item.get("sku"),
        )
        for item in items(body.get("line_items"))
    ]


def _discount_codes(body: dict[str, Any]) -> list[str]:
    codes = []
    for entry in body.get("discount_codes") or []:
        code = text_or_none(entry.get("code")) if isinstance(entry, dict) else text_or_none(entry)
        if code:
            codes.append(code)
    return codes


def _checkout(event_id: str, shop: str, body: dict[str, Any], received_at: datetime) -> Canonical:
    checkout_id = text_or_none(body.get("id"))
    if checkout_id is None:
        return Ignored("the checkout has no id")
    customer = mapping(body.get("customer"))
    patch = _customer_contact(
        customer,
        email=body.get("email"),
        phone=body.get("phone") or body.get("sms_marketing_phone"),
        accepts_marketing=body.get("buyer_accepts_marketing"),
    )
    if patch is None:
        # Shopify creates the checkout before the buyer types an address; a later update will carry it.
        return Ignored("the checkout has no email address or phone number yet")
    properties = compact(
        {
            "source": SOURCE,
            "shop": shop,
            "checkout_id": checkout_id,
            "checkout_token": text_or_none(body.get("token")),
            "recovery_url": text_or_none(body.get("abandoned_checkout_url"), 2000),
            "lines": _lines(body),
            "currency": text_or_none(body.get("presentment_currency") or body.get("currency"), 3),
            "total": amount_or_none(body.get("total_price")),
            "subtotal": amount_or_none(body.get("subtotal_price")),
            "discount_codes": _discount_codes(body),
        }
    )
    event = Event(event_id, "checkout_started", patch, properties, occurred(body.get("updated_at"), received_at))
    # The first delivery that names a person starts the checkout (checkouts/create often has no email yet).
    return Track(event, once=ref(shop, "checkout", checkout_id), repeat_type="checkout_updated")


def _order_properties(shop: str, body: dict[str, Any]) -> dict[str, Any]:
    number = text_or_none(body.get("order_number"))
    return compact(
        {
            "source": SOURCE,
            "shop": shop,
            "order_id": text_or_none(body.get("id")),
            "order_number": text_or_none(body.get("name")) or (f"#{number}" if number else None),
            "checkout_id": text_or_none(body.get("checkout_id")),
            "checkout_token": text_or_none(body.get("checkout_token")),
            "lines": _lines(body),
            "currency": text_or_none(body.get("presentment_currency") or body.get("currency"), 3),
            "total": amount_or_none(body.get("total_price")),
            "subtotal": amount_or_none(body.get("subtotal_price")),
            "total_discounts": amount_or_none(body.get("total_discounts")),
            "discount_codes": _discount_codes(body),
            "financial_status": text_or_none(body.get("financial_status")),
            "fulfillment_status": text_or_none(body.get("fulfillment_status")),
            "cancel_reason": text_or_none(body.get("cancel_reason")),
            "order_status_url": text_or_none(body.get("order_status_url"), 2000),
        }
    )


def _order(
    event_id: str, shop: str, body: dict[str, Any], received_at: datetime, event_type: str, *, once: bool = False
) -> Canonical:
    order_id = text_or_none(body.get("id"))
    if order_id is None:
        return Ignored("the order has no id")
    billing = mapping(body.get("billing_address"))
    patch = _customer_contact(
        mapping(body.get("customer")),
        email=body.get("email") or body.get("contact_email"),
        phone=body.get("phone") or billing.get("phone"),
        accepts_marketing=body.get("buyer_accepts_marketing"),
    )
    if patch is None:
        return Ignored("the order has no email address or phone number")
    event = Event(
        event_id,
        event_type,
        patch,
        _order_properties(shop, body),
        occurred(body.get("processed_at") if once else body.get("updated_at"), received_at),
    )
    order_ref = ref(shop, "order", order_id)
    if once:
        # orders/create and orders/paid both announce the same order: the first one places it.
        return Track(event, once=order_ref, repeat_type=None)
    return Track(event, links=(order_ref,))


def _refund(event_id: str, shop: str, body: dict[str, Any], received_at: datetime) -> Canonical:
    order_id = text_or_none(body.get("order_id"))
    if order_id is None:
        return Ignored("the refund names no order")
    transactions = [t for t in items(body.get("transactions")) if t.get("kind") in ("refund", None)]
    amounts = [a for a in (amount_or_none(t.get("amount")) for t in transactions) if a is not None]
    currency = next((text_or_none(t.get("currency"), 3) for t in transactions if t.get("currency")), None)
    lines = []
    for refunded in items(body.get("refund_line_items")):
        item = mapping(refunded.get("line_item"))
        lines.append(
            line(
                title=item.get("title") or item.get("name"),
                quantity=refunded.get("quantity"),
                price=item.get("price"),
                product_id=item.get("product_id"),
                variant_id=item.get("variant_id"),
                sku=item.get("sku"),
            )
        )
    properties = compact(
        {
            "source": SOURCE,
            "shop": shop,
            "order_id": order_id,
            "refund_id": text_or_none(body.get("id")),
            "amount": round(sum(amounts), 2) if amounts else None,
            "currency": currency,
            "lines": lines,
            "note": text_or_none(body.get("note"), 500),
        }
    )
    # A refund names only its order: the contact is the one that order was placed by.
    return TrackByRef(
        ref(shop, "order", order_id),
        event_id,
        "refund_created",
        properties,
        occurred(body.get("processed_at") or body.get("created_at"), received_at),
    )


def _privacy(event_id: str, topic: str, shop: str, body: dict[str, Any]) -> Canonical:
    customer = mapping(body.get("customer"))
    email, phone = email_or_none(customer.get("email")), phone_or_none(customer.get("phone"))
    contacts = tuple(
        contact_id_for(external_id=None, email=e, phone=p) for e, p in ((email, None), (None, phone)) if e or p
    )
    customer_id = text_or_none(customer.get("id"))
    subject = compact(
        {
            "shop": shop,
            "shop_id": text_or_none(body.get("shop_id")),
            "customer_id": customer_id,
            "email": email,
            "phone": phone,
            "orders": [text_or_none(o) for o in body.get("orders_requested") or body.get("orders_to_redact") or []],
            "data_request_id": text_or_none(mapping(body.get("data_request")).get("id")),
        }
    )
    kind = {
        "customers/data_request": PrivacyKind.EXPORT,
        "customers/redact": PrivacyKind.ERASE_CONTACT,
        "shop/redact": PrivacyKind.ERASE_SHOP,
    }[topic]
    refs = (ref(shop, "customer", customer_id),) if customer_id else ()
    return Privacy(event_id, kind, SOURCE, subject, contacts, refs)
