"""Per-flow counts as CloudWatch EMF (through Powertools): what the dashboard and alarms graph.

One EMF document per flow, with the flow as its only dimension, so SEARCH('{nudge,flow}') finds every
flow without the stack having to know them. Set POWERTOOLS_METRICS_DISABLED=true to silence locally.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from nudge import names
from nudge.flow_counts import (  # noqa: F401  (re-exported: the handlers record through this module)
    CONVERTED,
    DAILY_ERRORS,
    EXITED,
    FAILED,
    FEEDBACK,
    REDRIVEN,
    SENT,
    SKIPPED,
    STARTED,
    TOTAL_DIMENSION,
    TOTALLED,
    UNKNOWN,
    FlowCounts,
    _pending,
    _service,
    record_advance,
    record_daily_piece,
    record_feedback,
    record_ingest,
    record_repair,
)


def published(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Wrap a Lambda handler: count what its services report while it runs, then print the EMF documents.

    Every event, enrollment, review and rescore reaches the counts through the ingest service's observer,
    whichever handler caused it (signed API, Segment API, storefront webhooks, signup forms, the sweep).
    """

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        _pending.clear()
        _service.clear()
        try:
            return handler(event, context)
        finally:
            publish(_pending, _service)
            _pending.clear()
            _service.clear()

    return wrapper


def publish(counts: FlowCounts, service: Counter[str] | None = None) -> None:
    """Print one EMF document per flow, then one of totals (CloudWatch Logs turns them into metrics)."""
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", names.SERVICE)
    for flow, values in sorted(counts.items()):
        if not any(values.values()):
            continue
        metrics = EphemeralMetrics(namespace=namespace)
        metrics.add_dimension(name="flow", value=flow)
        for name, value in sorted(values.items()):
            if value:  # a zero is implied by absence; fewer values, smaller logs
                metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        metrics.flush_metrics()
    totals = {name: sum(values[name] for values in counts.values()) for name in TOTALLED}
    totals.update(service or {})
    if any(totals.values()):
        # Also as one total an alarm can name (alarms cannot SEARCH across the flows): ADR 0007.
        total = EphemeralMetrics(namespace=namespace)
        total.add_dimension(name=TOTAL_DIMENSION, value=names.SERVICE)
        for name, value in totals.items():
            if value:
                total.add_metric(name=name, unit=MetricUnit.Count, value=value)
        total.flush_metrics()
