"""SNS subscriber for SES: configuration-set events (bounces, complaints, ...) and mail to the unsubscribe address.

The same function serves both topics: the event destination's, and the receipt rule's SNS action for the
`mailto:` in List-Unsubscribe, whose subject carries the contact's unsubscribe token.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from nudge import names, wiring
from nudge.domain.feedback import DeliveryFeedback, FeedbackKind, is_machine_open
from nudge.domain.unsubscribe import BadToken
from nudge.handlers import flow_metrics
from nudge.handlers.logs import Logger
from nudge.handlers.sns import messages, parse_timestamp

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service=names.SERVICE)

# SES event type -> (our kind, the member holding its details and recipients)
_KINDS = {
    "Delivery": (FeedbackKind.DELIVERY, "delivery"),
    "Open": (FeedbackKind.OPEN, "open"),
    "Click": (FeedbackKind.CLICK, "click"),
    "Bounce": (FeedbackKind.BOUNCE, "bounce"),
    "Complaint": (FeedbackKind.COMPLAINT, "complaint"),
    "Reject": (FeedbackKind.REJECT, "reject"),
}
_RECIPIENTS = {"bounce": "bouncedRecipients", "complaint": "complainedRecipients"}
_TOKEN = re.compile(r"\bv1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class NotSesFeedback(ValueError):
    """The SNS message is not an SES event this function records (logged and skipped, never retried)."""


def parse_ses_event(body: dict[str, Any]) -> DeliveryFeedback:
    """An SES event-publishing record (or a legacy notification) as domain feedback."""
    event_type = body.get("eventType") or body.get("notificationType")
    if event_type not in _KINDS:
        raise NotSesFeedback(f"event type {event_type!r} is not recorded")
    kind, member = _KINDS[event_type]
    mail = body.get("mail") or {}
    provider_id = mail.get("messageId")
    if not isinstance(provider_id, str) or not provider_id:
        raise NotSesFeedback("the event names no mail.messageId")
    detail = body.get(member) or {}
    at = parse_timestamp(detail.get("timestamp")) or parse_timestamp(mail.get("timestamp"))
    if at is None:
        raise NotSesFeedback("the event carries no timestamp")
    recipients: tuple[str, ...] = ()
    if member in _RECIPIENTS:
        recipients = tuple(r["emailAddress"] for r in detail.get(_RECIPIENTS[member], []) if r.get("emailAddress"))
    elif member == "delivery":
        recipients = tuple(detail.get("recipients", []))
    description = detail.get("bounceSubType") or detail.get("complaintFeedbackType") or detail.get("reason")
    return DeliveryFeedback(
        kind=kind,
        provider_id=provider_id,
        at=at,
        recipients=recipients,
        permanent=kind is FeedbackKind.BOUNCE and detail.get("bounceType") == "Permanent",
        detail=description or detail.get("link"),
        machine=kind is FeedbackKind.OPEN and is_machine_open(detail.get("userAgent")),
        message_key=_message_key(mail),
    )


def _message_key(mail: dict[str, Any]) -> tuple[str, str] | None:
    """The message record the mail's X-Nudge-* headers name (SES event publishing includes the headers)."""
    headers = {str(h.get("name", "")).lower(): h.get("value") for h in mail.get("headers") or () if isinstance(h, dict)}
    contact_id, message_id = headers.get(names.CONTACT_HEADER.lower()), headers.get(names.MESSAGE_HEADER.lower())
    if isinstance(contact_id, str) and isinstance(message_id, str) and contact_id and message_id:
        return contact_id, message_id
    return None


def unsubscribe_token(body: dict[str, Any]) -> str:
    """The token in the subject of a mail SES received for the unsubscribe address."""
    receipt = body.get("receipt") or {}
    if (receipt.get("virusVerdict") or {}).get("status") == "FAIL":
        raise NotSesFeedback("the mail failed SES's virus scan")
    subject = str(((body.get("mail") or {}).get("commonHeaders") or {}).get("subject") or "")
    found = _TOKEN.search(subject)
    if found is None:
        raise NotSesFeedback("the mail's subject carries no unsubscribe token")
    return found.group(0)


def _unsubscribe_by_mail(body: dict[str, Any]) -> str:
    token = unsubscribe_token(body)
    try:
        wiring.current().preferences.unsubscribe(token, source="unsubscribe:mailto")
    except BadToken as exc:
        logger.warning("unsubscribe mail with a bad token", extra={"error": str(exc)})
        return "bad_token"
    except LookupError:  # the contact was erased: nothing left to unsubscribe
        return "contact_gone"
    return "unsubscribed"


def warm() -> None:
    """Build what this function's first request builds: SES events (opens and clicks build the ingest
    service when they arrive).

    `nudge bench --cold-start` times import + this; nothing calls it at import (ADR 0020).
    """
    wiring.current().warm("feedback")


@logger.inject_lambda_context(clear_state=True, cold_start=warm)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    service = wiring.current().feedback
    outcomes: dict[str, int] = {}
    for body, _ in messages(event):
        try:
            if isinstance(body, Exception):
                raise body
            if not isinstance(body, dict):
                raise NotSesFeedback("the SNS message is not a JSON object")
            if body.get("notificationType") == "Received":
                status = _unsubscribe_by_mail(body)
                outcomes[status] = outcomes.get(status, 0) + 1
                continue
            feedback = parse_ses_event(body)
        except (KeyError, TypeError, ValueError) as exc:  # shape errors and NotSesFeedback
            logger.warning("skipped an SNS record", extra={"error": str(exc)})
            outcomes["skipped"] = outcomes.get("skipped", 0) + 1
            continue
        # Store errors propagate: Lambda retries the async invocation, and recording is idempotent.
        outcome = service.record(feedback)
        logger.info("feedback", extra={"kind": feedback.kind.value, "status": outcome.status})
        outcomes[outcome.status] = outcomes.get(outcome.status, 0) + 1
        if outcome.status == "recorded" and outcome.flow_id:
            flow_metrics.record_feedback(outcome.flow_id, feedback.kind)
    return outcomes
