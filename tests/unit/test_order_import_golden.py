"""The bulk import's result, pinned: contacts, aggregates, consent records, co-purchases and the report of a
varied generated history, byte for byte as recorded before the import was made faster (issue #15).

The file mixes what a shop's export holds: customers whose orders are spread over the file and out of time
order, several lines per order, same-second orders, cancellations, partial and full refunds, names and
phones that change, marketing consent given later, and rejected rows. Imported in small chunks so that a
customer's orders reach the store over many writes, as a chronological file's do.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from nudge.clocks import VirtualClock
from nudge.domain import aggregates
from nudge.domain import recommendations as recs
from nudge.local.simulation import Simulation
from nudge.services.order_import import BulkImporter, Format
from nudge.settings import Settings
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "fixtures" / "orders" / "bulk_import_golden.json"
# Few enough products that no one has more companions than the co-purchase table keeps (NEIGHBOURS_KEPT):
# within its bounds the table is exact, whatever the order in which the import counts the orders.
PRODUCTS = 9
HEADER = [
    "Name",
    "Email",
    "Financial Status",
    "Accepts Marketing",
    "Currency",
    "Subtotal",
    "Total",
    "Discount Code",
    "Created at",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem sku",
    "Billing Name",
    "Billing Phone",
    "Cancelled at",
    "Refunded Amount",
    "Id",
    "Phone",
]


def varied_export(orders: int = 400, customers: int = 30, seed: int = 15) -> str:
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    moments = sorted(start + timedelta(minutes=rng.randrange(0, 600 * 24 * 60)) for _ in range(orders))
    for n in range(orders):
        # Mostly in time order, every seventh order earlier than its neighbours; a few in the same second.
        at = moments[n] if n % 7 else moments[max(0, n - rng.randrange(1, 60))]
        customer = int(customers * rng.random() ** 2)
        email = f"C{customer}@Example.com" if n % 11 == 0 else f"c{customer}@example.com"
        lines = [
            (rng.randint(1, 3), f"Product {p}", f"{rng.randint(300, 9000) / 100:.2f}", f"SKU-{p}")
            for p in rng.sample(range(PRODUCTS), rng.randint(1, 3))
        ]
        total = sum(q * float(price) for q, _, price, _ in lines)
        status, cancelled, refunded = "paid", "", ""
        roll = rng.random()
        if roll < 0.05:
            cancelled = (at + timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S +0000")
        elif roll < 0.09:
            refunded = f"{total / 3:.2f}"
        elif roll < 0.11:
            status = "refunded"
        name = rng.choice(("Ann Lee", "Ann Lee-Park", "")) if customer % 3 == 0 else f"Customer {customer}"
        phone = f"+1415555{customer:04d}" if customer % 4 == 0 and n % 2 else ""
        marketing = "yes" if rng.random() < 0.3 else "no"
        offset = rng.choice(("+0000", "-0500", "+0100"))
        local = at.astimezone(datetime.strptime(offset, "%z").tzinfo)
        for i, (quantity, title, price, sku) in enumerate(lines):
            first = i == 0
            bad = n % 97 == 5 and i == len(lines) - 1  # a bad line takes its order out
            writer.writerow(
                (
                    f"#{1000 + n}",
                    email if first else "",
                    status if first else "",
                    marketing if first else "",
                    "USD" if first else "",
                    f"{total:.2f}" if first else "",
                    f"{total:.2f}" if first else "",
                    "WELCOME" if first and n % 13 == 0 else "",
                    local.strftime("%Y-%m-%d %H:%M:%S %z"),
                    "zero" if bad else quantity,
                    title,
                    price,
                    sku,
                    name if first else "",
                    phone if first else "",
                    cancelled if first else "",
                    refunded if first else "",
                    str(5_000_000 + n) if first else "",
                    "",
                )
            )
    return out.getvalue()


def snapshot(sim: Simulation, report: object) -> dict[str, object]:
    """Every stored fact, in a form that does not depend on hash order."""
    store = sim.store
    contacts = {}
    for cid, contact in sorted(store.contacts.items()):
        # The digests of counted orders are a set: to_record writes them sorted.
        # The version counts writes, which the chunk size decides; everything else is the history's.
        without = replace(contact, aggregates=None, version=0)  # type: ignore[arg-type]
        contacts[cid] = {"contact": repr(without), "aggregates": aggregates.to_record(contact.aggregates)}
    consents = {key: [repr(r) for r in records] for key, records in sorted(store.consents.items())}
    table = recs.from_record(store.get_document("copurchases"))
    fields = ("rows", "orders_found", "orders_imported", "duplicates", "adjustments", "rejected_rows", "stages")
    return {
        "contacts": contacts,
        "consents": consents,
        "copurchases": {
            "orders": table.orders,
            "products": dict(sorted(table.products.items())),
            "pairs": {k: dict(sorted(v.items())) for k, v in sorted(table.pairs.items())},
        },  # fmt: skip
        "report": {name: getattr(report, name) for name in fields},
        "rejected": [repr(r) for r in report.rejected],  # type: ignore[attr-defined]
    }


def imported(settings: Settings, clock: VirtualClock, chunk_orders: int) -> dict[str, object]:
    sim = Simulation(settings, clock)
    c = sim.container
    importer = BulkImporter(
        ingest=c.ingest, store=c.store, batches=c.store, copurchases=c.daily.copurchases, clock=c.clock,  # type: ignore[arg-type]
        workers=1, chunk_orders=chunk_orders,
    )  # fmt: skip
    report = importer.run(varied_export().splitlines(keepends=True), Format.SHOPIFY, file_key="golden")
    return json.loads(json.dumps(snapshot(sim, report), sort_keys=True, default=str))


def test_the_bulk_import_of_a_varied_history_is_what_it_was(settings: Settings, clock: VirtualClock) -> None:
    result = imported(settings, clock, chunk_orders=37)
    if os.environ.get("NUDGE_RECORD_GOLDEN") == "1":  # recorded once, before a change that must keep it
        GOLDEN.write_text(json.dumps(result, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    assert result == json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_the_result_does_not_depend_on_the_chunk_size(settings: Settings, clock: VirtualClock) -> None:
    assert imported(settings, clock, chunk_orders=1) == imported(settings, clock, chunk_orders=100_000)
