"""The recurring jobs' function (ADR 0007).

- Invoked by the daily schedule (04:00 UTC): plans the daily job, putting its first pieces on the jobs
  queue (services/daily.py). It does nothing else itself, so a retried invocation only plans again.
- Fed by the jobs queue (an SQS event-source mapping, one record per invocation): does one piece until
  shortly before the invocation's end, then puts what follows (a continuation, the scoring pieces) on the
  queue. A piece that raises comes back after the visibility timeout, and after three receives goes to
  the dead-letter queue (`nudge dlq redrive --queue jobs`).
- Fed campaign pieces by the same queue (`{"job": "campaign", ...}`): resolves a minute's share of a
  campaign's audience segment and starts those recipients' runs (services/campaigns.py, ADR 0019).
- Fed disconnect pieces (`{"job": "disconnect", ...}`): a shop removed the app, so the runs of its contacts
  that wait on its events end, a page of the shop's contacts at a time (services/disconnect.py).
- Fed notice pieces (`{"job": "notice", ...}`): a restock or a lower price tells up to 100 of the contacts
  waiting on the item (services/storefront_webhooks.py).
- Invoked every 15 minutes with `{"job": "repair"}`: re-drives active runs whose wake-up is overdue.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from nudge import names, wiring
from nudge.handlers import flow_metrics, sqs_batch
from nudge.handlers.logs import Logger
from nudge.services import disconnect, storefront_webhooks
from nudge.services.campaigns import CampaignPiece
from nudge.services.daily import BadPiece, Piece
from nudge.settings import SettingsError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service=names.SERVICE)
# Kept back from the invocation's end: the contact in hand, the piece's record and its continuation.
DEADLINE_MARGIN = timedelta(seconds=60)


def _jobs() -> Any:
    jobs = wiring.current().jobs
    if jobs is None:
        raise SettingsError(f"{names.ENV_JOBS_QUEUE_URL} is not set: the daily job needs its queue")
    return jobs


def _piece(record_body: str, context: LambdaContext) -> dict[str, Any]:
    try:
        body = json.loads(record_body)
        if isinstance(body, dict) and body.get("job") == "campaign":
            return _campaign_piece(CampaignPiece.parse(body), context)
        if isinstance(body, dict) and body.get("job") == disconnect.JOB:
            return _disconnect_piece(disconnect.DisconnectPiece.parse(body), context)
        if isinstance(body, dict) and body.get("job") == storefront_webhooks.NOTICE_JOB:
            return wiring.current().webhooks.notify(storefront_webhooks.NoticePiece.parse(body))
        piece = Piece.parse(body)
    except ValueError as exc:  # not JSON, or not a piece (BadPiece, BadCampaignPiece, BadDisconnectPiece, ...)
        raise BadPiece(str(exc)) from exc
    container = wiring.current()
    remaining = timedelta(milliseconds=context.get_remaining_time_in_millis())
    done = container.daily.work(piece, container.clock.now() + remaining - DEADLINE_MARGIN)
    if done.follow:
        _jobs().put([follow.as_payload() for follow in done.follow])
    flow_metrics.record_daily_piece(done.errors)
    return {"key": piece.key, "day": piece.day, **done.record(), "follow": [p.key for p in done.follow]}


def _disconnect_piece(piece: disconnect.DisconnectPiece, context: LambdaContext) -> dict[str, Any]:
    """A piece of a shop's contacts after it removed the app (ADR 0017): it queues its own continuation."""
    container = wiring.current()
    remaining = timedelta(milliseconds=context.get_remaining_time_in_millis())
    done = container.disconnect.work(piece, container.clock.now() + remaining - DEADLINE_MARGIN)
    if done.follow:
        _jobs().put([follow.as_payload() for follow in done.follow])
    return done.record() | {"follow": len(done.follow)}


def _campaign_piece(piece: CampaignPiece, context: LambdaContext) -> dict[str, Any]:
    """A piece of a campaign's audience (ADR 0019): it queues its own continuation, a minute later."""
    container = wiring.current()
    remaining = timedelta(milliseconds=context.get_remaining_time_in_millis())
    done = container.campaigns.work(piece, container.clock.now() + remaining - DEADLINE_MARGIN)
    logger.info("campaign piece", extra={"campaign": piece.campaign_id, "key": piece.key, "status": done.status})
    return {
        "campaign": piece.campaign_id,
        "key": piece.key,
        "status": done.status,
        "started": done.started,
        "existing": done.existing,
        "done": done.done,
    }


def _retry_campaign_pieces_soon(records: list[dict[str, Any]], failures: list[dict[str, str]]) -> None:
    """A campaign piece that failed comes back within a minute (10, 20, 40, then 60 s), not after the
    queue's visibility timeout (the function's 900 s, which Lambda requires of the queue): ADR 0019. Only
    for the campaigns' own queue; if this call fails too, the piece waits out the visibility timeout."""
    from nudge.adapters.sqs import SqsJobQueue  # only SQS has a message's visibility to shorten

    container = wiring.current()
    queue = container.campaign_jobs if container.settings.campaigns_queue_url else None
    if not isinstance(queue, SqsJobQueue):
        return
    failed = {failure["itemIdentifier"] for failure in failures}
    for record in records:
        if record.get("messageId") not in failed or not queue.holds(str(record.get("eventSourceARN", ""))):
            continue
        receives = int(record.get("attributes", {}).get("ApproximateReceiveCount", 1))
        delays = names.CAMPAIGN_RETRY_SECONDS
        try:
            queue.retry_in(record["receiptHandle"], delays[min(max(receives, 1), len(delays)) - 1])
        except Exception:  # noqa: BLE001 - the piece still comes back, after the visibility timeout
            logger.warning("could not shorten a failed campaign piece's wait", extra={"receives": receives})


def warm() -> None:
    """Build what this function's first request builds: the daily job's pieces (the repair job builds the
    run service when it runs).

    `nudge bench --cold-start` times import + this; nothing calls it at import (ADR 0020).
    """
    wiring.current().warm("daily", "jobs")


@logger.inject_lambda_context(clear_state=True, cold_start=warm)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if isinstance(event, dict) and "Records" in event:
        result = sqs_batch.process(event["Records"], lambda body: _piece(body, context))
        if result["batchItemFailures"]:
            _retry_campaign_pieces_soon(event["Records"], result["batchItemFailures"])
        return result
    if isinstance(event, dict) and event.get("job") == "repair":
        repaired = wiring.current().runs.repair()
        flow_metrics.record_repair(repaired.redriven)
        logger.info("repair job done", extra={"overdue": repaired.overdue, "redriven": len(repaired.redriven)})
        return {"overdue": repaired.overdue, "redriven": len(repaired.redriven)}
    pieces = wiring.current().daily.plan()
    _jobs().put([piece.as_payload() for piece in pieces])
    planned = {"day": pieces[0].day, "planned": [piece.key for piece in pieces]}
    logger.info("daily job planned", extra=planned)
    return planned
