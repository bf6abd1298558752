"""Time zones: where a contact's zone comes from, and local times across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from nudge.clocks import VirtualClock
from nudge.domain.guardrails import QuietHours, quiet_hours_end
from nudge.domain.model import Contact
from nudge.domain.timezones import zone_for
from nudge.settings import Settings
from tests.factories import contact
from tests.flowkit import flows_dir, sent, simulation


@pytest.mark.parametrize(
    ("who", "zone"),
    [
        (Contact("c", timezone="Asia/Tokyo", phone="+33612345678"), "Asia/Tokyo"),  # the profile wins
        (Contact("c", phone="+33612345678"), "Europe/Paris"),  # then the phone's country
        # +1 numbers: the area code names the zone, before the address
        (Contact("c", phone="+14155550101", properties={"country_code": "de"}), "America/Los_Angeles"),
        (Contact("c", phone="+12125550101"), "America/New_York"),
        (Contact("c", phone="+447911123456"), "Europe/London"),  # a UK mobile spans the Crown dependencies
        (Contact("c", phone="+18005550101", properties={"country_code": "de"}), "Europe/Berlin"),  # toll-free
        (Contact("c", properties={"address": {"country_code": "JP"}}), "Asia/Tokyo"),
        (Contact("c", timezone="Not/AZone", phone="+18005550101"), "America/Chicago"),  # the default
        (None, "America/Chicago"),
    ],
)
def test_zone_resolution_order(who: Contact | None, zone: str) -> None:
    assert zone_for(who, "America/Chicago") == ZoneInfo(zone)


WEEKLY = """
    id: weekly
    name: Weekly
    trigger: {event: ping}
    steps:
      - {id: until_1, type: wait_until, time: "09:00", weekdays: [mon]}
      - {id: m1, type: email, template: welcome/welcome, subject: "one"}
      - {id: until_2, type: wait_until, time: "09:00", weekdays: [mon]}
      - {id: m2, type: email, template: welcome/welcome, subject: "two"}
"""


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        # Paris leaves summer time on 2026-10-25: 09:00 is 07:00 UTC before, 08:00 UTC after.
        ("Europe/Paris", "2026-10-14T12:00:00+00:00", ["2026-10-19 07:00", "2026-10-26 08:00"]),
        # New York leaves summer time on 2026-11-01: 09:00 is 13:00 UTC before, 14:00 UTC after.
        ("America/New_York", "2026-10-21T12:00:00+00:00", ["2026-10-26 13:00", "2026-11-02 14:00"]),
        # ...and enters it on 2027-03-14.
        ("America/New_York", "2027-03-03T12:00:00+00:00", ["2027-03-08 14:00", "2027-03-15 13:00"]),
    ],
)
def test_local_times_hold_across_daylight_saving_changes(
    settings: Settings, tmp_path: Path, zone: str, start: str, expected: list[str]
) -> None:
    clock = VirtualClock(datetime.fromisoformat(start))
    sim = simulation(settings, clock, flows_dir(tmp_path, WEEKLY))
    sim.send({"id": "e1", "type": "ping", "contact": contact("bob", timezone=zone), "properties": {}})

    sim.run_until(clock.now().replace(year=clock.now().year + 1))

    assert [t for t, _, _ in sent(sim)] == expected


def test_quiet_hours_end_is_the_local_morning_even_on_the_night_the_clocks_change() -> None:
    paris = ZoneInfo("Europe/Paris")
    quiet = QuietHours(start="21:00", end="08:00")
    # 23:30 UTC on 2026-10-24 is 01:30 CEST; the quiet hours end at 08:00 CET = 07:00 UTC on the 25th.
    assert quiet_hours_end(datetime(2026, 10, 24, 23, 30, tzinfo=UTC), paris, quiet) == datetime(
        2026, 10, 25, 7, 0, tzinfo=UTC
    )
    # 19:30 UTC on 2026-10-24 is 21:30 CEST: the end is the next morning.
    assert quiet_hours_end(datetime(2026, 10, 24, 19, 30, tzinfo=UTC), paris, quiet) == datetime(
        2026, 10, 25, 7, 0, tzinfo=UTC
    )
    assert quiet_hours_end(datetime(2026, 10, 24, 12, 0, tzinfo=UTC), paris, quiet) is None
