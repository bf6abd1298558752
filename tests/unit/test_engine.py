"""The engine and services over in-memory adapters: runs start, wait, send, exit and complete."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nudge.clocks import VirtualClock
from nudge.domain.model import MessageStatus, RunStatus
from nudge.domain.validation import validate
from nudge.local.simulation import Simulation
from nudge.ports import StepWakeUp
from nudge.services.inputs import EventIn
from nudge.settings import Settings
from tests.conftest import START
from tests.factories import checkout_started, contact, order_placed, subscribed


@pytest.fixture
def sim(settings: Settings, clock: VirtualClock) -> Simulation:
    return Simulation(settings, clock)


def sent_subjects(sim: Simulation) -> list[tuple[str, str, str]]:
    return [(e.date.isoformat(), e.to, e.subject) for _, e in sim.mailer.sent]


def test_abandoned_cart_sends_three_emails_and_one_sms_at_1h_24h_72h(sim: Simulation) -> None:
    who = contact("bob", phone="+14155550101", sms_marketing=True)
    sim.send(checkout_started("e1", "chk_1", who))

    sim.run_until(START + timedelta(days=7))

    assert sent_subjects(sim) == [
        ("2026-11-02T10:00:00+00:00", "bob@example.com", "You left something in your cart"),
        ("2026-11-03T09:00:00+00:00", "bob@example.com", "Bob, your cart is about to expire"),
        # The SMS waited for 08:00 in San Francisco (+1 415) on the 3rd, 16:00 UTC; the last call is 2 days on.
        ("2026-11-05T16:00:00+00:00", "bob@example.com", "Last call: your cart is still waiting"),
    ]
    assert [(s.to, s.text) for _, s in sim.texter.sent] == [
        (
            "+14155550101",
            "Linen & Clay: Bob, your cart is still waiting: https://shop.example/checkouts/chk_1 Reply STOP to opt out",
        )
    ]
    [run] = sim.store.runs.values()
    assert run.status is RunStatus.COMPLETED
    assert sim.scheduler.pending == {}


def test_order_for_the_same_checkout_exits_the_cart_flow(sim: Simulation) -> None:
    sim.send(checkout_started("e1", "chk_1"))
    sim.run_until(START + timedelta(hours=2))  # first reminder goes out
    outcome = sim.send(order_placed("e2", "chk_1"))

    sim.run_until(START + timedelta(days=7))

    assert outcome.exited == ["abandoned_cart"]
    assert outcome.converted == ["abandoned_cart"]
    assert "post_purchase" in outcome.started
    cart_subjects = [s for _, _, s in sent_subjects(sim) if "cart" in s]
    assert cart_subjects == ["You left something in your cart"]
    cart_run = next(r for r in sim.store.runs.values() if r.flow_id == "abandoned_cart")
    assert cart_run.status is RunStatus.EXITED
    assert cart_run.exit_reason == "goal:order_placed"
    assert cart_run.conversion == {"event_id": "e2", "type": "order_placed", "value": 42.0}


def test_an_order_for_another_checkout_ends_the_reminders_without_converting(sim: Simulation) -> None:
    # They bought through a new checkout (issue 12): no more reminders, but the cart did not convert
    sim.send(checkout_started("e1", "chk_1"))
    outcome = sim.send(order_placed("e2", "chk_OTHER"))

    assert (outcome.exited, outcome.converted) == (["abandoned_cart"], [])
    sim.run_until(START + timedelta(days=7))
    assert [s for _, _, s in sent_subjects(sim) if "cart" in s] == []


def test_the_same_event_id_twice_starts_one_run(sim: Simulation) -> None:
    first = sim.send(subscribed("e1"))
    second = sim.send(subscribed("e1"))

    assert first.started == ["sunset", "welcome"] and not first.duplicate
    assert second.duplicate and second.started == []
    assert len(sim.store.runs) == 2
    assert len(sim.mailer.sent) == 1


def test_a_property_named_type_does_not_change_which_flows_an_event_starts(sim: Simulation) -> None:
    # A storefront's checkout may carry its own `type` (a checkout kind); the event is still a checkout_started
    event = checkout_started("e1", "chk_1")
    event["properties"]["type"] = "express"

    outcome = sim.send(event)

    assert outcome.started == ["abandoned_cart"]
    [run] = sim.store.runs.values()
    assert run.trigger["type"] == "checkout_started"


def test_one_active_run_per_contact_and_flow(sim: Simulation) -> None:
    sim.send(checkout_started("e1", "chk_1"))
    again = sim.send(checkout_started("e2", "chk_2"))

    assert again.started == []
    assert len(sim.store.runs) == 1


def test_a_run_whose_first_step_is_a_fixed_wait_starts_past_it_with_its_wake_up_armed(sim: Simulation) -> None:
    # abandoned_cart opens with `wait_1h`: the run is stored as its first wake-up would have left it
    sim.send(checkout_started("e1", "chk_1"))

    [run] = sim.store.runs.values()
    assert (run.cursor, run.seq, run.due_at) == ("reminder_1", 1, START + timedelta(hours=1))
    # One one-time schedule, for that wake-up; no piece of work went through the queue
    assert [(p.at, p.wake_up.seq) for p in sim.scheduler.pending.values()] == [(START + timedelta(hours=1), 1)]
    assert sim.queue.items == [] and sim.settle() == 0

    sim.run_until(START + timedelta(hours=2))
    assert sent_subjects(sim) == [("2026-11-02T10:00:00+00:00", "bob@example.com", "You left something in your cart")]


def test_a_first_wait_that_reads_the_event_is_worked_out_by_the_first_wake_up(sim: Simulation) -> None:
    body = order_placed("e1", "chk_1")
    body["properties"]["lines"] = [{"title": "Coffee beans", "quantity": 1, "price": 18.0, "replenish_days": 30}]
    sim.clock.set(START)
    sim.container.ingest.ingest(validate(EventIn, body).to_event(START))

    run = next(r for r in sim.store.runs.values() if r.flow_id == "replenishment")
    assert (run.cursor, run.seq, run.due_at) == ("wait_until_low", 0, START)  # due at once, through the queue
    sim.settle()
    run = sim.store.get_run(run.contact_id, run.run_id)
    assert run is not None and (run.cursor, run.due_at) == ("reminder", START + timedelta(days=27))


def test_a_start_that_dies_before_its_wake_up_is_armed_is_armed_by_the_retry_at_the_stored_time(
    sim: Simulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a request that stored the run started past its wait, then died before arming the wake-up
    def dies(name: str, at: object, wake_up: object) -> bool:
        raise TimeoutError("the request died")

    with monkeypatch.context() as patched:
        patched.setattr(sim.scheduler, "schedule", dies)
        with pytest.raises(TimeoutError):
            sim.send(checkout_started("e1", "chk_1"))
    [run] = sim.store.runs.values()
    assert run.due_at == START + timedelta(hours=1) and sim.scheduler.pending == {}

    # When the storefront retries the webhook ten minutes later
    sim.clock.set(START + timedelta(minutes=10))
    sim.send(checkout_started("e1", "chk_1"))

    # Then the retry arms the stored run's wake-up at the stored time (not an hour after the retry), once
    assert [p.at for p in sim.scheduler.pending.values()] == [START + timedelta(hours=1)]
    sim.run_until(START + timedelta(hours=2))
    assert sent_subjects(sim) == [("2026-11-02T10:00:00+00:00", "bob@example.com", "You left something in your cart")]


def test_a_new_run_may_start_once_the_previous_one_ended(sim: Simulation) -> None:
    sim.send(checkout_started("e1", "chk_1"))
    sim.run_until(START + timedelta(days=4))  # completed
    again = sim.send(checkout_started("e2", "chk_2"))

    assert again.started == ["abandoned_cart"]


def test_a_step_fired_twice_sends_one_message(sim: Simulation) -> None:
    sim.send(checkout_started("e1", "chk_1"))
    [pending] = sim.scheduler.pending.values()
    sim.clock.set(pending.at)

    first = sim.container.runs.wake(pending.wake_up)
    second = sim.container.runs.wake(pending.wake_up)

    assert first.sent == ["reminder_1"]
    assert second.status == "stale" and second.sent == []
    assert len(sim.mailer.sent) == 1


def test_an_exited_run_sends_nothing_when_its_wake_up_fires(sim: Simulation) -> None:
    sim.send(checkout_started("e1", "chk_1"))
    [pending] = sim.scheduler.pending.values()
    sim.send(order_placed("e2", "chk_1", contact("bob", email_marketing=False)))
    sim.clock.set(pending.at)

    outcome = sim.container.runs.wake(pending.wake_up)  # Scheduler fired before the delete landed

    assert outcome.status == "inactive"
    assert [e.subject for _, e in sim.mailer.sent] == ["Thank you for your order #1001"]


def test_wake_up_for_an_unknown_run_is_ignored(sim: Simulation) -> None:
    outcome = sim.container.runs.wake(StepWakeUp(contact_id="nobody", run_id="r0", seq=1))
    assert outcome.status == "missing"


def test_marketing_without_consent_is_skipped_with_its_reason(sim: Simulation) -> None:
    sim.send(checkout_started("e1", "chk_1", contact("dan", email_marketing=False)))
    sim.run_until(START + timedelta(days=7))

    assert sim.mailer.sent == []
    reasons = {m.step_id: (m.status, m.reason) for m in sim.store.messages.values()}
    assert reasons["reminder_1"] == (MessageStatus.SKIPPED, "no_email_marketing_consent")
    assert reasons["reminder_2_sms"] == (MessageStatus.SKIPPED, "no_phone")


def test_transactional_email_goes_out_without_marketing_consent(sim: Simulation) -> None:
    sim.send(order_placed("e1", "chk_1", contact("erin", email_marketing=False)))
    sim.run_until(START + timedelta(days=20))

    assert [e.subject for _, e in sim.mailer.sent] == ["Thank you for your order #1001"]
    review = next(m for m in sim.store.messages.values() if m.step_id == "review_request")
    assert review.reason == "no_email_marketing_consent"


def test_waits_count_from_when_the_wake_up_was_due_not_when_it_fired(sim: Simulation) -> None:
    sim.send(checkout_started("e1", "chk_1"))
    sim.clock.set(START + timedelta(hours=1, minutes=3))  # Scheduler fired late
    [pending] = sim.scheduler.pop_due(sim.clock.now())

    sim.container.runs.wake(pending.wake_up)

    [following] = sim.scheduler.pending.values()
    assert following.at == START + timedelta(hours=24)


def test_a_broken_template_fails_that_message_and_the_run_goes_on(
    settings: Settings, clock: VirtualClock, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(settings.templates_dir, templates)
    (templates / "abandoned_cart" / "reminder_1.txt.j2").write_text("{{ event.no_such_property }}")
    sim = Simulation(settings.model_copy(update={"templates_dir": templates}), clock)
    sim.send(checkout_started("e1", "chk_1"))

    sim.run_until(START + timedelta(days=7))

    first = next(m for m in sim.store.messages.values() if m.step_id == "reminder_1")
    assert first.status is MessageStatus.FAILED
    assert "reminder_1.txt.j2" in (first.reason or "") and "no_such_property" in (first.reason or "")
    assert len(sim.mailer.sent) == 2  # reminders 2 and 3 still went out


def test_evolve_copies_with_the_changed_fields_only_and_refuses_an_unknown_one(sim: Simulation) -> None:
    """`evolve` compiles a copier per class and set of changed fields: each must copy every other field."""
    from dataclasses import fields

    from nudge.domain.model import Run, evolve

    sim.send(checkout_started("e1", "chk_1", contact("bob")))
    run = next(iter(sim.store.runs.values()))
    moved = evolve(run, seq=run.seq + 1, cursor="b")
    again = evolve(run, cursor="c", seq=run.seq + 2)  # the same fields named in another order
    assert (moved.seq, moved.cursor, again.seq, again.cursor) == (run.seq + 1, "b", run.seq + 2, "c")
    for field in fields(Run):
        if field.name not in {"seq", "cursor"}:
            assert getattr(moved, field.name) is getattr(run, field.name)
    assert evolve(run) == run and evolve(run) is not run
    with pytest.raises(TypeError, match="no field sequence"):
        evolve(run, seq=2, sequence=3)
    assert moved != run and run == next(iter(sim.store.runs.values()))


def test_an_event_decides_the_same_over_the_catalogs_index_as_over_every_flow(sim: Simulation) -> None:
    """engine.on_event with a FlowCatalog (flows by trigger type) and with the same flows as a plain list."""
    from nudge.domain import engine
    from nudge.domain.flows import FlowCatalog
    from nudge.domain.model import Event
    from nudge.services.inputs import EventIn

    catalog = sim.container.flows
    assert isinstance(catalog, FlowCatalog)
    now = sim.clock.now()
    sim.container.ingest.ingest(validate(EventIn, checkout_started("c1", "k1")).to_event(now))
    sim.settle()
    bob = sim.container.store.get_contact(validate(EventIn, checkout_started("c0", "k0")).to_event(now).contact_id)
    assert bob is not None
    slots = sim.container.store.flow_slots(bob.contact_id)
    active = sim.container.store.active_runs(bob.contact_id)
    assert active  # the cart's run: exits and goals are asked too
    bodies = [
        checkout_started("c2", "k2"),
        order_placed("o1", "k1"),
        subscribed("s1", contact()),
        {"id": "g1", "type": "segment_entered", "contact": contact(), "properties": {"segment": "lapsed"}},
        {"id": "g2", "type": "segment_entered", "contact": contact(), "properties": {"segment": "vip"}},
    ]
    kinds = set()
    for body in bodies:
        event: Event = validate(EventIn, body).to_event(now)
        indexed = engine.on_event(event, bob, slots, active, catalog, now)
        listed = engine.on_event(event, bob, slots, active, list(catalog), now)
        assert repr(indexed) == repr(listed), body["type"]
        kinds |= {type(decision).__name__ for decision in indexed}
    assert {"StartRun", "GoalReached"} <= kinds  # starts, and a goal (with its filter), were decided


def test_an_event_judges_active_runs_against_the_deployed_flows_only(sim: Simulation) -> None:
    """A campaign's run (its flow known to CampaignCatalog.get, which reads the campaign's document) is passed
    over by an event, as iterating the catalog passes it over: no lookup, no decision, no AWS read."""
    from nudge.domain import engine
    from nudge.domain.flows import Flow, FlowCatalog
    from nudge.domain.model import evolve
    from nudge.services.inputs import EventIn

    asked: list[str] = []

    class Campaigns(FlowCatalog):
        def get(self, flow_id: str) -> Flow | None:
            asked.append(flow_id)
            return super().get(flow_id)

    now = sim.clock.now()
    sim.container.ingest.ingest(validate(EventIn, checkout_started("c0", "k0")).to_event(now))
    event = validate(EventIn, order_placed("o0", "k0")).to_event(now)
    [cart] = sim.container.store.active_runs(event.contact_id)
    campaign_run = evolve(cart, run_id="r-campaign", flow_id="campaign.november")
    catalog = Campaigns(list(sim.container.flows))
    contact = sim.container.store.get_contact(event.contact_id)
    slots = sim.container.store.flow_slots(event.contact_id)

    decided = engine.on_event(event, contact, slots, [cart, campaign_run], catalog, now)

    assert asked == []
    about = {d.run.run_id for d in decided if hasattr(d, "run")}
    assert cart.run_id in about and campaign_run.run_id not in about  # the cart's goal, nothing of the campaign


def test_a_filter_is_given_the_contacts_view_only_when_it_reads_the_contact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the contact's view was most of what replenishment's filter cost on every order, and it reads
    only the order's lines: the view is built for a filter that names `contact`, and for no other."""
    from nudge.domain import engine, expressions
    from nudge.domain.model import Contact, ContactPatch, Event
    from nudge.flow_files import load_flow
    from tests.conftest import ROOT

    built: list[str] = []
    whole = Contact.template_view
    monkeypatch.setattr(Contact, "template_view", lambda self: built.append(self.contact_id) or whole(self))
    replenishment = load_flow(ROOT / "flows" / "replenishment.yaml")
    browse = load_flow(ROOT / "flows" / "browse_abandonment.yaml")
    assert expressions.names_read(replenishment.trigger.filter or "") == {"event"}  # type: ignore[union-attr]
    assert expressions.names_read("contact.tags | select('in', event.tags) | list") == {"contact", "event"}
    assert expressions.names_read("event.x ==") is None  # does not parse: the view is given, the filter fails

    def event(kind: str, properties: dict[str, object]) -> Event:
        return Event(f"e-{kind}", kind, ContactPatch(email="ann@example.com"), properties, START)

    ann = Contact(contact_id="ann", email="ann@example.com", email_marketing=True)
    coffee = event("order_placed", {"lines": [{"title": "Coffee", "replenish_days": 30}], "total": 12})
    started = engine.on_event(coffee, ann, {}, [], [replenishment], START)
    assert [type(d).__name__ for d in started] == ["StartRun"] and built == []
    viewed = event("product_viewed", {"product_id": "p1", "title": "Mug"})
    assert [type(d).__name__ for d in engine.on_event(viewed, ann, {}, [], [browse], START)] == ["StartRun"]
    assert built == ["ann"]
    unsubscribed = Contact(contact_id="bo", email="ann@example.com", email_marketing=False)
    assert engine.on_event(viewed, unsubscribed, {}, [], [browse], START) == []  # the contact is still read


def test_a_wake_up_that_sends_builds_the_contacts_view_once(sim: Simulation, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine builds the contact's view for the email's subject; delivering the email renders it with
    that same view (the contact did not change between the two), not with one built again."""
    from nudge.domain.model import Contact
    from nudge.services.inputs import EventIn

    sim.container.ingest.ingest(validate(EventIn, subscribed("s1")).to_event(sim.clock.now()))
    built: list[str] = []
    whole = Contact.template_view
    monkeypatch.setattr(Contact, "template_view", lambda self: built.append(self.contact_id) or whole(self))
    sim.settle()  # the welcome run's first wake-up: its first email
    assert [subject for _, _, subject in sent_subjects(sim)] == ["Welcome, Alice!"]
    assert len(built) == 1
