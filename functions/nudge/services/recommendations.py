"""Use cases: keep the shop's co-purchase table (import, daily job) and recommend from it (each message).

Two stored documents (docs/adr/0006-recommendations.md):
- `copurchases_imported`: the orders `nudge import orders` brought in, added to on each import (only the
  orders that import had not seen), pruned. Kept for good: imported events expire from the events table.
- `copurchases`: what messages read — the imported table plus the `order_placed` events the events table
  still holds that did not come from an import, pruned; rewritten by the daily job and after an import.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from nudge.domain import recommendations as recs
from nudge.domain.model import Contact
from nudge.ports import Census, Clock, Documents

log = logging.getLogger(__name__)

COPURCHASES = "copurchases"
IMPORTED = "copurchases_imported"
IMPORT_EVENT_PREFIX = "import:"  # the events of services.order_import: import:<format>:<order id>
CACHE_FOR = timedelta(hours=1)
RECOMMENDED = 3


class CoPurchaseBook:
    """Writes the two documents."""

    def __init__(self, *, census: Census, documents: Documents, clock: Clock) -> None:
        self._census = census
        self._documents = documents
        self._clock = clock

    def add_imported(self, orders: Iterable[Iterable[Mapping[str, Any]]]) -> recs.CoPurchases:
        """Count newly imported orders (each given as its lines) into the imported table, then recompute."""
        before = recs.from_record(self._documents.get_document(IMPORTED))
        imported = recs.pruned(recs.merged(before, recs.from_orders(orders)))
        self._documents.put_document(IMPORTED, recs.to_record(imported), self._clock.now())
        return self.recompute()

    def fold_imported(self, counted: recs.CoPurchases) -> None:
        """Add counts of newly imported orders to the imported table (pruned); the caller recomputes at the end."""
        before = recs.from_record(self._documents.get_document(IMPORTED))
        self._documents.put_document(
            IMPORTED, recs.to_record(recs.pruned(recs.merged(before, counted))), self._clock.now()
        )

    def recompute(self) -> recs.CoPurchases:
        """The table messages read: imported history plus the retained live orders, pruned."""
        live = recs.from_orders(
            lines for event_id, lines in self._census.order_lines() if not event_id.startswith(IMPORT_EVENT_PREFIX)
        )
        imported = recs.from_record(self._documents.get_document(IMPORTED))
        table = recs.pruned(recs.merged(imported, live))
        self._documents.put_document(COPURCHASES, recs.to_record(table), self._clock.now())
        log.info("co-purchases recomputed", extra={"orders": table.orders, "products": len(table.products)})
        return table


class Recommender:
    """Products for one contact, from the stored table read at most once an hour per container."""

    def __init__(self, *, documents: Documents, clock: Clock, cache_for: timedelta = CACHE_FOR) -> None:
        self._documents = documents
        self._clock = clock
        self._cache_for = cache_for
        self._table: recs.CoPurchases | None = None
        self._read_at: datetime | None = None

    def for_contact(self, contact: Contact, limit: int = RECOMMENDED) -> list[dict[str, Any]]:
        """Up to `limit` products the contact has not bought: bought with theirs, else best sellers; [] if none."""
        return recs.recommend(self._current(), contact.aggregates.products, limit)

    def _current(self) -> recs.CoPurchases:
        now = self._clock.now()
        if self._table is None or self._read_at is None or now - self._read_at >= self._cache_for:
            self._table = recs.from_record(self._documents.get_document(COPURCHASES))
            self._read_at = now
        return self._table
