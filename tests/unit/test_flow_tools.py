"""`nudge preview`, `nudge graph` and `nudge schema` on the shipped library."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nudge.cli.main import app
from nudge.domain.flows import EmailStep, SmsStep
from nudge.flow_files import load_catalog
from nudge.flow_tools import flow_json_schema, mermaid
from tests.conftest import ROOT

runner = CliRunner()
LIBRARY = sorted(flow.id for flow in load_catalog(ROOT / "flows"))


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_the_committed_json_schema_is_current() -> None:
    committed = (ROOT / "schemas" / "flow.schema.json").read_text()
    assert committed == flow_json_schema(), "run: nudge schema --out schemas/flow.schema.json"


@pytest.mark.parametrize("flow_id", LIBRARY)
def test_every_library_message_renders_for_the_sample_contact(flow_id: str, tmp_path: Path) -> None:
    flow = load_catalog(ROOT / "flows").get(flow_id)
    assert flow is not None
    messages = sum(isinstance(step, EmailStep | SmsStep) for step in flow.steps)

    result = runner.invoke(app, ["preview", flow_id, "--html-dir", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert f"{messages} message(s) for sam@example.com" in result.output
    emails = sum(isinstance(step, EmailStep) for step in flow.steps)
    assert len(list(tmp_path.glob("*.html"))) == emails + 1  # and index.html


def test_preview_html_writes_the_whole_library_as_pages_to_open(tmp_path: Path) -> None:
    flows = list(load_catalog(ROOT / "flows"))
    emails = sum(isinstance(step, EmailStep) for flow in flows for step in flow.steps)
    texts = sum(isinstance(step, SmsStep) for flow in flows for step in flow.steps)

    result = runner.invoke(app, ["preview", "--html", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("*.*.html"))) == len(list(tmp_path.glob("*.*.txt"))) == emails
    index = (tmp_path / "index.html").read_text()
    assert index.count("<li>") == emails + texts and index.count("<h2>") == len(flows)
    assert '<a href="win_back.offer_20.html">20% off, our best offer</a>' in index
    assert "<q>Linen &amp; Clay: Kettle 2 is live." in index
    page = (tmp_path / "win_back.offer_20.html").read_text()
    assert 'class="nudge-footer' in page and "COMEBACK20" in page and "20% off" in page


def test_preview_reports_a_template_that_fails_to_render(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text("{}")  # the cart templates need a recovery_url

    result = runner.invoke(app, ["preview", "abandoned_cart", "--event", str(event)])

    assert result.exit_code == 1
    assert "reminder_1.html.j2: UndefinedError" in result.output and "recovery_url" in result.output


def test_graph_draws_branches_splits_and_rules() -> None:
    flow = load_catalog(ROOT / "flows").get("review_referral")
    assert flow is not None

    diagram = mermaid(flow)

    assert diagram.startswith("flowchart TD\n")
    assert '    trigger(["on order_fulfilled"])' in diagram
    assert "    reviewed -->|yes| thanks_referral" in diagram
    assert "    reviewed -->|no| referral" in diagram
    assert "    referral --> done" in diagram
    assert "exit on order_cancelled, refund_created" in diagram


def test_graph_command_prints_mermaid_and_rejects_unknown_flows() -> None:
    assert runner.invoke(app, ["graph", "welcome"]).output.startswith("flowchart TD")
    missing = runner.invoke(app, ["graph", "nope"])
    assert missing.exit_code == 1 and "no flow 'nope'" in missing.output
