"""Segments as data: conditions, incremental membership, entry and exit events, the sweep for time."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from nudge.clocks import VirtualClock
from nudge.domain.aggregates import Aggregates, updated
from nudge.domain.model import Contact
from nudge.domain.segments import Segment, SegmentCatalog, Transition, evaluate, transitions
from nudge.domain.validation import validate
from nudge.flow_files import FlowFileError, load_segment, load_segments
from nudge.settings import Settings
from tests.conftest import START
from tests.factories import contact
from tests.flowkit import EMAIL, flows_dir, segments_dir, sent, simulation

DAY = timedelta(days=1)

KITCHEN_CLICKERS = """
id: kitchen_clickers
name: Kitchen buyers who clicked lately
conditions:
  - {field: aggregates.categories, op: contains, value: kitchen}
  - {did: email_clicked, within: 30d}
"""


def catalog(*texts: str) -> SegmentCatalog:
    return SegmentCatalog(validate(Segment, yaml.safe_load(text)) for text in texts)


def person(aggregates: Aggregates | None = None, **fields: object) -> Contact:
    return replace(Contact(contact_id="c1"), aggregates=aggregates or Aggregates(), **fields)  # type: ignore[arg-type]


def test_field_conditions_compare_profile_tags_and_aggregates() -> None:
    segments = catalog(
        """
        id: big_french
        name: Big French spenders
        conditions:
          - {field: properties.country, value: FR}
          - {field: aggregates.total_spent, op: gte, value: 100}
          - {field: tags, op: contains, value: newsletter}
        """,
        """
        id: no_phone
        name: No phone
        conditions: [{field: phone, op: exists, value: false}]
        """,
        """
        id: either
        name: Either
        match: any
        conditions: [{field: first_name, op: in, value: [Ann, Bea]}, {field: aggregates.orders_count, op: gt, value: 5}]
        """,
    )
    rich = updated(Aggregates(), "e1", "order_placed", {"order_id": "o1", "total": 150}, START)
    fits = person(rich, properties={"country": "FR"}, tags=("newsletter",), first_name="Bea")
    poorer = person(properties={"country": "FR"}, tags=("newsletter",), phone="+33612345678", first_name="Cy")

    assert evaluate(segments, fits.template_view(), fits.aggregates, START + DAY).segments == (
        "first_time_buyer",
        "big_french",
        "no_phone",
        "either",
    )
    assert evaluate(segments, poorer.template_view(), poorer.aggregates, START).segments == ("subscriber",)


def test_event_windows_hold_until_they_lapse_and_say_when() -> None:
    segments = catalog(
        KITCHEN_CLICKERS,
        """
        id: quiet
        name: No order in 90 days
        conditions: [{did_not: order_placed, within: 90d}]
        """,
    )
    a = updated(
        Aggregates(),
        "e1",
        "order_placed",
        {"order_id": "o1", "total": 20, "lines": [{"sku": "m", "category": "kitchen"}]},
        START,
    )
    a = updated(a, "e2", "email_clicked", {}, START + 10 * DAY)
    view = person(a).template_view()

    day_11 = evaluate(segments, view, a, START + 11 * DAY)
    day_40 = evaluate(segments, view, a, START + 40 * DAY)
    day_90 = evaluate(segments, view, a, START + 90 * DAY)

    assert day_11.segments == ("first_time_buyer", "kitchen_clickers")
    assert day_11.review_at == START + 40 * DAY  # the click window closes 30 days after the click
    assert day_40.segments == ("first_time_buyer",)
    assert day_40.review_at == START + 60 * DAY  # at risk after 60 quiet days
    assert (day_90.segments, day_90.review_at) == (("lapsed", "quiet"), None)  # nothing left to change with time


def test_a_stage_change_exits_the_old_stage_before_entering_the_new() -> None:
    assert transitions(("at_risk", "quiet"), ("lapsed", "quiet", "vip_fans")) == [
        Transition("at_risk", entered=False),
        Transition("lapsed", entered=True),
        Transition("vip_fans", entered=True),
    ]


BROKEN = {
    "unknown op": (
        "id: s\nname: S\nconditions:\n  - {field: tags, op: like, value: x}\n",
        "s.yaml:4: conditions.0.op:",
    ),
    "unknown root": (
        "id: s\nname: S\nconditions:\n  - field: wallet.balance\n",
        "s.yaml:4: conditions.0.field: a field starts with one of email",
    ),
    "bad window": (
        "id: s\nname: S\nconditions:\n  - did: email_opened\n    within: soon\n",
        "s.yaml:5: conditions.0.within:",
    ),
    "unknown stage": (
        "id: s\nname: S\nconditions:\n  - stage: [loyal]\n",
        "s.yaml:4: conditions.0.stage.0: Input should be",
    ),
    "a stage's id": (
        "id: lapsed\nname: S\nconditions:\n  - stage: [at_risk]\n",
        "s.yaml:1: id: 'lapsed' is a built-in",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_segment_files_are_refused_with_file_and_line(case: str, tmp_path: Path) -> None:
    text, expected = BROKEN[case]
    path = tmp_path / "s.yaml"
    path.write_text(text)

    with pytest.raises(FlowFileError) as error:
        load_segment(path)

    assert f"{tmp_path}/{expected}" in str(error.value)


def test_a_missing_segments_directory_means_the_stages_only(tmp_path: Path) -> None:
    assert len(load_segments(tmp_path / "nowhere")) == 0
    assert "lapsed" in load_segments(None).ids()


LAPSED_FLOW = f"""
id: lapsed_note
name: Lapsed note
trigger: {{type: segment, segment: lapsed}}
steps:
  - id: miss_you
    {EMAIL}
    subject: "We miss you"
"""


def test_time_alone_moves_a_contact_into_lapsed_through_the_daily_sweep(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, LAPSED_FLOW))
    sim.send(
        {"id": "o1", "type": "order_placed", "contact": contact("ann"), "properties": {"order_id": "o1", "total": 30}}
    )
    [stored] = sim.store.contacts.values()
    assert (stored.stage, stored.review_at) == ("first_time_buyer", START + 60 * DAY)

    swept: list[list[str]] = []
    for day in range(1, 93):
        clock.set(START.replace(hour=0, minute=5) + day * DAY)  # the daily run, five past midnight UTC
        swept.append([o.contact_id for o in sim.container.ingest.sweep()])
        sim.settle()  # the worker starts what the sweep queued

    reviewed_on = [day for day, ids in enumerate(swept, start=1) if ids]
    assert reviewed_on == [61, 91]  # two index reads in 92 days: at risk, then lapsed; nothing in between
    assert sim.store.contacts[stored.contact_id].stage == "lapsed"
    assert sent(sim) == [("2027-02-01 00:05", "ann@example.com", "We miss you")]


def test_an_event_moves_a_contact_in_and_out_of_a_segment_and_flows_hear_of_it(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    exit_flow = f"""
    id: clicked_then_left
    name: Left the clickers
    trigger: {{type: segment, segment: kitchen_clickers, when: exited}}
    steps:
      - id: bye
        {EMAIL}
        subject: "Still cooking?"
    """
    segments_dir(tmp_path, KITCHEN_CLICKERS)
    sim = simulation(settings, clock, flows_dir(tmp_path, exit_flow))
    ann = contact("ann")
    mug = {"order_id": "o1", "total": 30, "lines": [{"sku": "mug", "category": "kitchen"}]}

    placed = sim.send({"id": "e1", "type": "order_placed", "contact": ann, "properties": mug})
    clicked = sim.send({"id": "e2", "type": "email_clicked", "contact": ann, "properties": {}})
    clock.set(START + 30 * DAY + timedelta(minutes=5))
    [review] = sim.container.ingest.sweep()

    assert (placed.entered, placed.left) == (["first_time_buyer"], [])
    assert (clicked.entered, clicked.left, clicked.started) == (["kitchen_clickers"], [], [])
    assert (review.entered, review.left, review.started) == ([], ["kitchen_clickers"], ["clicked_then_left"])
    assert sent(sim) == [("2026-12-02 09:05", "ann@example.com", "Still cooking?")]
    assert sim.send({"id": "e2", "type": "email_clicked", "contact": ann, "properties": {}}).duplicate


def test_a_flow_on_an_unknown_segment_is_refused_at_start(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    flow = LAPSED_FLOW.replace("segment: lapsed", "segment: lapsd")

    with pytest.raises(FlowFileError, match="lapsed_note: trigger.segment: no segment 'lapsd'"):
        simulation(settings, clock, flows_dir(tmp_path, flow))


CHAMPIONS = """
id: champions
name: Champions (RFM 4+ on recency and frequency)
conditions:
  - {field: rfm.recency, op: gte, value: 4}
  - {field: rfm.frequency, op: gte, value: 4}
"""
CHAMPIONS_FLOW = f"""
id: champions_thanks
name: Thanks, champion
trigger: {{type: segment, segment: champions}}
steps:
  - id: thanks
    {EMAIL}
    subject: "You are one of our best"
"""


def test_the_daily_job_scores_rfm_against_the_base_and_a_segment_on_it_starts_a_flow(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    segments_dir(tmp_path, CHAMPIONS)
    sim = simulation(settings, clock, flows_dir(tmp_path, CHAMPIONS_FLOW))
    # Five customers: ann orders most and latest, eve least and longest ago. Orders land at START + day.
    plan = {"ann": [40, 41, 42, 43, 44], "bea": [30, 31, 32, 33], "cat": [20, 21, 22], "dan": [10, 11], "eve": [0]}
    for day, name in sorted((day, name) for name, days in plan.items() for day in days):
        clock.set(START + day * DAY)
        order = {"order_id": f"{name}{day}", "total": 50}
        sim.send({"id": f"{name}{day}", "type": "order_placed", "contact": contact(name), "properties": order})
    sim.send({"id": "s1", "type": "subscribed", "contact": contact("zoe"), "properties": {}})  # no order: no score
    clock.set(START + 50 * DAY)

    first = sim.container.daily.rescore()
    again = sim.container.daily.rescore()

    codes = {c.email.split("@")[0]: c.rfm.code if c.rfm else None for c in sim.store.contacts.values()}  # type: ignore[union-attr]
    assert codes == {"ann": "555", "bea": "444", "cat": "333", "dan": "222", "eve": "111", "zoe": None}
    assert (first.buyers, first.rescored, again.rescored) == (5, 5, 0)  # unchanged scores are not written
    assert sim.store.get_document("rfm_cuts") == {
        "recency_days": [6.0, 17.0, 28.0, 39.0],  # ann's last order 6 days ago, eve's 50
        "frequency": [1.0, 2.0, 3.0, 4.0],
        "monetary": [50.0, 100.0, 150.0, 200.0],
        "buyers": 5,
        "computed_at": (START + 50 * DAY).isoformat(),
    }
    assert sim.container.daily.rfm_cuts() == first.cuts
    started = {sim.store.contacts[o.contact_id].email for o in first.outcomes if o.started == ["champions_thanks"]}
    assert started == {"ann@example.com", "bea@example.com"}  # 555 and 444: recency and frequency 4 or more
    thanked = [row[1] for row in sent(sim) if row[2] == "You are one of our best"]
    assert sorted(thanked) == ["ann@example.com", "bea@example.com"]


def test_a_profile_update_by_a_flow_moves_segments_and_starts_the_flows_listening(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    club = """
    id: club_members
    name: Club members
    conditions: [{field: tags, op: contains, value: club}]
    """
    joining = """
    id: join_club
    name: Join the club
    trigger: {event: club_joined}
    steps:
      - {id: tag, type: update_profile, add_tags: [club]}
    """
    welcome = f"""
    id: club_welcome
    name: Club welcome
    trigger: {{type: segment, segment: club_members}}
    steps:
      - id: hello
        {EMAIL}
        subject: "Welcome to the club"
    """
    segments_dir(tmp_path, club)
    sim = simulation(settings, clock, flows_dir(tmp_path, joining, welcome))

    sim.send({"id": "j1", "type": "club_joined", "contact": contact("ann"), "properties": {}})

    [stored] = sim.store.contacts.values()
    assert "club" in stored.tags and "club_members" in stored.segments
    assert [subject for _, _, subject in sent(sim)] == ["Welcome to the club"]
    version = stored.version
    assert sim.container.ingest.review(stored.contact_id).entered == []
    assert sim.store.contacts[stored.contact_id].version == version  # nothing new: no write


def test_a_review_or_rescore_of_a_contact_erased_meanwhile_creates_nothing(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, LAPSED_FLOW))

    reviewed = sim.container.ingest.review("gone")
    rescored = sim.container.ingest.rescore("gone", None)

    assert (reviewed.entered, rescored.entered) == ([], [])
    assert sim.store.contacts == {}
