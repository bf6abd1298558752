"""The audience ledger's contract: the DynamoDB adapter on moto and its in-memory twin behave alike (ADR 0024)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from nudge.adapters.memory import MemoryAudienceLedger
from nudge.ports import AudienceLedger, AudienceStats
from tests.conftest import START


@pytest.fixture(params=["dynamodb", "memory"])
def ledger(request: pytest.FixtureRequest) -> Iterator[AudienceLedger]:
    if request.param == "memory":
        yield MemoryAudienceLedger()
        return
    stack: Any = request.getfixturevalue("moto_stack")
    audiences = stack.container.audiences
    assert audiences is not None  # the AWS container's ledger: the counters table on moto
    yield audiences._ledger


def test_a_wish_is_pending_until_settled_and_a_settled_removal_leaves_nothing(ledger: AudienceLedger) -> None:
    added = ledger.want("cart", "m1", True, "e" * 64, "p" * 64, START)
    assert added is not None and added.pending and added.version == 1
    assert ledger.want("cart", "m1", True, None, None, START) == added  # the same wish again: no change
    assert ledger.want("cart", "nobody", False, None, None, START) is None  # never in it: nothing to remove
    assert [e.contact_id for e in ledger.pending("cart")] == ["m1"]

    assert ledger.settle(added)
    assert ledger.pending("cart") == [] and ledger.members("cart")["m1"].synced
    assert [e.audience_id for e in ledger.of_contact("m1")] == ["cart"] or ledger.of_contact("m1") == []

    removal = ledger.want("cart", "m1", False, None, None, START + timedelta(minutes=1))
    assert removal is not None and removal.pending and removal.email == "e" * 64  # the hashes stay for the upload
    assert ledger.settle(removal)
    assert ledger.members("cart") == {} and ledger.pending("cart") == []


def test_a_wish_that_changed_during_the_upload_is_not_settled(ledger: AudienceLedger) -> None:
    first = ledger.want("cart", "m1", True, "e" * 64, None, START)
    assert first is not None
    ledger.want("cart", "m1", False, None, None, START + timedelta(seconds=1))  # withdrawn meanwhile

    assert not ledger.settle(first)
    [pending] = ledger.pending("cart")  # a removal to upload: the add may have reached the platform
    assert (pending.wanted, pending.synced) == (False, False)
    assert ledger.settle(pending) and ledger.members("cart") == {}


def test_stats_add_up(ledger: AudienceLedger) -> None:
    ledger.record("cart", AudienceStats(added=3, requests=1, last_sync_at=START))
    ledger.record("cart", AudienceStats(removed=1, requests=2, failures=1, last_error="meta: 429", last_sync_at=START))

    stats = ledger.stats("cart")
    assert (stats.added, stats.removed, stats.requests, stats.failures) == (3, 1, 3, 1)
    assert stats.last_error == "meta: 429" and stats.last_sync_at == START
