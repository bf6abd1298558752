"""Issue 14's "Why", one test per finding: each failed on the main branch before this change.

Quiet hours for +1 numbers, the opt-out notice read by its words, every FCC and AWS opt-out keyword, the
shop named in marketing SMS and the HELP reply; marketing email fails closed without a postal address,
carries the shop's name in From, and goes out 7-bit safe.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from nudge.adapters.mime import build_mime
from nudge.clocks import VirtualClock
from nudge.domain import sms
from nudge.domain.flows import EmailStep
from nudge.domain.model import Category, Channel, Message, MessageStatus
from nudge.services.compose import EmailComposer, MailPolicy, MissingPostalAddress, sender
from nudge.settings import Settings
from nudge.templating import TemplateRenderer
from tests.conftest import ROOT
from tests.factories import contact
from tests.flowkit import flows_dir, sent, simulation

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

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


# --- email defaults ----------------------------------------------------------------------------------------


def _composer(postal_address: str | None, templates: Path = ROOT / "templates") -> EmailComposer:
    return EmailComposer(
        renderer=TemplateRenderer(templates),
        from_address="hello@shop.example",
        policy=MailPolicy(
            unsubscribe_base_url="https://api.shop.example/v1/unsubscribe", postal_address=postal_address
        ),
        unsubscribe_key=lambda: "k",
    )


def _message(category: Category) -> Message:
    return Message(
        contact_id="c1",
        message_id="r1#s1",
        run_id="r1",
        flow_id="welcome",
        step_id="welcome_email",
        channel=Channel.EMAIL,
        category=category,
        status=MessageStatus.PENDING,
        created_at=NOW,
        recipient="sam@example.com",
    )


WELCOME = EmailStep(id="welcome_email", type="email", template="welcome/welcome", subject="Welcome!")
CONTEXT = {"contact": {"first_name": "Sam", "id": "c1"}, "event": {}, "step": {"id": "welcome_email"}}


@pytest.mark.parametrize("postal_address", [None, ""])
def test_marketing_email_without_a_postal_address_is_never_sent(postal_address: str | None) -> None:
    # The shipped brand kit leaves the address empty, as a new shop's would be
    with pytest.raises(MissingPostalAddress):
        _composer(postal_address).compose(WELCOME, _message(Category.MARKETING), CONTEXT, NOW)


def test_a_transactional_email_needs_no_postal_address_and_marketing_mail_shows_it_in_the_card() -> None:
    assert _composer(None).compose(WELCOME, _message(Category.TRANSACTIONAL), CONTEXT, NOW).subject == "Welcome!"
    email = _composer("12 Harbour Street, Portland").compose(WELCOME, _message(Category.MARKETING), CONTEXT, NOW)
    footer = email.html[email.html.index('class="nudge-footer') :]
    assert "12 Harbour Street, Portland" in footer and "Unsubscribe" in footer


def test_the_from_header_carries_the_shop_name() -> None:
    email = _composer("12 Harbour Street").compose(WELCOME, _message(Category.MARKETING), CONTEXT, NOW)
    assert email.from_address == "Linen & Clay <hello@shop.example>"
    assert sender("Café Olé", "hello@shop.example") == "Café Olé <hello@shop.example>"
    raw = build_mime(replace(email, from_address=sender("Café Olé", "hello@shop.example")))
    assert b"From: =?utf-8?q?Caf=C3=A9_Ol=C3=A9?= <hello@shop.example>" in raw


def test_non_ascii_bodies_go_out_seven_bit_safe() -> None:
    # Given an email whose text and HTML hold non-ASCII characters (a price in euros, a name, a dash)
    email = _composer("12 Harbour Street").compose(WELCOME, _message(Category.MARKETING), CONTEXT, NOW)
    email = replace(
        email, text=email.text + "\nCafé crème — 12 €", html=email.html.replace("Welcome", "Bienvenue, Zoë")
    )

    raw = build_mime(email)

    # Then every byte is ASCII and each part is quoted-printable or base64, never 8bit
    raw.decode("ascii")
    parsed = message_from_bytes(raw, policy=default)
    encodings = {part.get_content_type(): part["Content-Transfer-Encoding"] for part in parsed.walk()}
    assert encodings["text/plain"] in {"quoted-printable", "base64"}
    assert encodings["text/html"] in {"quoted-printable", "base64"}
    plain = parsed.get_body(("plain",))
    assert plain is not None and "Café crème — 12 €" in plain.get_content()
