"""What a storefront webhook means to nudge, before anything is stored: the mappers' common vocabulary.

Mappers (shopify.py, woocommerce.py) are pure functions from a verified payload to one of these;
WebhookService (webhooks.py) carries them out. Event types are the flows' lower_snake_case names.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from nudge.domain import addresses, bounds
from nudge.domain.frozen import dataclass
from nudge.domain.model import ContactPatch, Event, JsonDict
from nudge.ports import PrivacyKind


@dataclass(frozen=True, slots=True)
class Track:
    """Ingest this event.

    `once` names a first sighting: the first delivery to claim that ref carries the event; later ones become
    `repeat_type` instead, or are dropped if there is none. With `moves`, a `once` ref claimed by another
    contact (a checkout whose email was corrected) moves to this one: the other contact's runs for it end
    (`checkout_closed`) and this delivery counts as the first sighting. `closes` names a checkout this event
    completes: if another contact holds it (a phone-first checkout, then an order with an email), its runs
    for it end the same way. `links` lead to the contact later. With `unless_customer`, a contact that has
    ordered gets `repeat_type` instead (a buyer's consent is no signup).
    """

    event: Event
    once: str | None = None
    repeat_type: str | None = None
    links: tuple[str, ...] = ()
    moves: bool = False
    closes: str | None = None
    unless_customer: bool = False


@dataclass(frozen=True, slots=True)
class TrackByRef:
    """An event whose payload names no person (a Shopify refund): the contact is found through `ref`."""

    ref: str
    event_id: str
    type: str
    properties: JsonDict
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Privacy:
    """A data request or redaction. `contacts` are the ids the payload names; `refs` may lead to more."""

    request_id: str
    kind: PrivacyKind
    source: str
    subject: JsonDict
    contacts: tuple[str, ...]
    refs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Ignored:
    """Nothing to do (an unknown topic, a checkout with no address yet); answered 200 so nobody retries."""

    reason: str


@dataclass(frozen=True, slots=True)
class EndRuns:
    """The contact `ref` leads to is gone from the shop (customers/delete): end every active run of theirs."""

    ref: str
    reason: str


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The shop removed the app (Shopify's app/uninstalled): its events stop. Recorded, and the runs that
    waited on them are ended in pieces on the jobs queue (services/disconnect.py)."""

    event_id: str
    scope: str  # `shopify:<shop>`, as the shop's refs begin
    reason: str


@dataclass(frozen=True, slots=True)
class Batch:
    """Several facts in one delivery (a WooCommerce order completed straight from pending: placed and
    fulfilled; a partial refund inside an order update), carried out in order."""

    parts: tuple[Track | TrackByRef | Ignored, ...]


@dataclass(frozen=True, slots=True)
class StockLevel:
    """What a catalog delivery says of one sellable item at one place.

    `key` names what was observed (a variant, or an inventory item at a location); `details` say which
    variant it is (`item`, the waitlist key, plus product_id, variant_id, product_title, product_url,
    price, currency). A level with no details takes those last stored under `details_from` (Shopify's
    inventory levels name only an inventory item; products/update said which variant it is).
    """

    key: str
    quantity: int | None
    price: float | None
    details: JsonDict
    details_from: str | None = None
    describes: str | None = None  # store `details` under this key too, for later levels


@dataclass(frozen=True, slots=True)
class CatalogChange:
    """Stock and prices seen in a catalog delivery: a variant from 0 to more is `back_in_stock` for the
    contacts waiting on it (once per restock), a lower price `price_dropped`."""

    event_id: str
    levels: tuple[StockLevel, ...]


Canonical = Track | TrackByRef | Privacy | EndRuns | Disconnect | Batch | CatalogChange | Ignored


def email_or_none(value: Any) -> str | None:
    """The address normalized to its addr-spec (nudge.domain.addresses), or None if it is not one."""
    return addresses.email_or_none(value)


def phone_or_none(value: Any, default_region: Any = None) -> str | None:
    """The number in E.164 (nudge.domain.phones, as every entry point), or None if it is not a valid one.

    Storefront phones are free text; a national number is read in `default_region` (an address's country).
    """
    if not value:
        return None  # most orders carry none: no import, no parse
    from nudge.domain import phones  # here: phonenumbers (~14 ms) only where a phone is read (ADR 0020)

    return phones.phone_or_none(value, default_region)


def phone_field(value: str | None) -> str | None:
    """A request's `phone` member (the signup form, the Segment-style API): absent, or a valid number, which
    becomes E.164; anything else is refused (a pydantic field validator)."""
    if value is None:
        return None
    if (number := phone_or_none(value)) is None:
        raise ValueError("not an E.164 phone number (e.g. +14155550123)")
    return number


def first_phone(*candidates: tuple[Any, Any]) -> str | None:
    """The first (number, country) candidate that is a valid number: an invalid one never hides the next."""
    for number, country in candidates:
        if (found := phone_or_none(number, country)) is not None:
            return found
    return None


def text_or_none(value: Any, limit: int = 200) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()[:limit]
    return None


def amount_or_none(value: Any) -> float | None:
    """Storefronts send money as strings ("19.90"); templates format numbers."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return float(amount) if amount.is_finite() else None


def int_or(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def mapping(value: Any) -> dict[str, Any]:
    """The value if it is a JSON object, else an empty one: payloads vary by version and by shop."""
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def line(*, title: Any, quantity: Any, price: Any, product_id: Any, variant_id: Any, sku: Any) -> dict[str, Any]:
    """One cart or order line in the shape templates and flows expect."""
    return {
        "title": text_or_none(title) or "",
        "quantity": int_or(quantity, 1),
        "price": amount_or_none(price),
        "product_id": text_or_none(product_id),
        "variant_id": text_or_none(variant_id),
        "sku": text_or_none(sku),
    }


def stock_level(
    *,
    key: str,
    quantity: Any,
    price: Any,
    item: Any = None,
    details_from: str | None = None,
    describes: str | None = None,
    **details: Any,
) -> StockLevel:
    """A StockLevel from payload values: a quantity that is no integer is unknown (untracked inventory)."""
    count = int_or(quantity, -(10**9))
    return StockLevel(
        key=key,
        quantity=None if count == -(10**9) else count,
        price=amount_or_none(price),
        details=compact({"item": text_or_none(item), **{k: text_or_none(v, 2000) for k, v in details.items()}}),
        details_from=details_from,
        describes=describes,
    )


def compact(values: dict[str, Any]) -> dict[str, Any]:
    """Drop absent members, so a flow condition on a property sees "missing" rather than null."""
    return {key: value for key, value in values.items() if value is not None}


def contact_patch(
    *,
    email: Any = None,
    phone: Any = None,
    first_name: Any = None,
    last_name: Any = None,
    email_marketing: bool | None = None,
    sms_marketing: bool | None = None,
    properties: dict[str, Any] | None = None,
) -> ContactPatch | None:
    """A patch keyed like /v1/events keys it (hash of the email, else of the phone); None without either."""
    clean_email, clean_phone = email_or_none(email), phone_or_none(phone)
    if not (clean_email or clean_phone):
        return None
    return ContactPatch(
        email=clean_email,
        phone=clean_phone,
        first_name=_name(first_name),
        last_name=_name(last_name),
        email_marketing=email_marketing,
        sms_marketing=sms_marketing,
        properties=compact(properties or {}),
    )


def _name(value: Any) -> str | None:
    """A person's name from a payload: it may land in an email header, so control characters become spaces."""
    text = text_or_none(value, 100)
    return (bounds.header_safe(text).strip() or None) if text else None


def occurred(value: Any, received_at: datetime) -> datetime:
    """The payload's own timestamp when it is sane (not in the future, not before 1970), else the time it arrived."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            moment = bounds.check_instant(parsed, "") if parsed.tzinfo is not None else None
        except ValueError:  # unparsable, or outside nudge's range
            return received_at
        if moment is not None and moment <= received_at:
            return moment
    return received_at
