"""Every library email as a browser shows it, at desktop (600 px) and phone (375 px) widths.

Headless Chromium lays out each email in an iframe of that width (media queries answer to the iframe's
width, as they do to a phone's); a script measures the layout and the test reads the numbers from the DOM,
then a screenshot of the whole sheet is checked for the brand's button colour. Nothing may be cut off
(document width <= viewport), the footer sits inside the card, and every marketing email has a button.

NUDGE_UPDATE_DOCS_SCREENSHOT=1 also writes docs/img/email-*.png for three of them.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from nudge.flow_tools import LibraryMessage, library_previews
from nudge.templating import load_brand
from tests.component.test_report_screenshot import _run_chromium, chromium  # noqa: F401  (fixture)
from tests.conftest import ROOT

pytestmark = [pytest.mark.chromium, pytest.mark.xdist_group("chromium")]

WIDTHS = (600, 375)
DOCS_SHOTS = ("abandoned_cart.reminder_1", "post_purchase.review_request", "browse_abandonment.reminder")
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

# Runs in the sheet once every iframe has loaded; writes what it measured into <pre id="measure">.
_MEASURE = """
<pre id="measure"></pre>
<script>
window.addEventListener("load", () => {
  const found = {};
  for (const frame of document.querySelectorAll("iframe")) {
    const doc = frame.contentDocument, view = frame.contentWindow;
    const box = (el) => { if (!el) return null; const r = el.getBoundingClientRect();
      return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height}; };
    const buttons = [...doc.querySelectorAll(".cta a")].filter((a) => {
      const r = a.getBoundingClientRect(); return r.width > 40 && r.height > 20; });
    found[frame.id] = {
      viewport: view.innerWidth,
      document_width: Math.max(doc.documentElement.scrollWidth, doc.body.scrollWidth),
      card: box(doc.querySelector(".nudge-card")),
      footer: box(doc.querySelector(".nudge-footer")),
      buttons: buttons.length,
      grid_rows: new Set([...doc.querySelectorAll(".nudge-grid .mj-column-per-50")].map(
        (c) => Math.round(c.getBoundingClientRect().top))).size,
      grid_items: doc.querySelectorAll(".nudge-grid .mj-column-per-50").length,
      images: [...doc.querySelectorAll(".nudge-product img, .nudge-grid img")].filter(
        (img) => img.complete && img.naturalWidth > 0 && img.getBoundingClientRect().width > 100).length,
      height: doc.documentElement.scrollHeight,
    };
    frame.style.height = doc.documentElement.scrollHeight + "px";
  }
  document.getElementById("measure").textContent = JSON.stringify(found);
});
</script>
"""


@pytest.fixture(scope="module")
def emails() -> list[LibraryMessage]:
    return [m for m in library_previews(ROOT / "flows", ROOT / "templates", NOW) if m.preview.html is not None]


# The run is offline: the sample products' remote images become same-shaped placeholders, so the layout
# (and the screenshots) show where a shop's product photos go.
_PLACEHOLDER = (
    "data:image/svg+xml;base64,"
    + base64.b64encode(
        b'<svg xmlns="http://www.w3.org/2000/svg" width="400" height="300" viewBox="0 0 400 300">'
        b'<rect width="400" height="300" fill="#e7e0d3"/><circle cx="200" cy="150" r="70" fill="#cfc4b0"/></svg>'
    ).decode()
)
_REMOTE_IMAGE = re.compile(r'src="https://[^"]+\.(?:jpg|jpeg|png|webp)"')


def offline(page: str) -> str:
    return _REMOTE_IMAGE.sub(f'src="{_PLACEHOLDER}"', page)


def _sheet(emails: list[LibraryMessage], width: int) -> str:
    frames = "\n".join(
        f'<iframe id="{m.flow_id}.{m.preview.step_id}" width="{width}" height="400" '
        f'style="border:0;display:block;margin-bottom:8px;" srcdoc="{html.escape(offline(m.preview.html or ""))}">'
        "</iframe>"
        for m in emails
    )
    return f'<!doctype html><html><body style="margin:0;background:#888;">{frames}{_MEASURE}</body></html>'


@pytest.fixture(scope="module")
def measured(
    chromium: str,  # noqa: F811
    emails: list[LibraryMessage],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[int, dict[str, dict[str, object]]]:
    found = {}
    for width in WIDTHS:
        directory = tmp_path_factory.mktemp(f"emails{width}")
        sheet = directory / "sheet.html"
        sheet.write_text(_sheet(emails, width), encoding="utf-8")
        dom = _run_chromium(
            chromium, directory / "profile", f"--window-size={width + 40},900", "--dump-dom", sheet.as_uri()
        ).stdout
        match = re.search(r'<pre id="measure">(.*?)</pre>', dom, re.DOTALL)
        assert match and match.group(1), "the measuring script did not run"
        found[width] = json.loads(html.unescape(match.group(1)))
    return found


def test_the_library_has_emails_of_both_kinds(emails: list[LibraryMessage]) -> None:
    kinds = {m.category for m in emails}
    assert kinds == {"marketing", "transactional"} and len(emails) >= 30


@pytest.mark.parametrize("width", WIDTHS)
def test_nothing_is_cut_off_and_the_footer_is_inside_the_card(
    measured: dict[int, dict[str, dict[str, object]]], emails: list[LibraryMessage], width: int
) -> None:
    problems = []
    for message in emails:
        name = f"{message.flow_id}.{message.preview.step_id}"
        page = measured[width][name]
        card, footer = page["card"], page["footer"]
        assert isinstance(card, dict) and isinstance(footer, dict), f"{name}: no card or no footer"
        if page["viewport"] != width:
            problems.append(f"{name}: viewport {page['viewport']} != {width}")
        if int(page["document_width"]) > width:  # type: ignore[call-overload]
            problems.append(f"{name}: {page['document_width']} px wide at {width} px: cut off")
        inside = (
            footer["left"] >= card["left"] - 0.5
            and footer["right"] <= card["right"] + 0.5
            and footer["top"] >= card["top"]
            and footer["bottom"] <= card["bottom"] + 0.5
        )
        if not inside:
            problems.append(f"{name}: footer {footer} is not inside the card {card}")
        if message.category == "marketing" and not page["buttons"]:
            problems.append(f"{name}: a marketing email without a button")
    assert not problems, "\n".join(problems)


def test_a_phone_stacks_what_a_desktop_shows_side_by_side(measured: dict[int, dict[str, dict[str, object]]]) -> None:
    # Three recommendations: two rows of two columns at 600 px, one per row at 375 px, each with its picture.
    desktop, phone = measured[600]["post_purchase.review_request"], measured[375]["post_purchase.review_request"]
    assert desktop["grid_items"] == phone["grid_items"] == 3
    assert (desktop["grid_rows"], phone["grid_rows"]) == (2, 3)
    assert desktop["images"] == phone["images"] == 3


@pytest.mark.parametrize("name", ["browse_abandonment.reminder", "back_in_stock.notice", "product_launch.launch"])
def test_a_product_card_shows_the_products_picture(
    measured: dict[int, dict[str, dict[str, object]]], name: str
) -> None:
    assert measured[600][name]["images"] == measured[375][name]["images"] == 1


@pytest.mark.parametrize("width", WIDTHS)
def test_the_screenshot_shows_the_brand_buttons(
    chromium: str,  # noqa: F811
    emails: list[LibraryMessage],
    tmp_path: Path,
    width: int,
) -> None:
    primary = load_brand(ROOT / "templates").colours.primary
    rgb = tuple(int(primary[i : i + 2], 16) for i in (1, 3, 5))
    chosen = [m for m in emails if f"{m.flow_id}.{m.preview.step_id}" in DOCS_SHOTS]
    sheet = tmp_path / "sheet.html"
    sheet.write_text(_sheet(chosen, width), encoding="utf-8")
    shot = tmp_path / "shot.png"
    _run_chromium(chromium, tmp_path / "profile", f"--window-size={width},3000", f"--screenshot={shot}", sheet.as_uri())

    image = Image.open(shot).convert("RGB")
    colours = {colour: count for count, colour in image.getcolors(maxcolors=image.width * image.height) or []}
    assert colours.get(rgb, 0) > 3 * 2000  # three emails, each with at least one filled button
    if os.environ.get("NUDGE_UPDATE_DOCS_SCREENSHOT"):
        for message in chosen:
            name = f"{message.flow_id}.{message.preview.step_id}"
            page = tmp_path / f"{name}.html"
            page.write_text(offline(message.preview.html or ""), encoding="utf-8")
            out = tmp_path / f"{name}.png"
            _run_chromium(
                chromium, tmp_path / "profile", f"--window-size={width},2200", f"--screenshot={out}", page.as_uri()
            )
            target = ROOT / "docs" / "img" / f"email-{message.flow_id}-{width}.png"
            picture = Image.open(out).convert("RGB")
            # Down to the card: the page below it is only the brand's background colour.
            background = Image.new("RGB", picture.size, picture.getpixel((0, picture.height - 1)))
            box = ImageChops.difference(picture, background).getbbox() or (0, 0, width, picture.height)
            picture = picture.crop((0, 0, width, min(picture.height, box[3] + 16)))
            picture.quantize(colors=128).save(target, optimize=True)
