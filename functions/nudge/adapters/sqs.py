"""The WorkQueue port over SQS: the worker's queue, delays of up to 15 minutes included."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

from nudge.ports import StepWakeUp

MAX_DELAY_SECONDS = 900


class SqsWorkQueue:
    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def enqueue(self, work: StepWakeUp, delay: timedelta = timedelta(0)) -> None:
        # Rounded up: a wake-up must never arrive before its moment (the worker would only wait again).
        seconds = min(MAX_DELAY_SECONDS, max(0, math.ceil(delay.total_seconds())))
        self._client.send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps(work.as_payload(), separators=(",", ":")),
            DelaySeconds=seconds,
        )
