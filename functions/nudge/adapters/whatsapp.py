"""The WhatsAppSender port over AWS End User Messaging Social (`socialmessaging` SendWhatsAppMessage).

moto does not emulate this service: tests/component/test_whatsapp_adapter.py checks the requests and the
error handling with botocore's Stubber against the service model botocore ships (ADR 0023).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from nudge.adapters.provider_errors import classify
from nudge.domain.whatsapp import AccountTemplate, OutgoingWhatsApp
from nudge.ports import UnknownSendOutcome

# The request or the account is wrong: sending it again will not change the answer.
_PERMANENT = {"ValidationException", "InvalidParametersException", "AccessDeniedException", "ResourceNotFoundException"}
# HTTP 502: the service relayed the message to Meta and Meta's side failed. The relay may have landed
# before the failure, so the message may have gone out: never resend it blindly (ADR 0007).
_MAYBE_SENT = {"DependencyException"}
DEFAULT_META_API_VERSION = "v20.0"


class SocialMessagingWhatsApp:
    def __init__(self, client: Any, *, phone_number_id: str, meta_api_version: str = DEFAULT_META_API_VERSION) -> None:
        self._client = client
        self._phone_number_id = phone_number_id
        self._meta_api_version = meta_api_version

    def send(self, message: OutgoingWhatsApp) -> str:
        try:
            response = self._client.send_whatsapp_message(
                originationPhoneNumberId=self._phone_number_id,
                message=message.encoded(),
                metaApiVersion=self._meta_api_version,
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _MAYBE_SENT:
                detail = exc.response.get("Error", {}).get("Message", "")
                raise UnknownSendOutcome(f"WhatsApp {code}: {detail}") from exc
            raise classify(exc, "WhatsApp", _PERMANENT) from exc
        except Exception as exc:
            raise classify(exc, "WhatsApp", _PERMANENT) from exc
        return str(response["messageId"])


def list_templates(client: Any, waba_id: str) -> list[AccountTemplate]:
    """Every template of the WhatsApp Business Account (`waba-…` or its ARN), page by page."""
    found: list[AccountTemplate] = []
    token: str | None = None
    while True:
        page = client.list_whatsapp_message_templates(
            id=waba_id, maxResults=100, **({"nextToken": token} if token else {})
        )
        for item in page.get("templates", []):
            found.append(
                AccountTemplate(
                    name=str(item.get("templateName", "")),
                    language=str(item.get("templateLanguage", "")),
                    status=str(item.get("templateStatus", "")),
                    category=str(item.get("templateCategory", "")),
                    correct_category=item.get("correctCategory"),
                )
            )
        token = page.get("nextToken")
        if not token:
            return found
