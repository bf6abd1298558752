"""Per-flow counts as CloudWatch EMF (through Powertools): what the dashboard and alarms graph.

One EMF document per flow, with the flow as its only dimension, so SEARCH('{nudge,flow}') finds every
flow without the stack having to know them. Set POWERTOOLS_METRICS_DISABLED=true to silence locally.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from nudge import names
from nudge.services.ingest import IngestOutcome
from nudge.services.runs import AdvanceOutcome

SENT, SKIPPED, FAILED = "MessagesSent", "MessagesSkipped", "MessagesFailed"
STARTED, EXITED, CONVERTED = "RunsStarted", "RunsEnded", "Conversions"


FlowCounts = defaultdict[str, Counter[str]]


def from_advance(outcome: AdvanceOutcome, counts: FlowCounts | None = None) -> FlowCounts:
    counts = counts if counts is not None else defaultdict(Counter)
    if outcome.flow_id:
        flow = counts[outcome.flow_id]
        flow[SENT] += len(outcome.sent)
        flow[SKIPPED] += len(outcome.skipped)
        flow[FAILED] += len(outcome.failed)
    return counts


def from_ingest(outcome: IngestOutcome) -> FlowCounts:
    counts: FlowCounts = defaultdict(Counter)
    for flow in outcome.started:
        counts[flow][STARTED] += 1
    for flow in outcome.exited:
        counts[flow][EXITED] += 1
    for flow in outcome.converted:
        counts[flow][CONVERTED] += 1
    for advanced in outcome.advanced:
        from_advance(advanced, counts)
    return counts


def publish(counts: FlowCounts) -> None:
    """Print one EMF document per flow (CloudWatch Logs turns them into metrics)."""
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
