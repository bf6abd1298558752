"""SNS subscriber for WhatsApp: what AWS End User Messaging Social publishes to the WABA's event destination.

Customers' messages (replies, STOP and START) and the statuses of messages nudge sent; only deployed when a
WhatsApp number is configured (docs/whatsapp.md, "Inbound").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nudge import names, wiring
from nudge.domain.whatsapp import parse_notification
from nudge.handlers import flow_metrics
from nudge.handlers.logs import Logger
from nudge.handlers.sns import messages

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service=names.SERVICE)


def warm() -> None:
    """Build what this function's first request builds (`nudge bench --cold-start`; ADR 0020)."""
    wiring.current().warm("whatsapp_inbound")


@logger.inject_lambda_context(clear_state=True, cold_start=warm)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    service = wiring.current().whatsapp_inbound
    outcomes: dict[str, int] = {}
    for body, _ in messages(event):
        try:
            if isinstance(body, Exception):
                raise body
            notification = parse_notification(body)
        except (KeyError, TypeError, ValueError) as exc:  # shape errors and NotAWhatsAppEvent
            logger.warning("skipped an SNS record", extra={"error": str(exc)})
            outcomes["skipped"] = outcomes.get("skipped", 0) + 1
            continue
        # Store errors and a message the index does not show yet propagate: Lambda retries the invocation,
        # and everything recorded is idempotent.
        for outcome, count in service.handle(notification).items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
    logger.info("WhatsApp events", extra={"outcomes": outcomes})
    return outcomes
