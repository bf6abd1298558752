"""Per-flow counts as CloudWatch EMF (through Powertools): what the dashboard and alarms graph.

One EMF document per flow, with the flow as its only dimension, so SEARCH('{nudge,flow}') finds every
flow without the stack having to know them. Set POWERTOOLS_METRICS_DISABLED=true to silence locally.
"""

from __future__ import annotations

import functools
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from nudge import names, wiring
from nudge.domain.feedback import FeedbackKind
from nudge.services.ingest import IngestOutcome
from nudge.services.runs import AdvanceOutcome

SENT, SKIPPED, FAILED = "MessagesSent", "MessagesSkipped", "MessagesFailed"
UNKNOWN = "MessagesUnknown"  # send outcome never learnt (ADR 0007): alarmed
REDRIVEN = "RunsRedriven"  # stranded runs the repair job found and re-drove (ADR 0007): alarmed
DAILY_ERRORS = "DailyContactErrors"  # contacts the daily job's pieces failed on (service-wide only): alarmed
TOTALLED = (UNKNOWN, REDRIVEN)  # also published as one total over all flows, which an alarm can name
TOTAL_DIMENSION = "service"
STARTED, EXITED, CONVERTED = "RunsStarted", "RunsEnded", "Conversions"
FEEDBACK = {
    FeedbackKind.DELIVERY: "Delivered",
    FeedbackKind.OPEN: "Opened",
    FeedbackKind.CLICK: "Clicked",
    FeedbackKind.BOUNCE: "Bounced",
    FeedbackKind.COMPLAINT: "Complaints",
    FeedbackKind.REJECT: "Rejected",
    FeedbackKind.UNSUBSCRIBE: "Unsubscribes",
}


FlowCounts = defaultdict[str, Counter[str]]
# What this invocation did, per flow: filled by the ingest service's observer and the handlers, published
# once at the end of the invocation by `published`.
_pending: FlowCounts = defaultdict(Counter)
# Counts that belong to no flow, published only as service-wide totals.
_service: Counter[str] = Counter()


def record_ingest(outcome: IngestOutcome) -> None:
    for flow in outcome.started:
        _pending[flow][STARTED] += 1
    for flow in outcome.exited:
        _pending[flow][EXITED] += 1
    for flow in outcome.converted:
        _pending[flow][CONVERTED] += 1


def record_advance(outcome: AdvanceOutcome) -> None:
    if outcome.flow_id:
        flow = _pending[outcome.flow_id]
        flow[SENT] += len(outcome.sent)
        flow[SKIPPED] += len(outcome.skipped)
        flow[FAILED] += len(outcome.failed)
        flow[UNKNOWN] += len(outcome.unknown)


def record_repair(flow_ids: list[str]) -> None:
    for flow in flow_ids:
        _pending[flow][REDRIVEN] += 1


def record_daily_piece(errors: int) -> None:
    _service[DAILY_ERRORS] += errors


def record_feedback(flow_id: str, kind: FeedbackKind) -> None:
    _pending[flow_id][FEEDBACK[kind]] += 1


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


# Every container the handlers use reports its ingest outcomes here (wired once, whoever builds it).
wiring.on_build(lambda container: container.ingest.observe(record_ingest))
