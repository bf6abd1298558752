"""Order history import: a CSV export of past orders as canonical events, backfilled without sending anything.

Two formats. `shopify` is Shopify's orders export (Orders → Export → CSV): one row per line item, grouped
by `Name`; the order-level columns are filled on the order's first row (later rows may leave them blank).
`minimal` is nudge's own: `order_id,email,created_at,total,currency,product_id,title,quantity,price`,
one row per line, order columns repeated or left blank after the first. Both become `order_placed` events
named `import:<format>:<order id>` at the order's own time, so importing the same file again changes
nothing; a cancelled order adds an `order_cancelled` event and a refunded one a `refund_created`.
"""

from __future__ import annotations

import csv
import functools
import gc
import marshal
import math
import operator
import tempfile
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import field, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, cast

from nudge.domain import recommendations as recs
from nudge.domain.aggregates import ORDER_CANCELLED, ORDER_PLACED, REFUND_CREATED
from nudge.domain.frozen import dataclass
from nudge.domain.model import Contact, ContactPatch, Event, evolve
from nudge.domain.suppression import ConsentRecord
from nudge.integrations.canonical import contact_patch, line
from nudge.ports import Clock, ConflictError, ContactBatches, Contacts, Documents
from nudge.services.consent import consent_changes
from nudge.services.ingest import IngestService
from nudge.services.recommendations import IMPORT_EVENT_PREFIX, CoPurchaseBook

# An order may carry a timestamp a little ahead of the importing machine's clock, never more.
MAX_FUTURE_SKEW = timedelta(minutes=5)


class Format(StrEnum):
    SHOPIFY = "shopify"
    MINIMAL = "minimal"


class ImportFormatError(ValueError):
    """The file cannot be read as this format at all (missing columns); nothing is imported."""


@dataclass(frozen=True, slots=True)
class _Columns:
    """Where each field lives in a format's header."""

    key: str  # groups the rows of one order
    order_id: tuple[str, ...]  # the first present and filled names the order (Shopify: Id, else Name)
    email: str
    created_at: str
    total: str
    title: str
    quantity: str
    price: str
    optional: Mapping[str, str]  # our name -> the format's column

    def required(self) -> tuple[str, ...]:
        return (self.key, self.email, self.created_at, self.total, self.title, self.quantity, self.price)

    def order_level(self) -> tuple[str, ...]:
        """The columns an order takes its first filled value of (the rest are read per line)."""
        return (*self.order_id, self.email, self.created_at, self.total, *self.optional.values())


_SHOPIFY = _Columns(
    key="Name",
    order_id=("Id", "Name"),
    email="Email",
    created_at="Created at",
    total="Total",
    title="Lineitem name",
    quantity="Lineitem quantity",
    price="Lineitem price",
    optional={
        "currency": "Currency",
        "subtotal": "Subtotal",
        "discount_code": "Discount Code",
        "financial_status": "Financial Status",
        "fulfillment_status": "Fulfillment Status",
        "paid_at": "Paid at",
        "cancelled_at": "Cancelled at",
        "refunded_amount": "Refunded Amount",
        "sku": "Lineitem sku",
        "billing_name": "Billing Name",
        "phone": "Phone",
        "billing_phone": "Billing Phone",
        "accepts_marketing": "Accepts Marketing",
    },
)
_MINIMAL = _Columns(
    key="order_id",
    order_id=("order_id",),
    email="email",
    created_at="created_at",
    total="total",
    title="title",
    quantity="quantity",
    price="price",
    optional={"currency": "currency", "product_id": "product_id"},
)
COLUMNS = {Format.SHOPIFY: _SHOPIFY, Format.MINIMAL: _MINIMAL}
_ORDER_LEVEL = {fmt: columns.order_level() for fmt, columns in COLUMNS.items()}


@dataclass(frozen=True, slots=True)
class _Optional:
    """A format's optional columns by our name (None: the format has no such column)."""

    currency: str | None = None
    subtotal: str | None = None
    discount_code: str | None = None
    financial_status: str | None = None
    fulfillment_status: str | None = None
    paid_at: str | None = None
    cancelled_at: str | None = None
    refunded_amount: str | None = None
    sku: str | None = None
    product_id: str | None = None
    billing_name: str | None = None
    phone: str | None = None
    billing_phone: str | None = None
    accepts_marketing: str | None = None


_OPTIONAL = {fmt: _Optional(**columns.optional) for fmt, columns in COLUMNS.items()}


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that was not imported: its line in the file (the header is line 1) and why."""

    line: int
    reason: str


@dataclass(slots=True)
class ParsedOrders:
    """What a file holds: events oldest first (each order before its cancellation or refund), and the rest."""

    events: list[Event] = field(default_factory=list)
    rows: int = 0
    orders: int = 0
    rejected: list[Rejected] = field(default_factory=list)


@dataclass(slots=True)
class _Row:
    line: int
    values: dict[str, str]


# A row's (or an order's) value by column name. A column the format lacks is named None, which no row holds:
# `get(None)` is None, read as "".
_Get = Callable[[str | None], str | None]


def _header(reader: Iterator[list[str]], fmt: Format, columns: _Columns) -> list[str]:
    """The export's column names; ImportFormatError unless it has the format's required columns."""
    header = [name.strip().lstrip("\ufeff") for name in next(reader, [])]
    if missing := [name for name in columns.required() if name not in header]:
        raise ImportFormatError(f"not a {fmt.value} orders export: no column {', '.join(repr(m) for m in missing)}")
    return header


def _row_of(line: int, header: list[str], cells: list[str]) -> _Row:
    """A CSV row by column name, its cells stripped; the columns a short row lacks are blank."""
    if len(cells) < len(header):
        cells += [""] * (len(header) - len(cells))
    return _Row(line, dict(zip(header, map(str.strip, cells), strict=False)))


def parse_orders(lines: Iterable[str], fmt: Format, now: datetime, *, email_consent: bool = False) -> ParsedOrders:
    """Read a whole export; bad rows are rejected with their line number, and so is the rest of their order.

    `email_consent`: every customer with an email address is taken to have given email consent (a backtest's
    `--assume-consent`), else only those whose order says so."""
    columns = COLUMNS[fmt]
    reader = csv.reader(iter(lines))
    header = _header(reader, fmt, columns)
    groups: dict[str, list[_Row]] = {}
    parsed = ParsedOrders()
    start = reader.line_num + 1
    for cells in reader:
        row = _row_of(start, header, cells)
        start = reader.line_num + 1
        if not any(row.values.values()):
            continue  # a blank line, as spreadsheets leave at the end
        parsed.rows += 1
        key = row.values[columns.key]
        if not key:
            parsed.rejected.append(Rejected(row.line, f"no {columns.key!r}: the row belongs to no order"))
            continue
        groups.setdefault(key, []).append(row)
    placed: list[tuple[datetime, int, Event]] = []
    # One contact patch per customer, for this file: its events hold them all anyway (the bounded cache of
    # `stream_orders` would make a customer's again for each order once the customers outnumber it).
    patch = functools.cache(_consenting if email_consent else _patch.__wrapped__)
    for key in list(groups):
        rows = groups.pop(key)  # in the file's order; each order's rows freed as it is read, for its events
        parsed.orders += 1
        try:
            events = _order_events(fmt, columns, rows, now, patch)
        except _BadRow as bad:
            parsed.rejected += _rejected_order(key, rows, bad)
            continue
        placed += [(event.occurred_at, rank, event) for rank, event in enumerate(events)]
    # Oldest first, so the newest order's profile (name, phone) is the one the contact keeps.
    placed.sort(key=_WHEN_AND_RANK)
    parsed.events = [event for _, _, event in placed]
    parsed.rejected.sort(key=lambda r: r.line)
    return parsed


_WHEN_AND_RANK = operator.itemgetter(0, 1)  # an event's time, then its place among its order's events


class _BadValue(Exception):
    """A value that cannot be read; the caller names the row it came from."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


class _BadRow(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def _rejected_order(key: str, rows: list[_Row], bad: _BadRow) -> list[Rejected]:
    """The bad line with its reason, and every other line of its order (a partial order would give wrong totals)."""
    others = [
        Rejected(r.line, f"order {key} was not imported: line {bad.line} is bad") for r in rows if r.line != bad.line
    ]
    return [Rejected(bad.line, bad.reason), *others]


def _order_events(
    fmt: Format,
    columns: _Columns,
    rows: list[_Row],
    now: datetime,
    patch_of: Callable[[str, str, str, str, bool | None], ContactPatch | None],
) -> list[Event]:
    # Each order-level column's first filled value: a one-row order (most orders) is its row; a longer one
    # takes the first filled value of each column over its rows. Lines are looked up only to reject a row.
    values = rows[0].values if len(rows) == 1 else _first_filled(rows, _ORDER_LEVEL[fmt])
    get = cast(_Get, values.get)
    opt = _OPTIONAL[fmt]
    order_id = ""
    for name in columns.order_id:
        if order_id := get(name) or "":
            break
    raw_email = get(columns.email) or ""  # a required column: always named
    phone = get(opt.phone) or get(opt.billing_phone) or ""
    first_name, _, last_name = (get(opt.billing_name) or "").partition(" ")
    marketing = (get(opt.accepts_marketing) or "").lower()
    # As for a ticked checkout box: "yes" subscribes; "no" withdraws nothing given elsewhere.
    patch = patch_of(raw_email, phone, first_name, last_name, True if marketing in ("yes", "true") else None)
    if patch is None:
        raise _BadRow(_line_of(rows, columns.email), f"no valid email address or E.164 phone number ({raw_email!r})")
    try:  # in the order the rows' faults are reported
        created_at = _moment(get(columns.created_at) or "", columns.created_at, now)
        total = _amount(get(columns.total) or "", columns.total)
        lines = [_line(row, columns) for row in rows]
        subtotal = _optional_amount(get(opt.subtotal) or "", opt.subtotal)
        cancelled_at = get(opt.cancelled_at)
        cancelled = _moment(cancelled_at, opt.cancelled_at or "", now) if cancelled_at else None
        refunded = None if cancelled else _optional_amount(get(opt.refunded_amount) or "", opt.refunded_amount)
    except _BadValue as bad:
        raise _BadRow(_line_of(rows, bad.column), bad.reason) from None
    source = _SOURCE[fmt]
    # The members that may be absent are added only when present (`compact`'s rule: a flow condition on a
    # property sees "missing" rather than null).
    properties: dict[str, Any] = {
        "source": source,
        "order_id": order_id,
        # What the customer knows the order by: Shopify's `Name` (#1001); the minimal format has only its id.
        "order_number": rows[0].values[columns.key] if fmt is Format.SHOPIFY else order_id,
        "lines": lines,
    }
    if currency := get(opt.currency):
        properties["currency"] = currency[:3]
    properties["total"] = total
    if subtotal is not None:
        properties["subtotal"] = subtotal
    if code := get(opt.discount_code):
        properties["discount_codes"] = [code]
    if financial_status := get(opt.financial_status) or "":
        properties["financial_status"] = financial_status
    if fulfillment_status := get(opt.fulfillment_status):
        properties["fulfillment_status"] = fulfillment_status
    event_id = _EVENT_ID_PREFIX[fmt] + order_id
    placed = Event(event_id, ORDER_PLACED, patch, properties, created_at)
    if cancelled is not None:
        about: dict[str, Any] = {"source": source, "order_id": order_id}
        cancel = Event(f"{event_id}:cancelled", ORDER_CANCELLED, patch, about, max(cancelled, created_at))
        return [placed, cancel]  # the cancellation takes the whole order back; a refund on top would count twice
    if refunded is None and financial_status == "refunded":
        refunded = total
    if refunded:
        # The export does not say when the refund happened; the order's time is the earliest it can be.
        about = {"source": source, "order_id": order_id, "amount": refunded}
        return [placed, Event(f"{event_id}:refund", REFUND_CREATED, patch, about, created_at)]
    return [placed]


def _line_of(rows: list[_Row], column: str | None) -> int:
    """The line a bad value came from: the first row with `column` filled, else the order's first."""
    return next((row.line for row in rows if column and row.values.get(column)), rows[0].line)


# What each format's events say they came from, and their ids' prefix (an enum's `value` is a property).
_SOURCE = {fmt: f"import:{fmt.value}" for fmt in Format}
_EVENT_ID_PREFIX = {fmt: f"{IMPORT_EVENT_PREFIX}{fmt.value}:" for fmt in Format}


def _first_filled(rows: list[_Row], names: tuple[str, ...]) -> dict[str, str]:
    """Each of `names`' first filled value over the rows (a column blank on every row is left out)."""
    filled: dict[str, str] = {}
    for row in rows:
        for name in names:
            if name not in filled and (found := row.values.get(name)):
                filled[name] = found
    return filled


def _line(row: _Row, columns: _Columns) -> dict[str, Any]:
    values = row.values
    title, sku = values[columns.title], values.get(columns.optional.get("sku", ""), "")
    if not (title or sku):
        raise _BadRow(row.line, f"a line item needs a {columns.title!r}")
    quantity = values[columns.quantity] or "1"
    if not quantity.isdigit() or int(quantity) < 1:
        raise _BadRow(row.line, f"{columns.quantity}: not a positive whole number ({quantity!r})")
    try:
        price = _amount(values[columns.price], columns.price)
    except _BadValue as bad:
        raise _BadRow(row.line, bad.reason) from None
    found = dict(_order_line(title, int(quantity), values.get(columns.optional.get("product_id", "")), sku))
    found["price"] = price  # as canonical.line reads it (a finite float)
    return found


def _consenting(
    email: str, phone: str, first_name: str, last_name: str, email_marketing: bool | None
) -> ContactPatch | None:
    """`_patch`, with email consent given where it has an email address."""
    found = _patch.__wrapped__(
        email, phone, first_name, last_name, True if email_marketing is None else email_marketing
    )
    if found is not None and found.email is None and email_marketing is None:
        return evolve(found, email_marketing=None)  # no address to consent with (rare: a phone alone)
    return found


# Pure; a customer's orders repeat it. Bounded (~300 bytes an entry, ~40 MB at most) for `stream_orders`,
# which holds one order at a time; `parse_orders` keeps its own, unbounded, for one file.
@functools.lru_cache(maxsize=1 << 17)
def _patch(
    email: str, phone: str, first_name: str, last_name: str, email_marketing: bool | None
) -> ContactPatch | None:
    return contact_patch(
        email=email, phone=phone, first_name=first_name, last_name=last_name, email_marketing=email_marketing
    )


@functools.lru_cache(maxsize=1 << 14)  # pure; a shop sells the same products again (callers copy the dict)
def _order_line(title: str, quantity: int, product_id: str | None, sku: str) -> dict[str, Any]:
    """The line without its price (prices vary more than products), which the caller sets."""
    return line(title=title, quantity=quantity, price=None, product_id=product_id, variant_id=None, sku=sku or None)


def _moment(value: str, column: str, now: datetime) -> datetime:
    """Shopify writes `2025-03-04 10:15:00 -0500`; the minimal format ISO 8601. Either needs its UTC offset."""
    if not value:
        raise _BadValue(column, f"{column}: missing")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))  # fast (C), so tried first
    except ValueError:
        try:
            moment = datetime.strptime(value, "%Y-%m-%d %H:%M:%S %z")
        except ValueError:
            raise _BadValue(column, f"{column}: not a date and time ({value!r})") from None
    if moment.tzinfo is None:
        raise _BadValue(column, f"{column}: no UTC offset ({value!r})")
    if moment > now + MAX_FUTURE_SKEW:
        raise _BadValue(column, f"{column}: in the future ({value!r})")
    return moment.astimezone(UTC)


def _amount(value: str, column: str) -> float:
    """A finite, non-negative amount (thousands separators allowed), as the float an event carries. Read as a
    float at once: the same float as reading it as a decimal and converting that (each is the nearest), in a
    third of the time; an amount too large for a float (1e400) is refused, not carried as infinity."""
    try:
        amount = float(value.replace(",", "")) if value else math.nan
    except ValueError:
        amount = math.nan
    if not math.isfinite(amount) or amount < 0:
        raise _BadValue(column, f"{column}: not an amount ({value!r})")
    return amount


def _optional_amount(value: str, column: str | None) -> float | None:
    return _amount(value, column or "") if value else None


@dataclass(slots=True)
class ImportReport:
    """What an import did. `duplicates` were imported before (same order id in the same format)."""

    rows: int
    orders_found: int
    orders_imported: int = 0
    duplicates: int = 0
    adjustments: int = 0  # cancellations and refunds applied
    rejected: list[Rejected] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)  # every contact an order of the file belongs to
    new_orders: list[list[dict[str, Any]]] = field(default_factory=list)  # the lines of each order imported


def backfill_orders(
    ingest: IngestService, parsed: ParsedOrders, progress: Callable[[int], None] = lambda done: None
) -> ImportReport:
    """Feed the events to `IngestService.backfill`: contacts, aggregates and segments; no flow, no message."""
    report = ImportReport(rows=parsed.rows, orders_found=parsed.orders, rejected=list(parsed.rejected))
    contacts: dict[str, None] = {}
    for done, event in enumerate(parsed.events, start=1):
        outcome = ingest.backfill(event)
        contacts[event.contact_id] = None
        if event.type == ORDER_PLACED:
            if outcome.duplicate:
                report.duplicates += 1
            else:
                report.orders_imported += 1
                report.new_orders.append(list(event.properties.get("lines") or ()))
        elif not outcome.duplicate:
            report.adjustments += 1
        progress(done)
    report.contacts = list(contacts)
    return report


# The bulk import: streamed, folded per customer, written in batches, resumable ----------------------------

CHUNK_ORDERS = 20_000  # orders read before their customers are read, folded and written (~30 MB)
RECENT_KEYS = 10_000  # order keys remembered to tell an order whose rows are not together in the file
REJECTIONS_KEPT = 1_000  # rejected rows listed in the report (all are counted)
WRITE_ATTEMPTS = 5


@dataclass(slots=True)
class OrderRead:
    """One order of a streamed file (its events), or the rows rejected with it; `end_line` its last line."""

    rows: int
    end_line: int
    events: list[Event] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    is_order: bool = True  # False for rows that belong to no order


def stream_orders(lines: Iterable[str], fmt: Format, now: datetime) -> Iterator[OrderRead]:
    """Read an export order by order, holding one order's rows at a time.

    An order's rows must be together, as both exports write them: rows of an order seen before (among the
    last RECENT_KEYS) are rejected with that reason rather than imported as a second, partial order.
    """
    columns = COLUMNS[fmt]
    reader = csv.reader(iter(lines))
    header = _header(reader, fmt, columns)
    recent: OrderedDict[str, int] = OrderedDict()
    group: list[_Row] = []
    start = reader.line_num + 1

    def finish() -> OrderRead:
        key, first_line = group[0].values[columns.key], group[0].line
        read = OrderRead(rows=len(group), end_line=group[-1].line)
        recent[key] = first_line
        if len(recent) > RECENT_KEYS:
            recent.popitem(last=False)
        try:
            read.events = _order_events(fmt, columns, group, now, _patch)
        except _BadRow as bad:
            read.rejected = _rejected_order(key, group, bad)
        return read

    for cells in reader:
        line_number, start = start, reader.line_num + 1
        row = _row_of(line_number, header, cells)
        if not any(row.values.values()):
            continue
        key = row.values[columns.key]
        if group and key != group[0].values[columns.key]:
            yield finish()
            group = []
        if not key:
            orphan = Rejected(row.line, f"no {columns.key!r}: the row belongs to no order")
            yield OrderRead(1, row.line, rejected=[orphan], is_order=False)
        elif not group and key in recent:
            reason = f"order {key} began at line {recent[key]}: an order's rows must be together (sort the file)"
            yield OrderRead(1, row.line, rejected=[Rejected(row.line, reason)], is_order=False)
        else:
            group.append(row)
    if group:
        yield finish()


@dataclass(slots=True)
class BulkImportReport:
    """What a bulk import did; `rejected` lists the first REJECTIONS_KEPT of `rejected_rows`."""

    rows: int = 0
    orders_found: int = 0
    orders_imported: int = 0
    duplicates: int = 0
    adjustments: int = 0  # cancellations and refunds applied
    rejected_rows: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    contacts_written: int = 0  # contact writes (a customer whose orders fill more than a chunk counts in each)
    stages: dict[str, int] = field(default_factory=dict)  # customers of the file by lifecycle stage
    groups: int = 0  # groups of customers written one after the other (each ends with a checkpoint)
    resumed_groups: int = 0  # groups a previous, interrupted run of the same file had written
    last_line: int = 0
    copurchase_orders: int = 0  # orders behind the recommendations table after the import
    products: int = 0

    def to_record(self) -> dict[str, Any]:
        """What a checkpoint keeps: what the groups written so far did (the file's own counts are re-read)."""
        return {
            "orders_imported": self.orders_imported,
            "duplicates": self.duplicates,
            "adjustments": self.adjustments,
            "contacts_written": self.contacts_written,
            "stages": dict(self.stages),
        }


@dataclass(frozen=True, slots=True)
class ImportProgress:
    rows: int
    orders: int
    phase: str  # "reading" (the file), "writing" (the customers, group by group), then "recommendations"
    share: float = 1.0  # of the phase done


class _Spill:
    """The first pass's output: each order's events, in files by a hash of the customer, in file order.

    A customer's orders all land in one bucket, so the second pass folds and writes each customer once
    (as long as a group of buckets fits a chunk), whatever the order of the file. Records are marshal'd
    tuples (plain values: no pickle, nothing executable), length-prefixed.
    """

    # Files open while reading (macOS allows 256 a process by default); a file of up to BUCKETS x chunk
    # orders (2.5 million) writes each customer once.
    BUCKETS = 128

    def __init__(self, directory: Path) -> None:
        self._paths = [directory / f"bucket-{n:03d}" for n in range(self.BUCKETS)]
        self._files = [path.open("wb", buffering=1 << 15) for path in self._paths]
        self.orders = [0] * self.BUCKETS
        self._ids: dict[tuple[str | None, ...], str] = {}  # a customer's id, by what derives it (bounded)

    def add(self, events: list[Event]) -> None:
        patch = events[0].contact
        who = (patch.external_id, patch.email, patch.phone)
        contact_id = self._ids.get(who)
        if contact_id is None:
            if len(self._ids) >= 1 << 17:
                self._ids.clear()
            contact_id = self._ids[who] = patch.contact_id
        record = marshal.dumps((contact_id, *(_event_record(event) for event in events)))
        bucket = zlib.crc32(contact_id.encode()) % self.BUCKETS
        self._files[bucket].write(len(record).to_bytes(4, "little") + record)
        self.orders[bucket] += 1

    def close(self) -> None:
        for file in self._files:
            file.close()

    def groups(self, chunk: int) -> list[list[int]]:
        """Consecutive buckets of at most `chunk` orders together (a bigger bucket alone)."""
        groups: list[list[int]] = [[]]
        held = 0
        for bucket, orders in enumerate(self.orders):
            if not orders:
                continue
            if groups[-1] and held + orders > chunk:
                groups.append([])
                held = 0
            groups[-1].append(bucket)
            held += orders
        return [group for group in groups if group]

    def read(self, group: list[int], chunk: int) -> Iterator[dict[str, list[Event]]]:
        """Each customer's events in file order, at most `chunk` orders at a time."""
        events_of: dict[str, list[Event]] = {}
        held = 0
        for bucket in group:
            data = self._paths[bucket].read_bytes()
            at = 0
            while at < len(data):
                size = int.from_bytes(data[at : at + 4], "little")
                contact_id, *records = marshal.loads(data[at + 4 : at + 4 + size])
                at += 4 + size
                events_of.setdefault(contact_id, []).extend(_event_from(record) for record in records)
                held += 1
                if held >= chunk:
                    yield events_of
                    events_of, held = {}, 0
        if events_of:
            yield events_of


_patch_values = operator.attrgetter(*(f.name for f in fields(ContactPatch)))


def _event_record(event: Event) -> tuple[Any, ...]:
    return (event.event_id, event.type, _patch_values(event.contact), event.properties, event.occurred_at.isoformat())


def _event_from(record: tuple[Any, ...]) -> Event:
    event_id, event_type, patch, properties, occurred_at = record
    return Event(event_id, event_type, _patch_from(patch), properties, datetime.fromisoformat(occurred_at))


_PATCHES: dict[tuple[Any, ...], ContactPatch] = {}


def _patch_from(values: tuple[Any, ...]) -> ContactPatch:
    """The patch these values make; the same object for a customer's every order (patches are immutable,
    and an imported order's carry no properties: those that do are built each time)."""
    if values[-1]:
        return ContactPatch(*values)
    found = _PATCHES.get(values[:-1])
    if found is None:
        if len(_PATCHES) >= 1 << 14:
            _PATCHES.clear()
        found = _PATCHES[values[:-1]] = ContactPatch(*values)
    return found


@contextmanager
def _collected_by_group() -> Iterator[None]:
    """The import allocates millions of short-lived objects and no reference cycles (none were left to
    collect after 100,000 orders): the cyclic collector, run every 700 allocations by default, only walked
    the growing heap, up to a third of the CPU time. It is off during the import; the import collects the
    young generations itself after each chunk of orders read and each group written (`gc.collect(1)`, what
    a cycle created since would need), and what existed before is set aside (`gc.freeze`)."""
    enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()


class ImportStore(Contacts, Documents, Protocol):
    """What a bulk import reads and writes beside its batches: one contact at a time on a conflict, and its
    checkpoint document."""


class BulkImporter:
    """`nudge import orders`: contacts, aggregates, stages and segments, without a flow, a message or an event.

    Two passes. The first reads the file, checks every row and spills each order's events to temporary
    files by a hash of the customer (`_Spill`), so memory does not grow with the file. The second takes the
    customers group by group (at most CHUNK_ORDERS orders a group): their contacts are read 100 a
    BatchGetItem, each folded with *all* of its orders of the file (`IngestService.folded`), and written 100
    a TransactWriteItems, each on the condition that its version has not moved (a live webhook meanwhile
    makes that group fall back to one conditional write per contact, re-read and re-folded). A customer is
    written once, however their orders are spread over the file. Reads and writes run on `workers`
    threads. Whether an order counts is the contact's own record (`Aggregates.counted`), so a re-import, or
    a group redone after a crash, adds nothing. After each group a checkpoint document says how many
    groups are done; a rerun of the same file reads it again and resumes after them.
    """

    def __init__(
        self,
        *,
        ingest: IngestService,
        store: ImportStore,
        batches: ContactBatches,
        copurchases: CoPurchaseBook,
        clock: Clock,
        workers: int = 8,
        chunk_orders: int = CHUNK_ORDERS,
    ) -> None:
        self._ingest = ingest
        self._store = store
        self._batches = batches
        self._copurchases = copurchases
        self._clock = clock
        self._workers = workers
        self._chunk = chunk_orders

    def run(
        self,
        lines: Iterable[str],
        fmt: Format,
        *,
        file_key: str,
        progress: Callable[[ImportProgress], None] = lambda p: None,
    ) -> BulkImportReport:
        """Import the file; resume after the last checkpoint of the same file (`file_key`: its content hash)."""
        checkpoint = f"import:{fmt.value}:{file_key}"
        report = BulkImportReport()
        with tempfile.TemporaryDirectory(prefix="nudge-import-") as directory, _collected_by_group():
            spill = _Spill(Path(directory))
            try:
                for read in stream_orders(lines, fmt, self._clock.now()):
                    self._count(read, report)
                    if read.events:
                        spill.add(read.events)
                        if report.orders_found % self._chunk == 0:
                            gc.collect(1)
                            progress(ImportProgress(report.rows, report.orders_found, "reading", 0.0))
            finally:
                spill.close()
            groups = spill.groups(self._chunk)
            report.groups = len(groups)
            saved = self._store.get_document(checkpoint)
            if saved and not saved.get("done") and saved.get("groups") == len(groups):
                # The same file in the same groups: what the groups written before did, and go on after them.
                for name in ("orders_imported", "duplicates", "adjustments", "contacts_written"):
                    setattr(report, name, int(saved.get(name) or 0))
                report.stages = {stage: int(n) for stage, n in (saved.get("stages") or {}).items()}
                report.resumed_groups = int(saved.get("groups_done") or 0)
            with ThreadPoolExecutor(max_workers=self._workers) as pool:
                for done, group in enumerate(groups, start=1):
                    if done <= report.resumed_groups:
                        continue
                    stage_of: dict[str, str] = {}  # a customer's orders are all in one group
                    for events_of in spill.read(group, self._chunk):
                        self._write_contacts(events_of, report, stage_of, pool)
                    report.stages = dict(Counter(report.stages) + Counter(stage_of.values()))
                    gc.collect(1)
                    if done < len(groups):  # after the last, the final record below
                        record = {**report.to_record(), "groups": len(groups), "groups_done": done}
                        self._store.put_document(checkpoint, record, self._clock.now())
                    progress(ImportProgress(report.rows, report.orders_found, "writing", done / len(groups)))
        progress(ImportProgress(report.rows, report.orders_found, "recommendations"))
        table = self._copurchases.recompute()
        report.copurchase_orders, report.products = table.orders, len(table.products)
        record = {**report.to_record(), "groups": len(groups), "groups_done": len(groups), "done": True}
        self._store.put_document(checkpoint, record, self._clock.now())
        return report

    @staticmethod
    def _count(read: OrderRead, report: BulkImportReport) -> None:
        report.rows += read.rows
        report.last_line = max(report.last_line, read.end_line)
        report.orders_found += read.is_order
        report.rejected_rows += len(read.rejected)
        room = REJECTIONS_KEPT - len(report.rejected)
        report.rejected += read.rejected[: max(0, room)]

    def _write_contacts(
        self,
        events_of: dict[str, list[Event]],
        report: BulkImportReport,
        stage_of: dict[str, str],
        pool: ThreadPoolExecutor,
    ) -> None:
        """Read, fold and write these customers with their events (each contact's events in file order)."""
        ids = list(events_of)
        stored: dict[str, Contact] = {}
        for found in pool.map(self._batches.get_contacts, _groups(ids, 100)):
            stored.update(found)
        folded = {cid: self._ingest.folded(stored.get(cid), cid, events_of[cid]) for cid in ids}
        changed = [cid for cid in ids if folded[cid][0] != stored.get(cid)]
        retry: list[str] = []
        for group, ok in zip(
            _groups(changed, 100), pool.map(lambda g: self._save(g, stored, folded), _groups(changed, 100)), strict=True
        ):
            if not ok:
                retry += group
        for cid in retry:  # re-read: the consent records compare with what was stored at the write
            before, written, fresh = self._save_one(cid, events_of[cid])
            folded[cid] = (written, fresh)
            if before is not None:
                stored[cid] = before
        consents: list[ConsentRecord] = []
        new_orders: list[list[dict[str, Any]]] = []
        for cid in ids:
            contact, fresh = folded[cid]
            consents += consent_changes(stored.get(cid), contact, "import:orders", self._clock.now())
            stage_of[cid] = contact.stage or "subscriber"
            for event, new in zip(events_of[cid], fresh, strict=True):
                if event.type == ORDER_PLACED:
                    report.orders_imported += new
                    report.duplicates += not new
                    if new:
                        new_orders.append(list(event.properties.get("lines") or ()))
                else:
                    report.adjustments += new
        report.contacts_written += len(changed)
        for group in _groups(consents, 25):
            self._batches.record_consents(group)
        if new_orders:
            self._copurchases.fold_imported(recs.from_orders(new_orders))

    def _save(
        self, group: list[str], stored: dict[str, Contact], folded: dict[str, tuple[Contact, list[bool]]]
    ) -> bool:
        """One transaction for these contacts; False if a version moved (the caller redoes them one by one)."""
        try:
            self._batches.save_contacts(
                [(folded[cid][0], stored[cid].version if cid in stored else 0) for cid in group]
            )
        except ConflictError:
            return False
        return True

    def _save_one(self, contact_id: str, events: list[Event]) -> tuple[Contact | None, Contact, list[bool]]:
        """Read, fold and write one contact on the condition of its version, as often as a live writer races it.

        Returns what was stored before the write, the contact written, and which events counted.
        """
        for _ in range(WRITE_ATTEMPTS):
            stored = self._store.get_contact(contact_id)
            contact, fresh = self._ingest.folded(stored, contact_id, events)
            if contact == stored:
                return stored, contact, fresh
            try:
                return stored, self._store.save_contact(contact, stored.version if stored else 0), fresh
            except ConflictError:
                continue
        raise ConflictError(f"contact {contact_id} kept changing; gave up after {WRITE_ATTEMPTS} tries")


def _groups(items: Sequence[Any], size: int) -> list[Any]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
