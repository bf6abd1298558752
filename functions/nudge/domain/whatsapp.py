"""WhatsApp messages as the WhatsApp Cloud API takes them, and the rules that decide what may be sent.

AWS End User Messaging Social's SendWhatsAppMessage carries a Cloud API message object as its `message`
blob (docs/whatsapp.md cites the shapes). nudge sends two kinds:

- a **template** message: a Meta-approved template by name and language, its body parameters filled in;
  allowed at any time (a business-initiated message must be one);
- a **text** message: free-form, allowed only inside the 24-hour customer-service window, which opens
  (and restarts) each time the customer writes to the business.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# How long after a customer's last inbound message free-form text may be sent (Meta's customer-service window).
SERVICE_WINDOW = timedelta(hours=24)
# Meta's limit on a text message body.
MAX_TEXT = 4096
WINDOW_CLOSED = "whatsapp_window_closed"
# The event a customer's WhatsApp message to the shop arrives as (POST /v1/events now; the inbound function
# later): it opens the window, and flows may trigger on it.
INBOUND_EVENT = "whatsapp_received"


@dataclass(frozen=True, slots=True)
class OutgoingWhatsApp:
    """One WhatsApp message: a template (name, language, body parameters in declared order) or free text."""

    to: str  # E.164
    template: str | None = None
    language: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()  # (name, value); names all digits: positional {{1}}, {{2}}
    text: str | None = None

    def __post_init__(self) -> None:
        if (self.template is None) == (self.text is None):
            raise ValueError("a WhatsApp message is a template or a text, not both or neither")
        if self.template is not None and not self.language:
            raise ValueError("a template message needs its language code")

    def cloud_api_message(self) -> dict[str, Any]:
        """The WhatsApp Cloud API message object (what SendWhatsAppMessage's `message` blob holds)."""
        base: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": self.to}
        if self.text is not None:
            return {**base, "type": "text", "text": {"preview_url": False, "body": self.text}}
        template: dict[str, Any] = {"name": self.template, "language": {"code": self.language}}
        if self.parameters:
            positional = all(name.isdigit() for name, _ in self.parameters)
            template["components"] = [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": value}
                        if positional
                        else {"type": "text", "parameter_name": name, "text": value}
                        for name, value in self.parameters
                    ],
                }
            ]
        return {**base, "type": "template", "template": template}

    def encoded(self) -> bytes:
        return json.dumps(self.cloud_api_message(), separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def preview(self) -> str:
        """What the message record keeps: the text, or the template and its parameters."""
        if self.text is not None:
            return self.text
        values = ", ".join(f"{name}={value}" for name, value in self.parameters)
        return f"[{self.template}/{self.language}] {values}".strip()


def window_open(last_inbound_at: datetime | None, now: datetime) -> bool:
    """Is the customer-service window open: did the customer write within the last 24 hours?"""
    return last_inbound_at is not None and last_inbound_at <= now < last_inbound_at + SERVICE_WINDOW


class TemplateDeclaration(BaseModel):
    """A template as Meta approved it: its languages, its category and the body parameters it takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    languages: list[str] = Field(min_length=1, description="The approved languages, e.g. [en_US, de].")
    category: Literal["marketing", "utility", "authentication"] = Field(description="Meta's template category.")
    parameters: list[str] = Field(
        default_factory=list, description="Body parameters: names ({{first_name}}) or positions (1, 2, ...)."
    )


class WhatsAppTemplates(BaseModel):
    """flows/_whatsapp.yaml: the templates the shop's WhatsApp Business Account has approved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    templates: dict[str, TemplateDeclaration] = Field(default_factory=dict)
