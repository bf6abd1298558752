"""`nudge backtest` and `nudge history` from the command line: the tables, the page, the comparison, the errors."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nudge.cli.main import app
from tests.conftest import ROOT

runner = CliRunner()
ORDERS = "tests/fixtures/backtest/cdnow_3_customers.csv"
EVENTS = "tests/fixtures/backtest/events.jsonl"


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_backtest_prints_flows_steps_cadence_overlaps_and_orders(tmp_path: Path) -> None:
    page = tmp_path / "backtest.html"

    result = runner.invoke(
        app,
        [
            "backtest",
            "post_purchase",
            "win_back",
            "--orders",
            ORDERS,
            "--format",
            "minimal",
            "--events",
            EVENTS,
            "--to",
            "1997-06-30",
            "--html",
            str(page),
        ],
    )

    assert result.exit_code == 0, result.output
    out = result.output
    assert "Replayed 6 events from 1997-01-01 to 1997-07-01" in out and "Nothing was sent." in out
    assert "no_email_marketing_consent 2" in out  # review_request, and each win-back email
    assert ": 5, revenue 159.83; 1 of them (29.73) followed a message within 5d." in out
    assert "Correlation, not lift" in out
    assert "│ post_purchase │ win_back │        3 │" in out
    assert "peak memory (RSS)" in out
    html = page.read_text()
    assert html.count('<svg class="chart weekly"') == 1 and "Correlation, not lift" in html


def test_backtest_in_groups_of_one_customer_prints_what_one_store_prints() -> None:
    def tables(*options: str) -> list[str]:
        args = ["backtest", "--orders", ORDERS, "--format", "minimal", "--events", EVENTS, "--to", "1997-12-31"]
        result = runner.invoke(app, [*args, *options], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return result.output.splitlines()[:-1]  # the last line is the time and the memory

    grouped = tables("--shard-contacts", "1", "--processes", "1")

    assert grouped == tables("--shard-contacts", "0")
    assert any("busiest: 2 messages in the week of" in line and "customer00004@" in line for line in grouped)


def test_compare_shows_two_versions_side_by_side(tmp_path: Path) -> None:
    faster = tmp_path / "post_purchase_3d.yaml"
    faster.write_text((ROOT / "flows" / "post_purchase.yaml").read_text().replace("duration: 14d", "duration: 3d"))

    result = runner.invoke(
        app,
        [
            "backtest",
            "post_purchase",
            "--orders",
            ORDERS,
            "--format",
            "minimal",
            "--events",
            EVENTS,
            "--to",
            "1997-01-31",
            "--compare",
            "flows/post_purchase.yaml",
            str(faster),
        ],
    )

    assert result.exit_code == 0, result.output
    assert "post_purchase: flows/post_purchase.yaml vs" in result.output
    # The 14-day version's review request to 00004 came 3 days before the order of the 18th; the 3-day one's
    # came 14 days before it, outside the window.
    orders_row = next(line for line in result.output.splitlines() if "orders after a message" in line)
    assert [cell.strip() for cell in orders_row.split("│")[2:4]] == ["1", "0"]


def test_compare_refuses_two_different_flows() -> None:
    result = runner.invoke(
        app,
        [
            "backtest",
            "--orders",
            ORDERS,
            "--format",
            "minimal",
            "--compare",
            "flows/post_purchase.yaml",
            "flows/win_back.yaml",
        ],
    )

    assert result.exit_code == 2
    assert "differ in id" in result.output


def test_backtest_needs_a_history_and_names_a_bad_events_line(tmp_path: Path) -> None:
    bad = tmp_path / "events.jsonl"
    bad.write_text('{"type": "subscribed", "occurred_at": "1997-01-01T00:00:00Z", "contact": {}}\n')

    nothing = runner.invoke(app, ["backtest"])
    broken = runner.invoke(app, ["backtest", "--events", str(bad)])
    unknown = runner.invoke(app, ["backtest", "no_such_flow", "--orders", ORDERS, "--format", "minimal"])

    assert nothing.exit_code == 2 and "give the history" in nothing.output
    assert broken.exit_code == 1 and "events line 1:" in broken.output
    assert unknown.exit_code == 1 and "no flow 'no_such_flow'" in unknown.output


def test_history_cdnow_writes_the_minimal_csv_from_the_fetched_file(tmp_path: Path) -> None:
    # Given the package already fetched (offline: the cache holds the data set's file, here three customers)
    fetched = tmp_path / "cache" / "lifetimes" / "datasets" / "CDNOW_master.txt"
    fetched.parent.mkdir(parents=True)
    readme = (ROOT / "tests" / "fixtures" / "backtest" / "README.md").read_text()
    fetched.write_text("".join(f" {line.strip()}\n" for line in readme.splitlines() if line.startswith("    0")))
    out = tmp_path / "orders.csv"

    result = runner.invoke(app, ["history", "cdnow", "--out", str(out), "--cache", str(tmp_path / "cache")])

    assert result.exit_code == 0, result.output
    assert "7 orders" in result.output
    assert out.read_text() == (ROOT / ORDERS).read_text()


def test_the_bench_backtests_generated_orders_through_the_flows_named() -> None:
    # When the large-history bench runs on a few generated orders through post-purchase alone
    result = runner.invoke(
        app, ["bench", "--backtest-orders", "600", "--backtest-processes", "1", "--backtest-flows", "post_purchase"]
    )

    # Then it says which interpreter it measured, which flows, and prints its time and memory
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith(f"on {platform.python_implementation()} {platform.python_version()} (")
    assert first.endswith(f"{os.cpu_count()} cores" if os.cpu_count() != 1 else "1 core")
    assert "600 one-line orders of up to 200 customers" in result.output
    assert "post_purchase, consent assumed" in result.output
    assert "on 1 process (" in result.output and "memory: the parsed history" in result.output


def test_the_bench_refuses_a_flow_that_is_not_there() -> None:
    result = runner.invoke(app, ["bench", "--backtest-orders", "600", "--backtest-flows", "post_purchase,nope"])

    assert result.exit_code == 2
    assert "--backtest-flows: no flow 'nope'" in result.output
    assert "Traceback" not in result.output


def _bench_child(tmp_path: Path, parent: int) -> list[dict[str, object]]:
    """The bench's child backtest run here on 60 generated orders, told `parent` is the bench; what it sent."""
    from nudge.local import backtest_bench
    from nudge.local.import_bench import write_orders
    from nudge.local.moto_stack import PROJECT_ROOT

    orders = tmp_path / "orders.csv"
    write_orders(orders, 60, 20)
    sent: list[dict[str, object]] = []

    class Reply:
        def send(self, found: dict[str, object]) -> None:
            sent.append(found)

        def close(self) -> None:
            pass

    backtest_bench._backtest(str(orders), str(PROJECT_ROOT / "flows"), 1, Reply(), parent=parent)
    return sent


def test_the_bench_s_child_stops_once_the_bench_is_gone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # When the bench's child has replayed a group and finds above it a process that is not the bench
    with pytest.raises(SystemExit) as stopped:
        _bench_child(tmp_path, parent=os.getppid() + 1)

    # Then it stops there, says why, and sends no figures
    assert stopped.value.code == 1
    assert "the bench is gone: stopping" in capsys.readouterr().out


def test_the_bench_s_child_runs_to_its_end_while_the_bench_lives(tmp_path: Path) -> None:
    assert [found["replayed"] for found in _bench_child(tmp_path, parent=os.getppid())] == [60]
