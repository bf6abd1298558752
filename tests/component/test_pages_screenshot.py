"""The pages people see (signup confirmation, email preferences) as headless Chromium draws them, desktop and phone.

Like the report's screenshot test: `make test` requires Chromium (NUDGE_REQUIRE_CHROMIUM). With
NUDGE_UPDATE_DOCS_SCREENSHOT=1 the pictures are written to docs/img/ as well.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from nudge.local.moto_stack import MotoStack
from tests.component.test_report_screenshot import _run_chromium, chromium  # noqa: F401 (a fixture)
from tests.component.test_subscribe import plain_text, publishable
from tests.component.test_unsubscribe import last_mail, unsubscribe_path
from tests.conftest import ROOT
from tests.factories import subscribed

pytestmark = [pytest.mark.chromium, pytest.mark.xdist_group("chromium")]

BUTTON = (0x2F, 0x2A, 0x25)  # pages.py: the header band and the main buttons
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}


def confirmation_page(stack: MotoStack) -> str:
    key = publishable(stack, double_opt_in=True)
    form = {"email": "kim@example.com", "phone": "+14155550123", "sms_marketing": True}
    stack.send("POST", "/v1/subscribe", json.dumps(form).encode(), {"Content-Type": "application/json"}, {"key": key})
    link = re.search(r"(/v1/subscribe/confirm)\?token=([A-Za-z0-9_.-]+)", plain_text(stack.sent_emails()[-1].raw_data))
    assert link is not None
    return stack.send("GET", link.group(1), query={"token": link.group(2)}).body.decode()


def preference_page(stack: MotoStack, *, unsubscribed: bool = False) -> str:
    stack.call_api("POST", "/v1/events", subscribed("evt_1"))
    path = unsubscribe_path(last_mail(stack))
    if unsubscribed:  # then the page offers the resubscribe form, with its consent box
        stack.call_unsubscribe("POST", path, "List-Unsubscribe=One-Click")
    return str(stack.call_unsubscribe("GET", path).body["html"])


PAGES = {
    "confirmation": confirmation_page,
    "preferences": preference_page,
    "preferences-unsubscribed": lambda stack: preference_page(stack, unsubscribed=True),
}


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("name", sorted(PAGES))
def test_the_page_fits_the_screen_with_its_buttons_in_view(
    chromium: str,  # noqa: F811 (the fixture)
    moto_stack: MotoStack,
    tmp_path: Path,
    name: str,
    size: str,
) -> None:
    html = PAGES[name](moto_stack)
    page = tmp_path / f"{name}.html"
    page.write_text(html, encoding="utf-8")
    width, height = SIZES[size]
    shot = tmp_path / "shot.png"

    _run_chromium(
        chromium, tmp_path / "profile", f"--window-size={width},{height}", f"--screenshot={shot}", page.as_uri()
    )

    image = Image.open(shot).convert("RGB")
    assert image.size == (width, height)
    pixels = image.load()
    assert pixels is not None
    dark = [(x, y) for y in range(0, height, 2) for x in range(width) if pixels[x, y] == BUTTON]
    # The shop's header band across the top, and a full-width dark button below it, all inside the screen.
    assert sum(1 for x, y in dark if y < 40) > width * 10
    buttons = [(x, y) for x, y in dark if y > 120]
    assert buttons, "no button drawn"
    xs = [x for x, _ in buttons]
    assert max(xs) - min(xs) > min(width - 100, 400)  # a button as wide as the card: easy to tap
    assert max(xs) < width - 8  # nothing runs off the right edge
    colours = image.getcolors(maxcolors=width * height) or []
    assert len(colours) > 50  # text is drawn: a blank or error page has a handful
    if os.environ.get("NUDGE_UPDATE_DOCS_SCREENSHOT"):
        image.quantize(colors=128).save(ROOT / "docs" / "img" / f"{name}-{size}.png", optimize=True)
