"""The library's messages read like a shop's: a preheader on every email, bodies that say what subjects
promise, no shop URL written into a template, the shop named in every marketing SMS (issue 14)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from nudge.domain import sms
from nudge.domain.flows import EmailStep
from nudge.flow_files import load_catalog
from nudge.flow_tools import LibraryMessage, library_previews
from tests.conftest import ROOT

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def library() -> dict[str, LibraryMessage]:
    return {f"{m.flow_id}.{m.preview.step_id}": m for m in library_previews(ROOT / "flows", ROOT / "templates", NOW)}


def _body(message: LibraryMessage) -> str:
    return " ".join(message.preview.text.split())


def test_every_library_email_step_has_a_preheader() -> None:
    missing = [
        f"{flow.id}.{step.id}"
        for flow in load_catalog(ROOT / "flows")
        for step in flow.steps
        if isinstance(step, EmailStep) and not step.preheader
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("name", "promised"),
    [
        ("win_back.offer_10", ["10%", "COMEBACK10"]),
        ("win_back.offer_20", ["20%", "COMEBACK20"]),
        ("product_launch.last_chance", ["Last chance", "ends at midnight"]),
        ("product_launch.teaser", ["One week to go", "launches on 2026-12-01"]),
        ("back_in_stock.reminder", ["selling fast"]),
        ("client_onboarding.kickoff", ["kickoff call"]),
        ("course_enrollment_funnel.pitch", ["closes Friday"]),
        ("course_drip.module_2", ["Module 2"]),
    ],
)
def test_a_body_says_what_its_subject_promises(
    library: dict[str, LibraryMessage], name: str, promised: list[str]
) -> None:
    message = library[name]
    for words in promised:
        assert words in _body(message), f"{name}: {message.preview.subject!r} but the body lacks {words!r}"


def test_steps_sharing_a_template_do_not_share_a_body(library: dict[str, LibraryMessage]) -> None:
    for group in (
        ["win_back.we_miss_you", "win_back.offer_10", "win_back.offer_20"],
        ["product_launch.teaser", "product_launch.launch", "product_launch.last_chance"],
        ["client_onboarding.welcome_packet", "client_onboarding.intake_reminder", "client_onboarding.kickoff"],
    ):
        bodies = [_body(library[name]).split("--")[0] for name in group]
        assert len(set(bodies)) == len(group), group


def test_no_message_prints_a_bare_url_without_saying_what_it_is(library: dict[str, LibraryMessage]) -> None:
    # In the text part every link follows a label ("Return to your cart: https://…"), never mid-sentence.
    for name, message in library.items():
        if message.preview.html is None:
            continue
        for line in message.preview.text.splitlines():
            for url in re.findall(r"https?://\S+", line):
                before = line[: line.index(url)].rstrip()
                assert before.endswith(":") or before.startswith("-"), f"{name}: {line!r}"


def test_every_marketing_sms_names_the_shop_and_says_how_to_stop(library: dict[str, LibraryMessage]) -> None:
    texts = [m.preview.text for m in library.values() if m.preview.html is None and m.category == "marketing"]
    assert len(texts) == 3
    for text in texts:
        assert text.startswith("Linen & Clay: ") and sms.has_opt_out_notice(text)


def test_no_html_email_prints_a_url_as_text(library: dict[str, LibraryMessage]) -> None:
    # Links are buttons and words; a reader never sees "https://…" in the HTML part.
    for name, message in library.items():
        if message.preview.html is None:
            continue
        body = re.sub(r"<(style|title)\b.*?</\1>", "", message.preview.html, flags=re.DOTALL | re.IGNORECASE)
        visible = re.sub(r"<[^>]+>", " ", body)
        printed = re.findall(r"\S*https?://\S*", visible)
        assert not printed, f"{name}: {printed}"
