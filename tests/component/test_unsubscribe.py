"""RFC 8058 one-click unsubscribe and the preference page, on moto, asserted on the Raw mail SES received."""

from __future__ import annotations

import email
import re
from datetime import timedelta
from email.message import Message as MimeMessage
from urllib.parse import unquote

import pytest

from nudge.domain.model import MessageStatus
from nudge.handlers import feedback
from nudge.local.lambda_events import FakeLambdaContext
from nudge.local.moto_stack import UNSUBSCRIBE_BASE_URL, MotoStack
from tests.conftest import START
from tests.events_helpers import unsubscribe_mail
from tests.factories import checkout_started, contact, order_placed, subscribed


def last_mail(stack: MotoStack) -> MimeMessage:
    return email.message_from_string(stack.sent_emails()[-1].raw_data)


def unsubscribe_path(mail: MimeMessage) -> str:
    https = re.search(r"<(https://[^>]+)>", str(mail["List-Unsubscribe"]).replace("\n", "").replace(" ", ""))
    assert https is not None
    return https.group(1).removeprefix(UNSUBSCRIBE_BASE_URL.removesuffix("/v1/unsubscribe"))


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def part(mail: MimeMessage, subtype: str) -> str:
    for sub in mail.walk():
        if sub.get_content_type() == f"text/{subtype}":
            return str(sub.get_payload(decode=True).decode())  # type: ignore[union-attr]
    raise AssertionError(f"no text/{subtype} part")


def test_marketing_mail_carries_one_click_unsubscribe_headers_and_footer(moto_stack: MotoStack) -> None:
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_1"))

    mail = last_mail(moto_stack)

    header = str(mail["List-Unsubscribe"]).replace("\n", "").replace(" ", "")
    assert re.fullmatch(
        r"<https://api\.shop\.example/v1/unsubscribe/v1\.[\w-]+\.[\w-]+\?m=[\w%.-]+>,"
        r"<mailto:unsubscribe@shop\.example\?subject=unsubscribe%20v1\.[\w-]+\.[\w-]+>",
        header,
    ), header
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html, text = part(mail, "html"), part(mail, "plain")
    assert "12 Harbour Street" in html and "12 Harbour Street" in text
    assert unsubscribe_path(mail).rsplit("/", 1)[1] in text


def test_transactional_mail_has_the_postal_address_but_no_unsubscribe(moto_stack: MotoStack) -> None:
    moto_stack.call_api("POST", "/v1/events", order_placed("evt_1", "chk_1", contact("bob", email_marketing=False)))

    mail = last_mail(moto_stack)

    assert mail["List-Unsubscribe"] is None and mail["List-Unsubscribe-Post"] is None
    assert "12 Harbour Street" in part(mail, "plain")


def test_html_is_inlined_tagged_and_has_a_hidden_preheader(moto_stack: MotoStack) -> None:
    moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1"))
    moto_stack.pump.run_until(START + timedelta(hours=1))

    html = part(last_mail(moto_stack), "html")

    # The brand kit's mj-style rule is inlined (clients that drop <style> still show it); the media queries that
    # stack columns on a phone stay in <style>, where only a media query can live.
    assert re.search(r'<a class="footer-link" href="[^"]+" style="color: #[0-9a-f]{6};">', html)
    assert "@media only screen and (min-width:480px)" in html
    assert "checkouts/chk_1?utm_source=nudge&amp;utm_medium=email&amp;utm_campaign=abandoned_cart" in html
    assert re.search(r'href="https://api\.shop\.example/v1/unsubscribe/[\w.-]+\?m=[\w%.-]+"', html)  # never tagged
    assert re.search(r'<div style="display:none;[^"]*">Your items are saved', html)


def test_one_click_post_unsubscribes_at_once_and_the_next_step_is_skipped(moto_stack: MotoStack) -> None:
    result = moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1"))
    moto_stack.pump.run_until(START + timedelta(hours=1))
    path = unsubscribe_path(last_mail(moto_stack))

    response = moto_stack.call_unsubscribe("POST", path, "List-Unsubscribe=One-Click")
    moto_stack.pump.run_until(START + timedelta(days=4))

    assert response.status == 200 and "You are unsubscribed" in response.body["html"]
    skipped = {m.step_id: m.reason for m in moto_stack.container.store.messages_for(result.body["contact_id"])}
    assert skipped["reminder_2"] == "no_email_marketing_consent"
    assert len(moto_stack.sent_emails()) == 1
    # a storefront that still says "consented" cannot undo it: the unsubscribe is a suppression too
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_2", contact("bob")))
    [welcome] = [
        m for m in moto_stack.container.store.messages_for(result.body["contact_id"]) if m.flow_id == "welcome"
    ]
    assert (welcome.status, welcome.reason) == (MessageStatus.SKIPPED, "unsubscribed")


def test_get_shows_the_preference_page_and_changes_nothing(moto_stack: MotoStack) -> None:
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_1"))
    before = moto_stack.scan_all_tables()

    page = moto_stack.call_unsubscribe("GET", unsubscribe_path(last_mail(moto_stack)))

    assert page.status == 200
    assert "a***@example.com is subscribed to marketing email" in page.body["html"]
    # one topic per marketing flow (post-purchase's review request is marketing; its receipt is not)
    assert re.findall(r'value="(\w+)" checked', page.body["html"]) == [
        "abandoned_cart",
        "back_in_stock",
        "birthday",
        "browse_abandonment",
        "course_enrollment_funnel",
        "post_purchase",
        "product_launch",
        "replenishment",
        "review_referral",
        "sunset",
        "vip_loyalty",
        "welcome",
        "win_back",
    ]
    assert moto_stack.scan_all_tables() == before


def test_the_page_names_topics_in_readers_words_and_ticks_nothing_after_an_unsubscribe(
    moto_stack: MotoStack,
) -> None:
    # Given Alice, subscribed, who follows her email's unsubscribe link
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_1"))
    path = unsubscribe_path(last_mail(moto_stack))

    before = moto_stack.call_unsubscribe("GET", path).body["html"]
    after = moto_stack.call_unsubscribe("POST", path, "action=unsubscribe").body["html"]

    # The topics carry the flows' `topic` words, not their internal names
    assert 'value="abandoned_cart" checked> Reminders about your cart</label>' in before
    assert "Sunset unengaged contacts" not in before and "Abandoned cart" not in before
    # Unsubscribed from everything: no box claims mail that will not come
    assert "unsubscribed from all marketing email" in after
    assert " checked" not in after and 'value="win_back"> Offers to welcome you back</label>' in after


def test_resubscribe_and_topics_through_the_page(moto_stack: MotoStack) -> None:
    alice = moto_stack.call_api("POST", "/v1/events", subscribed("evt_1")).body["contact_id"]
    path = unsubscribe_path(last_mail(moto_stack))
    moto_stack.call_unsubscribe("POST", path, "action=unsubscribe")
    csrf = csrf_of(moto_stack.call_unsubscribe("GET", path).body["html"])

    again = moto_stack.call_unsubscribe("POST", path, f"action=resubscribe&consent=yes&csrf={csrf}")
    topics = moto_stack.call_unsubscribe("POST", path, f"action=save_topics&topic=welcome&csrf={csrf}")
    moto_stack.call_api("POST", "/v1/events", checkout_started("evt_2", "chk_1", contact("alice")))
    moto_stack.pump.run_until(START + timedelta(hours=1))

    assert "is subscribed to marketing email" in again.body["html"]
    assert 'value="abandoned_cart">' in topics.body["html"] and 'value="welcome" checked' in topics.body["html"]
    reminder = {m.step_id: m for m in moto_stack.container.store.messages_for(alice)}["reminder_1"]
    assert (reminder.status, reminder.reason) == (MessageStatus.SKIPPED, "unsubscribed:abandoned_cart")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: "v1." + "Y3VzdF9vdGhlcg" + "." + t.rsplit(".", 1)[1],  # another contact id, same signature
        lambda t: "v2" + t[2:],  # unknown version
        lambda t: "garbage",
    ],
)
def test_a_tampered_token_gets_a_4xx_and_changes_nothing(moto_stack: MotoStack, mutate) -> None:  # type: ignore[no-untyped-def]
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_1"))
    path = unsubscribe_path(last_mail(moto_stack))
    base, _, query = path.partition("?")
    prefix, token = base.rsplit("/", 1)
    before = moto_stack.scan_all_tables()

    responses = [
        moto_stack.call_unsubscribe(method, f"{prefix}/{mutate(token)}?{query}", form)
        for method, form in (("POST", "List-Unsubscribe=One-Click"), ("GET", None), ("POST", "action=resubscribe"))
    ]

    assert [r.status for r in responses] == [403, 403, 403]
    assert responses[0].body["type"] == "urn:nudge:problem:bad-token"
    assert "instance" not in responses[0].body  # the path holds a token: never echoed
    assert moto_stack.scan_all_tables() == before


def test_mail_to_the_mailto_address_unsubscribes_like_the_one_click_post(moto_stack: MotoStack) -> None:
    alice = moto_stack.call_api("POST", "/v1/events", subscribed("evt_1")).body["contact_id"]
    mailto = re.search(r"<mailto:[^?]+\?subject=([^>]+)>", str(last_mail(moto_stack)["List-Unsubscribe"]))
    assert mailto is not None
    subject = unquote(mailto.group(1))  # what the mail client puts in the Subject

    forged = feedback.handler(
        unsubscribe_mail(subject[:-1] + ("A" if subject[-1] != "A" else "B")), FakeLambdaContext.fresh("nudge-feedback")
    )
    assert forged == {"bad_token": 1}
    assert moto_stack.container.store.get_contact(alice).email_marketing is True  # type: ignore[union-attr]

    outcome = feedback.handler(unsubscribe_mail(subject), FakeLambdaContext.fresh("nudge-feedback"))

    assert outcome == {"unsubscribed": 1}
    assert moto_stack.container.store.get_contact(alice).email_marketing is False  # type: ignore[union-attr]


def test_an_unsubscribe_counts_once_against_the_step_whose_link_was_used(moto_stack: MotoStack) -> None:
    from nudge.services.reporting import build_report

    bob = moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1")).body["contact_id"]
    moto_stack.pump.run_until(START + timedelta(hours=1))
    path = unsubscribe_path(last_mail(moto_stack))
    alice = moto_stack.call_api("POST", "/v1/events", subscribed("evt_2")).body["contact_id"]
    alices = next(m for m in moto_stack.container.store.messages_for(alice) if m.status is MessageStatus.SENT)

    for form in ("List-Unsubscribe=One-Click", "action=unsubscribe"):  # the second click counts no more
        moto_stack.call_unsubscribe("POST", path, form)
    # bob's token with alice's message id: the token's contact owns no such message, so nothing is credited
    moto_stack.call_unsubscribe("POST", path.partition("?")[0] + "?m=" + alices.message_id, "action=unsubscribe")

    store = moto_stack.container.store
    [reminder] = [m for m in store.messages_for(bob) if m.step_id == "reminder_1"]
    assert set(reminder.feedback) == {"unsubscribe"}
    assert store.step_counts("abandoned_cart") == {"reminder_1": {"unsubscribe": 1}}
    assert store.step_counts("welcome") == {}
    steps = {(r.flow_id, r.step_id): r.unsubscribed for r in build_report(store).steps}  # type: ignore[arg-type]
    assert steps[("abandoned_cart", "reminder_1")] == 1 and steps[("welcome", alices.step_id)] == 0


@pytest.mark.parametrize(
    ("m", "looked_up"),
    # DynamoDB refuses a sort key over 1,024 bytes (moto does not): a long `m` is never sent to it.
    [("x" * 5000, False), ("%00%FF", False), ("", False), ("r1#0001#welcome_email", True)],
)
def test_a_bad_or_unknown_message_id_still_unsubscribes_and_credits_nothing(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch, m: str, looked_up: bool
) -> None:
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_1"))
    token_path = unsubscribe_path(last_mail(moto_stack)).partition("?")[0]
    store = moto_stack.container.store
    asked: list[str] = []
    original = store.get_message
    monkeypatch.setattr(store, "get_message", lambda c, message_id: asked.append(message_id) or original(c, message_id))

    response = moto_stack.call_unsubscribe("POST", f"{token_path}?m={m}", "List-Unsubscribe=One-Click")

    assert response.status == 200 and "You are unsubscribed" in response.body["html"]
    assert store.step_counts("welcome") == {}
    assert asked == ([m] if looked_up else [])
