"""`nudge audiences sync [--dry-run]` and `nudge audiences report` on moto: the DynamoDB ledger, the real
adapters (no tokens configured here, so a real upload fails and is reported as the audience's failure)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from nudge.cli.main import app
from nudge.domain.model import Contact
from nudge.local.moto_stack import MotoStack
from tests.conftest import ROOT

runner = CliRunner()


@pytest.fixture
def on_moto(moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch) -> MotoStack:
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr("nudge.cli.main._import_target", lambda local: (None, moto_stack.container))
    store: Any = moto_stack.container.store
    for n, (segments, consent) in enumerate([(("vip",), True), (("vip",), True), (("vip",), False), ((), True)]):
        contact = Contact(f"c{n}", email=f"c{n}@example.com", ads_marketing=consent, segments=segments)
        store.save_contact(contact, 0)
    return moto_stack


def test_dry_run_shows_the_difference_and_uploads_nothing(on_moto: MotoStack) -> None:
    result = runner.invoke(app, ["audiences", "sync", "--dry-run", "vip_customer_match"])

    assert result.exit_code == 0, result.output
    assert "vip_customer_match (google): would add 2, removed 0, not uploaded: 1 no_ads_consent" in result.output
    assert on_moto.container.audiences is not None
    assert on_moto.container.audiences.stats("vip_customer_match").requests == 0


def test_a_failed_upload_exits_1_and_the_report_shows_it(on_moto: MotoStack) -> None:
    result = runner.invoke(app, ["audiences", "sync", "vip_customer_match"])
    assert result.exit_code == 1
    assert "failed: google: no client_id in the audience secret" in result.output

    again = runner.invoke(app, ["audiences", "sync", "--dry-run", "vip_customer_match"])
    assert "would add 2" in again.output  # still pending: nothing was lost

    table = runner.invoke(app, ["audiences", "report"])
    assert table.exit_code == 0
    [row] = [line for line in table.output.splitlines() if line.startswith("vip_customer_match")]
    assert row.startswith("vip_customer_match (google, vip): added 0, removed 0, 0 request(s), 0 invalid, 1 failure(s)")
    assert row.endswith("last error: google: no client_id in the audience secret (docs/audiences.md)")


def test_an_unknown_audience_is_refused(on_moto: MotoStack) -> None:
    result = runner.invoke(app, ["audiences", "sync", "nope"])
    assert result.exit_code == 1 and "no audience nope" in result.output
