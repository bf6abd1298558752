"""SNS subscriber for the SES configuration set's event destination: bounces, complaints, deliveries..."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import names, wiring
from nudge.domain.feedback import DeliveryFeedback, FeedbackKind
from nudge.handlers.sns import messages, parse_timestamp

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
    )


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    service = wiring.current().feedback
    outcomes: dict[str, int] = {}
    for body, _ in messages(event):
        try:
            if isinstance(body, Exception):
                raise body
            if not isinstance(body, dict):
                raise NotSesFeedback("the SNS message is not a JSON object")
            feedback = parse_ses_event(body)
        except (KeyError, TypeError, ValueError) as exc:  # shape errors and NotSesFeedback
            logger.warning("skipped an SNS record", extra={"error": str(exc)})
            outcomes["skipped"] = outcomes.get("skipped", 0) + 1
            continue
        # Store errors propagate: Lambda retries the async invocation, and recording is idempotent.
        outcome = service.record(feedback)
        logger.info("feedback", extra={"kind": feedback.kind.value, "status": outcome.status})
        outcomes[outcome.status] = outcomes.get(outcome.status, 0) + 1
    return outcomes
