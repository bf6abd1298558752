"""Restock and price-drop notices: a catalog change tells its waitlist through jobs-queue pieces."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from nudge.adapters.memory import MemoryContactRefs, MemoryJobQueue, MemoryPrivacyRequests
from nudge.clocks import VirtualClock
from nudge.domain.model import Event
from nudge.integrations.canonical import CatalogChange, StockLevel
from nudge.services.storefront_webhooks import NOTICE_CONTACTS, BadNoticePiece, NoticePiece, WebhookService

NOW = datetime(2026, 11, 2, 15, tzinfo=UTC)


class Told:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def ingest(self, event: Event) -> None:
        self.events.append(event)


def level(quantity: int) -> CatalogChange:
    details = {"item": "shopify:a:variant:1", "product_title": "Mug"}
    return CatalogChange(f"wh-{quantity}", (StockLevel("shopify:a:variant:1", quantity, 12.0, details),))


def service(
    jobs: MemoryJobQueue | None, erased: set[str] = frozenset()
) -> tuple[WebhookService, Told, MemoryContactRefs]:  # type: ignore[assignment]
    refs, told = MemoryContactRefs(), Told()
    hooks = WebhookService(
        ingest=told,  # type: ignore[arg-type]
        refs=refs,
        privacy=MemoryPrivacyRequests(),
        clock=VirtualClock(NOW),
        erased=lambda contact_id: contact_id in erased,
        jobs=lambda: jobs,
    )
    return hooks, told, refs


def test_a_restock_queues_its_waitlist_in_pieces_and_each_piece_tells_its_contacts_once() -> None:
    jobs = MemoryJobQueue()
    hooks, told, refs = service(jobs, erased=frozenset({"c007"}))
    hooks.handle(level(0))
    waiting = [f"c{i:03}" for i in range(2 * NOTICE_CONTACTS + 50)]
    for contact_id in waiting:
        refs.wait("shopify:a:variant:1", contact_id, NOW)

    answer = hooks.handle(level(3))

    # The request tells nobody itself: it queues three pieces (100, 100, 49: the erased one is left out)
    assert told.events == [] and answer["back_in_stock"] == len(waiting) - 1
    pieces = [NoticePiece.parse(body) for body in jobs.take()]
    assert [len(p.contacts) for p in pieces] == [NOTICE_CONTACTS, NOTICE_CONTACTS, 49]
    assert refs.waiting("shopify:a:variant:1") == ["c007"]  # the rest are told once per restock
    for piece in pieces + pieces[:1]:  # the first piece delivered twice
        hooks.notify(piece)
    ids = [event.event_id for event in told.events]
    assert len(set(ids)) == len(waiting) - 1  # the repeat's events carry the same ids: ingest drops them
    assert {event.type for event in told.events} == {"back_in_stock"}
    assert told.events[0].properties == {"product_title": "Mug", "price": 12.0}


def test_without_a_jobs_queue_the_waitlist_is_told_in_the_request() -> None:
    hooks, told, refs = service(None)
    hooks.handle(level(0))
    refs.wait("shopify:a:variant:1", "c1", NOW)

    assert hooks.handle(level(2))["back_in_stock"] == 1 and [e.contact_id for e in told.events] == ["c1"]


GOOD = {
    "job": "notice",
    "kind": "back_in_stock",
    "change": "back_in_stock:x:1",
    "properties": {},
    "contacts": ["c"],
    "at": "2026-11-02T15:00:00+00:00",
}


@pytest.mark.parametrize(
    "change",
    [
        {"job": "daily"},
        {"kind": "sold_out", "change": "sold_out:x:1"},
        {"change": "price_dropped:x:1"},
        {"properties": []},
        {"contacts": [""]},
        {"contacts": "c"},
        {"at": "yesterday"},
    ],
)
def test_a_record_that_is_no_notice_piece_is_refused(change: dict[str, Any]) -> None:
    assert NoticePiece.parse(GOOD).contacts == ("c",)
    with pytest.raises(BadNoticePiece):
        NoticePiece.parse(GOOD | change)
