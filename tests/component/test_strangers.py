"""Regression tests for issue 13's attacks: what a stranger with a captured request or a crafted address can do.

Each test failed on the main branch before the fix it names.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from typing import Any

import pytest

from nudge import names, signing
from nudge.domain.model import Channel, Contact, MessageStatus, contact_id_for
from nudge.domain.suppression import Suppression, address_key
from nudge.handlers import ingest
from nudge.local.gateway import LocalResponse
from nudge.local.lambda_events import FakeLambdaContext, api_gateway_event
from nudge.local.moto_stack import ApiResult, MotoStack
from nudge.ports import KeyKind
from tests.component.test_ingest_handler import NOTHING, stored_items
from tests.component.test_subscribe import SHOP, plain_text, publishable
from tests.component.test_unsubscribe import csrf_of, last_mail, unsubscribe_path
from tests.component.test_webhooks import ERIN, everything_stored, shopify
from tests.factories import checkout_started, contact, subscribed
from tests.unit.test_storefront_mapping import fixture

CAROL = contact_id_for(external_id=None, email="carol@example.com", phone=None)


def test_a_captured_signed_get_cannot_be_replayed_as_a_delete(moto_stack: MotoStack) -> None:
    # Given two contacts, and a signed GET of one of them captured in flight (v1 and v2 alike)
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_1", contact("ann", id="c_ann")))
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_2", contact("bo", id="c_bo")))
    now = moto_stack.clock.now()
    captured_v1 = signing.sign(moto_stack.signing_key, b"", now)  # the only kind main had: it covered the body alone
    # When it is replayed as a DELETE of either contact, then it is refused and nobody is erased
    for target in ("/v1/contacts/c_ann", "/v1/contacts/c_bo"):
        assert _replay("DELETE", target, captured_v1) == 401
    # And a v2 signature of the GET is good for that GET only
    captured_v2 = signing.sign_request(moto_stack.signing_key, "GET", "/v1/contacts/c_ann", {}, b"", now)
    assert _replay("GET", "/v1/contacts/c_ann", captured_v2) == 200
    for target in ("/v1/contacts/c_ann", "/v1/contacts/c_bo"):
        assert _replay("DELETE", target, captured_v2) == 401
    assert moto_stack.container.store.get_contact("c_ann") is not None
    assert moto_stack.container.store.get_contact("c_bo") is not None


def _replay(method: str, path: str, header: str) -> int:
    event = api_gateway_event(method, path, b"", {names.SIGNATURE_HEADER: header})
    return int(ingest.handler(event, FakeLambdaContext.fresh("nudge-ingest"))["statusCode"])


def test_a_display_name_cannot_dodge_an_unsubscribe(moto_stack: MotoStack) -> None:
    # Given an unsubscribed address
    moto_stack.container.store.suppress(
        address_key(Channel.EMAIL, "victim@example.com"), Suppression.UNSUBSCRIBED, moto_stack.clock.now()
    )
    # When an event names it with a display name, a comment or in another case
    crafted = ['"x"<victim@example.com>', "Victim <victim@example.com>", "victim(c)@example.com"]
    results = [
        moto_stack.call_api("POST", "/v1/events", subscribed(f"evt_{i}", {"email": address, "email_marketing": True}))
        for i, address in enumerate(crafted)
    ]
    same = moto_stack.call_api("POST", "/v1/events", subscribed("evt_9", {"email": "VICTIM@Example.COM"}))

    # Then the crafted ones are refused by name, and the other spelling is still suppressed: nothing is sent
    assert [(r.status, r.body["errors"][0]["pointer"]) for r in results] == [(422, "/contact/email")] * 3
    assert same.status == 202
    assert moto_stack.sent_emails() == []


# 5xx from input ---------------------------------------------------------------------------------------


def _problem(result: ApiResult) -> tuple[int, str]:
    return result.status, result.body.get("errors", [{"pointer": None}])[0]["pointer"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b'{"id":"e","type":"t","contact":{"email":"a@b.co"},"properties":{"x":' + b"[" * 1200 + b"]" * 1200 + b"}}",
            (422, ""),  # the whole document (RFC 6901): too deep to walk
        ),
        (b'{"id":"e","type":"t","contact":{"email":"a@b.co"},"properties":{"x":NaN}}', (422, "/properties/x")),
        (b'{"id":"e","type":"t","contact":{"email":"a@b.co"},"properties":{"x":-Infinity}}', (422, "/properties/x")),
        (b'{"id":"e","type":"t","contact":{"email":"a@b.co"},"properties":{"x":1e999}}', (422, "/properties/x")),
        (
            b'{"id":"e","type":"t","contact":{"email":"a@b.co"},"properties":{"x":' + b"9" * 5000 + b"}}",
            (422, "/properties/x"),
        ),
    ],
    ids=["nested-1200-deep", "nan", "infinity", "overflowing-float", "5000-digit-integer"],
)
def test_hostile_json_is_a_problem_naming_the_member(moto_stack: MotoStack, raw: bytes, expected: tuple) -> None:
    result = moto_stack.call_api("POST", "/v1/events", raw=raw)

    assert _problem(result) == expected
    assert result.headers["Content-Type"] == "application/problem+json"
    assert stored_items(moto_stack) == NOTHING


def test_a_400_digit_signature_timestamp_is_a_401(moto_stack: MotoStack) -> None:
    header = "t=" + "9" * 400 + ",v1=" + "0" * 64  # v1: main parsed its timestamp, then overflowed a float
    result = moto_stack.call_api("POST", "/v1/events", subscribed("evt_1"), headers={names.SIGNATURE_HEADER: header})

    assert result.status == 401 and result.body["type"] == "urn:nudge:problem:unauthorized"


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "1969-12-31T23:59:59Z"])
def test_occurred_at_at_the_edges_of_the_date_range_is_a_422(moto_stack: MotoStack, stamp: str) -> None:
    result = moto_stack.call_api("POST", "/v1/events", subscribed("evt_1") | {"occurred_at": stamp})

    assert _problem(result) == (422, "/occurred_at")
    assert stored_items(moto_stack) == NOTHING


def test_one_bad_timestamp_in_a_batch_fails_only_its_item(moto_stack: MotoStack) -> None:
    key, _ = moto_stack.container.keys.create(KeyKind.SECRET, "tests")
    good = {"type": "identify", "userId": "u_1", "traits": {"email": "u1@example.com"}}
    bad = good | {"userId": "u_2", "timestamp": "0001-01-01T00:00:00+23:59"}
    body = json.dumps({"batch": [good, bad]}).encode()

    response = moto_stack.send(
        "POST", "/v1/batch", body, {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    )

    assert response.status == 200
    assert [
        (r["status"], r.get("problem", {}).get("errors", [{}])[0].get("pointer")) for r in response.json()["results"]
    ] == [
        (202, None),
        (422, "/timestamp"),
    ]


def test_a_line_break_in_a_name_is_refused_and_a_stored_one_cannot_strand_a_run(moto_stack: MotoStack) -> None:
    # Given a first name with CR/LF sent through the API: refused, by name
    crlf = "Bo\r\nBcc: everyone@example.com"
    refused = moto_stack.call_api("POST", "/v1/events", subscribed("evt_1", contact("bo", first_name=crlf)))
    assert _problem(refused) == (422, "/contact/first_name")
    # And one that came in through a storefront before the fix (stored as is): the welcome still goes out
    moto_stack.container.store.save_contact(
        Contact(
            contact_id=contact_id_for(external_id=None, email="bo@example.com", phone=None),
            email="bo@example.com",
            first_name=crlf,
            email_marketing=True,
        ),
        0,
    )
    result = moto_stack.call_api("POST", "/v1/events", subscribed("evt_2", contact("bo")))

    assert result.status == 202
    [sent] = moto_stack.sent_emails()
    assert "\nBcc:" not in sent.raw_data
    assert [m.status for m in moto_stack.container.store.messages_for(result.body["contact_id"])] == [
        MessageStatus.SENT
    ]


def test_nan_cannot_reach_a_contact_so_the_export_stays_json(moto_stack: MotoStack) -> None:
    key, _ = moto_stack.container.keys.create(KeyKind.SECRET, "tests")
    body = b'{"userId":"u_1","traits":{"email":"u1@example.com","score":NaN}}'
    response = moto_stack.send(
        "POST", "/v1/identify", body, {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    )
    assert (response.status, response.json()["errors"][0]["pointer"]) == (422, "/traits/score")
    assert moto_stack.container.store.get_contact("u_1") is None


# Limits -----------------------------------------------------------------------------------------------


def test_contact_properties_stop_at_their_budget_and_later_events_still_work(moto_stack: MotoStack) -> None:
    # Given a contact whose properties have been filled to the budget, 8 KB at a time
    chunk = "x" * 8000
    for i in range(8):
        result = moto_stack.call_api(
            "POST", "/v1/contacts", {"id": "c_big", "email": "big@example.com", "properties": {f"p{i}": chunk}}
        )
        assert result.status == 200, result.body
    # When one more property arrives, through either route
    over = moto_stack.call_api("POST", "/v1/contacts", {"id": "c_big", "properties": {"p9": chunk}})
    event = subscribed("evt_1", {"id": "c_big", "email": "big@example.com"}) | {}
    event["contact"]["properties"] = {"p9": chunk}
    over_event = moto_stack.call_api("POST", "/v1/events", event)
    # Then each is refused by name, and an event that adds nothing is still taken
    assert _problem(over) == (422, "/properties")
    assert _problem(over_event) == (422, "/contact/properties")
    assert moto_stack.container.store.events_for("c_big") == []  # the refused event left no record
    assert moto_stack.call_api("POST", "/v1/events", subscribed("evt_2", {"id": "c_big"})).status == 202


# Erasure ----------------------------------------------------------------------------------------------


def test_after_an_erase_no_ref_leads_to_them_and_later_webhooks_do_not_recreate_them(moto_stack: MotoStack) -> None:
    # Given a customer known through an order, erased through the API
    shopify(moto_stack, "orders/create", fixture("shopify/orders_create.json"), "wh-ord-1")
    assert moto_stack.call_api("DELETE", f"/v1/contacts/{ERIN}").status == 200
    # Then no ref leads to them any more
    assert everything_stored(moto_stack)["refs"] == 0
    # When the shop later sends a refund of that order and a repeat of the order itself
    refund = shopify(moto_stack, "refunds/create", fixture("shopify/refunds_create.json"), "wh-ref-1")
    order = shopify(moto_stack, "orders/create", fixture("shopify/orders_create.json"), "wh-ord-2")
    # Then neither brings them back, and both answers say why
    assert refund.status == 200 and "ignored" in refund.json()
    assert order.status == 200 and "erased" in order.json()["ignored"]
    assert moto_stack.container.store.get_contact(ERIN) is None
    assert moto_stack.container.store.events_for(ERIN) == []


def test_an_erased_customer_who_comes_back_through_the_api_is_a_customer_again(moto_stack: MotoStack) -> None:
    shopify(moto_stack, "orders/create", fixture("shopify/orders_create.json"), "wh-ord-1")
    moto_stack.call_api("DELETE", f"/v1/contacts/{ERIN}")

    moto_stack.call_api("POST", "/v1/contacts", {"email": "erin@example.com"})
    order = shopify(moto_stack, "orders/create", fixture("shopify/orders_create.json"), "wh-ord-3")

    assert order.status == 202


# The signup form --------------------------------------------------------------------------------------


def _signup(stack: MotoStack, key: str, form: dict[str, object]) -> LocalResponse:
    headers = {"Content-Type": "application/json", "Origin": SHOP}
    return stack.send("POST", "/v1/subscribe", json.dumps(form).encode(), headers, {"key": key})


@pytest.mark.parametrize("double_opt_in", [False, True])
def test_a_signup_with_a_customers_address_changes_nothing_of_theirs(
    moto_stack: MotoStack, double_opt_in: bool
) -> None:
    # Given a customer with a phone, SMS consent, a name and properties
    carol = contact("carol", phone="+14155550188", sms_marketing=True, email_marketing=False, properties={"vip": "yes"})
    moto_stack.call_api("POST", "/v1/contacts", carol)
    before = moto_stack.container.store.get_contact(CAROL)
    key = publishable(moto_stack, double_opt_in=double_opt_in)

    # When a stranger signs her address up with their own phone, name and text
    response = _signup(
        moto_stack,
        key,
        {
            "email": "carol@example.com",
            "first_name": "Click evil.example now",
            "phone": "+14155550199",
            "sms_marketing": True,
            "source": "footer",
        },
    )

    # Then the form answers as for anyone, her contact is as it was, and only a confirmation request goes out
    assert response.status == 202
    after = moto_stack.container.store.get_contact(CAROL)
    assert before is not None and after is not None
    assert (after.phone, after.sms_marketing, after.first_name, after.email_marketing, after.properties) == (
        before.phone,
        before.sms_marketing,
        before.first_name,
        before.email_marketing,
        before.properties,
    )
    [mail] = moto_stack.sent_emails()
    assert "Subject: Please confirm your subscription" in mail.raw_data
    assert "evil.example" not in plain_text(mail.raw_data)  # the stranger's text is not in it
    assert "One click to go, Carol" in plain_text(mail.raw_data)  # the stored name, not the one typed


def test_confirming_fills_in_what_is_missing_and_never_replaces_a_phone(moto_stack: MotoStack) -> None:
    carol = contact("carol", phone="+14155550188", sms_marketing=False, email_marketing=None)
    moto_stack.call_api("POST", "/v1/contacts", carol)
    key = publishable(moto_stack, double_opt_in=True)
    _signup(moto_stack, key, {"email": "carol@example.com", "phone": "+14155550199", "sms_marketing": True})
    path, token = _confirmation_link(moto_stack)

    # When the link is fetched (a scanner) and then its button pressed (the owner)
    moto_stack.send("GET", path, query={"token": token})
    scanned = moto_stack.container.store.get_contact(CAROL)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    confirmed = moto_stack.send("POST", path, f"token={token}".encode(), form)

    # Then only the press subscribed her, and her own phone stayed, without SMS consent
    assert scanned is not None and scanned.email_marketing is None
    after = moto_stack.container.store.get_contact(CAROL)
    assert confirmed.status == 200 and after is not None
    assert (after.email_marketing, after.phone, after.sms_marketing) == (True, "+14155550188", False)


def test_the_confirmation_link_carries_no_address(moto_stack: MotoStack) -> None:
    _signup(moto_stack, publishable(moto_stack, double_opt_in=True), {"email": "kim@example.com"})
    _, token = _confirmation_link(moto_stack)

    payload = base64.urlsafe_b64decode(token.partition(".")[0] + "==").decode()

    assert "kim" not in payload and "@" not in payload


def _confirmation_link(stack: MotoStack) -> tuple[str, str]:
    found = re.search(r"(/v1/subscribe/confirm)\?token=([A-Za-z0-9_.-]+)", plain_text(stack.sent_emails()[-1].raw_data))
    assert found is not None
    return found.group(1), found.group(2)


# The preference page ----------------------------------------------------------------------------------


def test_resubscribe_needs_the_pages_csrf_token_and_fresh_consent_to_lift_a_complaint(moto_stack: MotoStack) -> None:
    # Given a subscriber who complained (marked a mail as spam)
    alice = moto_stack.call_api("POST", "/v1/events", subscribed("evt_1")).body["contact_id"]
    path = unsubscribe_path(last_mail(moto_stack))
    key = address_key(Channel.EMAIL, "alice@example.com")
    moto_stack.container.store.suppress(key, Suppression.COMPLAINT, moto_stack.clock.now())

    # When someone posts resubscribe with the token only, or with the page's CSRF token but no consent
    forged = moto_stack.call_unsubscribe("POST", path, "action=resubscribe")
    assert (forged.status, forged.body.get("type")) == (403, "urn:nudge:problem:bad-csrf")
    csrf = csrf_of(moto_stack.call_unsubscribe("GET", path).body["html"])
    unticked = moto_stack.call_unsubscribe("POST", path, f"action=resubscribe&csrf={csrf}")
    # Then both are refused and the complaint stands
    assert (unticked.status, unticked.body["errors"][0]["pointer"]) == (422, "/consent")
    state = moto_stack.container.store.address_state(key)
    assert state is not None and Suppression.COMPLAINT in state.suppressed

    # When the person ticks the box on the page: the consent is recorded, then the complaint lifted
    done = moto_stack.call_unsubscribe("POST", path, f"action=resubscribe&consent=yes&csrf={csrf}")
    assert done.status == 200
    state = moto_stack.container.store.address_state(key)
    assert state is None or Suppression.COMPLAINT not in state.suppressed
    assert moto_stack.container.store.consent_records(key)[-1].source == "preference_page:resubscribe:consent_box"
    assert moto_stack.container.store.get_contact(alice) is not None


def test_an_export_is_valid_json_even_with_a_nan_stored_before_the_bounds(moto_stack: MotoStack) -> None:
    moto_stack.container.store.save_contact(
        Contact("c_old", email="old@example.com", properties={"x": float("nan")}), 0
    )

    result = moto_stack.call_api("GET", "/v1/contacts/c_old")

    assert result.status == 200 and result.body["contact"]["properties"] == {"x": None}


def test_an_erase_during_a_wake_up_leaves_no_message_with_the_address(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cart reminder due, and an erase that lands while the wake-up is sending it
    moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1", contact("dan", id="c_dan")))
    mailer = moto_stack.container.mailer
    send = mailer.send

    def erase_meanwhile(email: Any) -> str:
        moto_stack.container.privacy.erase("c_dan")
        return str(send(email))

    monkeypatch.setattr(mailer, "send", erase_meanwhile)
    moto_stack.pump.run_until(moto_stack.clock.now() + timedelta(hours=2))

    # Then nothing the wake-up wrote afterwards holds the address
    assert moto_stack.container.store.messages_for("c_dan") == []


# ADR 0015: past 4 segments an SMS is not sent (nudge.domain.sms.MAX_SEGMENTS).
MAX_SMS_SEGMENTS = 4


def test_an_input_controlled_sms_is_capped_in_segments(moto_stack: MotoStack) -> None:
    # Given a cart whose recovery URL (from the storefront's event) runs to a thousand characters
    who = contact("eve", phone="+14155550177", sms_marketing=True)
    event = checkout_started("evt_1", "chk_1", who)
    event["properties"]["recovery_url"] = "https://shop.example/c/" + "x" * 1000
    moto_stack.call_api("POST", "/v1/events", event)

    moto_stack.pump.run_until(moto_stack.clock.now() + timedelta(days=2))

    # Then no SMS of more than MAX_SMS_SEGMENTS segments goes out
    sent = [m for m in moto_stack.container.store.messages_for(_eve()) if m.sms_segments]
    assert sent == [] or all((m.sms_segments or 0) <= MAX_SMS_SEGMENTS for m in sent)


def _eve() -> str:
    return contact_id_for(external_id=None, email="eve@example.com", phone=None)
