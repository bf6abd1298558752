"""The Census role (nudge.ports.Census) over DynamoDB.

Whole-table passes of the daily job (ADR 0005, 0006), and the CLI's reports.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from nudge.adapters.dynamodb.models import (
    REVIEW_SHARDS,
    RUN_PREFIX,
)
from nudge.adapters.dynamodb.tables import (
    DynamoTables,
)
from nudge.domain.aggregates import ORDER_PLACED
from nudge.domain.lifecycle import REVIEW_LOOKBACK_DAYS
from nudge.domain.model import (
    Contact,
    Message,
    Run,
)

if TYPE_CHECKING:  # the report's order records: imported by `orders`, which only the CLI's reports call
    from nudge.domain.kpis import Order


class DynamoCensus(DynamoTables):
    """Implements nudge.ports.Census."""

    def contacts_to_review(self, until: datetime) -> Iterator[str]:
        # One Query per day bucket and shard over a keys-only sparse index: 7 x 4 small queries a day.
        index = self.models.contacts.review_index
        for days_back in reversed(range(REVIEW_LOOKBACK_DAYS)):
            day = until.date() - timedelta(days=days_back)
            for shard in range(REVIEW_SHARDS):
                for item in index.query(f"{day.isoformat()}#{shard}", self.models.contacts.review_at <= until):
                    yield item.contact_id

    def all_contacts(self) -> Iterator[Contact]:
        # Eventually consistent: a contact changed during the pass is scored again tomorrow.
        for item in self.models.contacts.scan():
            yield self._contact_from(item)

    def contacts_segment(
        self, segment: int, of: int, cursor: Mapping[str, Any] | None = None
    ) -> Iterator[tuple[Contact, dict[str, Any] | None]]:
        # A parallel Scan's segment; the cursor is DynamoDB's own key of the last item read.
        found = self.models.contacts.scan(
            segment=segment, total_segments=of, last_evaluated_key=dict(cursor) if cursor else None
        )
        item = next(found, None)
        while item is not None:
            cursor = found.last_evaluated_key  # after this item; None below if it was the segment's last
            following = next(found, None)
            yield self._contact_from(item), cursor if following is not None else None
            item = following

    def order_lines(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        events = self.models.events
        for item in events.scan(events.type == ORDER_PLACED):
            lines = ((item.body or {}).get("properties") or {}).get("lines")
            yield item.event_id, [line for line in lines or () if isinstance(line, dict)]

    def all_runs(self) -> Iterator[Run]:
        runs = self.models.runs
        for item in runs.scan(runs.sk.startswith(RUN_PREFIX)):
            yield self._run_from(item)

    def all_messages(self) -> Iterator[Message]:
        for item in self.models.messages.scan():
            yield self._message_from(item)

    def orders(self) -> Iterator[Order]:
        from nudge.domain.kpis import order_of

        events = self.models.events
        for item in events.scan(events.type == ORDER_PLACED):
            yield order_of(item.contact_id, item.event_id, (item.body or {}).get("properties", {}), item.occurred_at)
