"""The HTML report as a browser shows it: headless Chromium renders the page; the test reads the pixels and the DOM.

`make test` installs Chromium when it is missing (`make chromium`) and sets NUDGE_REQUIRE_CHROMIUM, so there
this test fails rather than skips without it. NUDGE_UPDATE_DOCS_SCREENSHOT=1 also writes docs/img/report.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from nudge.domain.send_time import ShopCurve
from nudge.report_html import BEST_COLOUR, CURVE_COLOUR, FUNNEL_COLOUR, REVENUE_COLOUR, render
from tests.conftest import ROOT
from tests.report_sample import flows, sample_report

pytestmark = [pytest.mark.chromium, pytest.mark.xdist_group("chromium")]

WIDTH, HEIGHT = 1280, 2400
# Where the page puts things at 1280 px (report.html.j2's grid): the overview band with the revenue-per-flow
# chart on its left, then per flow the diagram on the left and the figures column on the right.
OVERVIEW_BOTTOM = 380
FIGURES_LEFT = 700
BOX_FILL = (0xEE, 0xF3, 0xFB)  # message steps in the diagrams


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI") or os.environ.get("NUDGE_REQUIRE_CHROMIUM"):
        pytest.fail("chromium is not installed and this run requires it: `make chromium` installs it", pytrace=False)
    pytest.skip("needs headless Chromium: `make chromium` installs it (the Debian package chromium)")


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    html = render(sample_report(), flows(), generated_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC), window="5d")
    path.write_text(html, encoding="utf-8")
    return path


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless, offline and quiet: no first-run, sync, component updates or background fetches."""
    command = [
        binary,
        "--headless",
        "--no-sandbox",  # as root, and in containers without user namespaces
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


def test_the_page_renders_with_its_charts_where_they_belong(chromium: str, page_file: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"

    _run_chromium(
        chromium, tmp_path / "profile", f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", page_file.as_uri()
    )

    image = Image.open(shot).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    colours = {colour: count for count, colour in image.getcolors(maxcolors=WIDTH * HEIGHT) or []}
    assert len(colours) > 500  # text, boxes and bars; a blank or error page has a handful
    pixels = image.load()
    assert pixels is not None
    where: dict[tuple[int, int, int], list[tuple[int, int]]] = {_rgb(FUNNEL_COLOUR): [], _rgb(REVENUE_COLOUR): []}
    for y in range(0, HEIGHT, 2):  # every other row is plenty to place a 16 px bar, and twice as fast
        for x in range(WIDTH):
            spot = where.get(pixels[x, y])
            if spot is not None:
                spot.append((x, y))
    funnel, revenue = where[_rgb(FUNNEL_COLOUR)], where[_rgb(REVENUE_COLOUR)]
    # Two funnels of six bars, in the figures column of each flow, below the overview.
    assert len(funnel) > 4000
    assert all(x >= FIGURES_LEFT and y > OVERVIEW_BOTTOM for x, y in funnel)
    # Revenue per flow in the overview's left half; revenue per step in each flow's figures column; nothing
    # in the diagrams' column.
    assert sum(1 for x, y in revenue if y < OVERVIEW_BOTTOM and x < WIDTH // 2) > 1000
    assert sum(1 for x, y in revenue if y > OVERVIEW_BOTTOM and x >= FIGURES_LEFT) > 2000
    assert not [(x, y) for x, y in revenue if y > OVERVIEW_BOTTOM and x < FIGURES_LEFT]
    # The diagrams' message boxes, in the left column.
    assert colours.get(BOX_FILL, 0) > 50_000
    if os.environ.get("NUDGE_UPDATE_DOCS_SCREENSHOT"):
        # 256 colours keep the text crisp and the file small enough to commit.
        image.quantize(colors=256).save(ROOT / "docs" / "img" / "report.png", optimize=True)


def test_the_browser_builds_the_svg_elements(chromium: str, page_file: Path, tmp_path: Path) -> None:
    dom = _run_chromium(chromium, tmp_path / "profile", "--dump-dom", page_file.as_uri()).stdout

    assert dom.count('<svg class="diagram"') == 2
    assert dom.count('<g class="step box') == 8 + 7  # spring_launch's steps and abandoned_cart's
    assert dom.count('<g class="trigger box') == 2
    assert dom.count(f'fill="{FUNNEL_COLOUR}"') == 12  # two funnels, every stage above zero in both
    assert 'data-step="subject_test"' in dom and "a vs b, z=2.60" in dom


def _columns(image: Image.Image, colour: str) -> list[tuple[int, int, int]]:
    """Each vertical run of `colour` in the picture, left to right: (left x, right x, height in px)."""
    solid = Image.new("RGB", image.size, _rgb(colour))
    mask = ImageChops.difference(image, solid).convert("L").point(lambda v: 255 if v == 0 else 0)
    box = mask.getbbox()
    if box is None:
        return []
    runs: list[tuple[int, int, int]] = []
    for x in range(box[0], box[2]):
        column = mask.crop((x, box[1], x + 1, box[3])).getbbox()
        if column is None:
            continue
        height = column[3] - column[1]
        if runs and runs[-1][1] == x - 1:
            runs[-1] = (runs[-1][0], x, max(runs[-1][2], height))
        else:
            runs.append((x, x, height))
    return runs


@pytest.mark.parametrize(("width", "height"), [(1280, 4000), (390, 12000)])
def test_the_send_time_curve_is_a_column_per_hour_at_desktop_and_phone_widths(
    chromium: str, tmp_path: Path, width: int, height: int
) -> None:
    curve = ShopCurve([0.0] * 24, 1200)
    curve.hours[19], curve.hours[10], curve.hours[20] = 720.0, 360.0, 120.0  # 60 %, 30 %, 10 %
    page = tmp_path / "report.html"
    report = replace(sample_report(), send_time=curve)
    page.write_text(render(report, flows(), generated_at=datetime(2026, 11, 23, 10, tzinfo=UTC), window="5d"))
    shot = tmp_path / "shot.png"

    _run_chromium(
        chromium, tmp_path / "profile", f"--window-size={width},{height}", f"--screenshot={shot}", page.as_uri()
    )

    image = Image.open(shot).convert("RGB")
    hours, best = _columns(image, CURVE_COLOUR), _columns(image, BEST_COLOUR)
    # 10:00 and 20:00 in the curve's colour, 19:00 in the best hour's (the empty hours are a 1 px floor,
    # blended by the rasteriser: the DOM test counts them), all on the page, none cut off
    floors = [run for run in hours if run[2] <= 2]
    hours = [run for run in hours if run[2] > 2]
    assert len(hours) == 2 and len(best) == 1
    assert len(floors) == (21 if width >= 1280 else len(floors))
    (ten, _, ten_high), (twenty, twenty_right, twenty_high) = hours
    nineteen, _, nineteen_high = best[0]
    assert twenty_right < width
    assert (nineteen - ten) / 9 == pytest.approx(twenty - nineteen, abs=1.5)  # a column per hour, evenly
    # heights as the shares: 19:00 twice 10:00 and six times 20:00 (to the rounding of a scaled picture)
    assert ten_high == pytest.approx(nineteen_high / 2, abs=2)
    assert twenty_high == pytest.approx(nineteen_high / 6, abs=2)
    assert nineteen_high == (100 if width >= 1280 else pytest.approx(100 * (width - 80) / 632, abs=3))
