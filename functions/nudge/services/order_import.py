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
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from nudge.domain import recommendations as recs
from nudge.domain.aggregates import ORDER_CANCELLED, ORDER_PLACED, REFUND_CREATED
from nudge.domain.model import Contact, Event
from nudge.domain.suppression import ConsentRecord
from nudge.ports import Clock, ConflictError, ContactBatches, Store
from nudge.services.canonical import compact, contact_patch, line
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


def parse_orders(lines: Iterable[str], fmt: Format, now: datetime) -> ParsedOrders:
    """Read a whole export; bad rows are rejected with their line number, and so is the rest of their order."""
    columns = COLUMNS[fmt]
    reader = csv.reader(iter(lines))
    header = [name.strip().lstrip("\ufeff") for name in next(reader, [])]
    if missing := [name for name in columns.required() if name not in header]:
        raise ImportFormatError(f"not a {fmt.value} orders export: no column {', '.join(repr(m) for m in missing)}")
    groups: dict[str, list[_Row]] = {}
    parsed = ParsedOrders()
    start = reader.line_num + 1
    for cells in reader:
        row = _Row(start, {name: cells[i].strip() if i < len(cells) else "" for i, name in enumerate(header)})
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
    for key, rows in groups.items():
        parsed.orders += 1
        try:
            events = _order_events(fmt, columns, rows, now)
        except _BadRow as bad:
            parsed.rejected += _rejected_order(key, rows, bad)
            continue
        placed += [(event.occurred_at, rank, event) for rank, event in enumerate(events)]
    # Oldest first, so the newest order's profile (name, phone) is the one the contact keeps.
    parsed.events = [event for _, _, event in sorted(placed, key=lambda item: (item[0], item[1]))]
    parsed.rejected.sort(key=lambda r: r.line)
    return parsed


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


def _order_events(fmt: Format, columns: _Columns, rows: list[_Row], now: datetime) -> list[Event]:
    def first(column: str | None) -> tuple[str, int]:
        """The first filled value of an order-level column, and its line (the order's first row if none)."""
        for row in rows:
            if column and row.values.get(column):
                return row.values[column], row.line
        return "", rows[0].line

    order_id = next((value for name in columns.order_id if (value := first(name)[0])), "")
    raw_email, email_line = first(columns.email)
    opt = columns.optional
    phone = first(opt.get("phone"))[0] or first(opt.get("billing_phone"))[0]
    first_name, _, last_name = first(opt.get("billing_name"))[0].partition(" ")
    marketing = first(opt.get("accepts_marketing"))[0].lower()
    patch = contact_patch(
        email=raw_email,
        phone=phone,
        first_name=first_name,
        last_name=last_name,
        # As for a ticked checkout box: "yes" subscribes; "no" withdraws nothing given elsewhere.
        email_marketing=True if marketing in ("yes", "true") else None,
    )
    if patch is None:
        raise _BadRow(email_line, f"no valid email address or E.164 phone number ({raw_email!r})")
    created_at = _moment(*first(columns.created_at), columns.created_at, now)
    total = _amount(*first(columns.total), columns.total)
    lines = [_line(row, columns) for row in rows]
    currency = first(opt.get("currency"))[0]
    name = rows[0].values[columns.key]
    properties = compact(
        {
            "source": f"import:{fmt.value}",
            "order_id": order_id,
            # What the customer knows the order by: Shopify's `Name` (#1001); the minimal format has only its id.
            "order_number": name if fmt is Format.SHOPIFY else order_id,
            "lines": lines,
            "currency": currency[:3] or None,
            "total": float(total),
            "subtotal": _optional_amount(first(opt.get("subtotal")), "Subtotal"),
            "discount_codes": [code] if (code := first(opt.get("discount_code"))[0]) else None,
            "financial_status": first(opt.get("financial_status"))[0] or None,
            "fulfillment_status": first(opt.get("fulfillment_status"))[0] or None,
        }
    )
    event_id = f"{IMPORT_EVENT_PREFIX}{fmt.value}:{order_id}"
    events = [Event(event_id, ORDER_PLACED, patch, properties, created_at)]
    cancelled_at, cancelled_line = first(opt.get("cancelled_at"))
    if cancelled_at:
        moment = _moment(cancelled_at, cancelled_line, opt["cancelled_at"], now)
        about = {"source": properties["source"], "order_id": order_id}
        events.append(Event(f"{event_id}:cancelled", ORDER_CANCELLED, patch, about, max(moment, created_at)))
        return events  # the cancellation takes the whole order back; a refund on top would count twice
    refunded = _optional_amount(first(opt.get("refunded_amount")), "Refunded Amount")
    if refunded is None and first(opt.get("financial_status"))[0] == "refunded":
        refunded = float(total)
    if refunded:
        # The export does not say when the refund happened; the order's time is the earliest it can be.
        about = {"source": properties["source"], "order_id": order_id, "amount": refunded}
        events.append(Event(f"{event_id}:refund", REFUND_CREATED, patch, about, created_at))
    return events


def _line(row: _Row, columns: _Columns) -> dict[str, Any]:
    values = row.values
    title, sku = values[columns.title], values.get(columns.optional.get("sku", ""), "")
    if not (title or sku):
        raise _BadRow(row.line, f"a line item needs a {columns.title!r}")
    quantity = values[columns.quantity] or "1"
    if not quantity.isdigit() or int(quantity) < 1:
        raise _BadRow(row.line, f"{columns.quantity}: not a positive whole number ({quantity!r})")
    price = _amount(values[columns.price], row.line, columns.price)
    return line(
        title=title,
        quantity=int(quantity),
        price=str(price),
        product_id=values.get(columns.optional.get("product_id", "")),
        variant_id=None,
        sku=sku or None,
    )


def _moment(value: str, line_number: int, column: str, now: datetime) -> datetime:
    """Shopify writes `2025-03-04 10:15:00 -0500`; the minimal format ISO 8601. Either needs its UTC offset."""
    if not value:
        raise _BadRow(line_number, f"{column}: missing")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))  # fast (C), so tried first
    except ValueError:
        try:
            moment = datetime.strptime(value, "%Y-%m-%d %H:%M:%S %z")
        except ValueError:
            raise _BadRow(line_number, f"{column}: not a date and time ({value!r})") from None
    if moment.tzinfo is None:
        raise _BadRow(line_number, f"{column}: no UTC offset ({value!r})")
    if moment > now + MAX_FUTURE_SKEW:
        raise _BadRow(line_number, f"{column}: in the future ({value!r})")
    return moment.astimezone(UTC)


def _amount(value: str, line_number: int, column: str) -> Decimal:
    try:
        amount = Decimal(value.replace(",", "")) if value else Decimal("NaN")
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite() or amount < 0:
        raise _BadRow(line_number, f"{column}: not an amount ({value!r})")
    return amount


def _optional_amount(found: tuple[str, int], column: str) -> float | None:
    value, line_number = found
    return float(_amount(value, line_number, column)) if value else None


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


def stream_orders(lines: Iterable[str], fmt: Format, now: datetime, *, after_line: int = 0) -> Iterator[OrderRead]:
    """Read an export order by order, holding one order's rows at a time; rows up to `after_line` are skipped.

    An order's rows must be together, as both exports write them: rows of an order seen before (among the
    last RECENT_KEYS) are rejected with that reason rather than imported as a second, partial order.
    """
    columns = COLUMNS[fmt]
    reader = csv.reader(iter(lines))
    header = [name.strip().lstrip("\ufeff") for name in next(reader, [])]
    if missing := [name for name in columns.required() if name not in header]:
        raise ImportFormatError(f"not a {fmt.value} orders export: no column {', '.join(repr(m) for m in missing)}")
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
            read.events = _order_events(fmt, columns, group, now)
        except _BadRow as bad:
            read.rejected = _rejected_order(key, group, bad)
        return read

    for cells in reader:
        line_number, start = start, reader.line_num + 1
        if line_number <= after_line:
            continue
        row = _Row(line_number, {name: cells[i].strip() if i < len(cells) else "" for i, name in enumerate(header)})
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
    contacts_written: int = 0  # contact writes (a customer in several chunks counts in each)
    stages: dict[str, int] = field(default_factory=dict)  # customers of the file by lifecycle stage
    resumed_after_line: int = 0
    last_line: int = 0
    copurchase_orders: int = 0  # orders behind the recommendations table after the import
    products: int = 0

    def to_record(self) -> dict[str, Any]:
        """What a checkpoint keeps (not the rejected lines' reasons beyond their count)."""
        return {
            "rows": self.rows,
            "orders_found": self.orders_found,
            "orders_imported": self.orders_imported,
            "duplicates": self.duplicates,
            "adjustments": self.adjustments,
            "rejected_rows": self.rejected_rows,
            "contacts_written": self.contacts_written,
            "last_line": self.last_line,
        }


@dataclass(frozen=True, slots=True)
class ImportProgress:
    rows: int
    orders: int
    phase: str  # "orders", then "recommendations"


class BulkImporter:
    """`nudge import orders`: contacts, aggregates, stages and segments, without a flow, a message or an event.

    Per chunk of CHUNK_ORDERS orders: the customers' contacts are read 100 a BatchGetItem, each folded with
    all of its orders of the chunk (`IngestService.folded`), and written 100 a TransactWriteItems, each on
    the condition that its version has not moved (a live webhook meanwhile makes that group fall back to
    one conditional write per contact, re-read and re-folded). Reads and writes run on `workers` threads.
    Whether an order counts is the contact's own record (`Aggregates.counted`), so a re-import, or a chunk
    redone after a crash, adds nothing. After each chunk a checkpoint document names the last line done.
    """

    def __init__(
        self,
        *,
        ingest: IngestService,
        store: Store,
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
        saved = self._store.get_document(checkpoint)
        report = BulkImportReport()
        if saved and not saved.get("done"):
            for name, value in saved.items():
                if hasattr(report, name) and isinstance(value, int | float):
                    setattr(report, name, int(value))
            report.resumed_after_line = report.last_line
        stage_of: dict[str, str] = {}
        chunk: list[OrderRead] = []
        orders = 0
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            for read in stream_orders(lines, fmt, self._clock.now(), after_line=report.resumed_after_line):
                chunk.append(read)
                orders += bool(read.events)
                if orders >= self._chunk:
                    self._write_chunk(chunk, report, stage_of, pool)
                    self._store.put_document(checkpoint, report.to_record(), self._clock.now())
                    progress(ImportProgress(report.rows, report.orders_found, "orders"))
                    chunk, orders = [], 0
            self._write_chunk(chunk, report, stage_of, pool)
        progress(ImportProgress(report.rows, report.orders_found, "recommendations"))
        table = self._copurchases.recompute()
        report.copurchase_orders, report.products = table.orders, len(table.products)
        report.stages = dict(Counter(stage_of.values()))
        self._store.put_document(checkpoint, {**report.to_record(), "done": True}, self._clock.now())
        return report

    def _write_chunk(
        self, chunk: list[OrderRead], report: BulkImportReport, stage_of: dict[str, str], pool: ThreadPoolExecutor
    ) -> None:
        events_of: dict[str, list[Event]] = {}
        for read in chunk:
            report.rows += read.rows
            report.last_line = max(report.last_line, read.end_line)
            report.orders_found += read.is_order
            report.rejected_rows += len(read.rejected)
            room = REJECTIONS_KEPT - len(report.rejected)
            report.rejected += read.rejected[: max(0, room)]
            for event in read.events:
                events_of.setdefault(event.contact_id, []).append(event)
        if not events_of:
            return
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
