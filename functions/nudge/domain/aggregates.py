"""What a contact's events add up to: orders, spend, products, engagement. Pure, updated on every event.

Money is summed as `Decimal` in the shop's currency (nudge assumes one). Each update is keyed by the
event id, so an event processed twice (a retry after a crash between the contact write and the end of
processing) counts once. What moves money (an order by its id, a refund or cancellation by its event id)
is also remembered for good as an 8-byte digest in `counted`: the events table forgets an event after its
retention (90 days), and a re-import of the same history after that must still add nothing.
"""

from __future__ import annotations

import base64
import hashlib
from bisect import insort_right
from collections.abc import Mapping
from dataclasses import field, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from nudge.domain import send_time
from nudge.domain.frozen import dataclass

ORDER_PLACED = "order_placed"
ORDER_CANCELLED = "order_cancelled"
REFUND_CREATED = "refund_created"
EMAIL_OPENED = "email_opened"
EMAIL_CLICKED = "email_clicked"

# Bounds that keep a contact item small (DynamoDB items cap at 400 KB) whatever a contact's history.
RECENT_ORDERS = 24
PRODUCTS_KEPT = 100
CATEGORIES_KEPT = 50
EVENT_TYPES_KEPT = 64
EVENT_IDS_KEPT = 20
CENT = Decimal("0.01")
DIGEST_BYTES = 8  # a collision among one contact's 50,000 orders has odds under 1 in 10^10


@dataclass(frozen=True, slots=True)
class OrderSummary:
    """One recent order: enough to undo it on cancellation and to predict the next one."""

    order_id: str
    placed_at: datetime
    total: Decimal
    refunded: Decimal = Decimal("0.00")  # refunds counted against this order so far

    @property
    def remaining(self) -> Decimal:
        return max(Decimal("0.00"), self.total - self.refunded)


# The keys of `Aggregates.template_view` whose value is the attribute of that name, as it is, in the view's
# order (the others: the two lists, copied; `contact.aggregates` adds the predicted next order).
VIEW_ATTRIBUTES = (
    "orders_count", "total_spent", "aov", "first_order_at", "last_order_at", "last_activity_at", "last_open_at",
    "last_click_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Aggregates:
    """Counters kept on the contact. `total_spent` is net of refunds and cancellations."""

    orders_count: int = 0
    total_spent: Decimal = Decimal("0.00")
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    last_activity_at: datetime | None = None
    last_open_at: datetime | None = None
    last_click_at: datetime | None = None
    engaged_hours: tuple[int, ...] = ()  # opens (1) and clicks (2) by UTC hour: send_time.py; () before any
    products: tuple[str, ...] = ()  # distinct, most recently bought last
    categories: tuple[str, ...] = ()
    recent_orders: tuple[OrderSummary, ...] = ()  # oldest first, at most RECENT_ORDERS
    cancelled_orders: tuple[str, ...] = ()  # ids of orders taken back, newest last, at most RECENT_ORDERS
    last_event_at: Mapping[str, datetime] = field(default_factory=dict)  # event type -> last occurrence
    event_ids: tuple[str, ...] = ()  # the last events counted, so a reprocessed one is not counted twice
    counted: frozenset[bytes] = frozenset()  # digests of every order and refund ever counted (never expire)

    @property
    def aov(self) -> Decimal | None:
        """Average order value, or None before the first order."""
        if self.orders_count <= 0:
            return None
        return (self.total_spent / self.orders_count).quantize(CENT)

    def template_view(self) -> dict[str, Any]:
        """What templates and conditions see as `contact.aggregates` (VIEW_ATTRIBUTES are its attributes as
        they are)."""
        return {
            "orders_count": self.orders_count,
            "total_spent": self.total_spent,
            "aov": self.aov,
            "first_order_at": self.first_order_at,
            "last_order_at": self.last_order_at,
            "last_activity_at": self.last_activity_at,
            "last_open_at": self.last_open_at,
            "last_click_at": self.last_click_at,
            "products": list(self.products),
            "categories": list(self.categories),
        }


def updated(
    aggregates: Aggregates, event_id: str, event_type: str, properties: Mapping[str, Any], at: datetime
) -> Aggregates:
    """The aggregates after this event; unchanged (the same object) if the event was already counted."""
    tally = Tally(aggregates)
    return tally.frozen() if tally.add(event_id, event_type, properties, at) else aggregates


class Tally:
    """Aggregates being updated event by event, in place: what `updated` does once, and a bulk import for
    every order of a customer before freezing the result once (no copy of the tuples and sets per event).

    Folding events through one tally gives exactly what `updated` gives applied one event at a time: the
    bounded windows that later events read (event ids, recent and cancelled orders, event types) are cut
    after every event; products and categories are cut when frozen, which keeps the same last ones (a
    value cut earlier could only come back by being bought again, which puts it last either way).
    """

    __slots__ = (
        "_base",
        "orders_count",
        "total_spent",
        "first_order_at",
        "last_order_at",
        "last_activity_at",
        "last_open_at",
        "last_click_at",
        "engaged_hours",
        "products",
        "categories",
        "recent_orders",
        "_orders_sorted",
        "cancelled_orders",
        "last_event_at",
        "event_ids",
        "counted",
    )

    def __init__(self, aggregates: Aggregates) -> None:
        self._base = aggregates
        self.orders_count = aggregates.orders_count
        self.total_spent = aggregates.total_spent
        self.first_order_at = aggregates.first_order_at
        self.last_order_at = aggregates.last_order_at
        self.last_activity_at = aggregates.last_activity_at
        self.last_open_at = aggregates.last_open_at
        self.last_click_at = aggregates.last_click_at
        self.engaged_hours = aggregates.engaged_hours
        self.products = dict.fromkeys(aggregates.products)
        self.categories = dict.fromkeys(aggregates.categories)
        self.recent_orders = list(aggregates.recent_orders)
        self._orders_sorted = False  # sorted by time at the first order placed, as `sorted` would
        self.cancelled_orders = list(aggregates.cancelled_orders)
        self.last_event_at = dict(aggregates.last_event_at)
        self.event_ids = list(aggregates.event_ids)
        self.counted = set(aggregates.counted)

    def add(self, event_id: str, event_type: str, properties: Mapping[str, Any], at: datetime) -> bool:
        """Count the event; False (and nothing changed) if it was counted before."""
        if event_id in self.event_ids:
            return False
        key = counting_key(event_id, event_type, properties)
        if key is not None and key in self.counted:
            return False  # counted before, maybe long ago (an order re-imported after the events expired)
        seen = self.last_event_at
        if event_type not in seen and len(seen) >= EVENT_TYPES_KEPT:
            del seen[min(seen, key=lambda t: seen[t])]
        seen[event_type] = max(at, seen.get(event_type, at))
        self.last_activity_at = _latest(self.last_activity_at, at)
        self.event_ids.append(event_id)
        del self.event_ids[:-EVENT_IDS_KEPT]
        if key is not None:
            self.counted.add(key)
        if event_type == ORDER_PLACED:
            self._order_placed(event_id, properties, at)
        elif event_type == ORDER_CANCELLED:
            self._order_cancelled(properties)
        elif event_type == REFUND_CREATED:
            self._refunded(properties)
        elif event_type == EMAIL_OPENED and not properties.get("machine_open"):
            # A privacy proxy's prefetch (Apple Mail) is no reader: segments on last_open_at ignore it.
            self.last_open_at = _latest(self.last_open_at, at)
            self.engaged_hours = send_time.engaged(self.engaged_hours, at, send_time.OPEN_WEIGHT)
        elif event_type == EMAIL_CLICKED:
            self.last_click_at = _latest(self.last_click_at, at)
            self.engaged_hours = send_time.engaged(self.engaged_hours, at, send_time.CLICK_WEIGHT)
        return True

    def frozen(self) -> Aggregates:
        return Aggregates(
            orders_count=self.orders_count,
            total_spent=self.total_spent,
            first_order_at=self.first_order_at,
            last_order_at=self.last_order_at,
            last_activity_at=self.last_activity_at,
            last_open_at=self.last_open_at,
            last_click_at=self.last_click_at,
            engaged_hours=self.engaged_hours,
            products=tuple(self.products)[-PRODUCTS_KEPT:],
            categories=tuple(self.categories)[-CATEGORIES_KEPT:],
            recent_orders=tuple(self.recent_orders),
            cancelled_orders=tuple(self.cancelled_orders),
            last_event_at=dict(self.last_event_at),
            event_ids=tuple(self.event_ids),
            counted=frozenset(self.counted) if len(self.counted) != len(self._base.counted) else self._base.counted,
        )

    def _order_placed(self, event_id: str, properties: Mapping[str, Any], at: datetime) -> None:
        order_id = str(properties.get("order_id") or event_id)
        if any(order.order_id == order_id for order in self.recent_orders):
            return  # the storefront sent the same order twice under two event ids
        total = money(properties.get("total"))
        for line in properties.get("lines") or ():
            if isinstance(line, Mapping):
                if key := product_key(line):
                    _move_last(self.products, key)
                for category in _line_categories(line):
                    _move_last(self.categories, category)
        orders = self.recent_orders
        if not self._orders_sorted:
            orders.sort(key=_placed_at)  # stable, as `sorted` of the old tuple plus the new order was
            self._orders_sorted = True
        insort_right(orders, OrderSummary(order_id, at, total), key=_placed_at)  # after the same moment's
        del orders[:-RECENT_ORDERS]
        self.orders_count += 1
        self.total_spent += total
        self.first_order_at = _earliest(self.first_order_at, at)
        self.last_order_at = _latest(self.last_order_at, at)

    def _order_cancelled(self, properties: Mapping[str, Any]) -> None:
        order_id = str(properties.get("order_id") or "")
        cancelled = next((o for o in self.recent_orders if o.order_id == order_id), None)
        if cancelled is None:
            return  # an order older than the ones kept, or unknown: nothing we can undo exactly
        self.recent_orders = remaining = [o for o in self.recent_orders if o is not cancelled]
        self.orders_count = max(0, self.orders_count - 1)
        # What was refunded already left total_spent with the refund: take back only the rest.
        self.total_spent = max(Decimal("0.00"), self.total_spent - cancelled.remaining)
        self.cancelled_orders.append(order_id)
        del self.cancelled_orders[:-RECENT_ORDERS]
        self.last_order_at = remaining[-1].placed_at if remaining else None
        self.first_order_at = self.first_order_at if remaining else None

    def _refunded(self, properties: Mapping[str, Any]) -> None:
        """Net spend less the refund, at most what is left of its order; nothing for an order already taken
        back by its cancellation (Shopify's cancel-with-refund sends both)."""
        amount = money(properties.get("amount", properties.get("total")))
        order_id = str(properties.get("order_id") or "")
        if order_id and order_id in self.cancelled_orders:
            return
        order = next((o for o in self.recent_orders if o.order_id == order_id), None) if order_id else None
        if order is not None:
            amount = min(amount, order.remaining)
            self.recent_orders = [
                replace(o, refunded=o.refunded + amount) if o is order else o for o in self.recent_orders
            ]
        self.total_spent = max(Decimal("0.00"), self.total_spent - amount)


def _placed_at(order: OrderSummary) -> datetime:
    return order.placed_at


def _move_last(values: dict[str, None], value: str) -> None:
    values.pop(value, None)
    values[value] = None


def counting_key(event_id: str, event_type: str, properties: Mapping[str, Any]) -> bytes | None:
    """The digest that names what this event counts (an order by its id), or None if it moves no money."""
    if event_type == ORDER_PLACED:
        name = f"order:{properties.get('order_id') or event_id}"
    elif event_type == ORDER_CANCELLED:
        name = f"cancel:{properties.get('order_id') or event_id}"
    elif event_type == REFUND_CREATED:
        name = f"refund:{event_id}"
    else:
        return None
    return hashlib.blake2b(name.encode(), digest_size=DIGEST_BYTES).digest()


def is_counted(aggregates: Aggregates, event_id: str, event_type: str, properties: Mapping[str, Any]) -> bool:
    """Whether this event already counted on these aggregates (then counting it again changes nothing)."""
    key = counting_key(event_id, event_type, properties)
    return event_id in aggregates.event_ids or (key is not None and key in aggregates.counted)


def combined(kept: Aggregates, absorbed: Aggregates) -> Aggregates:
    """One person's aggregates from two records of them (an anonymous visitor aliased to a known customer).

    Orders both records hold (same order id among the recent ones) count once; latest and earliest moments
    win; products and categories of `absorbed` come first, so `kept`'s stay the most recent.
    """
    shared = {o.order_id for o in kept.recent_orders} & {o.order_id for o in absorbed.recent_orders}
    extra = [o for o in absorbed.recent_orders if o.order_id in shared]
    orders = {o.order_id: o for o in (*absorbed.recent_orders, *kept.recent_orders)}
    seen = dict(absorbed.last_event_at)
    for event_type, at in kept.last_event_at.items():
        seen[event_type] = max(at, seen.get(event_type, at))
    newest = sorted(seen, key=lambda t: seen[t])[-EVENT_TYPES_KEPT:]
    return Aggregates(
        orders_count=kept.orders_count + absorbed.orders_count - len(extra),
        total_spent=kept.total_spent + absorbed.total_spent - sum((o.total for o in extra), Decimal(0)),
        first_order_at=_either(min, kept.first_order_at, absorbed.first_order_at),
        last_order_at=_either(max, kept.last_order_at, absorbed.last_order_at),
        last_activity_at=_either(max, kept.last_activity_at, absorbed.last_activity_at),
        last_open_at=_either(max, kept.last_open_at, absorbed.last_open_at),
        last_click_at=_either(max, kept.last_click_at, absorbed.last_click_at),
        products=_appended(absorbed.products, kept.products, PRODUCTS_KEPT),
        categories=_appended(absorbed.categories, kept.categories, CATEGORIES_KEPT),
        recent_orders=tuple(sorted(orders.values(), key=lambda o: o.placed_at)[-RECENT_ORDERS:]),
        cancelled_orders=tuple(dict.fromkeys((*absorbed.cancelled_orders, *kept.cancelled_orders)))[-RECENT_ORDERS:],
        last_event_at={t: seen[t] for t in newest},
        event_ids=tuple(dict.fromkeys((*absorbed.event_ids, *kept.event_ids)))[-EVENT_IDS_KEPT:],
        counted=kept.counted | absorbed.counted,
    )


def refunds_in_full(aggregates: Aggregates, properties: Mapping[str, Any]) -> bool:
    """Whether this refund (not yet counted) leaves nothing of its order: only then is the sale undone.
    Unknown orders (older than the ones kept) count as partly refunded."""
    order_id = str(properties.get("order_id") or "")
    if order_id in aggregates.cancelled_orders:
        return True
    order = next((o for o in aggregates.recent_orders if o.order_id == order_id), None)
    return order is not None and money(properties.get("amount")) >= order.remaining


def product_key(line: Mapping[str, Any]) -> str | None:
    """How an order line names its product: product_id, else sku, else title."""
    for name in ("product_id", "sku", "title"):
        value = line.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def _line_categories(line: Mapping[str, Any]) -> list[str]:
    raw = line.get("categories", line.get("category", line.get("product_type")))
    if raw in (None, ""):
        return []
    values = raw if isinstance(raw, list) else [raw]
    return [str(v) for v in values if v not in (None, "")]


def _appended(kept: tuple[str, ...], new: Any, limit: int) -> tuple[str, ...]:
    values = list(kept)
    for value in new:
        if value in values:
            values.remove(value)
        values.append(value)
    return tuple(values[-limit:])


def money(raw: Any) -> Decimal:
    """A non-negative amount to the cent; anything unreadable counts as zero."""
    try:
        value = Decimal(str(raw)) if raw not in (None, "") else Decimal(0)
    except InvalidOperation:
        return Decimal("0.00")
    return value.quantize(CENT) if value.is_finite() and value >= 0 else Decimal("0.00")


def _latest(current: datetime | None, at: datetime) -> datetime:
    return at if current is None or at > current else current


def _either(pick: Any, a: datetime | None, b: datetime | None) -> datetime | None:
    """min or max of the two moments that are known; None if neither is."""
    known = [moment for moment in (a, b) if moment is not None]
    return pick(known) if known else None


def _earliest(current: datetime | None, at: datetime) -> datetime:
    return at if current is None or at < current else current


# Persistence shape: plain JSON, so any store can keep it in one attribute. --------------------------------


def to_record(aggregates: Aggregates) -> dict[str, Any]:
    """A JSON-safe dict (money as strings, times as ISO 8601)."""
    return {
        "orders_count": aggregates.orders_count,
        "total_spent": str(aggregates.total_spent),
        "first_order_at": _iso(aggregates.first_order_at),
        "last_order_at": _iso(aggregates.last_order_at),
        "last_activity_at": _iso(aggregates.last_activity_at),
        "last_open_at": _iso(aggregates.last_open_at),
        "last_click_at": _iso(aggregates.last_click_at),
        **({"engaged_hours": list(aggregates.engaged_hours)} if aggregates.engaged_hours else {}),
        "products": list(aggregates.products),
        "categories": list(aggregates.categories),
        "recent_orders": [
            [o.order_id, o.placed_at.isoformat(), str(o.total), *([str(o.refunded)] if o.refunded else [])]
            for o in aggregates.recent_orders
        ],
        **({"cancelled_orders": list(aggregates.cancelled_orders)} if aggregates.cancelled_orders else {}),
        "last_event_at": {k: v.isoformat() for k, v in aggregates.last_event_at.items()},
        "event_ids": list(aggregates.event_ids),
        # One string, 11 characters a digest: 217 orders take 2.4 KB of the contact item's 400 KB.
        "counted": base64.b64encode(b"".join(sorted(aggregates.counted))).decode("ascii"),
    }


def from_record(record: Mapping[str, Any] | None) -> Aggregates:
    """The inverse of to_record; an absent record is a contact with no history."""
    if not record:
        return Aggregates()
    return Aggregates(
        orders_count=int(record.get("orders_count", 0)),
        total_spent=Decimal(str(record.get("total_spent", "0.00"))),
        first_order_at=_time(record.get("first_order_at")),
        last_order_at=_time(record.get("last_order_at")),
        last_activity_at=_time(record.get("last_activity_at")),
        last_open_at=_time(record.get("last_open_at")),
        last_click_at=_time(record.get("last_click_at")),
        engaged_hours=tuple(int(h) for h in record.get("engaged_hours") or ()),
        products=tuple(record.get("products", ())),
        categories=tuple(record.get("categories", ())),
        recent_orders=tuple(
            OrderSummary(order_id, datetime.fromisoformat(at), Decimal(total), Decimal(rest[0] if rest else "0.00"))
            for order_id, at, total, *rest in record.get("recent_orders", ())
        ),
        cancelled_orders=tuple(record.get("cancelled_orders", ())),
        last_event_at={k: datetime.fromisoformat(v) for k, v in record.get("last_event_at", {}).items()},
        event_ids=tuple(record.get("event_ids", ())),
        counted=_digests(record.get("counted") or ""),
    )


def _digests(packed: str) -> frozenset[bytes]:
    raw = base64.b64decode(packed)
    return frozenset(raw[i : i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
