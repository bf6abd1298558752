"""Order history import on moto: the DynamoDB adapter keeps what the in-memory twin keeps; `nudge import orders`."""

from __future__ import annotations

import email
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from nudge.cli.main import app
from nudge.domain.model import MessageStatus, contact_id_for
from nudge.local.moto_stack import MotoStack
from nudge.services.order_import import BulkImporter, Format, backfill_orders, parse_orders
from tests.conftest import ROOT

SHOPIFY_EXPORT = ROOT / "tests" / "fixtures" / "orders" / "shopify_orders.csv"


def test_an_import_on_moto_keeps_aggregates_and_stages_and_sends_nothing(moto_stack: MotoStack) -> None:
    container = moto_stack.container
    parsed = parse_orders(SHOPIFY_EXPORT.read_text().splitlines(keepends=True), Format.SHOPIFY, moto_stack.clock.now())

    first = backfill_orders(container.ingest, parsed)
    again = backfill_orders(container.ingest, parsed)

    assert (first.orders_imported, first.adjustments, again.orders_imported, again.duplicates) == (7, 2, 0, 7)
    found = {
        email: container.store.get_contact(contact_id_for(external_id=None, email=email, phone=None))
        for email in ("dan@example.com", "eve@example.com", "fay@example.com")
    }
    assert {
        email: (c.aggregates.orders_count, c.aggregates.total_spent, c.stage, c.version)
        for email, c in found.items()
        if c is not None
    } == {
        "dan@example.com": (3, Decimal("167.00"), "vip", 3),
        "eve@example.com": (2, Decimal("66.00"), "lapsed", 3),
        "fay@example.com": (1, Decimal("73.00"), "first_time_buyer", 3),
    }
    assert moto_stack.sent_emails() == []
    # DynamoDB only: no schedule, no email, no SMS, no webhook.
    assert {service for service, _ in moto_stack.requests.counts} == {"dynamodb"}


def test_the_import_command_reports_counts_and_rejected_lines(tmp_path: Path) -> None:
    export = tmp_path / "orders.csv"
    export.write_text(SHOPIFY_EXPORT.read_text() + "#1008,nobody,2026-10-02 09:00:00 -0400,,1,Mug,18.00\n")

    result = CliRunner().invoke(app, ["import", "orders", str(export), "--local"])

    assert result.exit_code == 0, result.output
    assert (
        "rows read 12 · orders found 8 · imported 7 · duplicates skipped 0 · cancellations and refunds 2 · "
        "rows rejected 1" in result.output
    )
    assert "line 13: no valid email address or E.164 phone number ('nobody')" in result.output


def test_the_import_command_refuses_an_unknown_format() -> None:
    result = CliRunner().invoke(app, ["import", "orders", str(SHOPIFY_EXPORT), "--format", "woo"])

    assert result.exit_code == 2
    assert "--format is one of shopify, minimal, not 'woo'" in result.output


def test_imported_orders_feed_the_recommendations_a_review_request_shows(moto_stack: MotoStack) -> None:
    container = moto_stack.container
    parsed = parse_orders(SHOPIFY_EXPORT.read_text().splitlines(keepends=True), Format.SHOPIFY, moto_stack.clock.now())
    books = container.daily.copurchases

    imported = books.add_imported(backfill_orders(container.ingest, parsed).new_orders)
    again = books.add_imported(backfill_orders(container.ingest, parsed).new_orders)  # a re-import adds nothing

    # By hand from the fixture: 7 orders; the mug is in 4, the apron 3, towels 2, the board 2; bought together:
    # towels + apron twice, board + mug once, apron + mug once. Products are keyed by SKU (the export has no ids).
    assert (imported.orders, again.orders) == (7, 7)
    assert dict(again.products) == {"MUG-1": 4, "APR-1": 3, "BRD-1": 2, "TWL-3": 2}
    assert dict(again.pairs["APR-1"]) == {"TWL-3": 2, "MUG-1": 1}
    assert container.store.get_document("copurchases_imported") == container.store.get_document("copurchases")

    # Dan bought towels, apron and mug: what others bought with those and he has not is the bread board.
    dan = contact_id_for(external_id=None, email="dan@example.com", phone=None)
    fulfilled = {"order_id": "5400000007", "order_number": "#1007"}
    event = {"id": "ful_1", "type": "order_fulfilled", "contact": {"email": "dan@example.com"}, "properties": fulfilled}
    assert moto_stack.call_api("POST", "/v1/events", event).body["contact_id"] == dan
    moto_stack.pump.run_until(moto_stack.clock.now() + timedelta(days=8))

    [review] = [m for m in container.store.messages_for(dan) if m.step_id == "review_request"]
    assert review.status is MessageStatus.SENT
    mail = email.message_from_string(moto_stack.sent_emails()[-1].raw_data)
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in mail.walk() if not p.is_multipart()}  # type: ignore[union-attr]
    text, html = parts["text/plain"].replace("\r\n", "\n"), parts["text/html"]
    assert "You may also like:\n- Oak bread board: https://shop.example/search?q=Oak+bread+board&utm_" in text
    assert "You may also like" in html and "Oak bread board" in html and "Linen apron</a>" not in html


def test_the_daily_job_adds_live_orders_to_the_imported_history_once(moto_stack: MotoStack) -> None:
    container = moto_stack.container
    parsed = parse_orders(SHOPIFY_EXPORT.read_text().splitlines(keepends=True), Format.SHOPIFY, moto_stack.clock.now())
    container.daily.copurchases.add_imported(backfill_orders(container.ingest, parsed).new_orders)
    live = {"order_id": "w1", "total": 60, "lines": [{"title": "Oak bread board", "sku": "BRD-1"}, {"sku": "APR-1"}]}
    moto_stack.call_api(
        "POST",
        "/v1/events",
        {"id": "w1", "type": "order_placed", "contact": {"email": "gus@example.com"}, "properties": live},
    )

    first = container.daily.run()
    second = container.daily.run()

    # The 7 imported orders (their events are in the events table too, and are not counted twice) and the live one.
    assert (first.copurchase_orders, second.copurchase_orders) == (8, 8)
    table = container.store.get_document("copurchases")
    assert table is not None and table["pairs"]["BRD-1"] == {"MUG-1": 1, "APR-1": 1}
    assert container.store.get_document("copurchases_imported")["orders"] == 7  # type: ignore[index]


def test_a_re_import_after_the_events_expired_adds_nothing(moto_stack: MotoStack) -> None:
    # Given a first import, then every event record gone, as the 90-day TTL leaves the events table
    container = moto_stack.container
    parsed = parse_orders(SHOPIFY_EXPORT.read_text().splitlines(keepends=True), Format.SHOPIFY, moto_stack.clock.now())
    books = container.daily.copurchases
    books.add_imported(backfill_orders(container.ingest, parsed).new_orders)
    dan = contact_id_for(external_id=None, email="dan@example.com", phone=None)
    before = container.store.get_contact(dan)
    events = container.store.models.events  # type: ignore[attr-defined]
    for item in events.scan():
        item.delete()

    # When the same file is imported again
    again = backfill_orders(container.ingest, parsed)
    table = books.add_imported(again.new_orders)

    # Then nothing counts twice: not the orders, not the refund, not the co-purchase table
    assert (again.orders_imported, again.duplicates, again.adjustments) == (0, 7, 0)
    after = container.store.get_contact(dan)
    assert before is not None and after is not None
    assert (after.aggregates.orders_count, after.aggregates.total_spent) == (3, Decimal("167.00"))
    assert after.aggregates == before.aggregates
    assert table.orders == 7


def test_a_file_whose_every_row_is_rejected_fails_the_command(tmp_path: Path) -> None:
    export = tmp_path / "orders.csv"
    export.write_text(
        "order_id,email,created_at,total,currency,product_id,title,quantity,price\n"
        "1,ann@example.com,2025-03-04,10.00,USD,p1,Mug,1,10.00\n"
    )

    result = CliRunner().invoke(app, ["import", "orders", str(export), "--format", "minimal"])

    assert result.exit_code == 1, result.output
    assert "imported 0" in result.output
    assert "no valid order found; nothing was imported" in result.output


def test_the_bulk_import_on_moto_reads_and_writes_in_batches(moto_stack: MotoStack) -> None:
    # Given 60 orders of 20 customers in the minimal format
    c = moto_stack.container
    rows = ["order_id,email,created_at,total,currency,product_id,title,quantity,price\n"]
    rows += [
        f"o{n},c{n % 20}@example.com,2026-0{1 + n % 9}-0{1 + n % 9}T10:00:00Z,20,USD,p{n % 4},P,1,20\n"
        for n in range(60)
    ]
    importer = BulkImporter(
        ingest=c.ingest,
        store=c.store,
        batches=c.store,
        copurchases=c.daily.copurchases,
        clock=c.clock,  # type: ignore[arg-type]
    )
    moto_stack.requests.counts.clear()

    report = importer.run(rows, Format.MINIMAL, file_key="k")

    # Then one BatchGetItem and one TransactWriteItems carry the 20 contacts, and no event is recorded
    assert (report.orders_imported, sum(report.stages.values())) == (60, 20)
    ops = {op: n for (_, op), n in moto_stack.requests.counts.items()}
    assert (ops["BatchGetItem"], ops["TransactWriteItems"], ops.get("PutItem", 0), ops.get("BatchWriteItem", 0)) == (
        1,
        1,
        3,  # documents: the checkpoint (one chunk: once, done), the imported and the live co-purchase tables
        0,
    )
    stored = c.store.get_contact(contact_id_for(external_id=None, email="c0@example.com", phone=None))
    assert stored is not None and stored.aggregates.orders_count == 3
