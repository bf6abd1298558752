"""The backtest: a real shop's history replayed through the flows on a virtual clock, checked by hand.

The history is three customers of CDNOW (tests/fixtures/backtest/README.md says where it comes from):
  00001  one order          1997-01-01  $11.77
  00002  two orders         1997-01-12  $12.00 and $77.00 (same day: both at noon, as the data has no time)
  00004  orders             1997-01-01 $29.33, 1997-01-18 $29.73, 1997-08-02 $14.96, 1997-12-12 $26.48
and one event written here: 00004 subscribed to marketing email on 1997-01-01 at 09:00. The data set says
nothing of consent, so 00001 and 00002 never gave it.
"""

from __future__ import annotations

import gc
import weakref
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from nudge.clocks import VirtualClock
from nudge.domain import kpis
from nudge.domain.flows import Flow
from nudge.domain.model import ContactPatch, MessageStatus
from nudge.local import backtest as bt
from nudge.local.datasets import cdnow_orders
from nudge.services.order_import import Format
from nudge.settings import Settings
from nudge.wiring import build_memory
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "backtest"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def settings_for_backtest() -> Settings:
    return bt.backtest_settings(ROOT / "flows", ROOT / "templates", ROOT / "segments")


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def history(*, events: bool = True, assume_consent: bool = False) -> bt.History:
    with (FIXTURES / "cdnow_3_customers.csv").open() as orders, (FIXTURES / "events.jsonl").open() as lines:
        return bt.load_history(orders, Format.MINIMAL, lines if events else None, NOW, assume_consent=assume_consent)


def run(flows: list[str], found: bt.History, **window: datetime | None) -> tuple[bt.Replayed, bt.Backtest]:
    with bt.flows_for(ROOT / "flows", flows) as staged:
        settings = bt.backtest_settings(staged, ROOT / "templates", ROOT / "segments")
        return bt.backtest(found, settings, **window)  # type: ignore[arg-type]


def listing(result: bt.Backtest) -> list[tuple[str, str, str, str, str]]:
    """(when, who, flow/step, outcome) for every message, oldest first (then by customer)."""
    return sorted(
        (
            f"{m.created_at:%m-%d %H:%M}",
            (m.recipient or "").split("@")[0].removeprefix("customer"),
            f"{m.flow_id}/{m.step_id}",
            m.status.value,
            m.reason or "",
        )
        for m in result.messages
    )


def test_three_customers_first_half_of_1997_hand_checked() -> None:
    # Given the post-purchase and win-back flows of the library, and the history up to 30 June 1997
    done, result = run(["post_purchase", "win_back"], history(), end=day("1997-07-01"))

    # Then every message is the one worked out by hand:
    # - post_purchase thanks at once (transactional: no consent needed), asks for a review 14 days later
    #   (marketing: only 00004 consented). 00002's second order, at the same moment as the first, starts no
    #   run: the first is still active (one run per contact and flow), so that order gets no thank-you.
    # - win_back waits 60 days, then mails three times 14 days apart. An order is its goal: 00002's second
    #   order and 00004's second one end the running run (goal reached) and start a new one.
    assert listing(result) == [
        ("01-01 12:00", "00001", "post_purchase/thank_you", "sent", ""),
        ("01-01 12:00", "00004", "post_purchase/thank_you", "sent", ""),
        ("01-12 12:00", "00002", "post_purchase/thank_you", "sent", ""),
        ("01-15 12:00", "00001", "post_purchase/review_request", "skipped", "no_email_marketing_consent"),
        ("01-15 12:00", "00004", "post_purchase/review_request", "sent", ""),
        ("01-18 12:00", "00004", "post_purchase/thank_you", "sent", ""),
        ("01-26 12:00", "00002", "post_purchase/review_request", "skipped", "no_email_marketing_consent"),
        ("02-01 12:00", "00004", "post_purchase/review_request", "sent", ""),
        ("03-02 12:00", "00001", "win_back/we_miss_you", "skipped", "no_email_marketing_consent"),
        ("03-13 12:00", "00002", "win_back/we_miss_you", "skipped", "no_email_marketing_consent"),
        ("03-16 12:00", "00001", "win_back/offer_10", "skipped", "no_email_marketing_consent"),
        ("03-19 12:00", "00004", "win_back/we_miss_you", "sent", ""),
        ("03-27 12:00", "00002", "win_back/offer_10", "skipped", "no_email_marketing_consent"),
        ("03-30 12:00", "00001", "win_back/offer_20", "skipped", "no_email_marketing_consent"),
        ("04-02 12:00", "00004", "win_back/offer_10", "sent", ""),
        ("04-10 12:00", "00002", "win_back/offer_20", "skipped", "no_email_marketing_consent"),
        ("04-16 12:00", "00004", "win_back/offer_20", "sent", ""),
    ]
    # 6 events (5 orders before July, the subscription); the worker's 17 steps: the first of each of the 4
    # post-purchase runs (the 5 win-back runs start past their first wait, engine.new_run), and the 13 waits
    # that ended (two win-back waits were cancelled by the goal); a review a day.
    assert (done.replayed, done.backfilled, done.worked, done.reviews) == (6, 0, 17, 181)
    flows = {f.flow_id: f for f in result.flows}
    post, back = flows["post_purchase"], flows["win_back"]
    assert (post.entered, post.contacts, post.sent, post.completed, post.goal_reached) == (4, 3, 6, 4, 0)
    assert post.skipped == Counter(no_email_marketing_consent=2)
    assert (back.entered, back.contacts, back.sent, back.completed, back.goal_reached, back.active_at_end) == (
        5,
        3,
        3,
        3,
        2,
        0,
    )
    assert back.exited == Counter()  # the goal ends runs; no exit rule did
    # Attribution: 00004's order of 18 January came 3 days after the review request (window 5 days).
    # 00002's second order came at the very moment of the first thank-you: not after it, so not credited.
    assert (result.orders, result.revenue) == (5, Decimal("159.83"))
    assert (result.attributed_orders, result.attributed_revenue) == (1, Decimal("29.73"))
    review = next(s for s in result.steps if s.step_id == "review_request")
    assert (review.orders, review.revenue) == (1, Decimal("29.73"))
    # Cadence: 00004's week of 13 January held the review request and the second thank-you.
    assert result.cadence.histogram == {"1": 7, "2": 1, "3": 0, "4+": 0}
    assert result.cadence.busiest is not None and result.cadence.busiest[1:] == (date(1997, 1, 13), 2)
    assert [(o.first, o.second, o.contacts) for o in result.overlaps] == [("post_purchase", "win_back", 3)]
    assert result.weekly[date(1997, 3, 17)] == {"win_back": 1}


@pytest.mark.parametrize("flows", [["post_purchase", "win_back"], ["sunset"]])
@pytest.mark.parametrize("read", [("reads_segments", "reads_aggregates"), ("reads_aggregates",)])
def test_flows_that_read_no_segment_or_aggregate_backtest_the_same_without_them(
    flows: list[str], read: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given flows that read no segment, no stage and no aggregate, and the three customers' whole history
    window = {"start": day("1997-01-10"), "end": day("1998-07-01")}
    done, without = run(flows, history(), **window)
    # Then none was worked out: every contact is in no segment, none was due a review, none counted an order
    contacts = [c for c in done.store.contacts.values() if c.email]
    assert contacts and all(c.segments == () and c.review_at is None for c in contacts)
    assert all(c.aggregates.orders_count == 0 for c in contacts)

    # When the same backtest works them out, as for flows that read them (aggregates alone: no segments)
    for name in read:
        monkeypatch.setattr(Flow, name, lambda self: True)
    evaluated, worked_out = run(flows, history(), **window)

    # Then they were there to work out...
    counted = [c for c in evaluated.store.contacts.values() if c.email]
    assert sum(c.aggregates.orders_count for c in counted) == 7  # every order, those backfilled too
    assert ({c.stage for c in counted} >= {"lapsed"}) is ("reads_segments" in read)
    # ...and every message, skip and figure is the same
    assert worked_out.messages and worked_out == without
    assert (done.replayed, done.worked, done.reviews) == (evaluated.replayed, evaluated.worked, evaluated.reviews)


def test_what_is_left_unworked_is_settled_before_the_ingest_is_made(settings_for_backtest: Settings) -> None:
    container = build_memory(settings_for_backtest, VirtualClock(NOW))
    # Segments read the aggregates: they cannot be worked out without them
    with pytest.raises(ValueError, match="segments read the aggregates"):
        container.work_out_only_what_is_read(segments=True, aggregates=False)
    # Once the ingest has taken the segments, too late
    assert container.ingest is not None
    with pytest.raises(RuntimeError, match="ingest already took the segments"):
        container.work_out_only_what_is_read(segments=False, aggregates=False)


def test_without_segments_a_review_reads_and_writes_nothing(
    settings_for_backtest: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a backtest's container that works out no segment, and a contact in it
    container = build_memory(settings_for_backtest, VirtualClock(NOW))
    container.work_out_only_what_is_read(segments=False, aggregates=False)
    contact = container.ingest.identify(_ann())
    heard: list[str] = []
    monkeypatch.setattr(container.store, "get_contact", lambda contact_id: heard.append(contact_id))

    # When a flow's profile update (or the daily sweep) asks for the contact's review
    outcome = container.ingest.review(contact.contact_id)

    # Then nothing could have moved: the contact is not read, and the review moves nothing
    assert heard == [] and (outcome.entered, outcome.left) == ([], [])
    assert container.store.contacts[contact.contact_id] == contact


def _ann() -> ContactPatch:
    return ContactPatch(email="ann@example.com", email_marketing=True)


def test_history_before_from_is_backfilled_and_after_to_left_out() -> None:
    # Given the replay starts on 1 August 1997 and ends with 31 December
    done, result = run(["post_purchase"], history(), start=day("1997-08-01"), end=day("1998-01-01"))

    # Then the five orders before August only built the contacts; the two of 00004 after it start runs
    assert (done.backfilled, done.replayed) == (6, 2)
    assert [(m.created_at.date(), m.step_id, m.status) for m in result.messages] == [
        (date(1997, 8, 2), "thank_you", MessageStatus.SENT),
        (date(1997, 8, 16), "review_request", MessageStatus.SENT),
        (date(1997, 12, 12), "thank_you", MessageStatus.SENT),
        (date(1997, 12, 26), "review_request", MessageStatus.SENT),
    ]
    assert (result.orders, result.revenue) == (2, Decimal("41.44"))


def test_assumed_consent_lets_order_only_customers_get_marketing() -> None:
    done, result = run(["post_purchase"], history(events=False, assume_consent=True), end=day("1997-02-01"))

    review = [m for m in result.messages if m.step_id == "review_request"]
    assert sorted((m.recipient, m.status) for m in review) == [
        ("customer00001@cdnow.example", MessageStatus.SENT),
        ("customer00002@cdnow.example", MessageStatus.SENT),
        ("customer00004@cdnow.example", MessageStatus.SENT),
    ]


def test_a_history_event_must_say_when_it_happened() -> None:
    line = '{"type": "subscribed", "contact": {"email": "a@example.com"}}'

    with pytest.raises(bt.HistoryError, match="events line 1: a history event needs `occurred_at`"):
        bt.load_history(None, Format.MINIMAL, [line], NOW)


def test_compare_replays_another_version_in_the_flows_place(tmp_path: Path) -> None:
    # Given a version of post_purchase that waits 3 days instead of 14 before asking for a review
    faster = tmp_path / "post_purchase_3d.yaml"
    faster.write_text((ROOT / "flows" / "post_purchase.yaml").read_text().replace("duration: 14d", "duration: 3d"))

    with bt.flows_for(ROOT / "flows", ["post_purchase"], replacing=faster) as staged:
        settings = bt.backtest_settings(staged, ROOT / "templates", ROOT / "segments")
        _, result = bt.backtest(history(), settings, end=day("1997-02-01"))

    asked = sorted((m.created_at, m.recipient) for m in result.messages if m.step_id == "review_request")
    assert asked[0] == (day("1997-01-04T12:00"), "customer00001@cdnow.example")
    # 00004's review request on 4 January now precedes the order of the 18th by 14 days: outside the window
    assert result.attributed_orders == 0


def test_cdnow_rows_become_minimal_orders_at_noon_numbered_per_day() -> None:
    rows = [
        " customer_id  date number_of_cds  dollar_value\n",
        " 00002 19970112  1   12.00\n",
        " 00002 19970112  5   77.00\n",
    ]

    assert list(cdnow_orders(rows)) == [
        "order_id,email,created_at,total,currency,product_id,title,quantity,price\n",
        "cdnow-00002-19970112-1,customer00002@cdnow.example,1997-01-12T12:00:00+00:00,12.00,USD,cd,CDs,1,12.00\n",
        "cdnow-00002-19970112-2,customer00002@cdnow.example,1997-01-12T12:00:00+00:00,77.00,USD,cd,CDs,5,15.40\n",
    ]


def test_the_committed_sample_is_those_customers_rows_of_the_data_set() -> None:
    # The fixture's provenance: regenerate it from CDNOW_master.txt's rows kept in the README
    readme = (FIXTURES / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("    0")]
    regenerated = "".join(cdnow_orders([r.strip() for r in rows]))
    assert regenerated == (FIXTURES / "cdnow_3_customers.csv").read_text()


def test_every_flow_through_1997_with_the_daily_review() -> None:
    # Given every flow of the library and the three customers' whole 1997
    done, result = run([], history(), end=day("1998-01-01"))

    store = done.store
    people = {c.email.split("@")[0].removeprefix("customer"): c for c in store.contacts.values() if c.email}
    # Then time alone moved 00001 and 00002 to lapsed (90 days without an order): only the daily review does
    # that, as the sweep function does. 00004's four orders, the last on 12 December, make a VIP.
    assert {who: c.stage for who, c in people.items()} == {"00001": "lapsed", "00002": "lapsed", "00004": "vip"}
    # The sunset flow asked 00004 on 18 April (90 days after the order of 18 January: the past has no opens
    # to keep them) and unsubscribed them a week later. So when the third order (2 August) made them a VIP,
    # the VIP flow's webhook was recorded (nothing is posted) but its email was skipped for consent.
    sunset = sorted(
        (m.created_at.date(), m.status)
        for m in result.messages
        if m.flow_id == "sunset" and m.recipient == "customer00004@cdnow.example"
    )
    assert sunset == [(date(1997, 4, 18), MessageStatus.SENT), (date(1997, 10, 31), MessageStatus.SKIPPED)]
    assert (people["00004"].email_marketing, "sunset" in people["00004"].tags) == (False, True)
    vip = sorted(
        (m.created_at.date(), m.step_id, m.status, m.reason) for m in result.messages if m.flow_id == "vip_loyalty"
    )
    assert vip == [
        (date(1997, 8, 2), "notify_loyalty", MessageStatus.SENT, None),
        (date(1997, 8, 2), "vip_email", MessageStatus.SKIPPED, "no_email_marketing_consent"),
    ]
    # Sunset starts on every order and leaves on the next: the runs an order ended are its exits.
    row = next(f for f in result.flows if f.flow_id == "sunset")
    assert row.exited == Counter({"exit:order_placed": row.entered - row.completed - row.active_at_end})


@pytest.mark.parametrize(("shard_contacts", "processes"), [(1, 1), (2, 1), (1, 2)])
def test_a_replay_in_groups_of_customers_gives_the_whole_replays_figures(shard_contacts: int, processes: int) -> None:
    # Given every flow, the three customers' history with a backfilled start, replayed in one store
    window: dict[str, datetime] = {"start": day("1997-01-10"), "end": day("1998-01-01")}
    with bt.flows_for(ROOT / "flows") as flows:
        settings = bt.backtest_settings(flows, ROOT / "templates", ROOT / "segments")
        done, whole = bt.backtest(history(), settings, **window)  # type: ignore[arg-type]

        # When it is replayed in groups of customers, each group alone, one after the other or in two processes
        heard: list[tuple[int, int, int]] = []
        counts, grouped = bt.backtest_sharded(
            history(),
            settings,
            shard_contacts=shard_contacts,
            processes=processes,
            progress=lambda done, groups, so_far: heard.append((done, groups, so_far.replayed)),
            **window,  # type: ignore[arg-type]
        )

    # Then every figure is the same, to the cent and the busiest week's address; only no message is kept
    assert whole.messages and not grouped.messages
    assert replace(whole, messages=[]) == grouped
    assert whole.cadence.busiest_to == "customer00004@cdnow.example"
    assert (counts.replayed, counts.backfilled, counts.worked, counts.reviews) == (
        done.replayed,
        done.backfilled,
        done.worked,
        done.reviews,
    )
    groups = -(-3 // shard_contacts)
    assert (counts.shards, counts.processes) == (groups, processes)
    assert [(done, total) for done, total, _ in heard] == [(n, groups) for n in range(1, groups + 1)]
    assert heard[-1][2] == done.replayed


def test_a_groups_records_go_once_it_is_summed_without_waiting_for_a_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a replay of a group of customers whose store is watched
    stores: list[weakref.ref[object]] = []
    real_replay = bt.replay

    def watched(*args: object, **kwargs: object) -> bt.Replayed:
        done = real_replay(*args, **kwargs)  # type: ignore[arg-type]
        stores.append(weakref.ref(done.store))
        return done

    monkeypatch.setattr(bt, "replay", watched)
    with bt.flows_for(ROOT / "flows") as flows:
        settings = bt.backtest_settings(flows, ROOT / "templates", ROOT / "segments")
        enabled = gc.isenabled()
        gc.disable()  # no collection may free it: only reference counts
        try:
            # When it is replayed and summed
            counts, counted = bt.replay_tally(
                history(), settings, start=day("1997-01-01"), end=day("1998-01-01"), window=kpis.DEFAULT_WINDOW
            )

            # Then the store and its records are gone already (the services' references back to the
            # container would have kept them for the next full collection)
            assert counts.worked > 0 and counted.contacts == 3
            assert stores[0]() is None
        finally:
            if enabled:
                gc.enable()


def test_a_history_is_parsed_with_the_collector_paused_and_left_on() -> None:
    # Given 600 orders of 600 customers (thousands of objects kept: enough to set off collections)
    header = "order_id,email,created_at,total,currency,product_id,title,quantity,price"
    rows = [header] + [
        f"o{i},c{i}@shop.example,1997-01-0{1 + i % 9}T12:00:00+00:00,{10 + i % 7}.50,USD,cd,CDs,1,{10 + i % 7}.50"
        for i in range(600)
    ]
    collections: list[str] = []

    def heard(phase: str, info: dict[str, int]) -> None:
        collections.append(phase)

    gc.unfreeze()  # what earlier parses froze: what is frozen from here is this parse's doing
    gc.collect()  # the young generation empty: what is counted from here is the parse's
    gc.callbacks.append(heard)
    try:
        # When it is parsed
        found = bt.load_history(rows, Format.MINIMAL, None, NOW)
    finally:
        gc.callbacks.remove(heard)

    # Then no collection walked what it was making, nor walks it once the collector is on again: it is frozen
    assert len(found.events) == 600 and collections == []
    assert gc.isenabled() and gc.get_freeze_count() > 6 * 600
    gc.unfreeze()  # as the next test would find it


def test_groups_are_cohorts_of_customers_in_first_appearance_with_their_events_in_order() -> None:
    found = history()

    groups = bt.shards_of(found, 2)

    assert [sorted({e.contact.email for e in g.events}) for g in groups] == [
        ["customer00001@cdnow.example", "customer00004@cdnow.example"],
        ["customer00002@cdnow.example"],
    ]
    assert sum(len(g.events) for g in groups) == len(found.events)
    assert all(g.events == sorted(g.events, key=lambda e: e.occurred_at) for g in groups)


def test_a_customer_known_by_two_profiles_is_one_contact_in_one_group() -> None:
    # Given orders of one customer written two ways (their address in two cases, another name), so their
    # events carry two different patches, between another customer's orders
    text = (
        "Name,Email,Created at,Total,Lineitem quantity,Lineitem name,Lineitem price,Billing Name\n"
        "#1,Ann@Example.com,2026-10-01 10:00:00 +0000,10.00,1,Mug,10.00,Ann Lee\n"
        "#2,bob@example.com,2026-10-02 10:00:00 +0000,10.00,1,Mug,10.00,Bob Ray\n"
        "#3,ann@example.com,2026-10-03 10:00:00 +0000,10.00,1,Mug,10.00,Ann Lee-Smith\n"
    )
    found = bt.load_history(text.splitlines(keepends=True), Format.SHOPIFY, None, NOW)
    ann1, _, ann2 = found.events
    assert ann1.contact is not ann2.contact and ann1.contact_id == ann2.contact_id

    # When the history is cut into groups of one customer
    groups = bt.shards_of(found, 1)

    # Then Ann's orders are one group, by her contact id, not by her patches
    assert [[e.event_id for e in g.events] for g in groups] == [
        ["import:shopify:#1", "import:shopify:#3"],
        ["import:shopify:#2"],
    ]


def test_overlaps_in_one_pass_are_the_pairwise_overlaps() -> None:
    # Given random runs of four flows for a few contacts (spans of whole days, many ties, some still active)
    import random
    from types import SimpleNamespace

    rng = random.Random(5)
    end = day("1997-03-01")
    runs = []
    for n in range(400):
        began = day("1997-01-01") + (end - day("1997-01-01")) * rng.randint(0, 40) / 40
        ended = None if rng.random() < 0.2 else began + (end - began) * rng.randint(0, 4) / 4
        runs.append(
            SimpleNamespace(contact_id=f"c{n % 7}", flow_id=rng.choice("abcd"), started_at=began, ended_at=ended)
        )

    # Then the one-pass count is the count of contacts with a pair of runs of two flows open at once
    expected: Counter[tuple[str, str]] = Counter()
    for contact in {r.contact_id for r in runs}:
        spans = sorted((r.started_at, r.ended_at or end, r.flow_id) for r in runs if r.contact_id == contact)
        expected.update(
            {
                (min(f, g), max(f, g))
                for i, (_, ended, f) in enumerate(spans)
                for began, _, g in spans[i + 1 :]
                if f != g and began < ended
            }
        )
    assert bt._overlapping(runs, end) == expected  # type: ignore[arg-type]
    assert len(expected) == 6
