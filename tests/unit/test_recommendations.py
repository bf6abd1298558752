"""Products often bought together, best sellers as the fallback: hand-computed answers."""

from __future__ import annotations

import pytest

from nudge.domain import recommendations
from nudge.domain.recommendations import best_sellers, from_orders, pruned, recommend


def lines(*products: str) -> list[dict[str, object]]:
    return [{"product_id": p, "title": p.title(), "quantity": 1} for p in products]


# mug in 4 orders, apron 3, board 2, towel 2; together: apron+towel 2, apron+mug 1, board+mug 1.
ORDERS = [
    lines("apron", "mug"),
    lines("mug"),
    lines("towel", "apron"),
    lines("apron", "towel"),
    lines("board"),
    lines("board", "mug"),
    lines("mug", "mug"),  # two lines of one product: one order of it
]
TABLE = from_orders(ORDERS)


def picks(bought: set[str], limit: int = 3) -> list[tuple[str, int]]:
    return [(r["product_id"], r["bought_with"]) for r in recommend(TABLE, bought, limit)]


def test_the_table_counts_orders_per_product_and_per_pair() -> None:
    assert (TABLE.orders, dict(TABLE.products)) == (7, {"apron": 3, "mug": 4, "towel": 2, "board": 2})
    assert {p: dict(o) for p, o in TABLE.pairs.items()} == {
        "apron": {"mug": 1, "towel": 2},
        "mug": {"apron": 1, "board": 1},
        "towel": {"apron": 2},
        "board": {"mug": 1},
    }
    assert best_sellers(TABLE) == ["mug", "apron", "board", "towel"]  # ties by key


def test_co_purchases_come_first_then_best_sellers_never_what_was_bought() -> None:
    assert picks({"apron"}) == [("towel", 2), ("mug", 1), ("board", 0)]
    assert picks({"mug"}, 2) == [("apron", 1), ("board", 1)]  # tied: the better seller first
    assert picks({"towel", "mug"}) == [("apron", 3), ("board", 1)]  # 2 with towels + 1 with mugs
    assert picks(set(), 2) == [("mug", 0), ("apron", 0)]  # no history: best sellers
    assert picks({"apron", "mug", "towel", "board"}) == []


def test_a_recommendation_names_the_product_and_its_counts() -> None:
    assert recommend(TABLE, {"apron"}, 1) == [{"product_id": "towel", "title": "Towel", "bought_with": 2, "orders": 2}]


def test_pruning_keeps_the_best_sellers_and_their_closest_companions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recommendations, "PRODUCTS_KEPT", 2)
    monkeypatch.setattr(recommendations, "NEIGHBOURS_KEPT", 1)

    small = pruned(TABLE)

    assert (dict(small.products), {p: dict(o) for p, o in small.pairs.items()}) == (
        {"mug": 4, "apron": 3},
        {"mug": {"apron": 1}, "apron": {"towel": 2}},
    )
    assert sorted(small.titles) == ["apron", "mug", "towel"]


def test_adding_an_order_to_a_table_matches_counting_it_from_the_start() -> None:
    assert recommendations.with_order(from_orders(ORDERS[:-1]), ORDERS[-1]) == TABLE
    assert recommendations.with_order(TABLE, [{"quantity": 1}]) == TABLE  # no product named: nothing counted


def test_merged_tables_add_up_and_survive_a_round_trip_through_a_stored_document() -> None:
    first, second = from_orders(ORDERS[:3]), from_orders(ORDERS[3:])

    both = recommendations.merged(first, second)

    assert both == TABLE
    assert recommendations.from_record(recommendations.to_record(both)) == both
    assert recommendations.from_record(None) == recommendations.CoPurchases()


def test_the_recommender_reads_the_stored_table_at_most_once_an_hour() -> None:
    from datetime import timedelta

    from nudge.adapters.memory import MemoryStore
    from nudge.clocks import VirtualClock
    from nudge.domain.aggregates import Aggregates
    from nudge.domain.model import Contact
    from nudge.services.recommendations import COPURCHASES, Recommender
    from tests.conftest import START

    store, clock = MemoryStore(), VirtualClock(START)
    reads: list[str] = []
    original = store.get_document
    store.get_document = lambda name: reads.append(name) or original(name)  # type: ignore[method-assign]
    recommender = Recommender(documents=store, clock=clock)
    board_buyer = Contact(contact_id="c1", aggregates=Aggregates(products=("board",)))

    assert recommender.for_contact(board_buyer) == []  # nothing computed yet: the block renders nothing
    store.put_document(COPURCHASES, recommendations.to_record(TABLE), START)
    clock.advance(timedelta(minutes=59))
    assert recommender.for_contact(board_buyer) == []  # still the cached (empty) table
    clock.advance(timedelta(minutes=1))
    assert [r["product_id"] for r in recommender.for_contact(board_buyer)] == ["mug", "apron", "towel"]
    assert reads == [COPURCHASES, COPURCHASES]
