"""Recorded event fixtures (tests/events/*.json), re-addressed to the message a test just sent."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.conftest import ROOT


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "tests" / "events" / f"{name}.json").read_text())
    return data


def ses_event(name: str, provider_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An SNS-wrapped SES event from tests/events, about the message SES accepted as provider_id (with these
    extra headers in `mail.headers`, as SES event publishing lists every header of the mail)."""
    event = copy.deepcopy(recorded(name))
    for record in event["Records"]:
        body = json.loads(record["Sns"]["Message"])
        body["mail"]["messageId"] = provider_id
        body["mail"]["commonHeaders"]["messageId"] = provider_id
        body["mail"].setdefault("headers", []).extend({"name": k, "value": v} for k, v in (headers or {}).items())
        record["Sns"]["Message"] = json.dumps(body)
    return event


def inbound_sms(body: str, from_number: str = "+14155550101") -> dict[str, Any]:
    """The recorded two-way SMS event, with this text from this number."""
    event = copy.deepcopy(recorded("sns_inbound_sms_stop"))
    message = json.loads(event["Records"][0]["Sns"]["Message"])
    message.update(messageBody=body, originationNumber=from_number)
    event["Records"][0]["Sns"]["Message"] = json.dumps(message)
    return event


def unsubscribe_mail(subject: str) -> dict[str, Any]:
    """The recorded SES receipt notification for a mail to the unsubscribe address, with this subject."""
    event = copy.deepcopy(recorded("ses_received_unsubscribe_mail"))
    body = json.loads(event["Records"][0]["Sns"]["Message"])
    body["mail"]["commonHeaders"]["subject"] = subject
    event["Records"][0]["Sns"]["Message"] = json.dumps(body)
    return event


def whatsapp_event(name: str, **changes: Any) -> dict[str, Any]:
    """A recorded End User Messaging Social notification (tests/fixtures/whatsapp), re-addressed."""
    body: dict[str, Any] = json.loads((ROOT / "tests" / "fixtures" / "whatsapp" / f"{name}.json").read_text())
    entry = json.loads(body["whatsAppWebhookEntry"])
    value = entry["changes"][0]["value"]
    for message in value.get("messages", []):
        message["text"]["body"] = changes.get("text", message["text"]["body"])
        message["id"] = changes.get("wamid", message["id"])
        if "at" in changes:
            message["timestamp"] = str(int(changes["at"].timestamp()))
    for status in value.get("statuses", []):
        if "at" in changes:
            status["timestamp"] = str(int(changes["at"].timestamp()))
    body["whatsAppWebhookEntry"] = json.dumps(entry)
    if "aws_message_id" in changes:
        body["messageId"] = changes["aws_message_id"]
    return copy.deepcopy(body)
