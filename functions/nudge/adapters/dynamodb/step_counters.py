"""The StepCounters role (nudge.ports.StepCounters) over DynamoDB: per flow step, one counter per kind of feedback."""

from __future__ import annotations

from nudge.adapters.dynamodb.models import (
    STEP_PREFIX,
)
from nudge.adapters.dynamodb.tables import (
    FEEDBACK_KINDS,
    DynamoTables,
)
from nudge.domain.feedback import FeedbackKind


class DynamoStepCounters(DynamoTables):
    """Implements nudge.ports.StepCounters."""

    def count_step(self, flow_id: str, step_id: str, kind: FeedbackKind) -> None:
        model = self.models.counters
        model(pk=STEP_PREFIX + flow_id, sk=step_id).update(actions=[getattr(model, kind.value).add(1)])

    def step_counts(self, flow_id: str) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for item in self.models.counters.query(STEP_PREFIX + flow_id, consistent_read=True):
            counts[item.sk] = {
                kind.value: int(value) for kind in FEEDBACK_KINDS if (value := getattr(item, kind.value)) is not None
            }
        return counts
