"""Daily EventBridge Scheduler target: review the contacts whose segments may have changed with time alone."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import names, wiring
from nudge.handlers import flow_metrics

logger = Logger(service=names.SERVICE)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcomes = wiring.current().ingest.sweep()
    counts: flow_metrics.FlowCounts = defaultdict(Counter)
    for outcome in outcomes:
        for flow, values in flow_metrics.from_ingest(outcome).items():
            counts[flow].update(values)
    flow_metrics.publish(counts)
    result = {
        "reviewed": len(outcomes),
        "started": sum(len(o.started) for o in outcomes),
        "exited": sum(len(o.exited) for o in outcomes),
    }
    logger.info("segment sweep done", extra=result)
    return result
