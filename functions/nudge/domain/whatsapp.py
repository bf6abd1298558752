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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nudge.domain.frozen import dataclass

if TYPE_CHECKING:
    from nudge.domain.whatsapp_templates import WhatsAppTemplates

# How long after a customer's last inbound message free-form text may be sent (Meta's customer-service window).
SERVICE_WINDOW = timedelta(hours=24)
# Meta's limit on a text message body.
MAX_TEXT = 4096
WINDOW_CLOSED = "whatsapp_window_closed"
# The reason a fallback message keeps: WhatsApp refused it for good, so it went out on the fallback's channel.
FELL_BACK = "whatsapp_failed"
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


# Inbound: what AWS End User Messaging Social publishes to the WABA's event destination (an SNS topic). Each
# notification is AWS's header (context, messageId, message_timestamp) with Meta's webhook payload as a JSON
# string in `whatsAppWebhookEntry`: `changes[].value.messages[]` (the customer wrote) and
# `changes[].value.statuses[]` (what became of a message the shop sent). tests/fixtures/whatsapp/SOURCES.md
# names the documents the shapes are taken from.
REPLIED_EVENT = "replied"  # a customer's message that answers one of nudge's: exits and goals may name it
STATUSES = ("sent", "delivered", "read", "failed")
MAX_INBOUND_TEXT = 1000  # what the event keeps of a customer's message


class NotAWhatsAppEvent(ValueError):
    """The SNS message is not an End User Messaging Social WhatsApp event (logged and skipped)."""


@dataclass(frozen=True, slots=True)
class InboundWhatsApp:
    """A message a customer sent to the shop's WhatsApp number."""

    message_id: str  # Meta's id (wamid.…): redelivered notifications carry the same one
    from_number: str  # E.164
    at: datetime
    kind: str  # Meta's type: text, button, interactive, image, ...
    text: str | None  # the text, a quick-reply button's or an interactive reply's title; None for media
    in_reply_to: str | None = None  # context.id: the shop's message the customer answered, when quoted


@dataclass(frozen=True, slots=True)
class WhatsAppStatus:
    """What became of a message the shop sent: sent, delivered, read or failed."""

    meta_id: str  # statuses[].id, Meta's wamid
    status: str
    at: datetime
    recipient: str | None  # E.164, when the status names it
    aws_message_id: str | None = None  # the header's messageId: what SendWhatsAppMessage answered
    error: str | None = None  # failed: Meta's code and title


@dataclass(frozen=True, slots=True)
class WhatsAppNotification:
    messages: tuple[InboundWhatsApp, ...] = ()
    statuses: tuple[WhatsAppStatus, ...] = ()


def _unix(value: Any, fallback: datetime | None) -> datetime:
    try:
        return datetime.fromtimestamp(int(str(value)), UTC)
    except (TypeError, ValueError, OverflowError):
        if fallback is None:
            raise NotAWhatsAppEvent(f"no usable timestamp: {value!r}") from None
        return fallback


def _header_time(text: Any) -> datetime | None:
    """The header's message_timestamp (nanoseconds: "2025-01-08T23:30:43.271279391Z") as UTC."""
    if not isinstance(text, str) or not text:
        return None
    head, dot, rest = text.rstrip("Z").partition(".")
    try:
        return datetime.fromisoformat(head + (dot + rest[:6] if dot else "")).replace(tzinfo=UTC)
    except ValueError:
        return None


def _e164(wa_id: Any) -> str | None:
    """A WhatsApp id (the number's digits, no plus) as E.164; None if it is not a valid number."""
    # Here, not at the top: every function imports this module (the ports do), and phonenumbers' metadata
    # is a cold-start cost only the inbound function needs (ADR 0020).
    from nudge.domain import phones

    if not isinstance(wa_id, str) or not wa_id.strip():
        return None
    digits = wa_id.strip()
    try:
        return phones.normalize_phone(digits if digits.startswith("+") else "+" + digits, None)
    except ValueError:
        return None


def _text_of(message: dict[str, Any]) -> str | None:
    kind = message.get("type")
    part = message.get(kind) if isinstance(kind, str) else None
    if not isinstance(part, dict):
        return None
    if kind == "text":
        text = part.get("body")
    elif kind == "button":
        text = part.get("text")
    elif kind == "interactive":
        reply = part.get("button_reply") or part.get("list_reply") or {}
        text = reply.get("title") if isinstance(reply, dict) else None
    else:
        text = part.get("caption")
    return text[:MAX_INBOUND_TEXT] if isinstance(text, str) else None


def parse_notification(body: Any) -> WhatsAppNotification:
    """One SNS message from the event destination as the customer messages and statuses it holds."""
    if not isinstance(body, dict) or "whatsAppWebhookEntry" not in body:
        raise NotAWhatsAppEvent("no whatsAppWebhookEntry")
    raw = body["whatsAppWebhookEntry"]
    try:
        entry = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise NotAWhatsAppEvent(f"whatsAppWebhookEntry is not JSON: {exc}") from None
    if not isinstance(entry, dict):
        raise NotAWhatsAppEvent("whatsAppWebhookEntry is not an object")
    # One entry (the documented header); a whole webhook body with `entry[]` is read the same way.
    entries = entry["entry"] if isinstance(entry.get("entry"), list) else [entry]
    header_at = _header_time(body.get("message_timestamp"))
    aws_id = body.get("messageId") if isinstance(body.get("messageId"), str) else None
    messages: list[InboundWhatsApp] = []
    statuses: list[WhatsAppStatus] = []
    for one in entries:
        for change in (one.get("changes") or []) if isinstance(one, dict) else []:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            for message in value.get("messages") or []:
                sender = _e164(message.get("from")) if isinstance(message, dict) else None
                if sender is None or not isinstance(message.get("id"), str):
                    continue  # a message without a usable sender or id cannot be acted on once
                context = message.get("context")
                messages.append(
                    InboundWhatsApp(
                        message_id=message["id"],
                        from_number=sender,
                        at=_unix(message.get("timestamp"), header_at),
                        kind=str(message.get("type") or "unknown"),
                        text=_text_of(message),
                        in_reply_to=context.get("id") if isinstance(context, dict) else None,
                    )
                )
            for status in value.get("statuses") or []:
                if not isinstance(status, dict) or status.get("status") not in STATUSES:
                    continue
                if not isinstance(status.get("id"), str):
                    continue
                errors = [
                    f"{e.get('code')} {e.get('title') or e.get('message') or ''}".strip()
                    for e in status.get("errors") or []
                    if isinstance(e, dict)
                ]
                statuses.append(
                    WhatsAppStatus(
                        meta_id=status["id"],
                        status=status["status"],
                        at=_unix(status.get("timestamp"), header_at),
                        recipient=_e164(status.get("recipient_id")),
                        aws_message_id=aws_id,
                        error="; ".join(errors) or None,
                    )
                )
    return WhatsAppNotification(tuple(messages), tuple(statuses))


@dataclass(frozen=True, slots=True)
class AccountTemplate:
    """A template as the account lists it (ListWhatsAppMessageTemplates): one name in one language."""

    name: str
    language: str
    status: str  # APPROVED, PENDING, REJECTED, PAUSED, ...
    category: str  # MARKETING, UTILITY, AUTHENTICATION
    correct_category: str | None = None  # Meta's reading of the content, when it differs


def account_problems(declared: WhatsAppTemplates, account: list[AccountTemplate]) -> list[str]:
    """Where flows/_whatsapp.yaml says more than the account: a declared template or language the account
    does not hold approved, or under another category. The list names no body parameters, so those are not
    compared (GetWhatsAppMessageTemplate returns a template's components, one call per template)."""
    held = {(t.name, t.language): t for t in account}
    problems = []
    for name, declaration in sorted(declared.templates.items()):
        for language in declaration.languages:
            found = held.get((name, language))
            if found is None:
                problems.append(f"{name}/{language}: declared, but the account has no such template")
                continue
            if found.status.upper() != "APPROVED":
                problems.append(f"{name}/{language}: declared, but its status is {found.status}")
            if found.category.lower() != declaration.category:
                problems.append(
                    f"{name}/{language}: declared {declaration.category}, but the account has it as "
                    f"{found.category.lower()}"
                )
            if found.correct_category and found.correct_category.lower() != found.category.lower():
                problems.append(f"{name}/{language}: Meta reads its content as {found.correct_category.lower()}")
    return problems
