"""The pure rules behind deliverability: tokens, suppressions, SMS segments and keywords, UTM tags."""

from __future__ import annotations

import base64
import string
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nudge.domain import links, sms
from nudge.domain.model import Category, Channel
from nudge.domain.suppression import AddressState, Suppression, address_key, block_reason
from nudge.domain.unsubscribe import BadToken, make_token, read_token

AT = datetime(2026, 11, 2, tzinfo=UTC)


@given(st.text(min_size=1, max_size=200))
def test_a_token_reads_back_as_the_contact_it_was_made_for(contact_id: str) -> None:
    assert read_token("k", make_token("k", contact_id)) == contact_id


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (make_token("other-key", "cust_1"), "signature"),
        (make_token("k", "cust_1")[:-1] + "A", "signature"),
        ("v1." + make_token("k", "cust_2").split(".")[1] + "." + make_token("k", "cust_1").split(".")[2], "signature"),
        ("v1.***.***", "malformed"),
        ("v1.onlytwo", "malformed"),
        ("v1." + "A" * 600 + ".x", "malformed"),
    ],
)
def test_a_forged_or_mangled_token_is_refused(token: str, why: str) -> None:
    with pytest.raises(BadToken, match=why):
        read_token("k", token)


def test_only_the_canonical_spelling_of_a_token_is_accepted() -> None:
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    token = make_token("k", "cust_1")
    # The MAC is 32 bytes: 43 characters, the last carrying 2 spare bits that decoders ignore.
    variant = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    pad = "=" * (-len(variant.rsplit(".", 1)[1]) % 4)
    same = base64.urlsafe_b64decode(variant.rsplit(".", 1)[1] + pad)
    assert same == base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + pad)

    with pytest.raises(BadToken, match="malformed"):
        read_token("k", variant)


def test_no_key_verifies_nothing() -> None:
    with pytest.raises(BadToken):
        read_token("", make_token("k", "cust_1"))


def test_address_keys_ignore_email_case_and_reveal_nothing() -> None:
    key = address_key(Channel.EMAIL, " Bob@Example.com")
    assert key == address_key(Channel.EMAIL, "bob@example.com")
    assert key.startswith("email#") and "bob" not in key
    assert address_key(Channel.SMS, "+14155550101") != address_key(Channel.EMAIL, "+14155550101")


@pytest.mark.parametrize(
    ("suppressed", "channel", "category", "reason"),
    [
        (Suppression.BOUNCE, Channel.EMAIL, Category.TRANSACTIONAL, "suppressed:bounce"),
        (Suppression.COMPLAINT, Channel.EMAIL, Category.MARKETING, "suppressed:complaint"),
        (Suppression.COMPLAINT, Channel.EMAIL, Category.TRANSACTIONAL, None),
        (Suppression.UNSUBSCRIBED, Channel.EMAIL, Category.MARKETING, "unsubscribed"),
        (Suppression.UNSUBSCRIBED, Channel.SMS, Category.MARKETING, None),
        (Suppression.SMS_OPTED_OUT, Channel.SMS, Category.MARKETING, "sms_opted_out"),
        (Suppression.SMS_OPTED_OUT, Channel.SMS, Category.TRANSACTIONAL, "sms_opted_out"),
        (Suppression.ERASED, Channel.SMS, Category.MARKETING, "suppressed:erased"),
        (Suppression.ERASED, Channel.EMAIL, Category.TRANSACTIONAL, None),
    ],
)
def test_each_suppression_blocks_its_scope_only(
    suppressed: Suppression, channel: Channel, category: Category, reason: str | None
) -> None:
    state = AddressState("k", suppressed={suppressed: AT})
    assert block_reason(state, channel, category, "welcome") == reason


def test_a_topic_opt_out_blocks_that_flows_marketing_email_only() -> None:
    state = AddressState("k", topics_off=frozenset({"abandoned_cart"}))
    assert block_reason(state, Channel.EMAIL, Category.MARKETING, "abandoned_cart") == "unsubscribed:abandoned_cart"
    assert block_reason(state, Channel.EMAIL, Category.MARKETING, "welcome") is None
    assert block_reason(state, Channel.EMAIL, Category.TRANSACTIONAL, "abandoned_cart") is None


@pytest.mark.parametrize(
    ("text", "encoding", "count"),
    [
        ("x" * 160, "gsm7", 1),
        ("x" * 161, "gsm7", 2),
        ("€" * 80, "gsm7", 1),  # an extension character costs two septets
        ("€" * 81, "gsm7", 2),
        ("é" * 160, "gsm7", 1),  # é is in the GSM-7 basic set
        ("ç" * 70, "ucs2", 1),  # ç is not (only Ç is)
        ("ç" * 71, "ucs2", 2),
        ("🛒" * 35, "ucs2", 1),  # an emoji is two UTF-16 units
        ("🛒" * 36, "ucs2", 2),
        ("x" * 306, "gsm7", 2),
        ("x" * 307, "gsm7", 3),
    ],
)
def test_sms_segments_follow_gsm7_and_ucs2_limits(text: str, encoding: str, count: int) -> None:
    assert sms.segments(text) == sms.Segments(encoding, count)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", sms.Keyword.OPT_OUT),
        (" stop please", sms.Keyword.OPT_OUT),
        ("Unsubscribe.", sms.Keyword.OPT_OUT),
        ("quit", sms.Keyword.OPT_OUT),
        ("STOPALL", sms.Keyword.OPT_OUT),
        ("unstop", sms.Keyword.OPT_IN),
        ("HELP", sms.Keyword.HELP),
        ("where is my order", None),
        ("", None),
    ],
)
def test_inbound_keywords(body: str, expected: sms.Keyword | None) -> None:
    found = sms.keyword_of(body)
    assert (found[0] if found else None) == expected


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+1 (415) 555-0101", "+14155550101"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+33 6 12 34 56 78", "+33612345678"),
    ],
)
def test_phone_numbers_normalize_to_e164(raw: str, e164: str) -> None:
    assert sms.to_e164(raw) == e164


@pytest.mark.parametrize("raw", ["+1 415 555", "+999 1234567", "call me", "4155550101"])
def test_invalid_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        sms.to_e164(raw)


def test_the_opt_out_notice_is_added_once() -> None:
    assert sms.with_opt_out_notice("Sale!") == "Sale! Reply STOP to opt out"
    assert sms.with_opt_out_notice("Sale! Text STOP to end") == "Sale! Text STOP to end"


UTM = {"utm_source": "nudge", "utm_medium": "email"}


def test_utm_params_are_added_to_links_but_never_override_or_touch_kept_ones() -> None:
    markup = (
        '<a href="https://shop.example/c?x=1&amp;y=2">a</a> <a href="https://shop.example/p?utm_source=ig">b</a>'
        ' <a href="mailto:hi@shop.example">c</a> <a href="https://api.example/v1/unsubscribe/t">d</a>'
    )

    tagged = links.tag_html(markup, UTM, keep=lambda url: "/unsubscribe/" in url)

    assert 'href="https://shop.example/c?x=1&amp;y=2&amp;utm_source=nudge&amp;utm_medium=email"' in tagged
    assert 'href="https://shop.example/p?utm_source=ig&amp;utm_medium=email"' in tagged
    assert 'href="mailto:hi@shop.example"' in tagged
    assert 'href="https://api.example/v1/unsubscribe/t"' in tagged


def test_utm_params_in_plain_text() -> None:
    text = "Back to your cart: https://shop.example/c/1 (saved)"
    assert links.tag_text(text, UTM, keep=lambda _: False) == (
        "Back to your cart: https://shop.example/c/1?utm_source=nudge&utm_medium=email (saved)"
    )
