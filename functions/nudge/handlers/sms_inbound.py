"""SNS subscriber for two-way SMS: STOP and its synonyms opt out, START opts in, HELP answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nudge import names, wiring
from nudge.handlers.logs import Logger
from nudge.handlers.sns import messages, parse_timestamp
from nudge.services.sms_keywords import InboundSms

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service=names.SERVICE)


def parse_inbound(body: Any, fallback_at: str) -> InboundSms:
    """The two-way SMS JSON (originationNumber, messageBody, inboundMessageId) as an InboundSms."""
    if isinstance(body, Exception):
        raise body
    if not isinstance(body, dict):
        raise ValueError("the SNS message is not a JSON object")
    from_number, text = body.get("originationNumber"), body.get("messageBody")
    if not isinstance(from_number, str) or not isinstance(text, str):
        raise ValueError("an inbound SMS needs originationNumber and messageBody")
    at = parse_timestamp(fallback_at)
    if at is None:
        raise ValueError("the SNS record carries no timestamp")
    return InboundSms(from_number=from_number, body=text, at=at, message_id=body.get("inboundMessageId"))


def warm() -> None:
    """Build what this function's first request builds: STOP, START and HELP.

    `nudge bench --cold-start` times import + this; nothing calls it at import (ADR 0020).
    """
    wiring.current().warm("sms_keywords")


@logger.inject_lambda_context(clear_state=True, cold_start=warm)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    service = wiring.current().sms_keywords
    outcomes: dict[str, int] = {}
    for body, timestamp in messages(event):
        try:
            inbound = parse_inbound(body, timestamp)
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("skipped an SNS record", extra={"error": str(exc)})
            outcomes["skipped"] = outcomes.get("skipped", 0) + 1
            continue
        result = service.handle(inbound)
        logger.info("inbound SMS", extra={"result": result, "inbound_message_id": inbound.message_id})
        outcomes[result] = outcomes.get(result, 0) + 1
    return outcomes
