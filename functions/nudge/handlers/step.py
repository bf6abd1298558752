"""EventBridge Scheduler target: a run's wait is over; advance it. Safe to fire twice."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import names, wiring
from nudge.handlers import flow_metrics
from nudge.ports import StepWakeUp

logger = Logger(service=names.SERVICE)


class BadWakeUp(ValueError):
    """The schedule's input is not a nudge wake-up; it goes to the dead-letter queue after retries."""


def parse_wake_up(event: Any) -> StepWakeUp:
    if not isinstance(event, dict):
        raise BadWakeUp(f"expected a JSON object, got {type(event).__name__}")
    missing = [key for key in ("contact_id", "run_id", "seq") if key not in event]
    if missing:
        raise BadWakeUp(f"wake-up lacks {', '.join(missing)}")
    contact_id, run_id, seq = event["contact_id"], event["run_id"], event["seq"]
    if not (isinstance(contact_id, str) and isinstance(run_id, str) and isinstance(seq, int)):
        raise BadWakeUp("contact_id and run_id must be strings and seq an integer")
    return StepWakeUp(contact_id=contact_id, run_id=run_id, seq=seq)


@logger.inject_lambda_context(clear_state=True)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    wake_up = parse_wake_up(event)
    logger.append_keys(run_id=wake_up.run_id, seq=wake_up.seq)
    outcome = wiring.current().runs.wake(wake_up)
    flow_metrics.record_advance(outcome)
    result = asdict(outcome)
    logger.info("run advanced", extra=result)
    return result
