"""Export and erase on moto, through the signed API: after erase no table holds the contact's data."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from nudge.domain.model import MessageStatus
from nudge.local.moto_stack import MotoStack
from tests.conftest import START
from tests.events_helpers import inbound_sms
from tests.factories import checkout_started, contact, subscribed

BOB = contact("bob", phone="+14155550101", sms_marketing=True, last_name="Bakerfield", id="cust_bob_42")
PERSONAL = ["cust_bob_42", "bob@example.com", "+14155550101", "Bakerfield"]


def test_export_holds_everything_about_the_contact(moto_stack: MotoStack) -> None:
    moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1", BOB))
    moto_stack.pump.run_until(START + timedelta(days=1, hours=8))  # past 08:00 in +1 415
    moto_stack.deliver_sns("sms_inbound", [json.loads(inbound_sms("STOP")["Records"][0]["Sns"]["Message"])])

    result = moto_stack.call_api("GET", "/v1/contacts/cust_bob_42")

    assert result.status == 200
    exported = result.body
    assert exported["contact"]["email"] == "bob@example.com"
    assert [e["event_id"] for e in exported["events"]] == ["evt_1"]
    assert [r["flow_id"] for r in exported["runs"]] == ["abandoned_cart"]
    assert [m["step_id"] for m in exported["messages"]] == ["reminder_1", "reminder_2", "reminder_2_sms"]
    sms = next(a for a in exported["addresses"] if a["channel"] == "sms")
    assert "sms_opted_out" in sms["suppressed"]
    assert [(c["granted"], c["source"]) for c in sms["consent_records"]] == [
        (True, "event:checkout_started:evt_1"),
        (False, "sms_keyword:STOP"),
    ]


def test_after_erase_a_scan_of_every_table_finds_none_of_the_contacts_data(moto_stack: MotoStack) -> None:
    # Given Bob has events, an active run with a pending wake-up, messages, feedback and consent records
    moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1", BOB))
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_2", BOB))
    moto_stack.pump.run_until(START + timedelta(hours=1))
    assert any(p.payload["contact_id"] == "cust_bob_42" for p in moto_stack.pump.pending())

    result = moto_stack.call_api("DELETE", "/v1/contacts/cust_bob_42")

    assert result.status == 200
    assert result.body["erased"]["contacts"] == 1 and result.body["erased"]["messages"] == 2
    dump = json.dumps(moto_stack.scan_all_tables())
    assert [value for value in PERSONAL if value in dump] == []
    assert all(p.payload["contact_id"] != "cust_bob_42" for p in moto_stack.pump.pending())
    assert moto_stack.call_api("GET", "/v1/contacts/cust_bob_42").status == 404


def test_an_erased_address_is_not_re_added_to_marketing_by_accident(moto_stack: MotoStack) -> None:
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_1", BOB))
    moto_stack.call_api("DELETE", "/v1/contacts/cust_bob_42")

    # a stale import brings Bob back, still flagged as consenting
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_2", BOB))

    [message] = moto_stack.container.store.messages_for("cust_bob_42")
    assert (message.status, message.reason) == (MessageStatus.SKIPPED, "suppressed:erased")


def test_erase_and_export_are_signed_and_name_unknown_contacts(moto_stack: MotoStack) -> None:
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_1", BOB))

    unsigned = moto_stack.call_api("DELETE", "/v1/contacts/cust_bob_42", sign=False, raw=b"")
    unknown = moto_stack.call_api("DELETE", "/v1/contacts/nobody")

    assert unsigned.status == 401 and unknown.status == 404
    assert moto_stack.container.store.get_contact("cust_bob_42") is not None


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_an_id_no_contact_can_have_is_a_404_before_any_read(moto_stack: MotoStack, method: str) -> None:
    # DynamoDB refuses a partition key over 2,048 bytes with a 500 (moto does not check): never send it one.
    moto_stack.requests.counts.clear()

    response = moto_stack.call_api(method, "/v1/contacts/" + "x" * 3000)

    assert response.status == 404 and response.body["title"] == "No such contact"
    assert "xxxx" not in response.body["detail"]  # the id is not echoed back
    assert not [op for (service, op) in moto_stack.requests.counts if service == "dynamodb"]


def test_raw_events_expire_after_the_retention_period(moto_stack: MotoStack) -> None:
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_1", BOB))

    [event] = moto_stack.scan_all_tables()["nudge-events"]

    retention = timedelta(days=moto_stack.settings.event_retention_days)
    assert int(event["expires_at"]["N"]) == int((START + retention).timestamp())
    ttl = moto_stack.session.client("dynamodb").describe_time_to_live(TableName="nudge-events")
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
