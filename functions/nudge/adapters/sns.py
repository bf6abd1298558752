"""The Texter port over SNS direct-to-phone Publish."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from nudge.adapters.provider_errors import classify
from nudge.ports import OutgoingSms

log = logging.getLogger(__name__)
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

    def opt_in(self, phone: str) -> None:
        """OptInPhoneNumber: SNS keeps its own opt-out list, which a START reply does not lift by itself.

        AWS allows this once every 30 days per number; a refusal is logged, not raised: nudge's own
        suppression is already lifted, and the next send reports OptedOut if SNS still blocks it.
        """
        try:
            self._client.opt_in_phone_number(phoneNumber=phone)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            log.warning("SNS did not opt the number back in", extra={"error_code": code})
