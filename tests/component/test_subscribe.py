"""Signup forms on moto: publishable keys, CORS, the honeypot, rate limits and double opt-in."""

from __future__ import annotations

import email
import json
import re
from typing import Any

import pytest

from nudge.local.gateway import LocalResponse
from nudge.local.moto_stack import MotoStack
from nudge.ports import KeyKind
from tests.component.test_ingest_handler import NOTHING, stored_items

SHOP = "https://shop.example"


def publishable(stack: MotoStack, *, double_opt_in: bool = False) -> str:
    plain, _ = stack.container.keys.create(KeyKind.PUBLISHABLE, "footer", origins=[SHOP], double_opt_in=double_opt_in)
    return plain


def subscribe(stack: MotoStack, key: str, form: dict[str, Any], origin: str | None = SHOP) -> LocalResponse:
    headers = {"Content-Type": "application/json"} | ({"Origin": origin} if origin else {})
    return stack.send("POST", "/v1/subscribe", json.dumps(form).encode(), headers, {"key": key})


def test_a_signup_from_an_allowed_origin_starts_the_welcome_flow(moto_stack: MotoStack) -> None:
    key = publishable(moto_stack)

    response = subscribe(moto_stack, key, {"email": "Jo@Example.com", "first_name": "Jo", "source": "footer"})

    assert (response.status, response.json()) == (202, {"status": "subscribed"})
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
    [welcome] = moto_stack.sent_emails()
    assert welcome.destinations == ["jo@example.com"]
    assert "Subject: Welcome, Jo!" in welcome.raw_data


def test_the_preflight_names_only_allowed_origins(moto_stack: MotoStack) -> None:
    key = publishable(moto_stack)

    allowed = moto_stack.send("OPTIONS", "/v1/subscribe", headers={"Origin": SHOP}, query={"key": key})
    refused = moto_stack.send(
        "OPTIONS", "/v1/subscribe", headers={"Origin": "https://evil.example"}, query={"key": key}
    )

    assert (allowed.status, allowed.headers["Access-Control-Allow-Origin"]) == (204, SHOP)
    assert allowed.headers["Access-Control-Allow-Methods"] == "POST"
    assert refused.status == 403
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_another_origin_or_a_secret_key_is_refused(moto_stack: MotoStack) -> None:
    key = publishable(moto_stack)
    secret, _ = moto_stack.container.keys.create(KeyKind.SECRET, "server")

    elsewhere = subscribe(moto_stack, key, {"email": "jo@example.com"}, origin="https://evil.example")
    wrong_kind = subscribe(moto_stack, secret, {"email": "jo@example.com"})

    assert (elsewhere.status, wrong_kind.status) == (403, 401)
    assert stored_items(moto_stack) == NOTHING


def test_a_filled_honeypot_looks_accepted_and_stores_nothing(moto_stack: MotoStack) -> None:
    key = publishable(moto_stack)

    response = subscribe(moto_stack, key, {"email": "bot@example.com", "website": "http://spam.example"})

    assert (response.status, response.json()) == (202, {"status": "subscribed"})
    assert stored_items(moto_stack) == NOTHING


def test_more_than_ten_signups_a_minute_from_one_address_get_429(moto_stack: MotoStack) -> None:
    key = publishable(moto_stack)

    statuses = [subscribe(moto_stack, key, {"email": f"p{i}@example.com"}).status for i in range(11)]
    limited = subscribe(moto_stack, key, {"email": "late@example.com"})

    assert statuses == [202] * 10 + [429]
    assert limited.headers["Retry-After"] == "60"
    assert limited.headers["Access-Control-Allow-Origin"] == SHOP


@pytest.mark.parametrize(
    ("form", "pointer"), [({"email": "nope"}, "/email"), ({"email": "a@example.com", "extra": 1}, "/extra")]
)
def test_a_bad_form_gets_422(moto_stack: MotoStack, form: dict[str, Any], pointer: str) -> None:
    response = subscribe(moto_stack, publishable(moto_stack), form)

    assert response.status == 422
    assert response.json()["errors"][0]["pointer"] == pointer


def test_double_opt_in_waits_for_the_click_then_welcomes(moto_stack: MotoStack) -> None:
    key = publishable(moto_stack, double_opt_in=True)

    # Given a signup on a double opt-in form: only the confirmation goes out
    response = subscribe(moto_stack, key, {"email": "kim@example.com", "first_name": "Kim"})
    [confirmation] = moto_stack.sent_emails()
    assert response.json() == {"status": "confirmation_sent"}
    assert "Subject: Please confirm your subscription" in confirmation.raw_data
    contact = moto_stack.container.store.get_contact(response_contact(moto_stack))
    assert contact is not None and contact.email_marketing is None  # not consent yet

    # When the link in it is followed (twice: people double-click)
    link = re.search(r"(/v1/subscribe/confirm\?token=[A-Za-z0-9_.-]+)", plain_text(confirmation.raw_data))
    assert link is not None
    path, _, token = link.group(1).partition("?token=")
    shown = moto_stack.send("GET", path, query={"token": token})
    assert (shown.status, shown.headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert "kim@example.com" not in shown.body.decode() and "k***@example.com" in shown.body.decode()
    assert [m.raw_data.split("Subject: ")[1].split("\r\n")[0] for m in moto_stack.sent_emails()] == [
        "Please confirm your subscription"
    ]  # showing the page confirms nothing
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    clicked = moto_stack.send("POST", path, f"token={token}".encode(), form, {"token": token})
    moto_stack.send("POST", path, f"token={token}".encode(), form, {"token": token})

    # Then they are subscribed and welcomed, once
    assert (clicked.status, clicked.headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    subjects = [m.raw_data.split("Subject: ")[1].split("\r\n")[0] for m in moto_stack.sent_emails()]
    assert subjects == ["Please confirm your subscription", "Welcome, Kim!"]


def plain_text(raw: str) -> str:
    message = email.message_from_string(raw)
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    return str(part.get_payload(decode=True).decode())


def response_contact(stack: MotoStack) -> str:
    from nudge.domain.model import contact_id_for

    return contact_id_for(external_id=None, email="kim@example.com", phone=None)


def test_a_forged_confirmation_link_gets_400(moto_stack: MotoStack) -> None:
    response = moto_stack.send("GET", "/v1/subscribe/confirm", query={"token": "eyJlIjoieEB5LnoifQ.forged"})

    assert (response.status, response.json()["type"]) == (400, "urn:nudge:problem:invalid-link")
    assert stored_items(moto_stack) == NOTHING
