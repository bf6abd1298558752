"""`nudge report --demo --html`: the demo story played on moto, its report written as a page."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nudge.cli.main import app
from tests.conftest import ROOT

runner = CliRunner()


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_the_demo_report_as_a_page(tmp_path: Path) -> None:
    out = tmp_path / "report.html"

    result = runner.invoke(app, ["report", "--demo", "--window", "7d", "--html", str(out)])

    assert result.exit_code == 0, result.output
    # the five flows drawn, and the November newsletter (a campaign: its own table, and its flow drawn from
    # its stored definition)
    assert f"wrote {out}: 6 flow(s) with activity, 6 drawn" in result.output
    page = out.read_text(encoding="utf-8")
    assert "november_newsletter" in page.split("Campaigns")[1]
    assert "last-touch attribution window 7d" in page
    assert page.count('<svg class="diagram"') == 6
    assert "(campaign november_newsletter)</h2>" in page
    # Carol's order (100.00) goes to the cart reminder she had; the story is in tests/sim/test_demo_story.py.
    assert "orders 1 · revenue 100.00</text>" in page.split('data-step="reminder_1"')[1].split("</g>")[0]
    assert "<b>birthday</b>" in page  # a flow nobody entered: listed under no activity
