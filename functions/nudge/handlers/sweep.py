"""EventBridge Scheduler target for the recurring jobs: the daily job (segment reviews, RFM scores and
co-purchases, services/daily.py) and, every 15 minutes, the repair job (`{"job": "repair"}`, ADR 0007)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import names, wiring
from nudge.handlers import flow_metrics

logger = Logger(service=names.SERVICE)


@logger.inject_lambda_context(clear_state=True)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if isinstance(event, dict) and event.get("job") == "repair":
        repaired = wiring.current().runs.repair()
        flow_metrics.record_repair(repaired.redriven)
        logger.info("repair job done", extra={"overdue": repaired.overdue, "redriven": len(repaired.redriven)})
        return {"overdue": repaired.overdue, "redriven": len(repaired.redriven)}
    done = wiring.current().daily.run()
    result = done.as_dict()
    logger.info("daily job done", extra=result)
    return result
