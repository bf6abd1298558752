"""The worker: consumes the work queue (SQS) — wake-ups and messages due — with partial batch responses.

Scheduler delivers later wake-ups to the same queue. A record that fails is left to SQS: it comes back
after the visibility timeout, up to the queue's maxReceiveCount, then goes to the dead-letter queue
(`nudge dlq redrive` replays it). Every piece of work is safe to do twice (ADR 0007).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from nudge import names, wiring
from nudge.handlers import flow_metrics, sqs_batch
from nudge.handlers.logs import Logger
from nudge.ports import StepWakeUp

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service=names.SERVICE)
# Kept back from the invocation's end: a webhook attempt must not start unless it can finish.
DEADLINE_MARGIN = timedelta(seconds=5)


# Message ids a wake-up may name: with the run, the contact and 3 address keys, one BatchGetItem (100 keys).
OUTBOX_HINT = 95


class BadWakeUp(ValueError):
    """The record is not nudge work; it goes to the dead-letter queue after SQS's retries."""


def parse_wake_up(event: Any) -> StepWakeUp:
    if not isinstance(event, dict):
        raise BadWakeUp(f"expected a JSON object, got {type(event).__name__}")
    missing = [key for key in ("contact_id", "run_id", "seq") if key not in event]
    if missing:
        raise BadWakeUp(f"wake-up lacks {', '.join(missing)}")
    contact_id, run_id, seq = event["contact_id"], event["run_id"], event["seq"]
    if not (isinstance(contact_id, str) and isinstance(run_id, str) and isinstance(seq, int)):
        raise BadWakeUp("contact_id and run_id must be strings and seq an integer")
    message_id, slot, audience = event.get("message_id"), event.get("slot"), event.get("audience")
    if message_id is not None and not isinstance(message_id, str):
        raise BadWakeUp("message_id must be a string")
    if audience is not None and not (isinstance(audience, str) and audience):
        raise BadWakeUp("audience must be an audience id")
    outbox, addresses = event.get("outbox", []), event.get("addresses", [])
    if not (isinstance(outbox, list) and len(outbox) <= OUTBOX_HINT and all(isinstance(m, str) for m in outbox)):
        raise BadWakeUp(f"outbox must be a list of at most {OUTBOX_HINT} message ids")
    if not (isinstance(addresses, list) and len(addresses) <= 3 and all(isinstance(a, str) for a in addresses)):
        raise BadWakeUp("addresses must be a list of at most 3 address keys")
    try:
        at = datetime.fromisoformat(slot) if isinstance(slot, str) else None
    except ValueError as exc:
        raise BadWakeUp(f"slot is not an ISO time: {slot!r}") from exc
    return StepWakeUp(
        contact_id=contact_id,
        run_id=run_id,
        seq=seq,
        message_id=message_id,
        slot=at,
        audience=audience,
        outbox=tuple(outbox),
        addresses=tuple(addresses),
    )


def _deadline(context: LambdaContext) -> datetime:
    clock = wiring.current().clock
    return clock.now() + timedelta(milliseconds=context.get_remaining_time_in_millis()) - DEADLINE_MARGIN


def _work(record_body: str, deadline: datetime) -> dict[str, Any]:
    try:
        body = json.loads(record_body)
    except ValueError as exc:
        raise BadWakeUp(f"record body is not JSON: {exc}") from exc
    wake_up = parse_wake_up(body)
    outcome = wiring.current().runs.wake(wake_up, deadline)
    flow_metrics.record_advance(outcome)
    result = asdict(outcome)
    logger.info("work done", extra={**result, "message_id": wake_up.message_id, "seq": wake_up.seq})
    return result


def warm() -> None:
    """Build what this function's first request builds: wake-ups and messages due.

    `nudge bench --cold-start` times import + this; nothing calls it at import (ADR 0020).
    """
    wiring.current().warm("runs")


@logger.inject_lambda_context(clear_state=True, cold_start=warm)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """SQS needs only `batchItemFailures`; `outcomes` (what each record did, or why it failed) is for people."""
    deadline = _deadline(context)
    return sqs_batch.process(event.get("Records") or [], lambda body: _work(body, deadline))
