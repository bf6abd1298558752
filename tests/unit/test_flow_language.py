"""Each trigger, rule and step kind of the flow language, on the in-memory adapters."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from nudge import signing
from nudge.clocks import VirtualClock
from nudge.domain.engine import choose_variant
from nudge.domain.flows import SplitStep
from nudge.domain.model import Channel, RunStatus
from nudge.domain.suppression import address_key
from nudge.domain.validation import validate
from nudge.services.inputs import ContactIn, EventIn
from nudge.settings import Settings
from tests.conftest import START
from tests.factories import contact
from tests.flowkit import EMAIL, at, flows_dir, reasons, sent, simulation


def event(event_id: str, type_: str, who: dict | None = None, **properties: object) -> dict:
    return {"id": event_id, "type": type_, "contact": who or contact("bob"), "properties": properties}


def test_trigger_filter_and_where_select_events(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    directory = flows_dir(
        tmp_path,
        f"""
        id: big_spender
        name: Big spender
        trigger:
          event: order_placed
          where: {{currency: EUR}}
          filter: "event.total > 100 and contact.email_marketing"
        steps:
          - id: hello
            {EMAIL}
            subject: "Merci"
        """,
    )
    sim = simulation(settings, clock, directory)

    small = sim.send(event("e1", "order_placed", total=50, currency="EUR"))
    dollars = sim.send(event("e2", "order_placed", total=500, currency="USD"))
    big = sim.send(event("e3", "order_placed", total=500, currency="EUR"))
    broken = sim.send(event("e4", "order_placed", currency="EUR"))  # no total: the filter fails -> no match

    assert [small.started, dollars.started, big.started, broken.started] == [[], [], ["big_spender"], []]


def test_a_trigger_may_list_several_event_types(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    directory = flows_dir(
        tmp_path,
        f"""
        id: any_engagement
        name: Any
        trigger: {{event: [email_opened, email_clicked]}}
        steps:
          - id: hello
            {EMAIL}
            subject: "Hi"
        """,
    )
    sim = simulation(settings, clock, directory)

    assert sim.send(event("e1", "email_clicked")).started == ["any_engagement"]


@pytest.mark.parametrize(
    ("reentry", "later", "starts"),
    [
        ("always", timedelta(days=1), 2),
        ("never", timedelta(days=400), 1),
        ("30d", timedelta(days=10), 1),
        ("30d", timedelta(days=31), 2),
    ],
)
def test_reentry_rules(
    settings: Settings, clock: VirtualClock, tmp_path: Path, reentry: str, later: timedelta, starts: int
) -> None:
    directory = flows_dir(
        tmp_path,
        f"""
        id: once
        name: Once
        trigger: {{event: ping}}
        entry: {{reentry: "{reentry}"}}
        steps:
          - id: hello
            {EMAIL}
            subject: "Hi"
        """,
    )
    sim = simulation(settings, clock, directory)

    sim.send(event("e1", "ping"))
    clock.advance(later)
    sim.send(event("e2", "ping"))

    assert len(sim.store.runs) == starts


def test_exit_filter_can_refer_to_the_trigger(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    directory = flows_dir(
        tmp_path,
        f"""
        id: watch
        name: Watch
        trigger: {{event: product_viewed}}
        exit:
          - event: order_placed
            filter: "event.lines | selectattr('product_id', 'equalto', trigger.product_id) | list | length > 0"
        steps:
          - {{id: wait, type: wait, duration: 1d}}
          - id: hello
            {EMAIL}
            subject: "Hi"
        """,
    )
    sim = simulation(settings, clock, directory)
    sim.send(event("e1", "product_viewed", product_id="p1"))

    other = sim.send(event("e2", "order_placed", lines=[{"product_id": "p2"}]))
    same = sim.send(event("e3", "order_placed", lines=[{"product_id": "p1"}]))

    assert (other.exited, same.exited) == ([], ["watch"])


def test_a_goal_is_recorded_as_the_conversion_and_may_leave_the_run_going(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    directory = flows_dir(
        tmp_path,
        f"""
        id: nurture
        name: Nurture
        trigger: {{event: subscribed}}
        goal: {{event: order_placed, exit: false}}
        steps:
          - {{id: wait, type: wait, duration: 2d}}
          - id: hello
            {EMAIL}
            subject: "Still here"
        """,
    )
    sim = simulation(settings, clock, directory)
    sim.send(event("e1", "subscribed"))
    clock.advance(timedelta(hours=5))

    outcome = sim.send(event("e2", "order_placed", total=80.0))
    sim.run_until(START + timedelta(days=3))

    assert (outcome.converted, outcome.exited) == (["nurture"], [])
    [run] = sim.store.runs.values()
    assert run.converted_at == START + timedelta(hours=5)
    assert run.conversion == {"event_id": "e2", "type": "order_placed", "value": 80.0}
    assert [s for _, _, s in sent(sim)] == ["Still here"]


def test_wait_duration_may_come_from_the_event(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    directory = flows_dir(
        tmp_path,
        f"""
        id: refill
        name: Refill
        trigger: {{event: order_placed}}
        steps:
          - {{id: wait, type: wait, duration: "{{{{ event.days }}}}d"}}
          - id: hello
            {EMAIL}
            subject: "Refill"
        """,
    )
    sim = simulation(settings, clock, directory)
    sim.send(event("e1", "order_placed", days=10))
    sim.send(event("e2", "order_placed", who=contact("eve"), days="soon"))

    sim.run_until(START + timedelta(days=30))

    assert sent(sim) == [("2026-11-12 09:00", "bob@example.com", "Refill")]
    [broken] = [r for r in sim.store.runs.values() if r.status is RunStatus.EXITED]
    assert broken.exit_reason is not None and "'soond' is not a duration" in broken.exit_reason


def test_wait_until_a_local_time_on_given_weekdays(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    directory = flows_dir(
        tmp_path,
        f"""
        id: weekday
        name: Weekday
        trigger: {{event: ping}}
        steps:
          - {{id: until, type: wait_until, time: "08:30", weekdays: [sat]}}
          - id: hello
            {EMAIL}
            subject: "Weekend"
        """,
    )
    sim = simulation(settings, clock, directory)
    sim.send(event("e1", "ping", who=contact("bob", timezone="America/New_York")))

    sim.run_until(START + timedelta(days=14))

    # Monday 2026-11-02 -> Saturday 2026-11-07 08:30 in New York (EST, UTC-5)
    assert sent(sim) == [("2026-11-07 13:30", "bob@example.com", "Weekend")]


def test_wait_until_a_date_with_offset_and_if_past(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    directory = flows_dir(
        tmp_path,
        f"""
        id: launch
        name: Launch
        trigger: {{event: joined}}
        steps:
          - {{id: until_teaser, type: wait_until, date: "{{{{ event.launch }}}}", offset: -7d, time: "10:00",
              if_past: until_launch}}
          - id: teaser
            {EMAIL}
            subject: "Teaser"
          - {{id: until_launch, type: wait_until, date: "{{{{ event.launch }}}}", time: "10:00"}}
          - id: launch
            {EMAIL}
            subject: "Launch"
        """,
    )
    sim = simulation(settings, clock, directory)
    sim.send(event("e1", "joined", who=contact("early", timezone="Europe/Paris"), launch="2026-11-20"))
    sim.send(event("e2", "joined", who=contact("late", timezone="Europe/Paris"), launch="2026-11-05"))

    sim.run_until(START + timedelta(days=30))

    assert sent(sim) == [
        ("2026-11-05 09:00", "late@example.com", "Launch"),
        ("2026-11-13 09:00", "early@example.com", "Teaser"),
        ("2026-11-20 09:00", "early@example.com", "Launch"),
    ]
    late_run = next(
        r for r in sim.store.runs.values() if "late" not in r.run_id and r.trigger["launch"] == "2026-11-05"
    )
    assert any(note["action"] == "past" and note["step"] == "until_teaser" for note in late_run.journal)


def test_branch_goes_to_then_or_else(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    directory = flows_dir(
        tmp_path,
        f"""
        id: branchy
        name: Branchy
        trigger: {{event: ping}}
        steps:
          - {{id: vip, type: branch, if: "'vip' in contact.tags or event.total > 100", then: for_vips}}
          - id: for_everyone
            {EMAIL}
            subject: "Everyone"
            next: done
          - id: for_vips
            {EMAIL}
            subject: "VIP"
          - {{id: done, type: end}}
        """,
    )
    sim = simulation(settings, clock, directory)

    sim.send(event("e1", "ping", who=contact("small"), total=10))
    sim.send(event("e2", "ping", who=contact("big"), total=500))

    assert sorted((to, s) for _, to, s in sent(sim)) == [("big@example.com", "VIP"), ("small@example.com", "Everyone")]


def test_a_condition_that_fails_ends_the_run_with_the_reason(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    directory = flows_dir(
        tmp_path,
        f"""
        id: typo
        name: Typo
        trigger: {{event: ping}}
        steps:
          - {{id: check, type: branch, if: "event.totl > 100", then: hello}}
          - id: hello
            {EMAIL}
            subject: "Hi"
        """,
    )
    sim = simulation(settings, clock, directory)

    sim.send(event("e1", "ping", total=10))

    [run] = sim.store.runs.values()
    assert run.status is RunStatus.EXITED
    assert run.exit_reason is not None and run.exit_reason.startswith("error:check:") and "totl" in run.exit_reason
    assert sim.mailer.sent == []


def test_split_is_deterministic_weighted_and_holds_out(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    directory = flows_dir(
        tmp_path,
        f"""
        id: ab
        name: AB
        trigger: {{event: ping}}
        entry: {{reentry: always}}
        steps:
          - id: test
            type: split
            holdout: 10
            variants:
              - {{name: a, weight: 3, next: email_a}}
              - {{name: b, weight: 1, next: email_b}}
          - id: email_a
            {EMAIL}
            subject: "A"
            next: done
          - id: email_b
            {EMAIL}
            subject: "B"
          - {{id: done, type: end}}
        """,
    )
    sim = simulation(settings, clock, directory)
    for i in range(400):
        sim.send(event(f"e{i}", "ping", who=contact(f"c{i}")))
    sim.run_until(clock.now() + timedelta(minutes=1))  # 359 emails at 14 a second

    variants = [run.variants["test"] for run in sim.store.runs.values()]
    counts = {name: variants.count(name) for name in ("a", "b", "holdout")}
    assert sum(counts.values()) == 400
    assert 30 <= counts["holdout"] <= 50 and 240 <= counts["a"] <= 300 and 70 <= counts["b"] <= 110
    assert len(sim.mailer.sent) == 400 - counts["holdout"]
    step = validate(
        SplitStep,
        {"id": "test", "type": "split", "holdout": 10, "variants": [{"name": "a", "weight": 3}, {"name": "b"}]},
    )
    assert {choose_variant("ab", step, "c7")[0] for _ in range(5)} == {choose_variant("ab", step, "c7")[0]}
    b_message = next(m for m in sim.store.messages.values() if m.step_id == "email_b")
    assert b_message.variant == "test:b"


def test_update_profile_sets_tags_properties_and_consent(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    directory = flows_dir(
        tmp_path,
        """
        id: tagger
        name: Tagger
        trigger: {event: ping}
        steps:
          - id: tag
            type: update_profile
            set: {tier: gold, last_total: "{{ event.total }}"}
            unset: [old]
            add_tags: [vip, gold]
            remove_tags: [prospect]
            sms_marketing: false
          - {id: check, type: branch, if: "'vip' in contact.tags", then: hello}
          - {id: done, type: end}
          - id: hello
            type: email
            template: welcome/welcome
            subject: "Gold {{ contact.properties.tier }}"
        """,
    )
    sim = simulation(settings, clock, directory)
    sim.send(event("e0", "nothing", who=contact("bob", properties={"old": 1})))

    sim.send(event("e1", "ping", total=99))

    [stored] = sim.store.contacts.values()
    assert stored.properties == {"tier": "gold", "last_total": "99"}
    assert stored.tags == ("vip", "gold")
    assert stored.sms_marketing is False
    assert [s for _, _, s in sent(sim)] == ["Gold gold"]


def test_a_consent_change_by_update_profile_is_recorded_with_the_flow_as_its_source(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    directory = flows_dir(
        tmp_path,
        """
        id: quiet
        name: Quiet
        trigger: {event: ping}
        steps:
          - {id: stop_texts, type: update_profile, sms_marketing: false, email_marketing: true}
          - {id: done, type: end}
        """,
    )
    sim = simulation(settings, clock, directory)
    sim.send(event("e0", "nothing", who=contact("bob", phone="+14155550100", sms_marketing=True)))

    sim.send(event("e1", "ping"))

    [stored] = sim.store.contacts.values()
    sms_trail = sim.store.consent_records(address_key(Channel.SMS, "+14155550100"))
    assert [(r.granted, r.source) for r in sms_trail] == [(True, "event:nothing:e0"), (False, "flow:quiet")]
    # email consent did not change (already granted): nothing more in its trail
    assert [r.source for r in sim.store.consent_records(address_key(Channel.EMAIL, "bob@example.com"))] == [
        "event:nothing:e0"
    ]
    assert stored.sms_marketing is False


def test_webhook_posts_a_signed_body_and_retries(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    directory = flows_dir(
        tmp_path,
        """
        id: hook
        name: Hook
        trigger: {event: ping}
        steps:
          - id: tell_crm
            type: webhook
            url: https://crm.example/hooks/nudge
            body: {email: "{{ contact.email }}", total: "{{ event.total }}", fixed: 1}
            retries: 2
        """,
    )
    sim = simulation(settings, clock, directory)
    webhooks = sim.container.webhook_sender
    webhooks.fail_next = 2  # type: ignore[attr-defined]

    sim.send(event("e1", "ping", total=5))

    [(url, body, headers)] = webhooks.posts  # type: ignore[attr-defined]
    assert url == "https://crm.example/hooks/nudge"
    assert json.loads(body) == {"email": "bob@example.com", "total": "5", "fixed": 1}
    signing.verify("test-signing-key", headers["X-Nudge-Signature"], body, clock.now())
    [record] = sim.store.messages.values()
    assert (record.status.value, record.provider_id) == ("sent", "http-200")


def test_webhook_that_keeps_failing_is_recorded_and_the_run_goes_on(
    settings: Settings, clock: VirtualClock, tmp_path: Path
) -> None:
    directory = flows_dir(
        tmp_path,
        f"""
        id: hook
        name: Hook
        trigger: {{event: ping}}
        steps:
          - {{id: tell_crm, type: webhook, url: "https://crm.example/x", retries: 1}}
          - id: hello
            {EMAIL}
            subject: "Hi"
        """,
    )
    sim = simulation(settings, clock, directory)
    sim.container.webhook_sender.status = 500  # type: ignore[attr-defined]

    sim.send(event("e1", "ping"))

    assert reasons(sim)["tell_crm"] == "HTTP 500"
    assert len(sim.container.webhook_sender.posts) == 2  # type: ignore[attr-defined]
    assert [s for _, _, s in sent(sim)] == ["Hi"]


def test_api_enrollment_starts_any_flow_once(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    directory = flows_dir(
        tmp_path,
        f"""
        id: manual
        name: Manual
        trigger: {{type: api}}
        entry: {{reentry: never}}
        steps:
          - id: hello
            {EMAIL}
            subject: "Enrolled"
        """,
    )
    sim = simulation(settings, clock, directory)

    def enroll(event_id: str) -> list[str]:
        body = validate(EventIn, event(event_id, "enrolled")).to_event(clock.now())
        return sim.container.ingest.enroll("manual", body).started

    assert (enroll("x1"), enroll("x2")) == (["manual"], [])
    assert sim.send(event("e3", "enrolled")).started == []  # an API-only flow never starts on events


BIRTHDAY = f"""
    id: bday
    name: Birthday
    trigger: {{type: date, date: contact.properties.birthday, time: "09:00"}}
    steps:
      - id: gift
        {EMAIL}
        subject: "Happy birthday"
    """


def test_date_trigger_fires_yearly_at_local_time(settings: Settings, clock: VirtualClock, tmp_path: Path) -> None:
    directory = flows_dir(tmp_path, BIRTHDAY)
    sim = simulation(settings, clock, directory)
    ann = validate(ContactIn, contact("ann", timezone="Asia/Tokyo", properties={"birthday": "1990-11-10"}))
    sim.container.ingest.identify(ann.to_patch())

    sim.run_until(at("2028-01-01T00:00:00+00:00"))

    assert sent(sim) == [
        ("2026-11-10 00:00", "ann@example.com", "Happy birthday"),  # 09:00 in Tokyo
        ("2027-11-10 00:00", "ann@example.com", "Happy birthday"),
    ]


def test_next_years_run_stored_by_an_attempt_that_died_before_arming_it_is_armed_by_the_retry(
    settings: Settings, clock: VirtualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = flows_dir(tmp_path, BIRTHDAY)
    sim = simulation(settings, clock, directory)
    ann = validate(ContactIn, contact("ann", properties={"birthday": "1990-11-10"}))
    sim.container.ingest.identify(ann.to_patch())
    sim.run_until(at("2026-11-09T00:00:00+00:00"))
    runs = sim.container.runs
    redrive = runs.redrive

    def dies_arming_next_year(run: Any, contact: Any = None) -> None:
        if run.due_at is not None and run.due_at.year == 2027:
            raise RuntimeError("the Lambda died after storing next year's run, before arming it")
        redrive(run, contact)

    # When this year's wake-up sends the gift and dies before next year's run is armed
    clock.set(at("2026-11-10T09:00:00+00:00"))
    [due] = sim.scheduler.pop_due(clock.now())
    monkeypatch.setattr(runs, "redrive", dies_arming_next_year)
    with pytest.raises(RuntimeError):
        runs.wake(due.wake_up)
    monkeypatch.setattr(runs, "redrive", redrive)
    # And the queue delivers the wake-up again: its run has ended, but next year's is stored with nothing pending
    assert runs.wake(due.wake_up).status == "inactive"

    # Then next year's run is armed all the same, and each birthday is wished once
    sim.run_until(at("2028-01-01T00:00:00+00:00"))
    assert sent(sim) == [
        ("2026-11-10 09:00", "ann@example.com", "Happy birthday"),
        ("2027-11-10 09:00", "ann@example.com", "Happy birthday"),
    ]


def test_a_birthday_run_stored_by_an_event_attempt_that_died_is_armed_all_the_same(
    settings: Settings, clock: VirtualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an event that gives Ann a birthday, whose first attempt dies just after storing her birthday run
    sim = simulation(settings, clock, flows_dir(tmp_path, BIRTHDAY))
    store = sim.store
    start_run = store.start_run

    def stores_then_dies(run: Any, expected: Any) -> Any:
        start_run(run, expected)
        raise RuntimeError("the Lambda died after storing the birthday run")

    body = event("e1", "subscribed", contact("ann", properties={"birthday": "1990-11-10"}))
    monkeypatch.setattr(store, "start_run", stores_then_dies)
    with pytest.raises(RuntimeError):
        sim.send(body)
    monkeypatch.setattr(store, "start_run", start_run)

    # When the storefront retries the event (its slot is taken now: the retry starts nothing)
    sim.send(body)

    # Then the run was armed before it was stored, and the gift goes out on the day, once
    sim.run_until(at("2026-11-11T00:00:00+00:00"))
    assert sent(sim)[-1] == ("2026-11-10 09:00", "ann@example.com", "Happy birthday")
    assert [s for s in sent(sim) if s[2] == "Happy birthday"] == [sent(sim)[-1]]


def test_loops_need_a_wait_and_targets_must_exist(tmp_path: Path) -> None:
    from nudge.flow_files import FlowFileError, load_flow

    loop = tmp_path / "loop.yaml"
    loop.write_text(
        "id: l\nname: L\ntrigger: {event: x}\nsteps:\n"
        "  - {id: a, type: branch, if: 'true', then: b}\n  - {id: b, type: update_profile, next: a}\n"
    )
    dangling = tmp_path / "dangling.yaml"
    dangling.write_text(
        "id: d\nname: D\ntrigger: {event: x}\nsteps:\n  - {id: a, type: update_profile, next: nowhere}\n"
    )
    orphan = tmp_path / "orphan.yaml"
    orphan.write_text("id: o\nname: O\ntrigger: {event: x}\nsteps:\n  - {id: a, type: end}\n  - {id: b, type: end}\n")

    ends_and_goes_on = tmp_path / "ends.yaml"
    ends_and_goes_on.write_text("id: e\nname: E\ntrigger: {event: x}\nsteps:\n  - {id: a, type: end, next: a}\n")

    for path, message in (
        (loop, "without a wait"),
        (dangling, "'nowhere', which is not a step"),
        (orphan, "can never run"),
        (ends_and_goes_on, "an end step has no next"),
    ):
        with pytest.raises(FlowFileError, match=message):
            load_flow(path)
