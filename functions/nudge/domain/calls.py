"""Missed calls: the `call_missed` event from Amazon Connect and from Twilio's call status callback.

- **Amazon Connect** invokes a Lambda function from a contact flow ("Invoke AWS Lambda function" block)
  with `{"Details": {"ContactData": {...}, "Parameters": {...}}, "Name": "ContactFlowEvent"}`; the caller's
  number is `ContactData.CustomerEndpoint.Address` (type `TELEPHONE_NUMBER`), the shop's
  `SystemEndpoint.Address`, the contact's id `ContactId`. The flow invokes it on the path where no agent
  answered (after the queue timed out, or outside hours), so every invocation is a missed call.
- **Twilio** posts a form (`application/x-www-form-urlencoded`) to the number's status callback URL when a
  call ends: `CallSid`, `From`, `To`, `Direction`, `CallStatus` (`no-answer`, `busy`, `canceled` when the
  caller hung up while it rang, `completed`, `failed`, ...); a `<Dial action>` callback carries
  `DialCallStatus` as well. It signs the request with `X-Twilio-Signature`: base64(HMAC-SHA1(auth token,
  the full URL followed by every POST parameter's name and value, sorted by name)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nudge.domain import phones
from nudge.domain.frozen import dataclass

CALL_MISSED = "call_missed"
# An inbound call nobody answered: it rang out, the line was busy, or the caller gave up while it rang.
MISSED_STATUSES = frozenset({"no-answer", "busy", "canceled"})


class NotAMissedCall(ValueError):
    """The input is well formed but is not a missed call (answered, outbound): nothing is recorded."""


class BadCall(ValueError):
    """The input lacks what a missed call needs (a caller's number, a call id): refused, nothing written."""


@dataclass(frozen=True, slots=True)
class MissedCall:
    source: str  # connect | twilio
    call_id: str  # ContactId / CallSid: a redelivery carries the same one
    caller: str  # E.164
    at: datetime
    line: str | None = None  # the number that was called


def _caller(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise BadCall("the call names no caller's number")
    try:
        return phones.normalize_phone(raw.strip(), None)
    except ValueError:
        raise BadCall(f"the caller's number {raw!r} is not a valid international number") from None


def _id(raw: Any, name: str) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 128:
        raise BadCall(f"the call names no {name}")
    return raw.strip()


def from_connect(event: Mapping[str, Any], now: datetime) -> MissedCall:
    """A contact flow's Lambda invocation as a missed call (the flow calls it only when no one answered)."""
    details = event.get("Details")
    data = details.get("ContactData") if isinstance(details, dict) else None
    if not isinstance(data, dict):
        raise BadCall("not an Amazon Connect contact flow event (no Details.ContactData)")
    if str(data.get("Channel", "VOICE")).upper() != "VOICE":
        raise NotAMissedCall(f"channel {data.get('Channel')!r} is not a call")
    if str(data.get("InitiationMethod", "INBOUND")).upper() != "INBOUND":
        raise NotAMissedCall("only inbound calls are missed calls")
    customer = data.get("CustomerEndpoint") or {}
    system = data.get("SystemEndpoint") or {}
    line = system.get("Address") if isinstance(system, dict) else None
    return MissedCall(
        source="connect",
        call_id=_id(data.get("ContactId"), "ContactId"),
        caller=_caller(customer.get("Address") if isinstance(customer, dict) else None),
        at=now,  # Connect invokes synchronously, during the call
        line=line if isinstance(line, str) else None,
    )


def from_twilio(params: Mapping[str, str], now: datetime) -> MissedCall:
    """A Twilio call status callback (or `<Dial action>` callback) as a missed call."""
    direction = params.get("Direction", "inbound")
    if direction != "inbound":
        raise NotAMissedCall(f"direction {direction!r}: only inbound calls are missed calls")
    status = params.get("DialCallStatus") or params.get("CallStatus")
    if not status:
        raise BadCall("the callback carries no CallStatus")
    if status not in MISSED_STATUSES:
        raise NotAMissedCall(f"call status {status!r} is not a missed call")
    return MissedCall(
        source="twilio",
        call_id=_id(params.get("CallSid"), "CallSid"),
        caller=_caller(params.get("From")),
        at=now,
        line=params.get("To") or None,
    )


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature of a form POST: base64(HMAC-SHA1(token, url + name1value1name2value2...))."""
    signed = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def twilio_signature_matches(auth_token: str, url: str, params: Mapping[str, str], header: str | None) -> bool:
    if not header:
        return False
    return hmac.compare_digest(twilio_signature(auth_token, url, params).encode(), header.strip().encode())
