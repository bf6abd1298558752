"""The Mailer port over SES v2 SendEmail with Raw content (so every header we set is delivered)."""

from __future__ import annotations

from email.utils import parseaddr
from typing import Any

from nudge.adapters.mime import build_mime
from nudge.adapters.provider_errors import classify
from nudge.ports import OutgoingEmail

# SES v2 errors that retrying the same request cannot fix. (A paused or suspended account is not one: the
# message waits for sending to resume, provider_errors.py.)
_PERMANENT = {
    "MessageRejected",
    "MailFromDomainNotVerifiedException",
    "BadRequestException",
    "NotFoundException",
}


class SesMailer:
    def __init__(self, client: Any, *, configuration_set: str | None = None) -> None:
        self._client = client
        self._configuration_set = configuration_set

    def send(self, email: OutgoingEmail) -> str:
        request: dict[str, Any] = {
            # The bare address: it is what the identity and the IAM ses:FromAddress condition name. The From
            # header inside the raw message carries the display name.
            "FromEmailAddress": parseaddr(email.from_address)[1] or email.from_address,
            "Content": {"Raw": {"Data": build_mime(email)}},
            # Tag values allow only [A-Za-z0-9_-]: flow and step ids already fit.
            "EmailTags": [{"Name": name, "Value": value} for name, value in sorted(email.tags.items())],
        }
        if self._configuration_set:
            request["ConfigurationSetName"] = self._configuration_set
        try:
            response = self._client.send_email(**request)
        except Exception as exc:
            raise classify(exc, "SES", _PERMANENT) from exc
        return str(response["MessageId"])
