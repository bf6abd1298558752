"""Order history import on moto: the DynamoDB adapter keeps what the in-memory twin keeps; `nudge import orders`."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from nudge.cli.main import app
from nudge.domain.model import contact_id_for
from nudge.local.moto_stack import MotoStack
from nudge.services.order_import import Format, backfill_orders, parse_orders
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
