"""Issue 14's "Why", one test per finding: each failed on the main branch before this change.

Quiet hours for +1 numbers, the opt-out notice read by its words, every FCC and AWS opt-out keyword,
the shop named in marketing SMS and the HELP reply.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from nudge.clocks import VirtualClock
from nudge.domain import sms
from nudge.settings import Settings
from tests.factories import contact
from tests.flowkit import flows_dir, sent, simulation

CART_SMS = """
    id: cart_sms
    name: Cart SMS
    category: marketing
    trigger: {event: checkout_started}
    steps:
      - {id: nudge, type: sms, template: abandoned_cart/reminder_2}
"""
QUIET = """
smart_sending: {email: "off", sms: "off"}
frequency_caps: {email: {}, sms: {}}
sms_quiet_hours: {enabled: true, start: "21:00", end: "08:00"}
default_timezone: UTC
"""


def test_a_san_francisco_number_gets_no_sms_at_two_in_the_morning(settings: Settings, tmp_path: Path) -> None:
    # Given Bob, +1 415 (San Francisco), no time zone on his profile, and a cart at 10:00 UTC = 02:00 PST
    clock = VirtualClock(datetime.fromisoformat("2026-11-10T10:00:00+00:00"))
    sim = simulation(settings, clock, flows_dir(tmp_path, CART_SMS, guardrails=QUIET))
    bob = contact("bob", phone="+14155550101", sms_marketing=True)
    properties = {"checkout_id": "c1", "recovery_url": "https://shop.example/c1", "lines": []}

    # When the SMS step is due at once
    sim.send({"id": "e1", "type": "checkout_started", "contact": bob, "properties": properties})
    sim.run_until(datetime.fromisoformat("2026-11-11T10:00:00+00:00"))

    # Then it waits for 08:00 in Los Angeles (16:00 UTC), not 08:00 UTC (midnight there)
    assert [when for when, _, _ in sent(sim)] == ["2026-11-10 16:00"]


@pytest.mark.parametrize(
    "text",
    [
        "Nonstop travel mug is back in stock",
        "Don't stop now: your cart is waiting",
        "Stopwatch sale today",
    ],
)
def test_a_text_that_merely_contains_stop_still_gets_the_opt_out_notice(text: str) -> None:
    assert sms.with_opt_out_notice(text).endswith("Reply STOP to opt out")


@pytest.mark.parametrize(
    "text", ["Sale! Reply STOP to opt out", "Sale! Text STOP to end", "Sale. STOP to unsubscribe", "Reply 'STOP' now"]
)
def test_a_real_notice_is_not_doubled(text: str) -> None:
    assert sms.with_opt_out_notice(text) == text


@pytest.mark.parametrize(
    "word",
    # FCC 2025 TCPA revocation words and AWS End User Messaging's opt-out keywords, as people type them
    ["STOP", "QUIT", "END", "REVOKE", "OPT OUT", "OPTOUT", "OPT-OUT", "CANCEL", "UNSUBSCRIBE", "REMOVE", "ARRET"]
    + ["TD", "stop.", "Opt out", "opt-out please", "revoke"],
)
def test_every_fcc_and_aws_opt_out_word_opts_out(word: str) -> None:
    assert sms.keyword_of(word) is not None
    assert sms.keyword_of(word)[0] is sms.Keyword.OPT_OUT  # type: ignore[index]


@pytest.mark.parametrize("word", ["START", "unstop", "Opt in"])
def test_start_words_opt_back_in(word: str) -> None:
    assert sms.keyword_of(word) == (sms.Keyword.OPT_IN, word.upper())


def test_options_is_not_opt_out_and_the_end_of_a_sentence_is_not_end() -> None:
    assert sms.keyword_of("Options for delivery?") is None
    assert sms.keyword_of("When does it end?") is None


def test_marketing_sms_and_the_help_reply_name_the_shop() -> None:
    assert sms.with_sender_name("Your cart is waiting", "Linden & Co") == "Linden & Co: Your cart is waiting"
    assert sms.with_sender_name("Linden & Co: cart waiting", "Linden & Co") == "Linden & Co: cart waiting"
    reply = sms.help_reply("Linden & Co", "help@linden.example")
    assert reply.startswith("Linden & Co: ") and "STOP" in reply and "help@linden.example" in reply
