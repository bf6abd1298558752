"""The flow language's step kinds and guardrails on moto: DynamoDB, Scheduler, SES, SNS and a real webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nudge import signing
from nudge.clocks import VirtualClock
from nudge.local.moto_stack import MotoStack, start_moto_stack
from tests.conftest import START
from tests.factories import contact
from tests.flowkit import flows_dir


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes, dict[str, str]]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, body, dict(self.headers)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, bytes, dict[str, str]]]]]:
    """A webhook receiver on a loopback port, stopped after the test."""
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", _Receiver.received
    finally:
        server.shutdown()
        server.server_close()


def stack_with(tmp_path: Path, clock: VirtualClock, *flows: str, guardrails: str | None = None) -> MotoStack:
    directory = flows_dir(tmp_path, *flows, **({"guardrails": guardrails} if guardrails else {}))
    return start_moto_stack(clock, flows_dir=directory)


def test_every_step_kind_runs_on_moto(tmp_path: Path, clock: VirtualClock, receiver) -> None:  # type: ignore[no-untyped-def]
    url, received = receiver
    stack = stack_with(
        tmp_path,
        clock,
        f"""
        id: tour
        name: Tour
        trigger: {{event: toured}}
        steps:
          - {{id: tag, type: update_profile, add_tags: [touring], set: {{stage: "{{{{ event.stage }}}}"}}}}
          - {{id: hook, type: webhook, url: "{url}", body: {{who: "{{{{ contact.email }}}}"}}}}
          - {{id: pick, type: split, variants: [{{name: a, next: check}}, {{name: b, next: check}}]}}
          - {{id: check, type: branch, if: "'touring' in contact.tags", then: wait, else: done}}
          - {{id: wait, type: wait, duration: 1h}}
          - {{id: hello, type: email, template: welcome/welcome, subject: "Hi {{{{ contact.properties.stage }}}}"}}
          - {{id: until, type: wait_until, time: "12:00"}}
          - {{id: text, type: sms, template: abandoned_cart/reminder_2}}
          - {{id: done, type: end}}
        """,
    )
    try:
        who = contact("bob", phone="+14155550101", sms_marketing=True)
        result = stack.call_api(
            "POST",
            "/v1/events",
            {
                "id": "e1",
                "type": "toured",
                "contact": who,
                "properties": {"stage": "gold", "recovery_url": "https://r"},
            },
        )
        stack.pump.run_until(START + timedelta(days=1))

        assert result.status == 202
        [(path, body, headers)] = received
        assert path == "/hooks" and json.loads(body) == {"who": "bob@example.com"}
        signing.verify(stack.signing_key, headers["X-Nudge-Signature"], body, START)
        [email_sent] = stack.sent_emails()
        assert (
            "Subject: Hi gold" in email_sent.raw_data and "Date: Mon, 02 Nov 2026 10:00:00 +0000" in email_sent.raw_data
        )
        assert list(stack.sent_sms().values()) == [
            ("+14155550101", "Linen & Clay: Bob, your cart is still waiting: https://r Reply STOP to opt out")
        ]
        stored = stack.container.store.get_contact(result.body["contact_id"])
        assert stored is not None and stored.tags == ("touring",) and stored.properties["stage"] == "gold"
        [run] = [
            stack.container.store.get_run(result.body["contact_id"], r.run_id)
            for r in stack.container.store.models.runs.query(result.body["contact_id"])  # type: ignore[attr-defined]
            if r.sk.startswith("RUN#")
        ]
        assert run is not None and run.status.value == "completed" and run.variants["pick"] in {"a", "b"}
        sms_record = next(
            m for m in stack.container.store.messages_for(result.body["contact_id"]) if m.step_id == "text"
        )
        # 12:00 in the contact's zone: +1 415 is Los Angeles (PST, UTC-8), so 20:00 UTC.
        assert sms_record.sent_at == START + timedelta(hours=11)
    finally:
        stack.stop()


def test_guardrails_read_the_send_history_from_dynamodb(tmp_path: Path, clock: VirtualClock) -> None:
    flows = [
        f"id: {name}\nname: {name}\ntrigger: {{event: {name}}}\nsteps:\n"
        f"  - {{id: msg, type: email, template: welcome/welcome, subject: {name}}}\n"
        for name in ("one", "two", "three")
    ]
    stack = stack_with(
        tmp_path, clock, *flows, guardrails="smart_sending: {email: 1h}\nfrequency_caps: {email: {day: 2}}\n"
    )
    try:
        who = contact("bob")
        first = stack.call_api("POST", "/v1/events", {"id": "e1", "type": "one", "contact": who})
        clock.advance(timedelta(minutes=30))
        stack.call_api("POST", "/v1/events", {"id": "e2", "type": "two", "contact": who})  # inside 1 h: skipped
        clock.advance(timedelta(minutes=90))
        stack.call_api("POST", "/v1/events", {"id": "e3", "type": "two", "contact": who})  # 2 h after: sent
        clock.advance(timedelta(hours=1))
        stack.call_api("POST", "/v1/events", {"id": "e4", "type": "three", "contact": who})  # third in a day: capped

        subjects = [m.raw_data.split("Subject: ")[1].split("\n")[0].strip() for m in stack.sent_emails()]
        assert subjects == ["one", "two"]
        messages = stack.container.store.messages_for(first.body["contact_id"])
        assert [m.reason for m in messages] == [None, "smart_sending:email", None, "frequency_cap:email:day"]
    finally:
        stack.stop()


def test_sms_quiet_hours_defer_through_a_real_schedule(tmp_path: Path, clock: VirtualClock) -> None:
    stack = stack_with(
        tmp_path,
        clock,
        """
        id: texty
        name: Texty
        trigger: {event: texty}
        steps:
          - {id: text, type: sms, template: abandoned_cart/reminder_2}
        """,
        guardrails='sms_quiet_hours: {start: "21:00", end: "08:00"}\n',
    )
    try:
        who = contact("bob", phone="+14155550101", sms_marketing=True, timezone="America/Los_Angeles")
        stack.call_api(
            "POST",
            "/v1/events",
            {"id": "e1", "type": "texty", "contact": who, "properties": {"recovery_url": "https://r"}},
        )

        [pending] = stack.pump.pending()
        assert pending.at == START + timedelta(hours=7)  # 08:00 in Los Angeles
        assert stack.sent_sms() == {}
        stack.pump.run_until(START + timedelta(days=1))
        assert len(stack.sent_sms()) == 1
    finally:
        stack.stop()


def test_consent_is_read_from_the_stored_contact(tmp_path: Path, clock: VirtualClock) -> None:
    stack = stack_with(
        tmp_path,
        clock,
        """
        id: promo
        name: Promo
        trigger: {event: promo}
        steps:
          - {id: mail, type: email, template: welcome/welcome, subject: Promo}
          - {id: text, type: sms, template: abandoned_cart/reminder_2}
        """,
    )
    try:
        # Consent given earlier through /v1/contacts, withdrawn for SMS; the event itself says nothing.
        stack.call_api(
            "POST",
            "/v1/contacts",
            {
                "id": "c1",
                "email": "bob@example.com",
                "phone": "+14155550101",
                "email_marketing": True,
                "sms_marketing": False,
            },
        )
        stack.call_api(
            "POST",
            "/v1/events",
            {"id": "e1", "type": "promo", "contact": {"id": "c1"}, "properties": {"recovery_url": "https://r"}},
        )

        assert len(stack.sent_emails()) == 1 and stack.sent_sms() == {}
        [text] = [m for m in stack.container.store.messages_for("c1") if m.step_id == "text"]
        assert (text.status.value, text.reason) == ("skipped", "no_sms_marketing_consent")
    finally:
        stack.stop()
