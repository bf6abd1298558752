"""Carries out what a storefront delivery means: ingest events, follow refs, record privacy requests."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from nudge.domain import aggregates
from nudge.domain.frozen import dataclass
from nudge.domain.model import ContactPatch, Event
from nudge.integrations.canonical import (
    Batch,
    Canonical,
    CatalogChange,
    Disconnect,
    EndRuns,
    Ignored,
    Privacy,
    StockLevel,
    Track,
    TrackByRef,
)
from nudge.ports import Clock, ContactRefs, JobQueue, PrivacyKind, PrivacyRequest, PrivacyRequests
from nudge.services.ingest import IngestService

log = logging.getLogger(__name__)

_ERASED = "the customer was erased; a new signup or an API call brings them back, a webhook does not"

NOTICE_JOB = "notice"
NOTICE_KINDS = ("back_in_stock", "price_dropped")
NOTICE_CONTACTS = 100  # contacts told per jobs-queue piece: one piece's ingests fit an invocation many times


class BadNoticePiece(ValueError):
    """The jobs-queue record is not a notice piece; it goes to the dead-letter queue."""


@dataclass(frozen=True, slots=True)
class NoticePiece:
    """Some of the contacts a catalog change tells (a restock, a lower price): the body of a jobs-queue message.

    Each contact's event id names the change and the contact, so a piece done twice (SQS redelivers it, or a
    redelivered webhook queues it again) tells nobody twice.
    """

    kind: str  # back_in_stock | price_dropped
    change_id: str  # `<kind>:<item>:<when the level it left was seen>`
    properties: dict[str, Any]  # the item's title, url, image, price (and price_before)
    contacts: tuple[str, ...]
    at: datetime  # when the change was seen

    def as_payload(self) -> dict[str, Any]:
        return {
            "job": NOTICE_JOB,
            "kind": self.kind,
            "change": self.change_id,
            "properties": self.properties,
            "contacts": list(self.contacts),
            "at": self.at.isoformat(),
        }

    @staticmethod
    def parse(body: Any) -> NoticePiece:
        if not isinstance(body, dict) or body.get("job") != NOTICE_JOB:
            raise BadNoticePiece(f"expected a notice piece: a JSON object with job {NOTICE_JOB!r}")
        kind, change_id, properties, contacts = (body.get(k) for k in ("kind", "change", "properties", "contacts"))
        if kind not in NOTICE_KINDS:
            raise BadNoticePiece(f"kind must be one of {', '.join(NOTICE_KINDS)}")
        if not isinstance(change_id, str) or not change_id.startswith(f"{kind}:"):
            raise BadNoticePiece("change must name the change, starting with its kind")
        if not isinstance(properties, dict):
            raise BadNoticePiece("properties must be an object")
        if not isinstance(contacts, list) or not all(isinstance(c, str) and c for c in contacts):
            raise BadNoticePiece("contacts must be a list of contact ids")
        try:
            at = datetime.fromisoformat(body.get("at"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise BadNoticePiece("at must be an ISO time") from None
        return NoticePiece(kind, change_id, properties, tuple(contacts), at)


class WebhookService:
    def __init__(
        self,
        *,
        ingest: IngestService,
        refs: ContactRefs,
        privacy: PrivacyRequests,
        clock: Clock,
        eraser: Callable[[str], dict[str, int] | None] | None = None,
        erased: Callable[[str], bool] = lambda contact_id: False,
        disconnect: Callable[[str, str, str], dict[str, Any]] | None = None,
        jobs: Callable[[], JobQueue | None] = lambda: None,
    ) -> None:
        self._ingest = ingest
        self._refs = refs
        self._privacy = privacy
        self._clock = clock
        self._eraser = eraser
        self._erased = erased  # an erased contact's tombstone: their webhooks are not a new customer
        self._disconnect = disconnect  # a shop removed the app (DisconnectService.disconnect)
        self._jobs = jobs  # where a catalog change's notices go (made at first use); None: told in the request

    def handle(self, canonical: Canonical) -> dict[str, Any]:
        """Do what the delivery means, once; the result is the response body."""
        if isinstance(canonical, Ignored):
            return {"ignored": canonical.reason}
        if isinstance(canonical, Privacy):
            return self._record_privacy(canonical)
        if isinstance(canonical, Batch):
            parts = [self.handle(part) for part in canonical.parts]
            done = [part for part in parts if "ignored" not in part and not part.get("duplicate")]
            return (done[0] if done else parts[-1]) | {"parts": parts}
        if isinstance(canonical, CatalogChange):
            return self._catalog(canonical)
        if isinstance(canonical, Disconnect):
            if self._disconnect is None:
                return {"ignored": "no disconnect service is wired"}
            return self._disconnect(canonical.scope, canonical.reason, canonical.event_id)
        if isinstance(canonical, EndRuns):
            contact_id = self._refs.resolve(canonical.ref)
            if contact_id is None:
                return {"ignored": "it refers to a customer nudge has not seen"}
            return self._ingest.end_runs(contact_id, canonical.reason).as_dict() | {"type": canonical.reason}
        if isinstance(canonical, TrackByRef):
            contact_id = self._refs.resolve(canonical.ref)
            if contact_id is None:
                return {"ignored": "it refers to an order nudge has not seen"}
            if self._erased(contact_id):
                return {"ignored": _ERASED}
            event = Event(
                canonical.event_id,
                canonical.type,
                ContactPatch(external_id=contact_id),
                self._scoped(contact_id, canonical.type, canonical.properties),
                canonical.occurred_at,
            )
            return self._ingest.ingest(event).as_dict() | {"type": event.type}
        return self._track(canonical)

    def backfill(self, canonical: Canonical) -> dict[str, Any]:
        """What the shop already had (an install, a first sync): contacts, orders, open checkouts and stock are
        recorded, refs claimed and linked, and nothing starts, ends or is sent (IngestService.backfill).

        Claimed refs make later webhooks about the same things repeats: an imported open checkout's next
        update is a `checkout_updated`, an imported subscriber's next update no signup.
        """
        now = self._clock.now()
        if isinstance(canonical, Batch):
            return {"parts": [self.backfill(part) for part in canonical.parts]}
        if isinstance(canonical, CatalogChange):
            for level in canonical.levels:
                details = level.details or {}
                if level.describes:
                    self._refs.observe(level.describes, details, now)
                self._refs.observe(level.key, {**details, "quantity": level.quantity, "price": level.price}, now)
            return {"catalog": len(canonical.levels)}
        if not isinstance(canonical, Track):
            return {"ignored": "only customers, checkouts, orders and products are imported"}
        event = canonical.event
        if self._erased(event.contact_id):
            return {"ignored": _ERASED}
        if canonical.once and self._refs.claim(canonical.once, event.contact_id, event.event_id, now) is not None:
            return {"ignored": "already seen", "event_id": event.event_id}
        outcome = self._ingest.backfill(event)
        for ref in canonical.links:
            self._refs.link(ref, event.contact_id, now)
        return outcome.as_dict() | {"type": event.type, "backfill": True}

    def _scoped(self, contact_id: str, event_type: str, properties: dict[str, Any]) -> dict[str, Any]:
        """A refund says whether it refunds the rest of its order (`full_refund`), from what the contact's
        aggregates hold of that order: only a full refund ends the order's review request."""
        if event_type != aggregates.REFUND_CREATED or "full_refund" in properties:
            return properties
        contact = self._ingest.get_contact(contact_id)
        held = contact.aggregates if contact is not None else aggregates.Aggregates()
        return properties | {"full_refund": aggregates.refunds_in_full(held, properties)}

    def _track(self, track: Track) -> dict[str, Any]:
        event = track.event
        if self._erased(event.contact_id):
            return {"ignored": _ERASED, "event_id": event.event_id}
        now = self._clock.now()
        if track.unless_customer and track.repeat_type:
            stored = self._ingest.get_contact(event.contact_id)
            if stored is not None and stored.aggregates.orders_count > 0:
                event = replace(event, type=track.repeat_type)
        if track.once:
            # Claimed before the event is processed, atomically: of two deliveries announcing the same fact
            # at once (orders/create and orders/paid), one carries it. A retry of this delivery (same event
            # id) holds its claim, so a crash after claiming loses nothing.
            holder = self._refs.claim(track.once, event.contact_id, event.event_id, now)
            if holder is not None and track.moves and holder != event.contact_id:
                self._close(holder, event, "moved")
                self._refs.link(track.once, event.contact_id, now, claimant=event.event_id)
            elif holder is not None:
                if track.repeat_type is None:
                    return {"ignored": "already seen", "event_id": event.event_id}
                event = replace(event, type=track.repeat_type)
        if track.closes and (holder := self._refs.resolve(track.closes)) not in (None, event.contact_id):
            self._close(holder, event, "ordered")
        event = replace(event, properties=self._scoped(event.contact_id, event.type, event.properties))
        outcome = self._ingest.ingest(event)
        for ref in track.links:
            self._refs.link(ref, event.contact_id, now)
        return outcome.as_dict() | {"type": event.type}

    def _catalog(self, change: CatalogChange) -> dict[str, Any]:
        """Store each level; a variant from 0 to more tells whoever waits on it, once; a lower price too.

        The first sighting of a variant is only stored (an install's first updates announce nothing). The
        notices go to the jobs queue in pieces of NOTICE_CONTACTS contacts (a popular item's waitlist would
        not fit the webhook's few seconds), and the new level is stored only after every piece is queued,
        so a delivery that fails half-way is redelivered and queues them again. Event ids name the change
        (the level it left, by the time that level was seen), the variant and the contact: a redelivery,
        a piece done twice, or a second topic announcing the same change at once (inventory_levels and
        products), tells nobody twice.
        """
        now = self._clock.now()
        notified = dict.fromkeys(NOTICE_KINDS, 0)  # contacts told (or queued to be told), per kind
        for level in change.levels:
            details = level.details or (self._refs.recall(level.details_from) if level.details_from else None) or {}
            if level.describes:
                self._refs.observe(level.describes, details, now)
            record = {**details, "quantity": level.quantity, "price": level.price, "seen": now.isoformat()}
            previous = self._refs.recall(level.key)
            item = details.get("item")
            if previous is None or not item or (kind := _stock_news(previous, level)) is None:
                self._refs.observe(level.key, record, now)
                continue
            change_id = f"{kind}:{item}:{previous.get('seen') or change.event_id}"
            waiting = [c for c in self._refs.waiting(item) if not self._erased(c)]
            properties = {k: v for k, v in record.items() if k not in ("item", "quantity", "seen") and v is not None}
            if kind == "price_dropped":
                properties["price_before"] = previous.get("price")
            pieces = [
                NoticePiece(kind, change_id, properties, tuple(waiting[i : i + NOTICE_CONTACTS]), now)
                for i in range(0, len(waiting), NOTICE_CONTACTS)
            ]
            if pieces and (jobs := self._jobs()) is not None:
                jobs.put([piece.as_payload() for piece in pieces])
            else:
                for piece in pieces:
                    self.notify(piece)
            notified[kind] += len(waiting)
            if kind == "back_in_stock":
                self._refs.unwait(item, waiting)  # told once per restock; asking again waits again
            self._refs.observe(level.key, record, now)  # last: until here, a redelivery sees the same change
        return {"catalog": len(change.levels), **notified}

    def notify(self, piece: NoticePiece) -> dict[str, Any]:
        """Tell a piece's contacts of the change (an event each, which starts their flow); safe to repeat."""
        told = 0
        for contact_id in piece.contacts:
            if self._erased(contact_id):
                continue
            event = Event(
                f"{piece.change_id}:{contact_id}", piece.kind, ContactPatch(external_id=contact_id), piece.properties,
                piece.at,
            )  # fmt: skip
            self._ingest.ingest(event)
            told += 1
        return {"kind": piece.kind, "change": piece.change_id, "contacts": len(piece.contacts), "told": told}

    def _close(self, contact_id: str, event: Event, reason: str) -> None:
        """The checkout left `contact_id` (its email was corrected, or another contact ordered it): the
        reminders they would get for it end (`checkout_closed` is an exit of the cart flow)."""
        checkout_id = event.properties.get("checkout_id")
        if not checkout_id or self._erased(contact_id):
            return
        closed = Event(
            f"{event.event_id}:closed",
            "checkout_closed",
            ContactPatch(external_id=contact_id),
            {k: v for k, v in event.properties.items() if k in ("source", "shop", "site")}
            | {"checkout_id": checkout_id, "reason": reason},
            event.occurred_at,
        )
        self._ingest.ingest(closed)

    def _record_privacy(self, privacy: Privacy) -> dict[str, Any]:
        contacts = dict.fromkeys(privacy.contacts)
        for ref in privacy.refs:
            if (found := self._refs.resolve(ref)) is not None:
                contacts[found] = None
        request = PrivacyRequest(
            request_id=privacy.request_id,
            kind=privacy.kind,
            source=privacy.source,
            subject=privacy.subject,
            contact_ids=tuple(contacts),
            received_at=self._clock.now(),
        )
        recorded = self._privacy.record(request)
        erased = 0
        if recorded and privacy.kind is PrivacyKind.ERASE_CONTACT:
            if self._eraser is not None:
                # Carried out at once: every item holding their data goes, only hashed suppressions stay.
                erased = sum(1 for contact_id in contacts if self._eraser(contact_id) is not None)
                # "erased" only when something was; else the operator sees nudge held nothing it could find.
                self._privacy.complete(request.request_id, "erased" if erased else "nothing_found")
            else:
                # No eraser wired (a test double): at least send them nothing more.
                for contact_id in contacts:
                    if self._ingest.get_contact(contact_id) is not None:
                        self._ingest.identify(
                            ContactPatch(external_id=contact_id, email_marketing=False, sms_marketing=False)
                        )
        log.info("privacy request recorded", extra={"request_id": request.request_id, "kind": request.kind})
        return {
            "privacy_request": request.request_id,
            "kind": request.kind.value,
            "duplicate": not recorded,
            "contacts": len(contacts),
            "erased": erased,
        }


def _stock_news(previous: dict[str, Any], level: StockLevel) -> str | None:
    """back_in_stock (none before, some now), price_dropped (lower than before), or None."""
    before = previous.get("quantity")
    if isinstance(before, int) and before <= 0 and level.quantity is not None and level.quantity > 0:
        return "back_in_stock"
    was = previous.get("price")
    if isinstance(was, int | float) and level.price is not None and level.price < was:
        return "price_dropped"
    return None
