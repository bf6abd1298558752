"""What one Lambda invocation did, per flow: the counts `nudge.handlers.flow_metrics` publishes as EMF.

Its own module, free of Powertools and of every service, so the composition root can pass
`record_ingest` to the ingest service as its observer when a container is made (ADR 0020): no hook is
attached at import time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from nudge.domain.feedback import FeedbackKind

if TYPE_CHECKING:
    from nudge.services.ingest import IngestOutcome
    from nudge.services.runs import AdvanceOutcome

SENT, SKIPPED, FAILED = "MessagesSent", "MessagesSkipped", "MessagesFailed"
UNKNOWN = "MessagesUnknown"  # send outcome never learnt (ADR 0007): alarmed
REDRIVEN = "RunsRedriven"  # stranded runs the repair job found and re-drove (ADR 0007): alarmed
DAILY_ERRORS = "DailyContactErrors"  # contacts the daily job's pieces failed on (service-wide only): alarmed
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
    FeedbackKind.READ: "Read",
    FeedbackKind.FAILED: "FailedAfterSend",
    FeedbackKind.REPLY: "Replies",
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
