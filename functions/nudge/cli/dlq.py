"""`nudge dlq`: read the dead-letter queue and replay its work safely (docs/deploy.md, the runbook).

The queue collects four kinds of records: nudge work that failed for over an hour on the work queue
(a wake-up or a message due), wake-ups Scheduler could not deliver, pieces that failed three times on the
jobs queue (the daily job's, disconnects' and restock notices') or ten times on the campaigns' queue, and
Lambda's failure records of asynchronous invocations (the daily job's plan, feedback, inbound SMS). Work is
replayed onto the work queue, campaigns' pieces onto theirs, other pieces onto the jobs queue: every one
of them is idempotent (a stale wake-up, a message already sent, a contact already scored or told are
recognised and left alone). Lambda failure records are reported, not replayed: their `requestPayload`
says what to re-invoke.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import field
from typing import Any

from nudge.domain.frozen import dataclass

_WORK_KEYS = {"contact_id", "run_id", "seq"}


@dataclass
class DeadLetter:
    receipt_handle: str
    body: str
    kind: str  # work | piece | lambda_failure | unknown
    work: dict[str, Any] | None = None
    detail: str = ""


@dataclass
class RedriveReport:
    replayed: int = 0
    kept: list[DeadLetter] = field(default_factory=list)


# The other jobs-queue pieces, and the field that says which one a dead letter is (each is safe to redo).
_OTHER_PIECES = {"campaign": "campaign", "disconnect": "scope", "notice": "change"}


def classify(body: str) -> tuple[str, dict[str, Any] | None, str]:
    """What a dead letter is: nudge work (replayable), a Lambda failure record, or something else."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return "unknown", None, "not JSON"
    if isinstance(parsed, dict) and parsed.keys() >= _WORK_KEYS:
        return "work", parsed, f"run {parsed['run_id']} wake-up {parsed['seq']}"
    if isinstance(parsed, dict) and parsed.get("job") == "daily" and "piece" in parsed:
        return "piece", parsed, f"daily job {parsed.get('day')}: {parsed['piece']} piece"
    if isinstance(parsed, dict) and parsed.get("job") in _OTHER_PIECES:
        job = parsed["job"]
        return "piece", parsed, f"{job} piece: {parsed.get(_OTHER_PIECES[job], '?')}"
    if isinstance(parsed, dict) and "requestContext" in parsed and "requestPayload" in parsed:
        context = parsed["requestContext"]
        function = str(context.get("functionArn", "?")).rsplit(":", 1)[-1]
        condition = context.get("condition", "?")
        return "lambda_failure", None, f"{function} failed ({condition}); re-invoke it with requestPayload"
    return "unknown", None, "neither nudge work nor a Lambda failure record"


def read(sqs: Any, dlq_url: str, *, limit: int = 1000, visibility: int = 60) -> Iterator[DeadLetter]:
    """Receive up to `limit` dead letters (hidden for `visibility` seconds while this runs)."""
    seen = 0
    while seen < limit:
        batch = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=min(10, limit - seen), VisibilityTimeout=visibility
        ).get("Messages", [])
        if not batch:
            return
        for message in batch:
            seen += 1
            kind, work, detail = classify(message["Body"])
            yield DeadLetter(message["ReceiptHandle"], message["Body"], kind, work, detail)


REPLAYABLE = ("work", "piece")


def redrive(
    sqs: Any,
    dlq_url: str,
    work_url: str,
    jobs_url: str | None = None,
    *,
    campaigns_url: str | None = None,
    dry_run: bool = False,
    limit: int = 1000,
) -> RedriveReport:
    """Send each piece of nudge work back to its queue (wake-ups to the work queue, campaigns' pieces to
    theirs, other pieces to the jobs queue), then delete it from the DLQ (in that order)."""
    report = RedriveReport()
    for letter in read(sqs, dlq_url, limit=limit):
        target = {"work": work_url, "piece": jobs_url}.get(letter.kind)
        if letter.kind == "piece" and campaigns_url and (letter.work or {}).get("job") == "campaign":
            target = campaigns_url  # retried within a minute there (ADR 0019); the jobs queue would do too
        if target is None or dry_run:
            report.kept.append(letter)
            continue
        # Sent before it is deleted: a crash in between leaves a duplicate, which the worker ignores.
        sqs.send_message(QueueUrl=target, MessageBody=json.dumps(letter.work, separators=(",", ":")))
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle)
        report.replayed += 1
    return report
