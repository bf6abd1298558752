"""The daily job in pieces (ADR 0007): each resumable, safe to do twice, counting a failing contact."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from nudge.clocks import VirtualClock
from nudge.domain import aggregates
from nudge.domain.model import Contact
from nudge.local.simulation import Simulation
from nudge.services.daily import ERRORS_IN_A_ROW, BadPiece, Piece
from nudge.settings import Settings
from tests.conftest import START

DAY = START.date().isoformat()


@pytest.fixture
def sim(settings: Settings, clock: VirtualClock) -> Simulation:
    """Twelve buyers (c00 ordered once … c11 twelve times) and three who never ordered, straight in the store."""
    sim = Simulation(settings, clock)
    for i in range(15):
        counted = aggregates.Aggregates()
        for k in range(i + 1 if i < 12 else 0):
            placed = START - timedelta(days=10 * (i + 1) - k)
            counted = aggregates.updated(
                counted, f"o{i}_{k}", "order_placed", {"order_id": f"o{i}_{k}", "total": 10}, placed
            )
        sim.store.save_contact(Contact(contact_id=f"c{i:02d}", aggregates=counted), expected_version=0)
    return sim


def scores(sim: Simulation) -> dict[str, str | None]:
    return {c.contact_id: c.rfm.code if c.rfm else None for c in sim.store.contacts.values()}


def test_the_base_piece_fans_out_one_scoring_piece_per_segment_carrying_the_cut_points(sim: Simulation) -> None:
    base = sim.container.daily.work(Piece("base", DAY))

    assert base.buyers == 12 and base.cuts is not None
    assert [(p.kind, p.segment, p.of, p.cuts) for p in base.follow] == [
        ("score", i, 8, base.cuts.to_record()) for i in range(8)
    ]
    assert scores(sim) == dict.fromkeys(scores(sim))  # nothing scored yet: the pieces do that


def test_a_piece_out_of_time_stops_after_one_contact_and_its_continuations_finish_the_segment(
    sim: Simulation,
) -> None:
    daily = sim.container.daily
    (whole,) = [p for p in daily.work(Piece("base", DAY)).follow if p.segment == 0]
    expected = {c.contact_id for c, _ in sim.store.contacts_segment(0, 8)}
    assert len(expected) >= 2

    pieces, done = [whole], []
    while pieces:  # a deadline already past: every piece does exactly one contact, then continues
        outcome = daily.work(pieces.pop(), deadline=sim.clock.now())
        done.append(outcome)
        pieces.extend(outcome.follow)

    assert [o.contacts for o in done] == [1] * len(expected)  # each contact once, none twice, none missed
    assert [o.piece.part for o in done] == list(range(len(expected)))
    assert {cid for cid, code in scores(sim).items() if code} == {c for c in expected if c < "c12"}
    status = daily.status(DAY)
    assert (status.pieces, status.unfinished, status.errors) == (
        1 + len(expected),
        len(expected) - 1,
        0,
    )


def test_a_failing_contact_is_counted_and_the_piece_goes_on(sim: Simulation, monkeypatch: pytest.MonkeyPatch) -> None:
    ingest = sim.container.ingest
    rescore = ingest.rescore

    def flaky(contact_id: str, rfm: Any, predicted: Any = None) -> Any:
        if contact_id == "c05":
            raise RuntimeError("ProvisionedThroughputExceededException")
        return rescore(contact_id, rfm, predicted)

    monkeypatch.setattr(ingest, "rescore", flaky)

    outcome = sim.container.daily.run()

    assert (outcome.buyers, outcome.rescored, outcome.errors) == (12, 11, 1)
    assert scores(sim)["c05"] is None and scores(sim)["c06"] is not None
    assert sim.container.daily.status(DAY).errors == 1  # in the day's log too (and a metric, alarmed)


def test_many_failures_in_a_row_are_an_outage_and_the_piece_raises_for_sqs_to_retry(
    sim: Simulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(contact_id: str, rfm: Any, predicted: Any = None) -> Any:
        raise RuntimeError("the table is throttled")

    monkeypatch.setattr(sim.container.ingest, "rescore", down)
    for i in range(15, 15 + ERRORS_IN_A_ROW):  # enough buyers for one segment to fail ERRORS_IN_A_ROW times
        counted = aggregates.updated(aggregates.Aggregates(), f"x{i}", "order_placed", {"total": 5}, START)
        sim.store.save_contact(Contact(contact_id=f"c{i:02d}", aggregates=counted), expected_version=0)
    daily = sim.container.daily
    (piece,) = [p for p in daily.work(Piece("base", DAY)).follow if p.segment == 0]
    piece = Piece("score", DAY, 0, 1, cuts=piece.cuts)  # one segment: every buyer in it

    with pytest.raises(RuntimeError, match="throttled"):
        daily.work(piece)


def test_a_day_done_twice_changes_nothing_the_second_time(sim: Simulation) -> None:
    first = sim.container.daily.run()
    versions = {c.contact_id: c.version for c in sim.store.contacts.values()}

    again = sim.container.daily.run()

    assert (first.rescored, again.rescored, again.pieces) == (12, 0, 11)
    assert {c.contact_id: c.version for c in sim.store.contacts.values()} == versions
    assert sim.container.daily.status(DAY).rescored == 0  # each piece's record replaced, not added to


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "job 'daily'"),
        ({"job": "daily", "piece": "everything", "day": DAY}, "piece must be one of"),
        ({"job": "daily", "piece": "base", "day": "yesterday"}, "ISO date"),
        ({"job": "daily", "piece": "score", "day": DAY, "segment": 8, "of": 8}, "not a Scan segment"),
        ({"job": "daily", "piece": "score", "day": DAY, "segment": "0"}, "integers"),
        ({"job": "daily", "piece": "score", "day": DAY, "cursor": "abc"}, "objects"),
    ],
)
def test_a_record_that_is_not_a_piece_is_refused_with_the_reason(body: Any, problem: str) -> None:
    with pytest.raises(BadPiece, match=problem):
        Piece.parse(body)


def test_a_piece_round_trips_through_its_payload() -> None:
    piece = Piece("score", DAY, 3, 8, 2, {"contact_id": {"S": "c1"}}, {"buyers": 1})
    assert Piece.parse(piece.as_payload()) == piece
