"""The Texter port over SNS direct-to-phone Publish."""

from __future__ import annotations

from typing import Any

from nudge.adapters.provider_errors import classify
from nudge.ports import OutgoingSms

_PERMANENT = {"InvalidParameter", "InvalidParameterValue", "OptedOut", "AuthorizationError"}


class SnsTexter:
    def __init__(self, client: Any, *, sender_id: str | None = None) -> None:
        self._client = client
        self._sender_id = sender_id

    def send(self, sms: OutgoingSms) -> str:
        attributes = {
            "AWS.SNS.SMS.SMSType": {
                "DataType": "String",
                "StringValue": "Transactional" if sms.transactional else "Promotional",
            }
        }
        if self._sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": self._sender_id}
        try:
            response = self._client.publish(PhoneNumber=sms.to, Message=sms.text, MessageAttributes=attributes)
        except Exception as exc:
            raise classify(exc, "SNS", _PERMANENT) from exc
        return str(response["MessageId"])
