"""A storefront removed the app (Shopify's app/uninstalled): its events stop, so runs waiting on them end.

After an uninstall no order, refund, cancellation or checkout of that shop reaches nudge again. A run that
only an order can end correctly (a cart reminder, the welcome offer "for your first order", a review
request a refund would cancel, a win-back) would go on as if the buyer never bought. So (ADR 0017,
"A shop that removes the app"):

- the webhook records the integration as disconnected (`integration:<scope>` in the contact-refs table)
  and puts the first piece on the jobs queue; nothing else happens in the request;
- each piece walks the shop's contacts (the refs table's `by-scope` index, a page at a time) and ends,
  with `shop_uninstalled`, every active run whose flow exits or converts on a storefront event;
  runs of flows that end on nothing a storefront sends (a birthday, a sunset on engagement) go on;
- a piece stops after the page it is on when its deadline nears and queues its continuation from the
  index's cursor. Done twice, a piece ends nothing more: an ended run is no longer active.

Contacts, consent and history stay: they are the merchant's, and Shopify's `shop/redact` (48 hours later)
is recorded for the operator as before.
"""

from __future__ import annotations

import logging
import re
from dataclasses import field
from datetime import datetime
from typing import Any

from nudge.domain import aggregates
from nudge.domain.flows import Flow, FlowCatalog
from nudge.domain.frozen import dataclass
from nudge.domain.model import Run
from nudge.ports import Clock, ContactRefs, JobQueue
from nudge.services.daily import with_progress
from nudge.services.ingest import IngestService

log = logging.getLogger(__name__)

JOB = "disconnect"
SHOP_UNINSTALLED = "shop_uninstalled"
REASONS = (SHOP_UNINSTALLED,)
PAGE = 100  # refs read per index query
# What storefront webhooks emit (integrations/shopify.py, integrations/woocommerce.py, services/storefront_webhooks.py).
STOREFRONT_EVENTS = frozenset(
    {
        "checkout_started",
        "checkout_updated",
        "checkout_closed",
        aggregates.ORDER_PLACED,
        "order_fulfilled",
        "order_cancelled",
        aggregates.REFUND_CREATED,
        "back_in_stock",
        "price_dropped",
    }
)
_SCOPE = re.compile(r"^(shopify|woocommerce):[^:\s]{1,255}$")


class BadDisconnectPiece(ValueError):
    """The jobs-queue record is not a disconnect piece; it goes to the dead-letter queue."""


@dataclass(frozen=True, slots=True)
class DisconnectPiece:
    """Part of a storefront's contacts, from `cursor` on: the body of a jobs-queue message."""

    scope: str  # `shopify:<shop>`
    reason: str
    event_id: str  # the delivery that disconnected it
    part: int = 0
    cursor: dict[str, Any] | None = None  # where the index query stopped (DynamoDB's LastEvaluatedKey)

    def then(self, cursor: dict[str, Any]) -> DisconnectPiece:
        return DisconnectPiece(self.scope, self.reason, self.event_id, self.part + 1, cursor)

    def as_payload(self) -> dict[str, Any]:
        body = {"job": JOB, "scope": self.scope, "reason": self.reason, "event": self.event_id}
        return with_progress(body, self.part, self.cursor)

    @staticmethod
    def parse(body: Any) -> DisconnectPiece:
        if not isinstance(body, dict) or body.get("job") != JOB:
            raise BadDisconnectPiece(f"expected a disconnect piece: a JSON object with job {JOB!r}")
        scope, reason, event_id = body.get("scope"), body.get("reason"), body.get("event")
        part, cursor = body.get("part", 0), body.get("cursor")
        if not isinstance(scope, str) or not _SCOPE.match(scope):
            raise BadDisconnectPiece("scope must name a storefront, e.g. shopify:<shop>")
        if reason not in REASONS:
            raise BadDisconnectPiece(f"reason must be one of {', '.join(REASONS)}")
        if not isinstance(event_id, str) or not event_id:
            raise BadDisconnectPiece("event must name the delivery")
        if not isinstance(part, int) or isinstance(part, bool) or part < 0:
            raise BadDisconnectPiece("part must be a non-negative integer")
        if not isinstance(cursor, dict | None):
            raise BadDisconnectPiece("cursor must be an object")
        return DisconnectPiece(scope, reason, event_id, part, cursor)


@dataclass(slots=True)
class DisconnectOutcome:
    piece: DisconnectPiece
    contacts: int = 0  # contacts looked at
    ended: int = 0  # runs ended
    follow: list[DisconnectPiece] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"scope": self.piece.scope, "part": self.piece.part, "contacts": self.contacts, "ended": self.ended}


def waits_on_storefront(flow: Flow) -> bool:
    """Whether the flow ends or converts on something only a storefront tells nudge."""
    ends = any(rule.accepts(kind) for rule in flow.exit for kind in STOREFRONT_EVENTS)
    goal = flow.goal
    return ends or (goal is not None and goal.exit and any(goal.accepts(kind) for kind in STOREFRONT_EVENTS))


class DisconnectService:
    def __init__(
        self,
        *,
        ingest: IngestService,
        refs: ContactRefs,
        flows: FlowCatalog,
        clock: Clock,
        jobs: JobQueue | None,
    ) -> None:
        self._ingest = ingest
        self._refs = refs
        self._flows = flows
        self._clock = clock
        self._jobs = jobs

    def disconnect(self, scope: str, reason: str, event_id: str) -> dict[str, Any]:
        """Record the storefront as disconnected and queue the first piece. Safe to repeat (a redelivery):
        the record is replaced and a second walk ends nothing more."""
        now = self._clock.now()
        self._refs.observe(
            f"integration:{scope}",
            {"status": "disconnected", "reason": reason, "at": now.isoformat(), "event_id": event_id},
            now,
        )
        piece = DisconnectPiece(scope, reason, event_id)
        if self._jobs is not None:
            self._jobs.put([piece.as_payload()])
            return {"type": reason, "scope": scope, "status": "disconnected", "queued": True}
        # No jobs queue (the in-memory container of simulations): the same pieces, one after another, here.
        done = self.work(piece, None)
        while done.follow:
            done = self.work(done.follow[0], None)
        return {"type": reason, "scope": scope, "status": "disconnected", "queued": False}

    def status(self, scope: str) -> dict[str, Any] | None:
        """What the last disconnect recorded of the storefront, None if it never was."""
        return self._refs.recall(f"integration:{scope}")

    def work(self, piece: DisconnectPiece, deadline: datetime | None) -> DisconnectOutcome:
        """End the runs of the storefront's contacts that wait on its events, a page at a time, until done or
        `deadline`; then the continuation is in `follow`."""
        outcome = DisconnectOutcome(piece)
        cursor = piece.cursor
        while True:
            contacts, cursor = self._refs.contacts_of(piece.scope, cursor, PAGE)
            for contact_id in dict.fromkeys(contacts):
                ended = self._ingest.end_runs(contact_id, piece.reason, where=self._waits_on_storefront)
                outcome.contacts += 1
                outcome.ended += len(ended.exited)
            if cursor is None:
                break
            if deadline is not None and self._clock.now() >= deadline:
                outcome.follow.append(piece.then(cursor))
                break
        log.info("disconnect piece", extra=outcome.record() | {"follow": len(outcome.follow)})
        return outcome

    def _waits_on_storefront(self, run: Run) -> bool:
        flow = self._flows.get(run.flow_id)
        return flow is not None and waits_on_storefront(flow)
