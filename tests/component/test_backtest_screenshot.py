"""The backtest page as a browser shows it, at desktop and phone widths: headless Chromium takes the pictures.

The page is the backtest of the three CDNOW customers with every flow of the library (tests/unit/
test_backtest.py checks those figures by hand). NUDGE_UPDATE_DOCS_SCREENSHOT=1 also writes
docs/img/backtest.png and docs/img/backtest-phone.png.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from nudge.backtest_html import CADENCE_COLOUR, PALETTE, render
from nudge.local import backtest as bt
from nudge.services.order_import import Format
from tests.component.test_report_screenshot import _rgb, _run_chromium, chromium  # noqa: F401 (a fixture)
from tests.conftest import ROOT

pytestmark = [pytest.mark.chromium, pytest.mark.xdist_group("chromium")]

FIXTURES = ROOT / "tests" / "fixtures" / "backtest"
DESKTOP, PHONE, HEIGHT = 1280, 390, 1800


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with (FIXTURES / "cdnow_3_customers.csv").open() as orders, (FIXTURES / "events.jsonl").open() as events:
        history = bt.load_history(orders, Format.MINIMAL, events, datetime(2026, 12, 1, tzinfo=UTC))
    settings = bt.backtest_settings(ROOT / "flows", ROOT / "templates", ROOT / "segments")
    _, result = bt.backtest(history, settings, end=datetime(1998, 1, 1, tzinfo=UTC))
    path = tmp_path_factory.mktemp("backtest") / "backtest.html"
    path.write_text(render(result, window="5d"), encoding="utf-8")
    return path


def _shot(binary: str, page: Path, tmp_path: Path, width: int) -> Image.Image:
    shot = tmp_path / f"shot-{width}.png"
    _run_chromium(
        binary, tmp_path / "profile", f"--window-size={width},{HEIGHT}", f"--screenshot={shot}", page.as_uri()
    )
    image = Image.open(shot).convert("RGB")
    assert image.size == (width, HEIGHT)
    return image


def _where(image: Image.Image, colour: str) -> list[tuple[int, int]]:
    pixels = image.load()
    assert pixels is not None
    wanted = _rgb(colour)
    width, height = image.size
    return [(x, y) for y in range(height) for x in range(width) if pixels[x, y] == wanted]


def test_desktop_shows_a_year_of_weeks_across_the_page(chromium: str, page_file: Path, tmp_path: Path) -> None:  # noqa: F811
    image = _shot(chromium, page_file, tmp_path, DESKTOP)

    post_purchase = _where(image, PALETTE[0])  # the first flow of the table: its bars, and its legend swatch
    cadence = _where(image, CADENCE_COLOUR)
    # The weekly chart spans the page: January's bars near the left edge, December's near the right one.
    bars = [(x, y) for x, y in post_purchase if y < 500]
    assert len(bars) > 1000
    assert min(x for x, _ in bars) < 150 and max(x for x, _ in bars) > 1000
    # The cadence chart sits in the left half, below the tables.
    assert len(cadence) > 2000
    assert max(x for x, _ in cadence) < DESKTOP // 2 and min(y for _, y in cadence) > max(y for _, y in bars)
    if os.environ.get("NUDGE_UPDATE_DOCS_SCREENSHOT"):
        image.quantize(colors=256).save(ROOT / "docs" / "img" / "backtest.png", optimize=True)


def test_phone_keeps_the_weekly_chart_readable(chromium: str, page_file: Path, tmp_path: Path) -> None:  # noqa: F811
    image = _shot(chromium, page_file, tmp_path, PHONE)

    bars = _where(image, PALETTE[0])
    cadence = _where(image, CADENCE_COLOUR)
    # The cards stack two by two, so the chart starts lower than on a desktop; it keeps a readable height
    # (it scrolls sideways instead of shrinking a year of weeks to the phone's width).
    chart = [(x, y) for x, y in bars if x > 30]
    assert chart, "no bar of the first flow on the phone page"
    tallest = max(y for _, y in chart) - min(y for _, y in chart)
    assert tallest > 80
    assert min(y for _, y in chart) > 300
    # The cadence chart's bars (1 and 2 messages a week here) are drawn inside the phone's width.
    assert len(cadence) > 2000 and max(x for x, _ in cadence) < PHONE
    if os.environ.get("NUDGE_UPDATE_DOCS_SCREENSHOT"):
        image.quantize(colors=256).save(ROOT / "docs" / "img" / "backtest-phone.png", optimize=True)


def test_the_comparison_puts_two_versions_side_by_side(chromium: str, page_file: Path, tmp_path: Path) -> None:  # noqa: F811
    from nudge.backtest_html import render_comparison

    faster = tmp_path / "post_purchase_3d.yaml"
    faster.write_text((ROOT / "flows" / "post_purchase.yaml").read_text().replace("duration: 14d", "duration: 3d"))
    with (FIXTURES / "cdnow_3_customers.csv").open() as orders:
        history = bt.load_history(orders, Format.MINIMAL, None, datetime(2026, 12, 1, tzinfo=UTC))
    sides = []
    for version in (ROOT / "flows" / "post_purchase.yaml", faster):
        with bt.flows_for(ROOT / "flows", ["post_purchase"], replacing=version) as staged:
            settings = bt.backtest_settings(staged, ROOT / "templates", ROOT / "segments")
            sides.append(bt.Side(version, bt.backtest(history, settings)[1]))
    page = tmp_path / "compare.html"
    page.write_text(render_comparison("post_purchase", sides[0], sides[1], window="5d"), encoding="utf-8")

    image = _shot(chromium, page, tmp_path, DESKTOP)

    bars = _where(image, PALETTE[0])
    left = [x for x, _ in bars if x < DESKTOP // 2]
    right = [x for x, _ in bars if x >= DESKTOP // 2]
    assert len(left) > 300 and len(right) > 300  # one chart per version, each in its half
