"""The ingest handler on moto: real API Gateway event shapes in, DynamoDB and Scheduler state out."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from nudge import signing
from nudge.handlers import ingest
from nudge.local.lambda_events import FakeLambdaContext
from nudge.local.moto_stack import MotoStack
from tests.conftest import ROOT
from tests.factories import checkout_started, contact, subscribed


def stored_items(stack: MotoStack) -> dict[str, int]:
    models = stack.container.store.models  # type: ignore[attr-defined]
    tables = {
        "contacts": models.contacts,
        "events": models.events,
        "runs": models.runs,
        "messages": models.messages,
    }
    counts = {name: model.count() for name, model in tables.items()}
    counts["schedules"] = len(stack.pump.pending())
    attributes = stack.session.client("sqs").get_queue_attributes(
        QueueUrl=stack.settings.work_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    counts["queued"] = int(attributes["ApproximateNumberOfMessages"])
    return counts


NOTHING = {"contacts": 0, "events": 0, "runs": 0, "messages": 0, "schedules": 0, "queued": 0}


def invoke_recorded_event(stack: MotoStack, body: bytes, *, signature: str | None = None) -> dict[str, Any]:
    event = json.loads((ROOT / "tests" / "events" / "api_gateway_post_event.json").read_text())
    event["body"] = body.decode()
    event["headers"]["X-Nudge-Signature"] = signature or signing.sign(stack.signing_key, body, stack.clock.now())
    return ingest.handler(event, FakeLambdaContext.fresh("nudge-ingest"))


def test_a_recorded_api_gateway_event_starts_a_flow(moto_stack: MotoStack) -> None:
    body = json.dumps(checkout_started("evt_1", "chk_1")).encode()

    response = invoke_recorded_event(moto_stack, body)

    assert response["statusCode"] == 202
    assert json.loads(response["body"])["started"] == ["abandoned_cart"]
    # The request decides and records: the run, the contact's active slot for the flow and, the contact being
    # new, its send log (whole from the start: nothing to look up at its first wake-up), all three in runs.
    # The flow's first step is a one-hour wait, so the run starts past it (engine.new_run) and the request
    # arms the one-time schedule for the reminder; nothing goes on the work queue. It sends nothing and waits
    # for nothing (ADR 0007).
    assert stored_items(moto_stack) == {
        "contacts": 1,
        "events": 1,
        "runs": 3,
        "messages": 0,
        "schedules": 1,
        "queued": 0,
    }
    moto_stack.settle()  # no piece of work is left for the worker until the hour is up
    assert moto_stack.pump.worked == 0


def test_a_welcome_email_goes_out_through_ses_at_once(moto_stack: MotoStack) -> None:
    result = moto_stack.call_api("POST", "/v1/events", subscribed("evt_1"))

    assert result.status == 202
    [sent] = moto_stack.sent_emails()
    assert sent.destinations == ["alice@example.com"]
    assert "Subject: Welcome, Alice!" in sent.raw_data
    assert "Content-Type: multipart/alternative" in sent.raw_data


def test_an_event_delivered_twice_is_processed_once(moto_stack: MotoStack) -> None:
    first = moto_stack.call_api("POST", "/v1/events", subscribed("evt_1"))
    second = moto_stack.call_api("POST", "/v1/events", subscribed("evt_1"))

    assert (first.status, second.status) == (202, 200)
    assert second.body["duplicate"] is True
    assert first.body["started"] == ["sunset", "welcome"]
    assert len(moto_stack.sent_emails()) == 1
    assert stored_items(moto_stack)["runs"] == 5  # two runs, their two flow slots and the send log, once


def test_post_contacts_creates_then_updates_a_contact(moto_stack: MotoStack) -> None:
    created = moto_stack.call_api("POST", "/v1/contacts", {"id": "cust_42", "email": "zoe@example.com"})
    updated = moto_stack.call_api(
        "POST", "/v1/contacts", {"id": "cust_42", "first_name": "Zoe", "timezone": "Europe/Paris"}
    )

    assert created.status == updated.status == 200
    assert updated.body == {"contact_id": "cust_42", "version": 2}
    stored = moto_stack.container.store.get_contact("cust_42")
    assert stored is not None
    assert (stored.email, stored.first_name, stored.timezone) == ("zoe@example.com", "Zoe", "Europe/Paris")


BAD_BODIES: dict[str, tuple[bytes, int, str, list[str]]] = {
    "malformed JSON": (b'{"id": "e1", ', 400, "urn:nudge:problem:malformed-json", []),
    "not an object": (b'["a", "list"]', 422, "urn:nudge:problem:validation", [""]),
    "missing fields": (b'{"id": "e1"}', 422, "urn:nudge:problem:validation", ["/type", "/contact"]),
    "mistyped field": (
        json.dumps({**subscribed("e1"), "properties": "not-a-map"}).encode(),
        422,
        "urn:nudge:problem:validation",
        ["/properties"],
    ),
    "bad email": (
        json.dumps(subscribed("e1", {"email": "not-an-email"})).encode(),
        422,
        "urn:nudge:problem:validation",
        ["/contact/email"],
    ),
    "bad phone": (
        json.dumps(subscribed("e1", contact(phone="555-1234"))).encode(),
        422,
        "urn:nudge:problem:validation",
        ["/contact/phone"],
    ),
    "unknown time zone": (
        json.dumps(subscribed("e1", contact(timezone="Mars/Olympus"))).encode(),
        422,
        "urn:nudge:problem:validation",
        ["/contact/timezone"],
    ),
    "anonymous contact": (
        json.dumps(subscribed("e1", {"first_name": "Nobody"})).encode(),
        422,
        "urn:nudge:problem:validation",
        ["/contact"],
    ),
    "bad event type": (
        json.dumps({**subscribed("e1"), "type": "Signed Up!"}).encode(),
        422,
        "urn:nudge:problem:validation",
        ["/type"],
    ),
    "unknown member": (
        json.dumps({**subscribed("e1"), "colour": "blue"}).encode(),
        422,
        "urn:nudge:problem:validation",
        ["/colour"],
    ),
    "naive timestamp": (
        json.dumps({**subscribed("e1"), "occurred_at": "2026-11-02T09:00:00"}).encode(),
        422,
        "urn:nudge:problem:validation",
        ["/occurred_at"],
    ),
    "far future": (
        json.dumps({**subscribed("e1"), "occurred_at": "2027-01-01T00:00:00Z"}).encode(),
        422,
        "urn:nudge:problem:validation",
        ["/occurred_at"],
    ),
    "too large": (b'{"pad": "' + b"x" * (300 * 1024) + b'"}', 413, "urn:nudge:problem:too-large", []),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_input_gets_a_problem_and_writes_nothing(case: str, moto_stack: MotoStack) -> None:
    body, status, problem_type, pointers = BAD_BODIES[case]

    result = moto_stack.call_api("POST", "/v1/events", raw=body)

    assert result.status == status
    assert result.headers["Content-Type"] == "application/problem+json"
    assert result.body["type"] == problem_type
    assert result.body["status"] == status
    assert result.body["detail"]
    assert "Traceback" not in json.dumps(result.body)
    assert [error["pointer"] for error in result.body.get("errors", [])][: len(pointers)] == pointers
    assert stored_items(moto_stack) == NOTHING


def test_problem_detail_names_every_bad_member(moto_stack: MotoStack) -> None:
    result = moto_stack.call_api("POST", "/v1/events", raw=b'{"id": "e1"}')

    assert result.body["detail"] == "/type: Field required; /contact: Field required"


@pytest.mark.parametrize(
    ("mutate", "detail"),
    [
        (lambda sig: None, "missing signature header"),
        (lambda sig: sig[:-1] + ("0" if sig[-1] != "0" else "1"), "signature does not match the body"),
        (lambda sig: "t=1,v1=" + sig.split("v1=")[1], "away from now"),
    ],
)
def test_unsigned_or_forged_requests_get_401_and_write_nothing(moto_stack: MotoStack, mutate: Any, detail: str) -> None:
    body = json.dumps(subscribed("evt_1")).encode()
    signature = mutate(signing.sign(moto_stack.signing_key, body, moto_stack.clock.now()))
    event = json.loads((ROOT / "tests" / "events" / "api_gateway_post_event.json").read_text())
    event["body"] = body.decode()
    if signature is None:
        del event["headers"]["X-Nudge-Signature"]
    else:
        event["headers"]["X-Nudge-Signature"] = signature

    response = ingest.handler(event, FakeLambdaContext.fresh("nudge-ingest"))

    assert response["statusCode"] == 401
    assert detail in json.loads(response["body"])["detail"]
    assert stored_items(moto_stack) == NOTHING


def test_a_base64_body_is_verified_and_accepted(moto_stack: MotoStack) -> None:
    body = json.dumps(subscribed("evt_1")).encode()
    event = json.loads((ROOT / "tests" / "events" / "api_gateway_post_event.json").read_text())
    event["body"] = base64.b64encode(body).decode()
    event["isBase64Encoded"] = True
    event["headers"]["X-Nudge-Signature"] = signing.sign(moto_stack.signing_key, body, moto_stack.clock.now())

    response = ingest.handler(event, FakeLambdaContext.fresh("nudge-ingest"))

    assert response["statusCode"] == 202


def test_wrong_media_type_gets_415(moto_stack: MotoStack) -> None:
    result = moto_stack.call_api("POST", "/v1/events", subscribed("evt_1"), headers={"Content-Type": "text/plain"})
    assert result.status == 415
    assert stored_items(moto_stack) == NOTHING


def test_unknown_route_gets_a_404_problem(moto_stack: MotoStack) -> None:
    result = moto_stack.call_api("POST", "/v1/nothing-here", {"a": 1})

    assert result.status == 404
    assert result.body["type"] == "urn:nudge:problem:not-found"


def test_an_unexpected_error_is_a_500_problem_without_a_trace(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(_event: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(moto_stack.container.ingest, "ingest", explode)

    result = moto_stack.call_api("POST", "/v1/events", subscribed("evt_1"))

    assert result.status == 500
    assert "secret internals" not in json.dumps(result.body)
    assert "request id" in result.body["detail"]


def test_enrollment_through_the_api_starts_the_flow_once(moto_stack: MotoStack) -> None:
    body = {"id": "enr_1", "contact": contact("zed"), "properties": {"course_title": "Sourdough 101"}}

    first = moto_stack.call_api("POST", "/v1/flows/course_drip/enrollments", body)
    again = moto_stack.call_api("POST", "/v1/flows/course_drip/enrollments", body)
    unknown = moto_stack.call_api("POST", "/v1/flows/no_such_flow/enrollments", {**body, "id": "enr_2"})

    assert (first.status, first.body["started"]) == (202, ["course_drip"])
    assert (again.status, again.body["duplicate"]) == (200, True)
    assert (unknown.status, unknown.body["type"]) == (404, "urn:nudge:problem:unknown-flow")
    [welcome] = moto_stack.sent_emails()
    assert "Subject: Welcome to Sourdough 101" in welcome.raw_data
