"""Daily EventBridge Scheduler target: segment reviews, RFM scores and co-purchases (services/daily.py)."""

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
    done = wiring.current().daily.run()
    result = done.as_dict()
    logger.info("daily job done", extra=result)
    return result
