"""The HTML report: every active flow drawn with its figures, splits judged, nothing loaded, stored ids escaped.

The figures come from tests/report_sample.py, worked out by hand there and in the comments below.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nudge.cli.main import _print_report, _write_html_report, console
from nudge.domain.kpis import MessageFacts, Report
from nudge.domain.kpis import report as kpis_report
from nudge.domain.model import MessageStatus, Run
from nudge.domain.send_time import ShopCurve
from nudge.report_html import BEST_COLOUR, CURVE_COLOUR, render
from nudge.report_text import KPI_COLUMNS, kpi_cells, send_time_lines, verdict_text
from tests.report_sample import HOSTILE, flows, run, sample_report

GENERATED = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _run_in(contact: str, variants: dict[str, str]) -> Run:
    return run(contact, "spring_launch", converted=False, variants=variants)


class _Boxes(HTMLParser):
    """Per diagram box (`<g data-step>`, or the trigger's), the texts written in it; and every table's rows."""

    def __init__(self) -> None:
        super().__init__()
        self.boxes: dict[str, list[str]] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._box: list[str] | None = None
        self._table: list[list[str]] | None = None
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "g" and "box" in (found.get("class") or "").split():
            key = found.get("data-step") or f"trigger{len([k for k in self.boxes if k.startswith('trigger')])}"
            self._box = self.boxes.setdefault(key, [])
        elif tag == "table":
            self._table = []
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag == "td" and self._table:
            self._table[-1].append("")
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "g":
            self._box = None
        elif tag == "table":
            self._table = None
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._box is not None and self._in == "text":
            self._box.append(data)
        if self._table is not None and self._in == "caption":
            self.tables[data] = self._table
        elif self._table and self._in in {"td", "a"}:
            self._table[-1][-1] += data


def parse(page: str) -> _Boxes:
    parser = _Boxes()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def report() -> Report:
    return sample_report()


@pytest.fixture(scope="module")
def page(report: Report) -> str:
    return render(report, flows(), generated_at=GENERATED, window="5d")


def test_each_active_flow_is_drawn_and_an_idle_one_is_listed(page: str) -> None:
    assert page.count('<svg class="diagram"') == 2  # spring_launch, abandoned_cart
    assert len(re.findall(r'<g class="step box', page)) == 8 + 7  # their steps
    assert '<g class="trigger box trigger"' in page
    assert "<b>welcome</b> <span" in page  # no activity: listed, not drawn
    assert 'data-step="welcome_email"' not in page
    assert "Generated 2026-11-23 10:00 UTC · last-touch attribution window 5d" in page


def test_message_steps_carry_their_own_figures(page: str) -> None:
    boxes = parse(page).boxes

    # launch_a went to all 200 of variant a: one in 20 bounced (190 delivered), every third opened (67 of
    # 0..199), every ninth clicked (23); the 20 even-numbered converts ordered the next day, 40 or 60 each.
    assert boxes["launch_a"] == [
        "email · launch_a",
        "Spring is here",
        "sent 200 · delivered 190",
        "opened 67 · clicked 23",
        "bounced 10 · spam 0 · unsub. 0",  # shown when any happened; spam: complaints
        "orders 20 · revenue 1,000.00",
    ]
    # The odd-numbered converts (20 of a, 8 of b) ordered after the reminder, 50 or 70 each.
    assert boxes["reminder"][-1] == "orders 28 · revenue 1,680.00"
    # Every tenth contact is a VIP; half of those VIPs who reached the branch had no SMS consent.
    assert boxes["vip_sms"] == [
        "sms · vip_sms",
        "launch/vip",
        "sent 15",
        "skipped 15 · failed 0",
        "orders 0 · revenue 0.00",
    ]
    assert boxes["subject_test"] == [
        "split · subject_test",
        "holdout 10%",
        "a: 200 in · converted 20.0%",
        "b: 160 in · converted 10.0%",
        "holdout: 40 in · converted 5.0%",
    ]
    assert boxes["is_vip"] == ["if · is_vip", "'vip' in contact.tags"]
    trigger = next(box for key, box in boxes.items() if key.startswith("trigger") and "on subscribed" in box)
    assert trigger[2:] == ["entered 400 · converted 58", "conversion rate 14.5%"]


def test_edges_carry_the_branch_and_split_labels(page: str) -> None:
    labels = re.findall(r'<g class="elabel">.*?<text [^>]*>([^<]*)</text>', page)

    assert sorted(labels) == ["a 45%", "b 45%", "no", "yes"]


def test_the_split_is_judged_like_the_terminal_does(page: str) -> None:
    # 40/200 against 16/160: z = 0.1 / sqrt(56/360 * 304/360 * (1/200 + 1/160)) = 2.60; treated 56/360
    # against the holdout's 2/40 is a lift of (0.1556 - 0.05) / 0.05.
    assert "a vs b, z=2.60, p=0.0093 → winner: a at 95% confidence; holdout lift +211.1%" in page
    assert parse(page).tables["Split subject_test"][1:] == [
        ["a", "200", "40", "20.0%", "372", "40", "2,200.00"],
        ["b", "160", "16", "10.0%", "305", "16", "880.00"],
        ["holdout", "40", "2", "5.0%", "0", "0", "0.00"],
    ]
    assert '<tr class="winner"><td>a</td>' in page


def test_the_full_tables_are_the_terminal_rows(page: str, report: Report) -> None:
    tables = parse(page).tables

    assert tables["Flows"][1:] == [[r.flow_id, *kpi_cells(r)] for r in report.flows]
    assert tables["Steps"][1:] == [[f"{r.flow_id} · {r.step_id}", *kpi_cells(r)] for r in report.steps]
    assert tables["Split variants"][1:] == [[f"{r.flow_id} · {r.variant}", *kpi_cells(r)] for r in report.variants]
    assert len(KPI_COLUMNS) == len(tables["Flows"][1]) - 1
    assert tables["Flows"][2] == ["spring_launch", "400", "58", "14.5%", "677", "15", "0", "626", "222", "75", "36"] + [
        "0",
        "0",  # unsubscribes
        "56",
        "3,080.00",
        "55.00",
        "8.56",
        "–",  # CLV: the sample report has no contacts' spend
    ]


def test_the_summary_strip_adds_up_the_flows(page: str) -> None:
    strip = dict(re.findall(r'<div class="card"><b>([^<]*)</b><span>([^<]*)</span>', page))

    # 400 + 12 entered; 3,080.00 + 192.00 over 56 + 3 orders; 58 + 3 converted
    assert strip == {
        "412": "entered",
        "698": "messages sent",
        "59": "orders",
        "3,272.00": "revenue",
        "55.46": "AOV",
        "14.8%": "conversion rate",
    }


def test_the_page_loads_nothing_and_runs_nothing(page: str) -> None:
    assert "<script" not in page.lower()
    assert re.findall(r"https?:", page) == []  # no URL at all: the inline SVG needs no xmlns either
    assert re.findall(r"\bsrc\s*=", page) == []
    assert set(re.findall(r'href="([^"]*)"', page)) == {"#flow-1", "#flow-2"}
    assert set(re.findall(r"url\(([^)]*)\)", page)) == {"#arrow-1", "#arrow-2"}
    for tag in ("<link", "<img", "<iframe", "<object", "<embed", "@import", "@font-face"):
        assert tag not in page
    assert "default-src 'none'" in page


def test_stored_ids_are_escaped_and_a_flow_without_a_file_gets_a_table() -> None:
    page = render(sample_report(hostile=True), flows(), generated_at=GENERATED, window="5d")

    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in page
    assert "No flow file with this id" in page
    assert page.count('<svg class="diagram"') == 2  # the hostile flow has figures and a table, no diagram
    assert parse(page).tables["Figures per step"][1][0] == '<img src=x onerror="alert(2)">'  # shown as text
    assert HOSTILE in [row[0] for row in parse(page).tables["Flows"][1:]]


def test_a_split_without_a_test_and_a_step_the_file_lost_are_still_shown() -> None:
    # One variant only, no test possible; `teaser` is not a step of the spring_launch file (renamed, say).
    runs = [_run_in("a1", {"subject_test": "a"})]
    messages = [MessageFacts("a1", "a1#teaser", "spring_launch", "teaser", "subject_test:a", MessageStatus.SENT)]

    page = render(kpis_report(runs, messages, []), flows(), generated_at=GENERATED, window="5d")

    assert "fewer than two variants have entries: no test yet" in page
    assert parse(page).tables["Steps with data that this flow file no longer has"][1][0] == "teaser"
    assert 'data-step="teaser"' not in page


def test_a_split_nobody_reached_says_so() -> None:
    page = render(kpis_report([_run_in("x", {})], [], []), flows(), generated_at=GENERATED, window="5d")

    assert "no contact has reached this split yet" in page
    assert "No attributed revenue yet." in page


def test_the_terminal_prints_the_cells_and_verdict_the_page_does(page: str, report: Report) -> None:
    with console.capture() as captured:
        _print_report(report, "5d")
    printed = captured.get()

    row = next(r for r in report.steps if r.step_id == "reminder")
    [line] = [line for line in printed.splitlines() if "spring_launch · reminder" in line]
    assert [cell.strip() for cell in line.split("│")[1:-1]] == ["spring_launch · reminder", *kpi_cells(row)]
    assert f"spring_launch · subject_test: {verdict_text(report.splits[0])}" in printed
    assert verdict_text(report.splits[0]) in page


def test_without_a_flows_directory_the_page_has_the_figures_but_no_diagram(tmp_path: Path, report: Report) -> None:
    out = tmp_path / "report.html"

    with console.capture() as captured:
        _write_html_report(report, "5d", out, tmp_path / "nowhere")

    assert "no flows directory" in captured.get() and "2 flow(s) with activity, 0 drawn" in captured.get()
    page = out.read_text(encoding="utf-8")
    assert '<svg class="diagram"' not in page
    # One table per flow under the same caption; the last is spring_launch's.
    assert [row[0] for row in parse(page).tables["Figures per step"][1:]] == [
        "launch_a",
        "launch_b",
        "reminder",
        "vip_sms",
    ]


def evening_curve(contacts: int) -> ShopCurve:
    """60 % of the engagement at 19:00 local, 30 % at 10:00, 10 % at 20:00."""
    curve = ShopCurve([0.0] * 24, contacts)
    curve.hours[19], curve.hours[10], curve.hours[20] = 0.6 * contacts, 0.3 * contacts, 0.1 * contacts
    return curve


def test_the_send_time_curve_is_in_the_terminal_and_on_the_page_by_hand(report: Report) -> None:
    curve = evening_curve(1200)
    # spark: share / top × 8 → 19:00 8 (the top block), 10:00 4 (▅), 20:00 1.3 (▂), the rest 0 (▁)
    assert send_time_lines(curve) == [
        "Send-time curve: 1,200 engaged contacts, by local hour; a contact without history gets 19:00.",
        "  ▁▁▁▁▁▁▁▁▁▁▅▁▁▁▁▁▁▁▁█▂▁▁▁  (00:00 to 23:00)",
        "  peak hours: 19:00 (60.0%), 10:00 (30.0%), 20:00 (10.0%)",
    ]
    # 500 of 1,000: the prior is half the curve, half 10:00: 0.5 × 0.3 + 0.5 = 0.65 at 10:00 against 0.3 at 19:00
    assert send_time_lines(evening_curve(500))[0] == (
        "Send-time curve: 500 engaged contacts, by local hour, blended with 10:00 until 1,000; "
        "a contact without history gets 10:00."
    )
    assert send_time_lines(None) == [
        "Send-time curve: none yet (the daily job builds it from opens and clicks); "
        "best-time sends go at 10:00 local until then."
    ]

    with console.capture() as captured:
        _print_report(replace(report, send_time=curve), "5d")
    assert "  peak hours: 19:00 (60.0%)" in captured.get()
    page = render(replace(report, send_time=curve), flows(), generated_at=GENERATED, window="5d")
    columns = re.findall(
        r'<rect class="hour" x="([\d.]+)" y="([\d.]+)" width="20" height="([\d.]+)" fill="(#\w+)"', page
    )
    assert len(columns) == 24
    assert [(float(h), fill) for _, _, h, fill in columns if float(h) > 1] == [
        (50.0, CURVE_COLOUR),  # 10:00: half the top
        (100.0, BEST_COLOUR),  # 19:00: the top, and the hour a newcomer gets
        (16.7, CURVE_COLOUR),  # 20:00
    ]
    assert "peak hours: 19:00 (60.0%)" in page and "▁" not in page  # the page draws columns, not the spark line
    assert "Send-time curve: none yet" in render(report, flows(), generated_at=GENERATED, window="5d")
