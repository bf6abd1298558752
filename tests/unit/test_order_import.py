"""Order history import: a Shopify export backfills contacts, aggregates and stages; it sends nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from nudge.clocks import VirtualClock
from nudge.domain.model import ContactPatch, Event, contact_id_for
from nudge.local.simulation import Simulation
from nudge.services.order_import import (
    BulkImporter,
    Format,
    ImportFormatError,
    ImportProgress,
    Rejected,
    backfill_orders,
    parse_orders,
)
from nudge.settings import Settings
from tests.conftest import ROOT, START

SHOPIFY_EXPORT = ROOT / "tests" / "fixtures" / "orders" / "shopify_orders.csv"


@pytest.fixture
def sim(settings: Settings, clock: VirtualClock) -> Simulation:
    return Simulation(settings, clock)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def import_file(sim: Simulation, text: str, fmt: Format = Format.SHOPIFY):  # type: ignore[no-untyped-def]
    return backfill_orders(sim.container.ingest, parse_orders(text.splitlines(keepends=True), fmt, sim.clock.now()))


def summary(sim: Simulation, email: str) -> tuple[object, ...]:
    stored = sim.store.contacts[contact_id_for(external_id=None, email=email, phone=None)]
    a = stored.aggregates
    return (a.orders_count, a.total_spent, a.aov, a.first_order_at, a.last_order_at, a.products, stored.stage)


def test_a_shopify_export_reproduces_the_hand_computed_aggregates_and_stages(sim: Simulation) -> None:
    report = import_file(sim, SHOPIFY_EXPORT.read_text())

    assert (report.rows, report.orders_found, report.orders_imported, report.duplicates) == (11, 7, 7, 0)
    assert (report.adjustments, report.rejected) == (2, [])  # Fay's cancellation, Eve's refund
    # Dan: #1001 83.00 (apron, 2 mugs), #1004 18.00 (mug), #1007 66.00 (towels, apron): a third order is VIP.
    assert summary(sim, "dan@example.com") == (
        3,
        Decimal("167.00"),
        Decimal("55.67"),
        utc("2026-03-10T15:00:00"),
        utc("2026-10-01T16:00:00"),
        ("MUG-1", "TWL-3", "APR-1"),
        "vip",
    )
    # Eve: #1002 66.00, #1005 55.00 refunded in full; the last order 110 days before now: lapsed.
    assert summary(sim, "eve@example.com") == (
        2,
        Decimal("66.00"),
        Decimal("33.00"),
        utc("2026-04-02T12:00:00"),
        utc("2026-07-15T06:00:00"),
        ("APR-1", "TWL-3", "BRD-1"),
        "lapsed",
    )
    # Fay: #1003 cancelled the same day takes nothing; #1006 73.00 51 days ago: a first-time buyer.
    assert summary(sim, "fay@example.com") == (
        1,
        Decimal("73.00"),
        Decimal("73.00"),
        utc("2026-09-12T17:00:00"),
        utc("2026-09-12T17:00:00"),
        ("BRD-1", "MUG-1"),
        "first_time_buyer",
    )


def test_the_profile_comes_from_the_orders(sim: Simulation) -> None:
    import_file(sim, SHOPIFY_EXPORT.read_text())

    dan = sim.store.contacts[contact_id_for(external_id=None, email="dan@example.com", phone=None)]
    fay = sim.store.contacts[contact_id_for(external_id=None, email="fay@example.com", phone=None)]
    eve = sim.store.contacts[contact_id_for(external_id=None, email="eve@example.com", phone=None)]
    assert (dan.first_name, dan.last_name, dan.email_marketing) == ("Dan", "Ortiz", True)
    assert (fay.phone, fay.email_marketing) == ("+14155550142", None)  # "no" withdraws nothing
    # Lapsed is the last stage; what still turns with time is big_spenders' "ordered within 180 days".
    assert eve.review_at == utc("2026-07-15T06:00:00") + timedelta(days=180)


def test_an_import_starts_no_flow_and_sends_nothing(sim: Simulation) -> None:
    import_file(sim, SHOPIFY_EXPORT.read_text())
    sim.run_until(START.replace(year=2027))

    assert sim.store.runs == {}
    assert sim.scheduler.created == 0
    assert (sim.mailer.sent, sim.texter.sent, sim.store.messages) == ([], [], {})


def test_a_second_import_of_the_same_file_changes_nothing(sim: Simulation) -> None:
    import_file(sim, SHOPIFY_EXPORT.read_text())
    before = dict(sim.store.contacts)

    again = import_file(sim, SHOPIFY_EXPORT.read_text())

    assert (again.orders_imported, again.duplicates, again.adjustments) == (0, 7, 0)
    assert sim.store.contacts == before  # not even a version bump


HEADER = "Name,Email,Created at,Total,Lineitem quantity,Lineitem name,Lineitem price,Id\n"


def test_bad_rows_are_reported_with_their_line_and_their_order_is_left_out(sim: Simulation) -> None:
    text = (
        HEADER
        + "#1,ann@example.com,2026-10-01 12:00:00 -0400,10.00,1,Mug,10.00,1\n"  # line 2: fine
        + "#2,not-an-address,2026-10-02 12:00:00 -0400,10.00,1,Mug,10.00,2\n"  # line 3
        + "#3,bo@example.com,yesterday,10.00,1,Mug,10.00,3\n"  # line 4
        + "#4,bo@example.com,2026-10-04 12:00:00 -0400,ten,1,Mug,10.00,4\n"  # line 5
        + "#5,bo@example.com,2026-10-05 12:00:00 -0400,30.00,1,Mug,10.00,5\n"  # line 6
        + "#5,bo@example.com,2026-10-05 12:00:00 -0400,,-2,Bowl,10.00,\n"  # line 7: its order goes too
        + ",bo@example.com,2026-10-06 12:00:00 -0400,10.00,1,Mug,10.00,6\n"  # line 8
        + "#7,bo@example.com,2027-01-01 12:00:00 -0400,10.00,1,Mug,10.00,7\n"  # line 9
        + "\n"
    )

    report = import_file(sim, text)

    assert (report.rows, report.orders_found, report.orders_imported) == (8, 6, 1)
    assert report.rejected == [
        Rejected(3, "no valid email address or E.164 phone number ('not-an-address')"),
        Rejected(4, "Created at: not a date and time ('yesterday')"),
        Rejected(5, "Total: not an amount ('ten')"),
        Rejected(6, "order #5 was not imported: line 7 is bad"),
        Rejected(7, "Lineitem quantity: not a positive whole number ('-2')"),
        Rejected(8, "no 'Name': the row belongs to no order"),
        Rejected(9, "Created at: in the future ('2027-01-01 12:00:00 -0400')"),
    ]
    assert [c.email for c in sim.store.contacts.values()] == ["ann@example.com"]


def test_a_file_without_the_format_columns_is_refused_whole() -> None:
    with pytest.raises(ImportFormatError, match="not a shopify orders export: no column 'Email', 'Total'"):
        parse_orders(["Name,Created at,Lineitem quantity,Lineitem name,Lineitem price\n"], Format.SHOPIFY, START)


def test_the_minimal_format_names_products_by_id_and_needs_an_offset() -> None:
    text = (
        "order_id,email,created_at,total,currency,product_id,title,quantity,price\n"
        "A-1,ann@example.com,2026-10-01T10:00:00Z,30.00,EUR,p_mug,Mug,2,10.00\n"
        "A-1,,,,,p_bowl,Bowl,1,10.00\n"
        "A-2,ann@example.com,2026-10-02T10:00:00,10.00,EUR,p_mug,Mug,1,10.00\n"
    )

    parsed = parse_orders(text.splitlines(keepends=True), Format.MINIMAL, START)

    [event] = parsed.events
    assert (event.event_id, event.type, event.occurred_at) == (
        "import:minimal:A-1",
        "order_placed",
        utc("2026-10-01T10:00:00"),
    )
    assert event.properties == {
        "source": "import:minimal",
        "order_id": "A-1",
        "order_number": "A-1",  # the templates show it
        "lines": [
            {"title": "Mug", "quantity": 2, "price": 10.0, "product_id": "p_mug", "variant_id": None, "sku": None},
            {"title": "Bowl", "quantity": 1, "price": 10.0, "product_id": "p_bowl", "variant_id": None, "sku": None},
        ],
        "currency": "EUR",
        "total": 30.0,
    }
    assert parsed.rejected == [Rejected(4, "created_at: no UTC offset ('2026-10-02T10:00:00')")]


@pytest.mark.parametrize(
    ("amount", "read"),
    [
        ("1,234.57", 1234.57),
        ("0.1", 0.1),
        ("19.999999999999999999", 20.0),  # to the nearest float, as by way of a decimal
        ("1_000", 1000.0),
        ("-0", -0.0),
        ("-5", "total: not an amount ('-5')"),
        ("NaN", "total: not an amount ('NaN')"),
        ("inf", "total: not an amount ('inf')"),
        ("1e400", "total: not an amount ('1e400')"),  # no float holds it: refused, not carried as infinity
        ("ten", "total: not an amount ('ten')"),
    ],
)
def test_an_amount_is_the_nearest_float_to_the_decimal_written(amount: str, read: float | str) -> None:
    text = (
        "order_id,email,created_at,total,currency,product_id,title,quantity,price\n"
        f'A-1,ann@example.com,2026-10-01T10:00:00Z,"{amount}",EUR,p_mug,Mug,1,10.00\n'
    )

    parsed = parse_orders(text.splitlines(keepends=True), Format.MINIMAL, START)

    if isinstance(read, str):
        assert (parsed.events, parsed.rejected) == ([], [Rejected(2, read)])
    else:
        [event] = parsed.events
        total = event.properties["total"]
        assert total == read == float(Decimal(amount.replace(",", ""))) and str(total) == str(read)


@pytest.mark.parametrize("email_consent", [False, True])
def test_a_customers_orders_share_one_profile_and_assumed_consent_is_for_email_addresses(email_consent: bool) -> None:
    text = (
        "Name,Email,Created at,Total,Lineitem quantity,Lineitem name,Lineitem price,Id,Accepts Marketing,Phone\n"
        "#1,ann@example.com,2026-10-01 10:00:00 +0000,10.00,1,Mug,10.00,1,no,\n"
        "#2,ann@example.com,2026-10-02 10:00:00 +0000,10.00,1,Mug,10.00,2,no,\n"
        "#3,bob@example.com,2026-10-03 10:00:00 +0000,10.00,1,Mug,10.00,3,yes,\n"
        "#4,,2026-10-04 10:00:00 +0000,10.00,1,Mug,10.00,4,no,+14155550100\n"
    )

    ann1, ann2, bob, phone_only = parse_orders(
        text.splitlines(keepends=True), Format.SHOPIFY, START, email_consent=email_consent
    ).events

    # One patch for Ann's two orders (parsed once, held once)
    assert ann1.contact is ann2.contact
    # Assumed consent gives it to an email address the export says nothing of; "yes" is consent anyway,
    # and a customer known by a phone number alone gets no email consent
    assert [e.contact.email_marketing for e in (ann1, bob, phone_only)] == [True if email_consent else None, True, None]


def test_backfill_counts_the_order_where_ingest_would_thank_the_customer(sim: Simulation) -> None:
    def order(event_id: str, email: str) -> Event:
        properties = {"order_id": event_id, "order_number": "#9", "total": 20.0, "lines": []}
        return Event(event_id, "order_placed", ContactPatch(email=email, email_marketing=True), properties, START)

    backfilled = sim.container.ingest.backfill(order("o-old", "ann@example.com"))
    live = sim.container.ingest.ingest(order("o-new", "bo@example.com"))
    redelivered = sim.container.ingest.ingest(order("o-old", "ann@example.com"))
    sim.settle()  # the worker does what the events queued

    assert (backfilled.started, backfilled.entered, backfilled.left) == ([], ["first_time_buyer"], [])
    assert "post_purchase" in live.started
    assert redelivered.duplicate  # the backfilled event is processed: a live copy of it starts nothing
    assert [e.to for _, e in sim.mailer.sent] == ["bo@example.com"]


def bulk(sim: Simulation, **options: object) -> BulkImporter:
    c = sim.container
    return BulkImporter(
        ingest=c.ingest, store=c.store, batches=c.store, copurchases=c.daily.copurchases, clock=c.clock, **options
    )  # type: ignore[arg-type]


def stored_view(sim: Simulation) -> dict[str, tuple[object, ...]]:
    return {
        c.email or "": (c.aggregates.orders_count, c.aggregates.total_spent, c.stage, c.first_name, c.phone)
        for c in sim.store.contacts.values()
    }


def test_the_bulk_import_keeps_what_the_event_path_keeps_and_a_re_import_adds_nothing(
    settings: Settings, clock: VirtualClock
) -> None:
    # Given the same export imported event by event into one shop and in bulk into another
    lines = SHOPIFY_EXPORT.read_text().splitlines(keepends=True)
    by_event, in_bulk = Simulation(settings, clock), Simulation(settings, clock)
    import_file(by_event, "".join(lines))

    first = bulk(in_bulk, chunk_orders=2).run(lines, Format.SHOPIFY, file_key="k")
    written = {cid: contact.updated_at for cid, contact in in_bulk.store.contacts.items()}
    clock.advance(timedelta(minutes=5))  # the same file again a little later: nothing in it is new
    again = bulk(in_bulk).run(lines, Format.SHOPIFY, file_key="k")

    # Then contacts agree field for field, and the second run counts duplicates only and writes nobody
    assert {cid: contact.updated_at for cid, contact in in_bulk.store.contacts.items()} == written
    assert stored_view(in_bulk) == stored_view(by_event)
    assert (first.rows, first.orders_found, first.orders_imported, first.adjustments) == (11, 7, 7, 2)
    assert (again.orders_imported, again.duplicates, again.adjustments, again.contacts_written) == (0, 7, 0, 0)
    assert first.stages == {"vip": 1, "lapsed": 1, "first_time_buyer": 1} and first.products == 4
    assert in_bulk.store.events == {}  # no event records: imported orders are not rescanned daily


def test_an_interrupted_bulk_import_resumes_after_its_checkpoint(settings: Settings, clock: VirtualClock) -> None:
    lines = SHOPIFY_EXPORT.read_text().splitlines(keepends=True)
    sim = Simulation(settings, clock)

    class Crash(Exception):
        pass

    def crash_after_first_group(progress: ImportProgress) -> None:
        if progress.phase == "writing":
            raise Crash

    with pytest.raises(Crash):
        bulk(sim, chunk_orders=1).run(lines, Format.SHOPIFY, file_key="k", progress=crash_after_first_group)
    resumed = bulk(sim, chunk_orders=1).run(lines, Format.SHOPIFY, file_key="k")

    # Then the second run goes on after the group written, and reports the whole import
    assert (resumed.resumed_groups, resumed.groups) == (1, 3)  # a group per customer at one order a chunk
    assert (resumed.rows, resumed.orders_found, resumed.orders_imported, resumed.duplicates) == (11, 7, 7, 0)
    assert resumed.stages == {"vip": 1, "lapsed": 1, "first_time_buyer": 1}
    assert sim.store.get_document("import:shopify:k")["done"] is True  # type: ignore[index]


def test_a_live_write_during_the_bulk_import_is_kept(settings: Settings, clock: VirtualClock) -> None:
    # Given a store whose first transaction finds a version moved, as when a webhook lands mid-import
    lines = SHOPIFY_EXPORT.read_text().splitlines(keepends=True)
    sim = Simulation(settings, clock)
    store = sim.store
    real = store.save_contacts
    dan = contact_id_for(external_id=None, email="dan@example.com", phone=None)

    def racing(contacts):  # type: ignore[no-untyped-def]
        store.save_contacts = real  # type: ignore[method-assign]
        sim.send({"id": "live1", "type": "order_placed", "contact": {"email": "dan@example.com"},
                  "properties": {"order_id": "live-1", "total": 10}})  # fmt: skip
        return real(contacts)

    store.save_contacts = racing  # type: ignore[method-assign]

    report = bulk(sim).run(lines, Format.SHOPIFY, file_key="k")

    # Then the import's orders and the live one all count
    assert report.orders_imported == 7
    assert store.contacts[dan].aggregates.orders_count == 4
    assert store.contacts[dan].aggregates.total_spent == Decimal("177.00")


def test_the_import_command_runs_in_memory_and_logs_progress_off_a_terminal() -> None:
    from typer.testing import CliRunner

    from nudge.cli.main import app

    result = CliRunner().invoke(app, ["import", "orders", str(SHOPIFY_EXPORT), "--to", "memory"])

    assert result.exit_code == 0, result.output
    assert "into memory (dry run)" in result.output
    assert "imported 7 · duplicates skipped 0 · cancellations and refunds 2 · rows rejected 0" in result.output
    assert "import: recommendations: 11 rows, 7 orders (100%" in result.output  # a log line, not a bar


def test_the_import_benchmark_imports_a_generated_file_and_says_what_it_cost(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nudge.local import import_bench

    lines = list(import_bench.bench(300, 30, tmp_path, targets=("memory",)))

    assert lines[0].startswith("order import: a generated file of 300 one-line orders of up to 30 customers")
    assert "rows per CPU second" in lines[1] and "after reading the file" in lines[1]
    customers = int(lines[1].split(" customers, ")[0].rsplit("; ", 1)[1])
    assert lines[1].endswith(f"{customers} contact writes")  # one write per customer, however spread
    assert not list(tmp_path.iterdir())  # the generated file is removed


def test_the_import_benchmark_refuses_an_unknown_target() -> None:
    from typer.testing import CliRunner

    from nudge.cli.main import app

    result = CliRunner().invoke(app, ["bench", "--import-orders", "10", "--import-into", "dynamo"])

    assert result.exit_code == 2 and "--import-into is memory, moto or both" in result.output
