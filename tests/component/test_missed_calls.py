"""Missed calls on moto: Twilio's signed status callback and Amazon Connect's contact-flow invocation become
`call_missed`, and the library flow texts the caller back at once, once a day; bad input writes nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from nudge.domain import calls
from nudge.domain.model import Channel
from nudge.handlers import calls as calls_handler
from nudge.local.gateway import LocalResponse
from nudge.local.lambda_events import FakeLambdaContext
from nudge.local.moto_stack import DEV_TWILIO_ACCOUNT, MotoStack
from tests.component.test_ingest_handler import NOTHING, stored_items
from tests.conftest import ROOT
from tests.events_helpers import inbound_sms

FIXTURES = ROOT / "tests" / "fixtures" / "calls"
HOST = "api.shop.example"
PATH = "/webhooks/twilio/calls"
CALLER = "+14155550101"


def twilio(stack: MotoStack, *, signature: str | None = None, **changes: str) -> LocalResponse:
    """The recorded no-answer callback (with these changes), signed as Twilio signs it unless told otherwise."""
    params = dict(parse_qsl((FIXTURES / "twilio_status_no_answer.txt").read_text().strip()))
    params = {k: v for k, v in (params | changes).items() if v != ""}
    token = stack.webhook_secrets["twilio"][DEV_TWILIO_ACCOUNT]
    signed = signature if signature is not None else calls.twilio_signature(token, f"https://{HOST}{PATH}", params)
    headers = {"Host": HOST, "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signed}
    return stack.send("POST", PATH, urlencode(params).encode(), headers)


def connect(stack: MotoStack, **contact_data: Any) -> dict[str, str]:
    event = json.loads((FIXTURES / "connect_contact_flow_event.json").read_text())
    event["Details"]["ContactData"].update(contact_data)
    result: dict[str, str] = calls_handler.handler(event, FakeLambdaContext.fresh("nudge-missed-call"))
    stack.settle()
    return result


def texts(stack: MotoStack) -> list[tuple[str, str]]:
    return list(stack.sent_sms().values())


def test_a_missed_call_is_texted_back_at_once_and_a_redelivery_changes_nothing(moto_stack: MotoStack) -> None:
    first = twilio(moto_stack)
    again = twilio(moto_stack)  # Twilio retries a callback it got no answer for

    assert (first.status, again.status) == (202, 200)
    assert first.json()["started"] == ["missed_call"] and again.json()["duplicate"] is True
    [(phone, text)] = texts(moto_stack)
    assert phone == CALLER and text.startswith("Linen & Clay: sorry we missed your call")
    [message] = moto_stack.container.store.messages_for(first.json()["contact_id"])
    assert message.channel is Channel.SMS and message.sent_at == moto_stack.clock.now()


def test_a_second_call_the_same_day_is_recorded_but_not_texted_again(moto_stack: MotoStack) -> None:
    twilio(moto_stack)
    moto_stack.pump.run_until(moto_stack.clock.now() + timedelta(hours=5))
    later = twilio(moto_stack, CallSid="CA0123456789abcdef0123456789abcde2", CallStatus="busy")

    assert later.status == 202 and later.json()["started"] == []
    assert len(texts(moto_stack)) == 1


def test_a_caller_who_texted_stop_gets_no_text_back(moto_stack: MotoStack) -> None:
    from nudge.handlers import sms_inbound

    sms_inbound.handler(inbound_sms("STOP", CALLER), FakeLambdaContext.fresh("nudge-sms-inbound"))
    response = twilio(moto_stack)

    assert response.status == 202 and texts(moto_stack) == []
    [message] = moto_stack.container.store.messages_for(response.json()["contact_id"])
    assert message.reason == "sms_opted_out"


def test_an_answered_call_is_acknowledged_and_stores_nothing(moto_stack: MotoStack) -> None:
    response = twilio(moto_stack, CallStatus="completed")

    assert response.status == 200 and "ignored" in response.json()
    assert stored_items(moto_stack) == NOTHING


@pytest.mark.parametrize(
    ("case", "status"),
    [("forged", 401), ("other_account", 401), ("no_caller", 400), ("bad_form", 400)],
)
def test_bad_callbacks_get_a_problem_and_store_nothing(moto_stack: MotoStack, case: str, status: int) -> None:
    if case == "forged":
        response = twilio(moto_stack, signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    elif case == "other_account":
        response = twilio(moto_stack, AccountSid="AC99999999999999999999999999999999")
    elif case == "no_caller":
        response = twilio(moto_stack, From="")
    else:
        headers = {"Host": HOST, "X-Twilio-Signature": "x"}
        response = moto_stack.send("POST", PATH, b"CallSid=a&CallSid=b", headers)

    assert response.status == status
    assert response.headers["Content-Type"] == "application/problem+json"
    assert stored_items(moto_stack) == NOTHING
    assert texts(moto_stack) == []


def test_an_amazon_connect_missed_call_is_texted_back_once(moto_stack: MotoStack) -> None:
    first = connect(moto_stack)
    again = connect(moto_stack)  # the contact flow ran the block twice (a retry)

    assert first == {"status": "recorded", "started": "missed_call"}
    assert again == {"status": "duplicate", "started": ""}
    [(phone, _)] = texts(moto_stack)
    assert phone == CALLER


def test_connect_input_that_is_not_a_missed_call_writes_nothing(moto_stack: MotoStack) -> None:
    assert connect(moto_stack, Channel="CHAT")["status"] == "ignored"
    assert connect(moto_stack, CustomerEndpoint=None)["status"] == "refused"
    assert stored_items(moto_stack) == NOTHING
