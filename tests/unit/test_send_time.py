"""Send-time optimisation (ADR 0019): each contact's best hour from their own opens and clicks, shrunk
toward the shop's curve; best-time and exploratory campaign schedules, across zones and DST."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from nudge.clocks import VirtualClock
from nudge.domain import aggregates, send_time
from nudge.domain.aggregates import Aggregates
from nudge.domain.campaigns import Campaign
from nudge.domain.flows import WaitUntilStep
from nudge.domain.model import Contact
from nudge.domain.validation import validate
from nudge.flow_tools import step_label
from nudge.local.simulation import Simulation
from nudge.services.campaigns import CampaignPiece
from nudge.settings import Settings
from tests.conftest import START
from tests.flowkit import flows_dir, sent, simulation

NEW_YORK = ZoneInfo("America/New_York")


def history(**utc_hours: int) -> tuple[int, ...]:
    """A histogram from {"h23": 12, ...}: that many points at each UTC hour."""
    counts = [0] * 24
    for hour, count in utc_hours.items():
        counts[int(hour[1:])] = count
    return tuple(counts)


def test_a_few_engagements_defer_to_the_prior_and_a_habit_wins_by_hand() -> None:
    default = send_time.ShopCurve().prior()  # no shop history: all weight on 10:00
    at_20 = [0] * 24

    at_20[20] = 1  # score(20) = 1 / 9, score(10) = 8 / 9
    assert send_time.best_hour(at_20, default) == 10
    at_20[20] = 8  # 8 / 16 against 8 / 16: a tie goes nearest 10:00
    assert send_time.best_hour(at_20, default) == 10
    at_20[20] = 9  # 9 / 17 against 8 / 17
    assert send_time.best_hour(at_20, default) == 20


def test_the_shop_curve_takes_over_from_the_default_hour_as_engaged_contacts_reach_a_thousand() -> None:
    evening = [0] * 24
    evening[19] = 3
    curve = send_time.ShopCurve()
    for _ in range(600):
        curve.add(evening)
    # 600 of 1,000: 0.6 at 19:00, 0.4 at 10:00
    assert curve.prior()[19] == pytest.approx(0.6) and curve.prior()[10] == pytest.approx(0.4)
    assert send_time.best_hour([0] * 24, curve.prior()) == 19
    for _ in range(400):
        curve.add(evening)
    assert curve.prior()[19] == pytest.approx(1.0)
    assert send_time.ShopCurve.from_record(curve.to_record()).prior() == pytest.approx(curve.prior())


def test_utc_history_is_read_in_the_contacts_zone_with_dst() -> None:
    at_14_utc = history(h14=5)
    assert send_time.local_hours(at_14_utc, NEW_YORK, date(2026, 11, 10))[9] == 5  # EST, UTC-5
    assert send_time.local_hours(at_14_utc, NEW_YORK, date(2027, 7, 10))[10] == 5  # EDT, UTC-4
    assert send_time.local_hours(at_14_utc, ZoneInfo("Asia/Tokyo"), date(2026, 11, 10))[23] == 5


def test_opens_and_clicks_build_the_histogram_a_machine_open_does_not_and_it_is_kept() -> None:
    at = datetime(2026, 11, 3, 19, 30, tzinfo=UTC)
    found = aggregates.updated(Aggregates(), "o1", "email_opened", {}, at)
    found = aggregates.updated(found, "o2", "email_opened", {"machine_open": True}, at)
    found = aggregates.updated(found, "c1", "email_clicked", {}, at + timedelta(hours=2))

    assert found.engaged_hours == history(h19=1, h21=2)
    assert aggregates.from_record(aggregates.to_record(found)).engaged_hours == found.engaged_hours
    assert "engaged_hours" not in aggregates.to_record(Aggregates())


def test_a_histogram_is_halved_past_its_limit_so_recent_habits_weigh_more() -> None:
    full = history(h8=240)
    assert send_time.engaged(full, datetime(2026, 1, 1, 20, tzinfo=UTC), 2) == history(h8=120, h20=1)


def best_time_campaign(best_time: object = True, day: str = "2026-11-10") -> Campaign:
    return validate(
        Campaign,
        {
            "id": "news",
            "name": "News",
            "email": {"template": "campaigns/newsletter", "subject": "Hi"},
            "schedule": {"date": day, "best_time": best_time},
        },
    )


def test_best_time_is_each_recipients_own_hour_in_their_zone_across_dst() -> None:
    early = datetime(2026, 11, 1, tzinfo=UTC)
    night_owl = Contact("owl", timezone="America/New_York", aggregates=Aggregates(engaged_hours=history(h23=12)))
    newcomer = Contact("new", timezone="Europe/Paris")

    november = best_time_campaign().schedule
    # 23:00 UTC is 18:00 EST: 12 / 20 at 18:00 against 8 / 20 at 10:00
    assert november.due_for(night_owl, "UTC", early) == datetime(2026, 11, 10, 23, tzinfo=UTC)
    assert november.due_for(newcomer, "UTC", early) == datetime(2026, 11, 10, 9, tzinfo=UTC)  # 10:00 CET
    july = best_time_campaign(day="2027-07-10").schedule  # EDT: 23:00 UTC is 19:00 there, and stays 23:00 UTC
    assert july.due_for(night_owl, "UTC", early) == datetime(2027, 7, 10, 23, tzinfo=UTC)
    assert july.due_for(newcomer, "UTC", early) == datetime(2027, 7, 10, 8, tzinfo=UTC)  # 10:00 CEST
    assert november.starts_at(early) == datetime(2026, 11, 9, 10, tzinfo=UTC)  # midnight in UTC+14


def test_explore_spreads_a_send_over_the_day() -> None:
    schedule = best_time_campaign("explore").schedule
    early = datetime(2026, 11, 1, tzinfo=UTC)
    hours = Counter(schedule.due_for(Contact(f"c{i}"), "UTC", early).hour for i in range(2400))

    assert set(hours) == set(range(24)) and max(hours.values()) < 140  # about 100 an hour


def test_bad_best_time_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="needs a `date`"):
        validate(Campaign, {"id": "n", "name": "N", "sms": {"template": "t"}, "schedule": {"best_time": True}})
    with pytest.raises(ValueError, match="no `local_time`"):
        validate(
            Campaign,
            {
                "id": "n",
                "name": "N",
                "sms": {"template": "t"},
                "schedule": {"date": "2026-11-10", "local_time": "09:00", "best_time": True},
            },
        )


def test_the_daily_job_learns_the_shop_curve_and_a_best_time_campaign_uses_it(
    settings: Settings, clock: VirtualClock
) -> None:
    sim = Simulation(settings, clock)
    evenings = Aggregates(engaged_hours=history(h19=3))  # 19:00 UTC, in UTC
    for i in range(1200):
        contact = Contact(f"e{i:04d}", email=f"e{i}@example.com", email_marketing=i < 2, aggregates=evenings)
        sim.store.save_contact(contact, 0)
    sim.store.save_contact(Contact("fresh", email="fresh@example.com", email_marketing=True), 0)

    sim.container.daily.rescore()
    curve = send_time.ShopCurve.from_record(sim.store.get_document(send_time.CURVE_DOCUMENT))
    assert curve.contacts == 1200 and curve.prior()[19] == pytest.approx(1.0)

    campaigns = sim.container.campaigns
    day = (clock.now() + timedelta(days=2)).date()
    campaigns.create(best_time_campaign(day=day.isoformat()))
    jobs = sim.container.jobs
    assert jobs is not None
    for _ in range(4 * 48):  # the pieces wait for the start in hops of up to 15 minutes
        clock.advance(timedelta(minutes=15))
        for body in jobs.take():  # type: ignore[attr-defined]
            campaigns.work(CampaignPiece.parse(body))
    due = {r.contact_id: r.due_at for cid in ("e0000", "e0001", "fresh") for r in sim.store.runs_for(cid)}

    evening = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=19)
    assert due == {"e0000": evening, "e0001": evening, "fresh": evening}  # the newcomer: the shop's hour


BEST_TIME_FLOW = """
id: tips
name: Tips
trigger: {event: tip}
steps:
  - {id: at_their_hour, type: wait_until, best_time: true}
  - id: tip
    @EMAIL@
    subject: "A tip"
"""


def test_a_flow_waits_until_each_contacts_best_hour_shrunk_toward_the_shop_curve(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, BEST_TIME_FLOW))
    shop = send_time.ShopCurve([0.0] * 24, 1200)
    shop.hours[19] = 1200.0  # the shop engages at 19:00 local: the prior is all there
    sim.store.put_document(send_time.CURVE_DOCUMENT, shop.to_record(), clock.now())
    people = {
        # 23:00 UTC is 18:00 EST (Nov 2): 12 / 20 at 18:00 against 8 / 20 at the shop's 19:00
        "owl": ("America/New_York", history(h23=12)),
        # no history: the shop's 19:00, in Paris (CET) 18:00 UTC
        "new": ("Europe/Paris", ()),
        # 08:00 UTC is 17:00 JST: past (it is 18:00 there), so tomorrow's 17:00, 08:00 UTC on Nov 3
        "late": ("Asia/Tokyo", history(h8=12)),
        # 09:00 UTC is 18:00 JST, the hour it is now: on at once
        "now": ("Asia/Tokyo", history(h9=12)),
    }
    for name, (zone, hours) in people.items():
        engaged = Aggregates(engaged_hours=hours)
        own = Contact(name, email=f"{name}@example.com", email_marketing=True, timezone=zone, aggregates=engaged)
        sim.store.save_contact(own, 0)
        sim.send({"id": f"e-{name}", "type": "tip", "contact": {"id": name, "email": f"{name}@example.com"}})

    sim.run_until(clock.now() + timedelta(days=2))
    assert clock.now() - timedelta(days=2) == START
    assert sent(sim) == [
        ("2026-11-02 09:00", "now@example.com", "A tip"),
        ("2026-11-02 18:00", "new@example.com", "A tip"),
        ("2026-11-02 23:00", "owl@example.com", "A tip"),
        ("2026-11-03 08:00", "late@example.com", "A tip"),
    ]


def test_best_time_in_a_wait_until_is_validated_and_drawn() -> None:
    with pytest.raises(ValueError, match="not both"):
        validate(WaitUntilStep, {"id": "w", "type": "wait_until", "time": "09:00", "best_time": True})
    step = validate(WaitUntilStep, {"id": "w", "type": "wait_until", "best_time": True, "weekdays": ["sat"]})
    assert step_label(step).split() == ["wait", "until", "sat", "best", "hour"]
