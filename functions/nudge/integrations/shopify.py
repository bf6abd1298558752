"""Shopify webhooks to canonical events: a pure function of (topic, webhook id, shop, payload).

Contacts are keyed by email (else phone), exactly as POST /v1/events keys them, so a guest checkout
and the order that follows it land on the same contact and the order ends the cart's run.
`checkout_id` is the checkout's numeric id: checkouts carry it as `id`, orders as `checkout_id`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from nudge.domain.model import ContactPatch, Event, contact_id_for
from nudge.integrations.canonical import (
    Canonical,
    CatalogChange,
    Disconnect,
    EndRuns,
    Ignored,
    Privacy,
    Track,
    TrackByRef,
    amount_or_none,
    compact,
    contact_patch,
    email_or_none,
    first_phone,
    int_or,
    items,
    line,
    mapping,
    occurred,
    phone_or_none,
    stock_level,
    text_or_none,
)
from nudge.ports import PrivacyKind

SOURCE = "shopify"
# Shopify's consent states; "pending" (double opt-in under way) and unknown ones say nothing yet.
_CONSENT = {"subscribed": True, "not_subscribed": False, "unsubscribed": False, "redacted": False, "invalid": False}
# A customer seen subscribed counts as a new signup only if the consent was given this recently (and they
# have not ordered): an install's first updates of long-standing subscribers are not signups.
SIGNUP_WINDOW = timedelta(days=1)

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
    "customers/delete",
    "products/update",
    "inventory_levels/update",
    "customers/data_request",
    "customers/redact",
    "shop/redact",
    "app/uninstalled",
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
    if topic == "products/update":
        return _product(event_id, shop, body)
    if topic == "inventory_levels/update":
        return _inventory_level(event_id, shop, body)
    if topic == "customers/delete":
        customer_id = text_or_none(body.get("id"))
        if customer_id is None:
            return Ignored("the deleted customer has no id")
        return EndRuns(ref(shop, "customer", customer_id), "customer_deleted")
    if topic == "app/uninstalled":
        # The body is the Shop (its myshopify_domain may be null): the verified header names the shop.
        return Disconnect(event_id, f"{SOURCE}:{shop}", "shop_uninstalled") if shop else Ignored("no shop named")
    if topic in ("customers/data_request", "customers/redact", "shop/redact"):
        return _privacy(event_id, topic, shop, body)
    return Ignored(f"topic {topic or '(none)'} is not one nudge acts on")


def _consent(value: Any) -> bool | None:
    state = mapping(value).get("state")
    return _CONSENT.get(state) if isinstance(state, str) else None


def _email_consent(customer: dict[str, Any]) -> tuple[bool | None, Any]:
    """(email consent, when it was given): `email_marketing_consent`, else the pre-2022 `accepts_marketing`."""
    consent = mapping(customer.get("email_marketing_consent"))
    if consent:
        return _consent(consent), consent.get("consent_updated_at")
    legacy = customer.get("accepts_marketing")
    return (legacy if isinstance(legacy, bool) else None), customer.get("accepts_marketing_updated_at")


def _customer_contact(
    customer: dict[str, Any],
    *,
    email: Any = None,
    phones: tuple[tuple[Any, Any], ...] = (),
    names: tuple[dict[str, Any], ...] = (),
    accepts_marketing: Any = None,
    sms_consent: bool | None = None,
) -> ContactPatch | None:
    """The contact a payload names. `phones` are (number, country) candidates after the customer's own, tried
    in order (an invalid one does not hide a valid billing phone); `names` are addresses to take a guest's
    name from."""
    email_marketing, _ = _email_consent(customer)
    if accepts_marketing is True:
        # The box ticked at this checkout is newer than the customer record it came with;
        # an unticked box withdraws nothing.
        email_marketing = True
    address = mapping(customer.get("default_address"))
    sms_marketing = _consent(customer.get("sms_marketing_consent"))
    if sms_consent is True:
        sms_marketing = True  # the SMS box ticked at checkout (sms_marketing_phone), newer than the record
    named = next((n for n in (customer, address, *names) if text_or_none(n.get("first_name"))), {})
    return contact_patch(
        email=customer.get("email") or email,
        phone=first_phone((customer.get("phone"), None), (address.get("phone"), address.get("country_code")), *phones),
        first_name=named.get("first_name"),
        last_name=named.get("last_name") or customer.get("last_name"),
        email_marketing=email_marketing,
        sms_marketing=sms_marketing,
        properties={"shopify_customer_id": text_or_none(customer.get("id"))},
    )


def _customer(event_id: str, shop: str, body: dict[str, Any], received_at: datetime) -> Canonical:
    patch = _customer_contact(body)
    if patch is None:
        return Ignored("the customer has no email address or valid phone number")
    links = (ref(shop, "customer", body["id"]),) if text_or_none(body.get("id")) else ()
    when = occurred(body.get("updated_at"), received_at)
    if patch.email_marketing is True and _new_signup(body, received_at):
        # Consent given just now by someone who has not ordered: a signup (the welcome flow's trigger), once.
        # Long-standing subscribers (an install's first updates) and buyers are plain profile updates.
        event = Event(event_id, "subscribed", patch, {"source": SOURCE, "shop": shop}, when)
        return Track(
            event,
            once=ref(shop, "subscribed", patch.contact_id),
            repeat_type="identify",
            links=links,
            unless_customer=True,
        )
    return Track(Event(event_id, "identify", patch, {"source": SOURCE, "shop": shop}, when), links=links)


def _new_signup(customer: dict[str, Any], received_at: datetime) -> bool:
    """Not a buyer, and consent (else the customer record) dates from within SIGNUP_WINDOW of the delivery."""
    if int_or(customer.get("orders_count", customer.get("number_of_orders")), 0) > 0:
        return False
    _, given_at = _email_consent(customer)
    moment = given_at or customer.get("created_at")
    if not isinstance(moment, str):
        return False  # no date at all: a record nudge cannot tell from an old one is not a signup
    return received_at - occurred(moment, received_at) <= SIGNUP_WINDOW


def _presented(body: dict[str, Any], name: str) -> Any:
    """A money field in the currency the buyer saw (`<name>_set.presentment_money`), else as sent."""
    presented = mapping(mapping(body.get(f"{name}_set")).get("presentment_money")).get("amount")
    return presented if presented is not None else body.get(name)


def _currency(body: dict[str, Any]) -> str | None:
    presented = mapping(mapping(body.get("total_price_set")).get("presentment_money")).get("currency_code")
    return text_or_none(body.get("presentment_currency") or presented or body.get("currency"), 3)


def _item_line(item: dict[str, Any], quantity: Any = None) -> dict[str, Any]:
    return line(
        title=item.get("title") or item.get("name"),
        quantity=item.get("quantity") if quantity is None else quantity,
        price=_presented(item, "price"),
        product_id=item.get("product_id"),
        variant_id=item.get("variant_id"),
        sku=item.get("sku"),
    )


def _lines(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [_item_line(item) for item in items(body.get("line_items"))]


def _discount_codes(body: dict[str, Any]) -> list[str]:
    codes = []
    for entry in body.get("discount_codes") or []:
        code = text_or_none(entry.get("code")) if isinstance(entry, dict) else text_or_none(entry)
        if code:
            codes.append(code)
    return codes


def _checkout(event_id: str, shop: str, body: dict[str, Any], received_at: datetime) -> Canonical:
    # Abandoned-checkout webhooks carry a numeric id; Checkout API records only their token.
    checkout_id = text_or_none(body.get("id")) or text_or_none(body.get("token"))
    if checkout_id is None:
        return Ignored("the checkout has no id or token")
    if body.get("completed_at"):
        # A late update of a checkout that became an order: the order ends the cart, this starts nothing.
        return Ignored("the checkout is completed: its order ends the cart flow")
    billing, shipping = mapping(body.get("billing_address")), mapping(body.get("shipping_address"))
    sms_phone = body.get("sms_marketing_phone")
    patch = _customer_contact(
        mapping(body.get("customer")),
        email=body.get("email"),
        phones=(
            (body.get("phone"), billing.get("country_code")),
            (sms_phone, billing.get("country_code")),
            (billing.get("phone"), billing.get("country_code")),
            (shipping.get("phone"), shipping.get("country_code")),
        ),
        names=(billing, shipping),
        accepts_marketing=body.get("buyer_accepts_marketing"),
        sms_consent=True if phone_or_none(sms_phone, billing.get("country_code")) else None,
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
            "currency": _currency(body),
            "total": amount_or_none(_presented(body, "total_price")),
            "subtotal": amount_or_none(_presented(body, "subtotal_price")),
            "discount_codes": _discount_codes(body),
        }
    )
    event = Event(event_id, "checkout_started", patch, properties, occurred(body.get("updated_at"), received_at))
    customer_id = text_or_none(mapping(body.get("customer")).get("id"))
    # The first delivery that names a person starts the checkout (checkouts/create often has no email yet);
    # if a later one names someone else (a corrected email), the checkout moves to them.
    return Track(
        event,
        once=ref(shop, "checkout", checkout_id),
        repeat_type="checkout_updated",
        links=(ref(shop, "customer", customer_id),) if customer_id else (),
        moves=True,
    )


def _order_properties(shop: str, body: dict[str, Any]) -> dict[str, Any]:
    number = text_or_none(body.get("order_number"))
    return compact(
        {
            "source": SOURCE,
            "shop": shop,
            "order_id": text_or_none(body.get("id")),
            "order_number": text_or_none(body.get("name")) or (f"#{number}" if number else None),
            "checkout_id": text_or_none(body.get("checkout_id")) or text_or_none(body.get("checkout_token")),
            "checkout_token": text_or_none(body.get("checkout_token")),
            "lines": _lines(body),
            "currency": _currency(body),
            "total": amount_or_none(_presented(body, "total_price")),
            "subtotal": amount_or_none(_presented(body, "subtotal_price")),
            "total_discounts": amount_or_none(_presented(body, "total_discounts")),
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
    if body.get("test") is True:
        return Ignored("a test order (Shopify's bogus gateway or test mode) is no sale")
    billing, shipping = mapping(body.get("billing_address")), mapping(body.get("shipping_address"))
    customer = mapping(body.get("customer"))
    patch = _customer_contact(
        customer,
        email=body.get("email") or body.get("contact_email"),
        phones=(
            (body.get("phone"), billing.get("country_code")),
            (billing.get("phone"), billing.get("country_code")),
            (shipping.get("phone"), shipping.get("country_code")),
        ),
        names=(billing, shipping),
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
    customer_id = text_or_none(customer.get("id"))
    links = (order_ref, *((ref(shop, "customer", customer_id),) if customer_id else ()))
    checkout_id = text_or_none(body.get("checkout_id")) or text_or_none(body.get("checkout_token"))
    closes = ref(shop, "checkout", checkout_id) if checkout_id else None
    if once:
        # orders/create and orders/paid both announce the same order: the first one places it.
        return Track(event, once=order_ref, repeat_type=None, links=links[1:], closes=closes)
    return Track(event, links=links)


def _refund(event_id: str, shop: str, body: dict[str, Any], received_at: datetime) -> Canonical:
    order_id = text_or_none(body.get("order_id"))
    if order_id is None:
        return Ignored("the refund names no order")
    # Only money that moved: a failed or pending refund transaction refunds nothing.
    transactions = [
        t
        for t in items(body.get("transactions"))
        if t.get("kind") in ("refund", None) and t.get("status") in ("success", None)
    ]
    amounts = [a for a in (amount_or_none(t.get("amount")) for t in transactions) if a is not None]
    currency = next((text_or_none(t.get("currency"), 3) for t in transactions if t.get("currency")), None)
    lines = [
        _item_line(mapping(refunded.get("line_item")), refunded.get("quantity"))
        for refunded in items(body.get("refund_line_items"))
    ]
    properties = compact(
        {
            "source": SOURCE,
            "shop": shop,
            "order_id": order_id,
            "refund_id": text_or_none(body.get("id")),
            "amount": round(sum(amounts), 2) if amounts else 0.0,
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
    listed = body.get("orders_requested") or body.get("orders_to_redact") or []
    orders = [o for o in (text_or_none(o) for o in listed) if o]
    subject = compact(
        {
            "shop": shop,
            "shop_id": text_or_none(body.get("shop_id")),
            "customer_id": customer_id,
            "email": email,
            "phone": phone or text_or_none(customer.get("phone"), 40),
            "orders": orders,
            "data_request_id": text_or_none(mapping(body.get("data_request")).get("id")),
        }
    )
    kind = {
        "customers/data_request": PrivacyKind.EXPORT,
        "customers/redact": PrivacyKind.ERASE_CONTACT,
        "shop/redact": PrivacyKind.ERASE_SHOP,
    }[topic]
    # The customer's id and their orders lead to the contact even when the phone is no valid number.
    refs = (
        *((ref(shop, "customer", customer_id),) if customer_id else ()),
        *(ref(shop, "order", order) for order in orders[:250]),
    )
    return Privacy(event_id, kind, SOURCE, subject, contacts, refs)


def _product(event_id: str, shop: str, body: dict[str, Any]) -> Canonical:
    """Each variant's stock (`inventory_quantity`) and price; its inventory item is remembered for later levels."""
    product_id, handle = text_or_none(body.get("id")), text_or_none(body.get("handle"))
    levels = []
    for variant in items(body.get("variants")):
        variant_id = text_or_none(variant.get("id"))
        if variant_id is None:
            continue
        title = text_or_none(body.get("title"))
        if text_or_none(variant.get("title")) not in (None, "Default Title"):
            title = f"{title} - {variant['title']}" if title else text_or_none(variant.get("title"))
        inventory_item = text_or_none(variant.get("inventory_item_id"))
        levels.append(
            stock_level(
                key=ref(shop, "variant", variant_id),
                quantity=variant.get("inventory_quantity"),
                price=variant.get("price"),
                item=variant_id,
                product_id=product_id,
                variant_id=variant_id,
                product_title=title,
                product_url=f"https://{shop}/products/{handle}?variant={variant_id}" if handle and shop else None,
                describes=ref(shop, "inventory_item", inventory_item) if inventory_item else None,
            )
        )
    return CatalogChange(event_id, tuple(levels)) if levels else Ignored("the product has no variants")


def _inventory_level(event_id: str, shop: str, body: dict[str, Any]) -> Canonical:
    """One inventory item at one location; which variant it is comes from an earlier products/update."""
    inventory_item, location = text_or_none(body.get("inventory_item_id")), text_or_none(body.get("location_id"))
    if inventory_item is None:
        return Ignored("the inventory level names no inventory item")
    level = stock_level(
        key=ref(shop, "inventory_item", f"{inventory_item}:{location or '-'}"),
        quantity=body.get("available"),
        price=None,
        details_from=ref(shop, "inventory_item", inventory_item),
    )
    return CatalogChange(event_id, (level,))
