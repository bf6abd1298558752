"""Missed calls from Amazon Connect and Twilio: what counts as missed, what is refused, and Twilio's signature."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest

from nudge.domain import calls
from tests.conftest import ROOT, START

FIXTURES = ROOT / "tests" / "fixtures" / "calls"


def twilio_params(**changes: str) -> dict[str, str]:
    params = dict(parse_qsl((FIXTURES / "twilio_status_no_answer.txt").read_text().strip()))
    return {k: v for k, v in (params | changes).items() if v != ""}


def test_twilios_worked_example_signs_as_documented() -> None:
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234"}
    params |= {"From": "+12349013030", "To": "+18005551212"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"

    assert calls.twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert calls.twilio_signature_matches("12345", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not calls.twilio_signature_matches("12345", url, params | {"Digits": "1235"}, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not calls.twilio_signature_matches("12345", url, params, None)


def test_a_twilio_no_answer_busy_or_canceled_inbound_call_is_missed() -> None:
    for status in ("no-answer", "busy", "canceled"):
        call = calls.from_twilio(twilio_params(CallStatus=status), START)
        assert (call.source, call.call_id, call.caller, call.line) == (
            "twilio",
            "CA0123456789abcdef0123456789abcdef",
            "+14155550101",
            "+14155550199",
        )
    # a <Dial action> callback: the parent call completed, the dialled shop did not answer
    assert calls.from_twilio(twilio_params(CallStatus="completed", DialCallStatus="no-answer"), START)


@pytest.mark.parametrize("changes", [{"CallStatus": "completed"}, {"Direction": "outbound-api"}])
def test_answered_or_outbound_calls_are_not_missed(changes: dict[str, str]) -> None:
    with pytest.raises(calls.NotAMissedCall):
        calls.from_twilio(twilio_params(**changes), START)


@pytest.mark.parametrize("changes", [{"From": ""}, {"From": "anonymous"}, {"CallSid": ""}, {"CallStatus": ""}])
def test_a_callback_without_a_usable_caller_or_call_is_refused(changes: dict[str, str]) -> None:
    with pytest.raises(calls.BadCall):
        calls.from_twilio(twilio_params(**changes), START)


def test_the_documented_connect_event_is_a_missed_call_from_the_customer_endpoint() -> None:
    event = json.loads((FIXTURES / "connect_contact_flow_event.json").read_text())

    call = calls.from_connect(event, START)

    assert (call.source, call.caller, call.line, call.at) == ("connect", "+14155550101", "+14155550199", START)
    assert call.call_id == "4a573372-1f28-4e26-b97b-000000000001"


def test_connect_chats_outbound_contacts_and_other_shapes_are_not_missed_calls() -> None:
    event = json.loads((FIXTURES / "connect_contact_flow_event.json").read_text())
    chat = json.loads(json.dumps(event))
    chat["Details"]["ContactData"]["Channel"] = "CHAT"
    outbound = json.loads(json.dumps(event))
    outbound["Details"]["ContactData"]["InitiationMethod"] = "OUTBOUND"
    hidden = json.loads(json.dumps(event))
    hidden["Details"]["ContactData"]["CustomerEndpoint"] = None  # a withheld number

    for not_missed in (chat, outbound):
        with pytest.raises(calls.NotAMissedCall):
            calls.from_connect(not_missed, START)
    for bad in (hidden, {"Name": "ContactFlowEvent"}, {"Details": "x"}):
        with pytest.raises(calls.BadCall):
            calls.from_connect(bad, START)
