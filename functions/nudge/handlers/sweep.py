"""Daily EventBridge Scheduler target: segment reviews, RFM scores and co-purchases (services/daily.py)."""

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
    done = wiring.current().daily.run()
    counts: flow_metrics.FlowCounts = defaultdict(Counter)
    for outcome in done.reviews + done.rfm.outcomes:
        for flow, values in flow_metrics.from_ingest(outcome).items():
            counts[flow].update(values)
    flow_metrics.publish(counts)
    result = done.as_dict()
    logger.info("daily job done", extra=result)
    return result
