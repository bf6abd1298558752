"""The WorkQueue and JobQueue ports over SQS: the worker's queue (delays of up to 15 minutes included) and
the daily job's queue of pieces."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from nudge.ports import StepWakeUp

MAX_DELAY_SECONDS = 900


class SqsWorkQueue:
    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def enqueue(self, work: StepWakeUp, delay: timedelta = timedelta(0)) -> None:
        self._client.send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps(work.as_payload(), separators=(",", ":")),
            DelaySeconds=_delay_seconds(delay),
        )

    def enqueue_many(self, items: Sequence[tuple[StepWakeUp, timedelta]]) -> None:
        """Ten per SendMessageBatch; raises if any entry failed (entries that went in are duplicates the
        worker ignores when the caller's retry re-drives them)."""
        for start in range(0, len(items), 10):
            chunk = items[start : start + 10]
            answer = self._client.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": json.dumps(work.as_payload(), separators=(",", ":")),
                        "DelaySeconds": _delay_seconds(delay),
                    }
                    for i, (work, delay) in enumerate(chunk)
                ],
            )
            if failed := answer.get("Failed"):
                reasons = sorted({f"{f.get('Code')}: {f.get('Message')}" for f in failed})
                raise RuntimeError(f"{len(failed)} of {len(chunk)} wake-ups not queued ({'; '.join(reasons)})")


def _delay_seconds(delay: timedelta) -> int:
    # Rounded up: a wake-up must never arrive before its moment (the worker would only wait again).
    return min(MAX_DELAY_SECONDS, max(0, math.ceil(delay.total_seconds())))


class SqsJobQueue:
    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def put(self, bodies: Sequence[Mapping[str, Any]], *, delay: timedelta = timedelta(0)) -> None:
        """Ten per SendMessageBatch; raises if any entry failed (the caller's piece is retried: pieces are
        safe to do twice, so entries that did go in are harmless duplicates)."""
        seconds = min(MAX_DELAY_SECONDS, max(0, math.ceil(delay.total_seconds())))
        for start in range(0, len(bodies), 10):
            chunk = bodies[start : start + 10]
            answer = self._client.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(i), "MessageBody": json.dumps(body, separators=(",", ":"))}
                    | ({"DelaySeconds": seconds} if seconds else {})
                    for i, body in enumerate(chunk)
                ],
            )
            if failed := answer.get("Failed"):
                reasons = sorted({f"{f.get('Code')}: {f.get('Message')}" for f in failed})
                raise RuntimeError(f"{len(failed)} of {len(chunk)} pieces not queued ({'; '.join(reasons)})")

    def retry_in(self, receipt_handle: str, seconds: int) -> None:
        """A received piece that failed comes back after `seconds`, not the queue's visibility timeout."""
        self._client.change_message_visibility(
            QueueUrl=self._queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=max(0, seconds)
        )

    def holds(self, source_arn: str) -> bool:
        """Whether an SQS record with this eventSourceARN came from this queue (the name ends both)."""
        return source_arn.rsplit(":", 1)[-1] == self._queue_url.rstrip("/").rsplit("/", 1)[-1]
