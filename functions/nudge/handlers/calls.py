"""Amazon Connect: a contact flow's "Invoke AWS Lambda function" block on the path where no one answered.

Connect invokes synchronously and expects a flat object of strings back (the flow may branch on `status`).
Deployed only when `connectInstanceArn` is set; only that instance may invoke it (docs/whatsapp.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nudge import names, wiring
from nudge.domain import calls
from nudge.handlers import flow_metrics
from nudge.handlers.logs import Logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service=names.SERVICE)


def warm() -> None:
    """Build what this function's first request builds (`nudge bench --cold-start`; ADR 0020)."""
    wiring.current().warm("missed_calls")


@logger.inject_lambda_context(clear_state=True, cold_start=warm)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    container = wiring.current()
    try:
        call = calls.from_connect(event, container.clock.now())
    except calls.NotAMissedCall as exc:
        return {"status": "ignored", "reason": str(exc)}
    except calls.BadCall as exc:  # nothing written; the contact flow goes on
        logger.warning("refused a Connect invocation", extra={"error": str(exc)})
        return {"status": "refused", "reason": str(exc)}
    outcome = container.missed_calls.record(call)
    return {"status": "duplicate" if outcome.duplicate else "recorded", "started": ",".join(outcome.started)}
