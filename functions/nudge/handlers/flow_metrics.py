"""Per-flow counts as CloudWatch EMF: what the dashboard and alarms graph.

One EMF document of totals (dimension service=nudge), and with `perFlowMetrics` one per flow with the
flow as its only dimension, so SEARCH('{nudge,flow}') finds every flow without the stack having to know
them. Set POWERTOOLS_METRICS_DISABLED=true to silence locally (or POWERTOOLS_DEV=true, as Powertools reads it).
The documents are Powertools' EphemeralMetrics' own shape, written here without importing Powertools (~30 ms at
a cold start, ADR 0020).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from nudge import names
from nudge.flow_counts import (  # re-exported: see __all__
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

# The handlers record through this module (what it re-exports from nudge.flow_counts) and publish with it.
__all__ = [
    "CONVERTED",
    "DAILY_ERRORS",
    "EXITED",
    "FAILED",
    "FEEDBACK",
    "REDRIVEN",
    "SENT",
    "SKIPPED",
    "STARTED",
    "TOTAL_DIMENSION",
    "UNKNOWN",
    "FlowCounts",
    "record_advance",
    "record_daily_piece",
    "record_feedback",
    "record_ingest",
    "record_repair",
    "publish",
    "published",
]


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
    """Print one EMF document of totals over all flows and, when asked for, one per flow.

    CloudWatch Logs turns them into metrics. Each metric name and dimension value is a custom metric
    ($0.30 a month in a month it is published): the totals are at most a dozen; per flow they multiply by
    the flows, so they are opt-in (`perFlowMetrics`, docs/deploy.md). The report has every per-flow
    figure from the tables whatever this says.
    """
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", names.SERVICE)
    if os.environ.get(names.ENV_PER_FLOW_METRICS, "false") == "true":
        for flow, values in sorted(counts.items()):
            if any(values.values()):
                _flush(namespace, "flow", flow, values)
    totals: Counter[str] = Counter()
    for values in counts.values():
        totals.update(values)
    totals.update(service or {})
    # One total per name an alarm can name (alarms cannot SEARCH across the flows): ADR 0007.
    _flush(namespace, TOTAL_DIMENSION, names.SERVICE, totals)


def _flush(namespace: str, dimension: str, value: str, counts: Mapping[str, int]) -> None:
    if not any(counts.values()) or _disabled():
        return
    named = {name: [float(count)] for name, count in sorted(counts.items()) if count}  # a zero is implied by absence
    document = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [[dimension]],
                    "Metrics": [{"Name": name, "Unit": "Count"} for name in named],
                }
            ],
        },
        dimension: value,
        **named,
    }
    print(json.dumps(document, separators=(",", ":")))


def _disabled() -> bool:
    """Powertools' rule: POWERTOOLS_METRICS_DISABLED true, or POWERTOOLS_DEV true with it unset."""
    flag = os.environ.get("POWERTOOLS_METRICS_DISABLED")
    if flag is not None:
        return _true(flag)
    return _true(os.environ.get("POWERTOOLS_DEV", "false"))


def _true(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "t", "yes", "y", "on"}
