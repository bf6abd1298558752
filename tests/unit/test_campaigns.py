"""Campaigns (ADR 0019): the model and its loader, audience pieces, idempotent restarts, pause, resume, cancel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from nudge.campaign_files import campaign_problems, load_campaign, load_campaigns
from nudge.clocks import VirtualClock
from nudge.domain.campaigns import Campaign, CampaignStatus, choose_winner
from nudge.domain.feedback import FeedbackKind
from nudge.domain.model import Contact, MessageStatus
from nudge.domain.records import replace
from nudge.domain.validation import dump, validate
from nudge.flow_files import FlowFileError
from nudge.local.simulation import Simulation
from nudge.services.campaigns import BadCampaignPiece, CampaignConflict, CampaignPiece, CampaignService
from nudge.settings import Settings
from tests.conftest import ROOT, START


def newsletter(**overrides: Any) -> Campaign:
    data: dict[str, Any] = {
        "id": "news",
        "name": "News",
        "email": {"template": "campaigns/newsletter", "subject": "Hi {{ contact.first_name }}"},
        **overrides,
    }
    return validate(Campaign, data)


@pytest.fixture
def sim(settings: Settings, clock: VirtualClock) -> Simulation:
    """Twenty contacts: c00…c15 consenting (c03 tagged no_newsletter, c04 a VIP), c16…c19 never consented."""
    sim = Simulation(settings, clock)
    for i in range(20):
        contact = Contact(
            contact_id=f"c{i:02d}",
            email=f"c{i:02d}@example.com",
            first_name=f"C{i}",
            email_marketing=i < 16,
            tags=("no_newsletter",) if i == 3 else (),
            segments=("vip",) if i == 4 else ("new_subscriber",),
        )
        sim.store.save_contact(contact, expected_version=0)
    return sim


def sent_to(sim: Simulation) -> list[str]:
    return sorted(email.to for _, email in sim.mailer.sent)


def drain_pieces(sim: Simulation) -> list[Any]:
    """Do what the jobs queue holds now, as the sweep function would, until only pieces waiting for their
    start (or none) are left; the clock does not move. The outcomes of the last round."""
    jobs = sim.container.jobs
    assert jobs is not None
    outcomes: list[Any] = []
    for _ in range(5):
        bodies = jobs.take()  # type: ignore[attr-defined]
        if not bodies:
            break
        outcomes = [sim.container.campaigns.work(CampaignPiece.parse(body)) for body in bodies]
        if any(o.status == "waiting" for o in outcomes):
            break
    return outcomes


def test_the_sample_campaigns_load_and_their_templates_check() -> None:
    from nudge.domain.segments import SegmentCatalog
    from nudge.templating import TemplateRenderer

    (campaign,) = load_campaigns(ROOT / "campaigns")

    assert campaign.flow_id == "campaign.november_newsletter"
    assert campaign_problems(campaign, TemplateRenderer(ROOT / "templates"), SegmentCatalog()) == []


def test_a_bad_campaign_file_names_its_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("id: bad\nname: Bad\nschedule:\n  local_time: '25:00'\n  date: 2026-11-10\nemail:\n  subject: Hi\n")

    with pytest.raises(FlowFileError) as raised:
        load_campaign(path)

    assert f"{path}:4: schedule.local_time: '25:00' is not a time of day" in str(raised.value)
    assert f"{path}:7: email.template: Field required" in str(raised.value)


def test_template_and_segment_problems_are_reported_like_a_flows() -> None:
    from nudge.domain.segments import SegmentCatalog
    from nudge.templating import TemplateRenderer

    campaign = newsletter(email={"template": "campaigns/nope", "subject": "{{ oops"}, audience={"segments": ["ghosts"]})

    problems = campaign_problems(campaign, TemplateRenderer(ROOT / "templates"), SegmentCatalog())

    assert any(p.startswith("email.subject") for p in problems)
    assert any(p.startswith("email: ") and "campaigns/nope" in p for p in problems)
    assert any(p.startswith("audience.segments: no segment 'ghosts'") for p in problems)


def test_audience_tags_segments_and_exclusions() -> None:
    audience = newsletter(audience={"stages": ["vip"], "tags": ["beta"], "exclude_tags": ["no_newsletter"]}).audience

    assert audience.matches(Contact("a", segments=("vip",)))
    assert audience.matches(Contact("b", tags=("beta",)))
    assert not audience.matches(Contact("c", segments=("vip",), tags=("no_newsletter",)))
    assert not audience.matches(Contact("d", segments=("lapsed",)))


def test_local_time_is_each_recipients_own_across_zones_and_dst() -> None:
    schedule = newsletter(schedule={"date": "2026-11-10", "local_time": "09:00"}).schedule
    early = datetime(2026, 11, 9, tzinfo=UTC)
    summer = newsletter(schedule={"date": "2027-07-10", "local_time": "09:00"}).schedule

    assert schedule.due_for(Contact("ny", timezone="America/New_York"), "UTC", early) == datetime(
        2026, 11, 10, 14, 0, tzinfo=UTC
    )  # EST, UTC-5
    assert summer.due_for(Contact("ny", timezone="America/New_York"), "UTC", early) == datetime(
        2027, 7, 10, 13, 0, tzinfo=UTC
    )  # EDT, UTC-4
    assert schedule.due_for(Contact("kiritimati", timezone="Pacific/Kiritimati"), "UTC", early) == datetime(
        2026, 11, 9, 19, 0, tzinfo=UTC
    )  # UTC+14: the day's first
    assert schedule.starts_at(early) == datetime(2026, 11, 9, 19, 0, tzinfo=UTC)
    late = datetime(2026, 11, 10, 12, tzinfo=UTC)
    assert schedule.due_for(Contact("paris", timezone="Europe/Paris"), "UTC", late) == late  # past there: now


def test_a_campaign_sends_once_to_its_consenting_audience_through_the_flow_path(sim: Simulation) -> None:
    campaign = newsletter(audience={"exclude_tags": ["no_newsletter"]})

    record = sim.container.campaigns.run(campaign)
    sim.run_until(START + timedelta(minutes=1))  # 14 a second

    assert record.status is CampaignStatus.SENT
    expected = sorted(f"c{i:02d}@example.com" for i in range(16) if i != 3)
    assert sent_to(sim) == expected
    messages = [m for cid in sim.store.contacts for m in sim.store.messages_for(cid)]
    assert {(m.flow_id, m.step_id, m.status) for m in messages} == {("campaign.news", "email", MessageStatus.SENT)}
    progress = sim.container.campaigns.progress("news")
    assert progress is not None and progress.as_dict() == {
        "status": "sent",
        "segments_done": 8,
        "segments": 8,
        "contacts": 20,
        "recipients": 15,
        "unreachable": 4,
        "holdout": 0,
    }


def test_a_campaign_resolved_again_sends_nothing_twice(sim: Simulation) -> None:
    campaigns = sim.container.campaigns
    campaigns.run(newsletter())
    sim.run_until(START + timedelta(minutes=1))
    first = len(sim.mailer.sent)

    # Given a crash and restart: every piece is done again from the start
    again = [campaigns.work(CampaignPiece("news", s, 8)) for s in range(8)]
    sim.run_until(START + timedelta(minutes=2))

    assert len(sim.mailer.sent) == first == 16
    # each piece finds the record it wrote: it scans nothing again, starts nothing
    assert sum(o.started for o in again) == 0 and sum(o.contacts for o in again) == 0
    assert all(o.status == "worked" and o.done for o in again)


def test_a_piece_that_dies_midway_resumes_from_its_checkpoint(sim: Simulation, monkeypatch: pytest.MonkeyPatch) -> None:
    from nudge.services import campaigns as module

    monkeypatch.setattr(module, "CHECKPOINT_EVERY", 4)
    campaigns = sim.container.campaigns
    campaigns.create(newsletter())
    sim.container.jobs.take()  # type: ignore[union-attr]
    piece = CampaignPiece("news", 0, 1)  # one segment: all twenty contacts, in Scan order
    start = sim.container.runs.start
    calls = {"n": 0}

    def dies_at_the_tenth(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 10:
            raise RuntimeError("the function died")
        return start(*args, **kwargs)

    monkeypatch.setattr(sim.container.runs, "start", dies_at_the_tenth)
    with pytest.raises(RuntimeError):
        campaigns.work(piece)
    monkeypatch.setattr(sim.container.runs, "start", start)

    retried = campaigns.work(piece)  # SQS hands the same piece back

    # the first attempt checkpointed after 4, 8 contacts (and handed off their runs); the retry scans on
    # from the eighth, and re-drives what it finds between the checkpoint and the death
    assert retried.status == "worked" and retried.done
    assert retried.contacts == 12
    sim.run_until(START + timedelta(minutes=2))
    assert sent_to(sim) == [f"c{i:02d}@example.com" for i in range(16)]  # each once
    progress = campaigns.progress("news")
    assert progress is not None
    assert progress.contacts == 20 and progress.recipients == 16 and progress.unreachable == 4


def test_a_stale_copy_of_a_piece_cannot_rewind_its_segment(sim: Simulation) -> None:
    campaigns = sim.container.campaigns
    campaigns.create(newsletter())
    sim.container.jobs.take()  # type: ignore[union-attr]
    first = campaigns.work(CampaignPiece("news", 0, 1))
    assert first.done

    # a second chain from the start (a replayed fan-out whose pieces lost their record) finds the segment
    # written from elsewhere only when it is not its own; here the first piece's copy finds its own record
    copy = campaigns.work(CampaignPiece("news", 0, 1))
    assert copy.contacts == 0 and copy.started == 0
    # a piece from another place in the segment (an old continuation) stands down at its first write
    stale = campaigns.work(CampaignPiece("news", 0, 1, cursor={"contact_id": "c05"}))
    assert stale.status == "stood_down" and stale.follow == []


def test_creating_the_same_campaign_twice_is_one_campaign_and_another_definition_conflicts(
    sim: Simulation,
) -> None:
    campaigns = sim.container.campaigns
    _, created = campaigns.create(newsletter())
    _, again = campaigns.create(newsletter())  # a client's retry: the first may have died before queueing
    queued = drain_pieces(sim)

    assert (created, again) == (True, False)
    # the fan-out piece queued again while the campaign is scheduled, so two of each segment's pieces: the
    # second finds the first's record and starts nothing
    assert len(queued) == 16
    assert sum(o.started for o in queued) == 16 and sum(o.contacts for o in queued) == 20
    with pytest.raises(CampaignConflict):
        campaigns.create(newsletter(name="Other"))


def test_pieces_start_a_minutes_share_of_the_rate_then_continue_a_minute_later(
    settings: Settings, clock: VirtualClock
) -> None:
    # 60 a minute less the flows' 5 % reserve: 57, 8 for the first segment and 7 for each other
    sim = Simulation(settings.model_copy(update={"ses_max_send_rate": 1}), clock)
    for i in range(200):
        sim.store.save_contact(Contact(f"p{i:03d}", email=f"p{i}@x.example", email_marketing=True), 0)
    campaigns = sim.container.campaigns
    campaigns.create(newsletter())
    jobs = sim.container.jobs

    (fan_out,) = [campaigns.work(CampaignPiece.parse(body)) for body in jobs.take()]  # type: ignore[union-attr]
    first = [campaigns.work(CampaignPiece.parse(body)) for body in jobs.take()]  # type: ignore[union-attr]

    assert [o.started for o in first] == [8, 7, 7, 7, 7, 7, 7, 7]
    assert set(jobs.delays) == {timedelta(minutes=1)}  # type: ignore[union-attr]
    assert len(jobs.items) == 8  # type: ignore[union-attr]
    # Each piece's runs come due spread over its minute (the first within one gap of now, the last before
    # the minute ends), each segment's offset by its part of a gap so the segments' sends interleave
    dues = sorted(r.due_at for r in sim.store.runs.values() if r.flow_id == "campaign.news" and r.due_at)
    assert clock.now() <= dues[0] < clock.now() + timedelta(minutes=1) / 8
    assert dues[-1] < clock.now() + timedelta(minutes=1)
    assert len(set(dues)) == len(dues) == 57  # no two segments' sends due together: no burst


def test_pace_takes_what_flows_left_last_minute_less_what_the_segment_still_has_waiting() -> None:
    from nudge.services.campaigns import pace

    piece = CampaignPiece("news", 5, 8)  # the first four segments take the remainder: not this one
    now = START + timedelta(minutes=1)
    # First piece: nothing measured, the flows' reserve: 500/s is 30,000 a minute, less 5 %: 28,500 / 8
    assert pace({}, (0, 0), START, 30_000, piece, 8) == (3562, 0.0)
    # A minute later flows took 6,000 slots (more than the reserve) and the campaign 23,000 spare ones:
    # 24,000 / 8 = 3,000; this segment started 3,562 and sent its eighth, 2,875: 687 wait, so 2,313 now
    last = {"slots_used": [100, 0], "slots_at": START.isoformat(), "backlog": 0, "last_started": 3562}
    assert pace(last, (6100, 23_000), now, 30_000, piece, 8) == (2313, 687.0)
    # Four segments finished: the four going share the minute and the spare slots (a quarter each, more
    # than the segment started: nothing waits)
    assert pace(last, (6100, 23_000), now, 30_000, piece, 4) == (6000, 0.0)
    # Flows took the whole rate: the campaign still starts its floor of 10 %, and only spare slots send it
    assert pace({**last, "last_started": 0}, (30_100, 0), now, 30_000, piece, 8) == (375, 0.0)
    # No time since the last piece (CampaignService.run moves no clock): nothing measured, nothing waits
    assert pace(last, (100, 0), START, 30_000, piece, 8) == (3562, 0.0)


def test_only_sends_due_within_the_minute_count_as_waiting_not_the_holdout_or_a_later_local_time(
    settings: Settings, clock: VirtualClock
) -> None:
    from nudge.domain.campaigns import HOLDOUT

    # Given 200 contacts, half in Tokyo (18:00 there is 09:00 UTC: now) and half in UTC (18:00: hours away)
    sim = Simulation(settings.model_copy(update={"ses_max_send_rate": 1}), clock)
    for i in range(200):
        zone = "Asia/Tokyo" if i % 2 else "UTC"
        sim.store.save_contact(Contact(f"p{i:03d}", email=f"p{i}@x.example", email_marketing=True, timezone=zone), 0)
    campaign = newsletter(holdout=20, schedule={"date": "2026-11-02", "local_time": "18:00"})
    campaigns = sim.container.campaigns
    campaigns.create(campaign)

    # When the first pieces start their minute's 57 runs
    jobs = sim.container.jobs
    for _ in range(3):
        for body in jobs.take():  # type: ignore[union-attr]
            campaigns.work(CampaignPiece.parse(body))
        if sim.store.pieces_of("campaign.news"):
            break

    # Then what waits for a slot this minute is only the Tokyo recipients outside the holdout
    logged = sim.store.pieces_of("campaign.news").values()
    runs = [r for r in sim.store.runs.values() if r.flow_id == "campaign.news"]
    group = campaign.grouping()
    soon = [r for r in runs if r.due_at is not None and r.due_at <= clock.now() + timedelta(minutes=1)]
    paced = [r for r in soon if group(r.contact_id) != HOLDOUT]
    assert sum(int(r["started"]) for r in logged) == len(runs) == 57
    assert 0 < len(paced) < len(soon) < len(runs)  # each kind is there: the test can tell them apart
    assert sum(int(r["last_started"]) for r in logged) == len(paced)


def test_pause_holds_sends_resume_continues_and_cancel_stops_for_good(sim: Simulation, clock: VirtualClock) -> None:
    campaigns = sim.container.campaigns
    campaigns.create(newsletter(schedule={"at": (START + timedelta(hours=1)).isoformat()}))

    # Paused before its time: its pieces stand down when they come
    campaigns.act("news", "pause")
    assert {o.status for o in drain_pieces(sim)} == {"stood_down"}

    # Resumed: a new set of pieces, which wait for the hour, then start the runs
    campaigns.act("news", "resume")
    assert [o.status for o in drain_pieces(sim)] == ["waiting"]  # one piece waits for the start
    clock.advance(timedelta(hours=1))
    drain_pieces(sim)
    assert campaigns.get("news").status is CampaignStatus.SENT  # type: ignore[union-attr]

    # Paused with its messages queued: none goes out, and they come back every few minutes
    campaigns.act("news", "pause")
    sim.run_until(clock.now() + timedelta(minutes=30))
    assert sim.mailer.sent == []

    # Cancelled: for good, and resume is refused
    campaigns.act("news", "cancel")
    sim.run_until(clock.now() + timedelta(minutes=30))
    assert sim.mailer.sent == []
    messages = [m for cid in sim.store.contacts for m in sim.store.messages_for(cid)]
    assert {(m.status, m.reason) for m in messages} <= {(MessageStatus.SKIPPED, "flow_removed")}
    with pytest.raises(CampaignConflict):
        campaigns.act("news", "resume")


def test_a_paused_campaign_resumed_sends_every_held_message_once(sim: Simulation, clock: VirtualClock) -> None:
    campaigns = sim.container.campaigns
    campaigns.create(newsletter())
    drain_pieces(sim)
    campaigns.act("news", "pause")
    sim.run_until(clock.now() + timedelta(minutes=10))
    assert sim.mailer.sent == []

    campaigns.act("news", "resume")
    drain_pieces(sim)
    sim.run_until(clock.now() + timedelta(minutes=10))

    assert len(sent_to(sim)) == len(set(sent_to(sim))) == 16


def test_a_resume_whose_queueing_died_is_done_again_by_the_next_resume(
    sim: Simulation, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaigns = sim.container.campaigns
    campaigns.create(newsletter())
    campaigns.act("news", "pause")  # before any segment was resolved

    def dies(*_: Any) -> None:
        raise RuntimeError("the Lambda died after writing the status, before queueing the pieces")

    queue = campaigns._queue  # noqa: SLF001 - the crash point under test
    monkeypatch.setattr(campaigns, "_queue", dies)
    with pytest.raises(RuntimeError):
        campaigns.act("news", "resume")
    monkeypatch.setattr(campaigns, "_queue", queue)
    assert campaigns.get("news").status.value == "sending"  # type: ignore[union-attr]

    again = campaigns.act("news", "resume")  # the client's retry: sending already, its segments queued again
    drain_pieces(sim)
    sim.run_until(clock.now() + timedelta(minutes=10))

    assert again.status.value == "sending"
    assert len(sent_to(sim)) == len(set(sent_to(sim))) == 16


def _another_request(sim: Simulation) -> CampaignService:
    """The campaign service of another request (an API call, another piece): the same store, no cache."""
    return CampaignService(
        documents=sim.store,
        census=sim.store,
        job_log=sim.store,
        runs=sim.container.runs,
        clock=sim.clock,
        jobs=None,
        per_minute=1000,
    )


class _LandsBetweenReadAndWrite:
    """The store, except that just before the first write of `status`, `meanwhile` runs: another writer's
    change lands after the writer read the campaign and before it writes (the race of ADR 0019)."""

    def __init__(self, store: Any, status: str, meanwhile: Any) -> None:
        self._store, self._status, self._meanwhile = store, status, meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def put_versioned_document(self, name: str, document: Any, at: datetime, expected_version: int) -> int:
        if document.get("status") == self._status and self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
        return int(self._store.put_versioned_document(name, document, at, expected_version))


def test_a_pause_that_lands_while_the_last_piece_marks_the_campaign_sent_stays(sim: Simulation) -> None:
    campaigns = sim.container.campaigns
    campaigns.create(newsletter())
    pauses: list[CampaignStatus] = []
    api = _another_request(sim)
    campaigns._documents = _LandsBetweenReadAndWrite(  # type: ignore[attr-defined]
        sim.store, "sent", lambda: pauses.append(api.act("news", "pause").status)
    )

    drain_pieces(sim)

    assert pauses == [CampaignStatus.PAUSED]  # the pause landed between the last piece's read and its write
    assert campaigns.get("news").status is CampaignStatus.PAUSED  # type: ignore[union-attr]
    sim.run_until(sim.clock.now() + timedelta(minutes=10))
    assert sim.mailer.sent == []  # held, as a paused campaign's sends are
    campaigns.act("news", "resume")  # every segment was resolved: back to sent, and its messages go
    assert campaigns.get("news").status is CampaignStatus.SENT  # type: ignore[union-attr]


def test_a_piece_that_lands_while_a_pause_is_written_does_not_lose_the_pause(sim: Simulation) -> None:
    campaigns = sim.container.campaigns
    campaigns.create(newsletter())
    piece = _another_request(sim)
    # Between the pause's read (scheduled) and its write, the pieces resolve the whole audience (-> sent).
    campaigns._documents = _LandsBetweenReadAndWrite(  # type: ignore[attr-defined]
        sim.store,
        "paused",
        lambda: [piece.work(p) for p in piece._first_pieces(piece.get("news"))],  # type: ignore[arg-type]
    )

    assert campaigns.act("news", "pause").status is CampaignStatus.PAUSED  # decided again on `sent`
    assert sim.store.get_versioned_document("campaign.news")[0]["status"] == "paused"  # type: ignore[index]


def test_a_cancel_between_a_pieces_read_and_its_sending_write_stands_the_piece_down(sim: Simulation) -> None:
    campaigns = sim.container.campaigns
    campaigns.create(newsletter())
    api = _another_request(sim)
    campaigns._documents = _LandsBetweenReadAndWrite(  # type: ignore[attr-defined]
        sim.store, "sending", lambda: api.act("news", "cancel")
    )

    outcomes = drain_pieces(sim)

    assert {o.status for o in outcomes} == {"stood_down"} and sum(o.started for o in outcomes) == 0
    assert campaigns.get("news").status is CampaignStatus.CANCELLED  # type: ignore[union-attr]


def test_bad_pieces_are_refused() -> None:
    for body in ({"job": "daily"}, {"job": "campaign"}, {"job": "campaign", "campaign": "x", "segment": 9, "of": 8}):
        with pytest.raises(BadCampaignPiece):
            CampaignPiece.parse(body)


def test_consent_suppression_and_smart_sending_apply_against_a_running_flow(sim: Simulation) -> None:
    from nudge.domain.model import Channel
    from nudge.domain.suppression import Suppression, address_key
    from tests.factories import subscribed

    # Given c05 just got the welcome series' first email (priority 5), and c02's address bounced
    sim.send(subscribed("sub_c05", {"id": "c05", "email": "c05@example.com", "email_marketing": True}))
    sim.store.suppress(address_key(Channel.EMAIL, "c02@example.com"), Suppression.BOUNCE, START)
    welcomed = len(sim.mailer.sent)

    # When a priority-3 campaign goes to everyone
    sim.container.campaigns.run(newsletter(priority=3))
    sim.run_until(START + timedelta(minutes=2))

    campaign = {m.contact_id: m for cid in sim.store.contacts for m in sim.store.messages_for(cid)}
    campaign = {cid: m for cid, m in campaign.items() if m.flow_id == "campaign.news"}
    assert welcomed == 1
    assert (campaign["c05"].status, campaign["c05"].reason) == (MessageStatus.SKIPPED, "smart_sending:email")
    assert (campaign["c02"].status, campaign["c02"].reason) == (MessageStatus.SKIPPED, "suppressed:bounce")
    assert "c17" not in campaign  # never consented: no record, counted unreachable
    assert len(sim.mailer.sent) == welcomed + 14


def test_campaign_revenue_is_attributed_and_reported_in_a_table_of_its_own(sim: Simulation) -> None:
    from nudge.report_text import kpi_tables
    from nudge.services.reporting import build_report
    from tests.factories import order_placed

    sim.container.campaigns.run(newsletter())
    sim.run_until(START + timedelta(days=2))
    sim.send(order_placed("o1", "k1", {"id": "c01", "email": "c01@example.com"}))  # two days after the send

    found = build_report(sim.store)
    tables = {title: rows for title, _, rows in kpi_tables(found)}

    (row,) = [r for r in found.flows if r.flow_id == "campaign.news"]
    assert (len(row.recipients), row.sent, row.orders, row.revenue) == (16, 16, 1, Decimal("42.00"))
    assert [label for label, _ in tables["Campaigns"]] == ["news"]
    assert "campaign.news" not in [label for label, _ in tables["Flows"]]


AB = {
    "variants": [{"id": "a", "subject": "Subject A"}, {"id": "b", "subject": "Subject B"}],
    "test_percent": 20,
    "wait": "4h",
}


def test_the_ab_winner_is_a_hand_computed_two_proportion_z_test() -> None:
    test = newsletter(ab_test=AB).ab_test
    assert test is not None
    # a: 20 clicks of 200 delivered (10%), b: 40 of 200 (20%): pooled 60/400 = 0.15,
    # se = sqrt(0.15 * 0.85 * (1/200 + 1/200)) = 0.035707, z = 0.10 / 0.035707 = 2.8006, p = erfc(z / sqrt 2) = 0.0051
    clear = choose_winner(test, {"email_a": {"delivery": 200, "click": 20}, "email_b": {"delivery": 200, "click": 40}})
    assert (clear["winner"], clear["significant"]) == ("b", True)
    assert clear["z"] == pytest.approx(2.8006, abs=1e-4) and clear["p_value"] == pytest.approx(0.0051, abs=1e-4)
    assert clear["variants"] == {"a": {"delivered": 200, "clicks": 20}, "b": {"delivered": 200, "clicks": 40}}
    # b 28 of 200: pooled 0.12, se = 0.032496, z = 0.04 / 0.032496 = 1.2309, p = 0.2184: not at 95%
    close = {"email_a": {"delivery": 200, "click": 20}, "email_b": {"delivery": 200, "click": 28}}
    assert choose_winner(test, close)["z"] == pytest.approx(1.2309, abs=1e-4)
    assert (choose_winner(test, close)["winner"], choose_winner(test, close)["significant"]) == ("b", False)
    first = replace(test, if_inconclusive="first")
    assert choose_winner(first, close)["winner"] == "a"
    opens = replace(test, metric="open_rate")  # opens: a leads
    assert (
        choose_winner(opens, {"email_a": {"delivery": 10, "open": 9}, "email_b": {"delivery": 10, "open": 1}})["winner"]
        == "a"
    )


def test_groups_are_deterministic_shares_and_the_campaigns_flow_sends_the_winner_to_the_rest() -> None:
    campaign = newsletter(ab_test=AB, holdout=10)
    group = campaign.grouping()
    groups = [group(f"c{i}") for i in range(20_000)]

    assert groups == [campaign.grouping()(f"c{i}") for i in range(20_000)]  # the same every time
    shares = {name: groups.count(name) / len(groups) for name in set(groups)}
    assert shares == pytest.approx({"holdout": 0.10, "a": 0.10, "b": 0.10, "rest": 0.70}, abs=0.01)
    split = campaign.as_flow(winner="b").step("ab")
    assert [(v.name, v.next) for v in split.variants] == [  # type: ignore[attr-defined]
        ("a", "email_a"),
        ("b", "email_b"),
        ("rest", "email_b"),
    ]
    with pytest.raises(ValueError, match="names a group"):
        newsletter(ab_test={**AB, "variants": [{"id": "rest"}, {"id": "b"}]})


def ab_sim(settings: Settings, clock: VirtualClock, contacts: int = 400) -> Simulation:
    sim = Simulation(settings, clock)
    for i in range(contacts):
        sim.store.save_contact(Contact(f"k{i:03d}", email=f"k{i:03d}@example.com", email_marketing=True), 0)
    return sim


def subjects(sim: Simulation) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for _, email in sim.mailer.sent:
        found.setdefault(email.to.split("@")[0], []).append(email.subject)
    return found


def test_an_ab_campaign_tests_on_a_share_then_sends_the_winner_to_the_rest_and_nothing_to_the_holdout(
    settings: Settings, clock: VirtualClock
) -> None:
    sim = ab_sim(settings, clock)
    campaigns = sim.container.campaigns
    campaign = newsletter(ab_test=AB, holdout=10)
    group = campaign.grouping()
    expected = {f"k{i:03d}": group(f"k{i:03d}") for i in range(400)}
    campaigns.create(campaign)
    drain_pieces(sim)  # the test's share and the holdout; the decision waits 4 h
    sim.run_until(clock.now() + timedelta(minutes=30))

    sent = subjects(sim)
    assert sent == {c: [f"Subject {g.upper()}"] for c, g in expected.items() if g in "ab"}
    holdout = [r for c, g in expected.items() if g == "holdout" for r in sim.store.runs_for(c)]
    assert len(holdout) == list(expected.values()).count("holdout") and all(
        r.exit_reason == "holdout" and r.variants == {"ab": "holdout"} for r in holdout
    )
    assert campaigns.get("news").status is CampaignStatus.SENDING  # type: ignore[union-attr]

    # The clicks come in: b wins; after the wait, the rest gets b, a minute after the decision
    for _ in range(30):
        sim.store.count_step("campaign.news", "email_b", FeedbackKind.CLICK)
    for variant in ("a", "b"):
        for _ in range(40):
            sim.store.count_step("campaign.news", f"email_{variant}", FeedbackKind.DELIVERY)
    clock.advance(timedelta(hours=4))
    assert [o.status for o in drain_pieces(sim)] == ["worked"] * 8
    sim.run_until(clock.now() + timedelta(hours=1))

    record = campaigns.get("news")
    assert record is not None and record.status is CampaignStatus.SENT and record.winner == "b"
    assert record.ab_verdict["significant"] is True  # type: ignore[index]
    sent = subjects(sim)
    rest = [c for c, g in expected.items() if g == "rest"]
    assert all(sent[c] == ["Subject B"] for c in rest)
    assert all(len(s) == 1 for s in sent.values())  # nobody twice
    assert not any(c in sent for c, g in expected.items() if g == "holdout")
    progress = campaigns.progress("news")
    assert progress is not None and progress.holdout == len(holdout)
    assert progress.recipients == len(sent) == 400 - len(holdout)
    assert progress.as_dict()["ab_test"]["winner"] == "b"


def test_a_holdout_without_a_test_gets_nothing_and_the_report_gives_its_lift(
    settings: Settings, clock: VirtualClock
) -> None:
    from nudge.report_text import verdict_text
    from nudge.services.reporting import build_report

    sim = ab_sim(settings, clock, contacts=200)
    campaign = newsletter(holdout=25)
    held = {f"k{i:03d}" for i in range(200) if campaign.grouping()(f"k{i:03d}") == "holdout"}
    record = sim.container.campaigns.run(campaign)
    sim.run_until(clock.now() + timedelta(hours=1))

    assert record.status is CampaignStatus.SENT and 30 < len(held) < 70
    assert set(subjects(sim)) == {f"k{i:03d}" for i in range(200)} - held
    [verdict] = [v for v in build_report(sim.store).splits if v.flow_id == "campaign.news"]
    assert (verdict.runner_up, verdict.holdout_lift) == (None, None)  # no orders yet: no lift to give
    assert verdict_text(verdict) == "treated vs holdout: no conversions in the holdout yet"


def ab_started(settings: Settings, clock: VirtualClock, contacts: int) -> Simulation:
    """An A/B campaign with a 10 % holdout, its test's share resolved: the decision waits 4 h."""
    sim = ab_sim(settings, clock, contacts)
    sim.container.campaigns.create(newsletter(ab_test=AB, holdout=10))
    drain_pieces(sim)
    return sim


def test_ab_pieces_replayed_and_a_pause_across_the_decision_send_nothing_twice(
    settings: Settings, clock: VirtualClock
) -> None:
    sim = ab_started(settings, clock, contacts=120)
    campaigns = sim.container.campaigns
    campaigns.act("news", "pause")
    clock.advance(timedelta(hours=5))
    assert {o.status for o in drain_pieces(sim)} == {"stood_down"}  # the decision stands down while paused
    assert campaigns.get("news").winner is None  # type: ignore[union-attr]

    campaigns.act("news", "resume")  # queues the decision again (due: at once)
    decide = CampaignPiece("news", 0, 8, epoch=1, decide=True)
    assert campaigns.work(decide).status == "decided"
    assert campaigns.work(decide).status == "decided"  # replayed: the same winner, the rest's pieces again
    for body in sim.container.jobs.take():  # type: ignore[union-attr]
        campaigns.work(CampaignPiece.parse(body))  # two chains of the rest's pieces: one starts, one finds
    sim.run_until(clock.now() + timedelta(hours=1))

    assert campaigns.get("news").status is CampaignStatus.SENT  # type: ignore[union-attr]
    sent = [email.to for _, email in sim.mailer.sent]
    assert len(sent) == len(set(sent)) == 120 - campaigns.progress("news").holdout  # type: ignore[union-attr]


def pump(sim: Simulation, until: datetime, step: timedelta = timedelta(minutes=5)) -> None:
    """The sweep function and the worker on the virtual clock: each `step`, the pieces whose SQS delay is
    over are done, then the work due."""
    jobs: Any = sim.container.jobs
    pending: list[tuple[datetime, dict[str, Any]]] = []
    while sim.clock.now() < until:
        now = sim.clock.now()
        pending += [(now + delay, body) for body, delay in zip(jobs.items, jobs.delays, strict=True)]
        jobs.take()
        due, pending = [b for at, b in pending if at <= now], [(at, b) for at, b in pending if at > now]
        for body in due:
            sim.container.campaigns.work(CampaignPiece.parse(body))
        sim.run_until(now + step)
    for at, body in pending:  # what is still delayed stays on the queue for the next call
        jobs.put([body], delay=at - sim.clock.now())


ZONES = {"t": "Asia/Tokyo", "e": "Europe/Berlin", "n": "America/New_York", "l": "America/Los_Angeles"}


@pytest.mark.parametrize("schedule", ["local_time", "best_time"])
def test_an_ab_test_at_a_local_or_best_time_decides_after_the_last_zone_and_the_rest_goes_at_its_own_time(
    settings: Settings, schedule: str
) -> None:
    # 2026-03-08: the US moves to summer time at 02:00 that morning; Europe three weeks later.
    clock = VirtualClock(datetime(2026, 3, 7, 12, tzinfo=UTC))
    sim = Simulation(settings, clock)
    when = {"local_time": "09:00"} if schedule == "local_time" else {"best_time": True}
    campaign = newsletter(ab_test=AB, schedule={"date": "2026-03-08", **when})
    for zone, name in ZONES.items():
        for i in range(30):  # no history and no shop curve: a best time is 10:00, the default hour
            sim.store.save_contact(
                Contact(f"{zone}{i:02d}", email=f"{zone}{i:02d}@x.org", timezone=name, email_marketing=True), 0
            )
    group = campaign.grouping()
    sim.container.campaigns.create(campaign)
    pump(sim, datetime(2026, 3, 8, 23, tzinfo=UTC))
    for _ in range(12):  # b is clicked: it wins
        sim.store.count_step("campaign.news", "email_b", FeedbackKind.CLICK)
    for variant in ("a", "b"):
        for _ in range(12):
            sim.store.count_step("campaign.news", f"email_{variant}", FeedbackKind.DELIVERY)
    pump(sim, datetime(2026, 3, 10, 18, tzinfo=UTC))

    # By hand, at 09:00 (a best time: 10:00, an hour later) local. The test's share on the 8th: Tokyo (JST)
    # 00:00 UTC, Berlin (CET) 08:00, New York already on EDT 13:00, Los Angeles on PDT 16:00. The last
    # zone, UTC-12, reaches 09:00 (best: 23:00) at 21:00 UTC (11:00 on the 9th); the decision is 4 h later,
    # at 01:00 (15:00) on the 9th, and the rest go a minute later at the next 09:00 (10:00) still ahead
    # in their zone: Tokyo's on the 9th has passed (00:00 UTC; best: 01:00), so the 10th.
    hour = 0 if schedule == "local_time" else 1
    test_day = {"t": "2026-03-08 00:00", "e": "2026-03-08 08:00", "n": "2026-03-08 13:00", "l": "2026-03-08 16:00"}
    rest_day = {"t": "2026-03-10 00:00", "e": "2026-03-09 08:00", "n": "2026-03-09 13:00", "l": "2026-03-09 16:00"}
    if schedule == "best_time":  # decided at 15:00 on the 9th: Berlin's 10:00 (09:00) and New York's (14:00) passed
        rest_day = {**rest_day, "e": "2026-03-10 08:00", "n": "2026-03-10 13:00"}
    expected = {}
    for contact_id in (f"{zone}{i:02d}" for zone in ZONES for i in range(30)):
        g, zone = group(contact_id), contact_id[0]
        moment = datetime.fromisoformat((test_day if g in "ab" else rest_day)[zone]) + timedelta(hours=hour)
        subject = f"Subject {g.upper()}" if g in "ab" else "Subject B"
        expected[contact_id] = [(moment.strftime("%Y-%m-%d %H:%M"), subject)]
    found: dict[str, list[tuple[str, str]]] = {}
    for _, email in sim.mailer.sent:
        found.setdefault(email.to.split("@")[0], []).append((email.date.strftime("%Y-%m-%d %H:%M"), email.subject))
    assert set(map(group, expected)) == {"a", "b", "rest"}
    assert found == expected
    record = sim.container.campaigns.get("news")
    assert record is not None and record.winner == "b" and record.status is CampaignStatus.SENT
    assert campaign.decide_at(datetime(2026, 3, 7, tzinfo=UTC)) == datetime(2026, 3, 9, 1 + 14 * hour, tzinfo=UTC)


def test_the_benchs_throughput_is_sends_over_the_rate_times_the_span() -> None:
    from nudge.local.campaign_bench import throughput_line

    # 3,360 sends in 300 s at 14/s: 11.2/s, 80% of the rate
    assert throughput_line(3360, 300, 14) == (
        "  throughput: 3,360 sends in 300 s of virtual time at 14/s: 11.2/s, 80.0% of the SES rate "
        "(flows keep priority and a reserve; the campaign takes what they leave)"
    )
    assert "0.0% of the SES rate" in throughput_line(0, 0, 14)


def test_a_campaign_uses_what_flows_leave_of_the_rate_and_a_flows_send_still_goes_out_at_once(
    settings: Settings, clock: VirtualClock
) -> None:
    from nudge.local.campaign_bench import drive
    from nudge.services.throttle import SPARE_WITHIN
    from tests.factories import subscribed

    # Given 1,200 consenting contacts and an SES quota of 2 a second (10 minutes for all of them at the quota)
    sim = Simulation(settings.model_copy(update={"ses_max_send_rate": 2}), clock)
    for i in range(1200):
        sim.store.save_contact(Contact(f"q{i:04d}", email=f"q{i}@x.example", email_marketing=True), 0)
    start = clock.now()
    sim.container.campaigns.create(newsletter())

    # When the campaign runs on the virtual clock, its pieces at their SQS delays, and a contact subscribes
    # in its fifth minute (the welcome series' first email is due at once)
    arrives = start + timedelta(minutes=4, seconds=30)
    welcome = {"id": "late", "email": "late@example.com", "email_marketing": True}
    drive(sim, start + timedelta(minutes=30), [(arrives, lambda: sim.send(subscribed("sub_late", welcome)))])

    # Then every recipient got the newsletter once, within 10 % of 1,200 / 2 s: at least 90 % of the quota
    messages = [m for cid in sim.store.contacts for m in sim.store.messages_for(cid)]
    campaign = [m for m in messages if m.flow_id == "campaign.news" and m.status is MessageStatus.SENT]
    assert len(campaign) == len({m.contact_id for m in campaign}) == 1200
    last = max(m.sent_at for m in campaign if m.sent_at is not None)
    assert (last - start).total_seconds() <= 1200 / 2 / 0.9
    # And the flow's send went out within the campaign's look-ahead of falling due, not behind a minute of it
    (welcomed,) = [m for m in messages if m.contact_id == "late" and m.flow_id != "campaign.news"]
    assert welcomed.status is MessageStatus.SENT and welcomed.sent_at is not None
    assert welcomed.sent_at - arrives <= SPARE_WITHIN + timedelta(seconds=1)


def test_a_campaigns_utm_parameters_override_the_accounts_on_every_link(sim: Simulation) -> None:
    utm = {"utm_campaign": "black-friday", "utm_source": "newsletter"}
    email = {"template": "campaigns/newsletter", "subject": "Hi", "utm": utm}

    sim.container.campaigns.run(newsletter(email=email))
    sim.run_until(START + timedelta(minutes=2))

    (_, sent), *_ = sim.mailer.sent
    assert "utm_campaign=black-friday" in sent.html and "utm_source=newsletter" in sent.html
    assert "utm_medium=email" in sent.html and "utm_content=email" in sent.html  # the rest stay
    assert "utm_campaign=campaign.news" not in sent.html and "utm_campaign=black-friday" in sent.text
    with pytest.raises(ValueError, match="utm: 'ref' is not one of"):
        newsletter(email={**email, "utm": {"ref": "x"}})


def test_two_campaigns_at_once_share_the_rate_without_starting_more_than_it_sends(
    settings: Settings, clock: VirtualClock
) -> None:
    from nudge.local.campaign_bench import drive

    # Given 1,200 consenting contacts at an SES quota of 2 a second, half tagged for each of two campaigns
    sim = Simulation(settings.model_copy(update={"ses_max_send_rate": 2}), clock)
    for i in range(1200):
        tag = "a" if i % 2 else "b"
        sim.store.save_contact(Contact(f"q{i:04d}", email=f"q{i}@x.example", email_marketing=True, tags=(tag,)), 0)
    start = clock.now()
    queue = sim.container.queue
    # When both are posted at once and run on the virtual clock
    for name in ("a", "b"):
        sim.container.campaigns.create(newsletter(id=f"news_{name}", audience={"tags": [name]}))
    drive(sim, start + timedelta(minutes=30))

    # Then everyone got one newsletter, within 10 % of 1,200 / 2 s (both together use >= 90 % of the rate)
    messages = [m for cid in sim.store.contacts for m in sim.store.messages_for(cid)]
    sent = [m for m in messages if m.status is MessageStatus.SENT]
    assert len(sent) == len({m.contact_id for m in sent}) == 1200
    last = max(m.sent_at for m in sent if m.sent_at is not None)
    assert (last - start).total_seconds() <= 1200 / 2 / 0.9
    # and each paced on its half: when each took the whole budget, together they started twice what the
    # rate sends, and the sends turned away polled every 2-4 s: 64,000 looks again; now fewer than one a send
    assert queue.sent - 1200 < 1200  # type: ignore[attr-defined]


def test_a_campaign_send_turned_away_again_and_again_backs_off_to_half_a_minute() -> None:
    from nudge.services.throttle import SPARE_BACKOFF_MAX, SPARE_WITHIN, spare_retry

    # the first look again: 2-4 s, spread by message; then as long again as it has waited, up to 30 s more
    firsts = {spare_retry(f"m{i}") for i in range(50)}
    assert min(firsts) >= SPARE_WITHIN and max(firsts) < 2 * SPARE_WITHIN and len(firsts) > 10
    waited, looks = timedelta(0), 0
    while waited < timedelta(minutes=5):
        waited += spare_retry("m1", waited)
        looks += 1
    assert looks <= 14  # polling every 2-4 s: 100 looks in five minutes
    assert spare_retry("m1", timedelta(hours=1)) < SPARE_BACKOFF_MAX + 2 * SPARE_WITHIN


def test_a_copy_of_a_piece_whose_continuation_is_queued_stands_down(settings: Settings, clock: VirtualClock) -> None:
    sim = Simulation(settings.model_copy(update={"ses_max_send_rate": 1}), clock)
    for i in range(200):
        sim.store.save_contact(Contact(f"p{i:03d}", email=f"p{i}@x.example", email_marketing=True), 0)
    campaigns = sim.container.campaigns
    campaigns.create(newsletter())
    sim.container.jobs.take()  # type: ignore[union-attr]

    first = campaigns.work(CampaignPiece("news", 0, 8))
    copy = campaigns.work(CampaignPiece("news", 0, 8))  # SQS delivers the piece twice

    assert first.started == 8 and len(first.follow) == 1  # a minute's share, then its continuation
    assert copy.status == "stood_down" and copy.follow == [] and copy.contacts == 0
    assert len(sim.container.jobs.items) == 1  # type: ignore[union-attr]  # one chain for the segment


def test_the_html_report_details_each_campaign_its_flow_drawn_and_its_ab_decision(
    settings: Settings, clock: VirtualClock
) -> None:
    from nudge.cli.main import _print_report, console
    from nudge.report_html import render
    from nudge.report_text import campaign_words
    from nudge.services.reporting import build_report

    sim = ab_started(settings, clock, contacts=100)
    sim.run_until(clock.now() + timedelta(minutes=30))
    for variant, clicks in (("a", 0), ("b", 30)):
        for _ in range(40):
            sim.store.count_step("campaign.news", f"email_{variant}", FeedbackKind.DELIVERY)
        for _ in range(clicks):
            sim.store.count_step("campaign.news", f"email_{variant}", FeedbackKind.CLICK)
    clock.advance(timedelta(hours=4))
    drain_pieces(sim)
    sim.run_until(clock.now() + timedelta(hours=1))

    report = build_report(sim.store)  # type: ignore[arg-type]
    page = render(report, [], generated_at=clock.now(), window="5d")
    # By hand: a 0 of 40, b 30 of 40: pooled 30 / 80 = 0.375, se = sqrt(0.375 × 0.625 × (1/40 + 1/40)) = 0.10825,
    # z = 0.75 / 0.10825 = 6.93, p = erfc(6.93 / √2) ≈ 4e-12
    ab = (
        "A/B on click rate: b went to the rest "
        "(a 0.0% of 40, b 75.0% of 40 delivered; z=6.93, p=0.0000, significant at 95%)"
    )
    assert "<h2>News (campaign news)</h2>" in page
    assert '<p class="rules">campaign · sent · sent at once · to every contact · holdout 10%</p>' in page
    assert f'<p class="note">{ab}</p>' in page
    assert all(f'data-step="{step}"' in page for step in ("ab", "email_a", "email_b", "done"))  # drawn, not a table
    assert "No flow file with this id" not in page
    with console.capture() as captured:
        _print_report(report, "5d")
    assert f"campaign.news · {ab}" in captured.get()

    later = newsletter(ab_test=AB, schedule={"date": "2026-11-10", "local_time": "09:00"}, audience={"tags": ["vip"]})
    document = {"definition": dump(later, mode="json"), "status": "scheduled"}
    assert campaign_words(document) == (
        "News (campaign news)",
        "campaign · scheduled · sent at 09:00 local on 2026-11-10 · to #vip",
        "A/B on click rate: 2 variants on 20% of the audience; the winner is chosen 4h after the last zone's send",
    )
