"""SES opens and clicks become engagement on the contact: the sunset flow sees a reader and waits.

Issue 14: a contact who opened and clicked the welcome mails was asked "Should we stop writing?" at day
90 and unsubscribed at day 97, because opens and clicks were recorded but never reached the flows.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from nudge.clocks import VirtualClock
from nudge.domain.feedback import DeliveryFeedback, FeedbackKind
from nudge.domain.model import MessageStatus
from nudge.domain.validation import validate
from nudge.local.simulation import Simulation
from nudge.services.inputs import ContactIn, EventIn
from nudge.settings import Settings
from tests.conftest import START
from tests.factories import contact


@pytest.fixture
def sim(settings: Settings, clock: VirtualClock) -> Simulation:
    return Simulation(settings, clock)


def _subscribe_and_read(sim: Simulation, kind: FeedbackKind, *, machine: bool = False) -> str:
    """Xia subscribes; on day 30 SES reports the welcome email opened (or clicked). Her contact id."""
    who = contact("xia")
    sim.container.ingest.ingest(
        validate(EventIn, {"id": "s1", "type": "subscribed", "contact": who, "properties": {}}).to_event(
            sim.clock.now()
        )
    )
    sim.run_until(START + timedelta(days=30))
    [welcome] = [
        m for m in sim.store.messages.values() if m.step_id == "welcome_email" and m.status is MessageStatus.SENT
    ]
    assert welcome.provider_id is not None
    outcome = sim.container.feedback.record(
        DeliveryFeedback(kind=kind, provider_id=welcome.provider_id, at=sim.clock.now(), machine=machine)
    )
    assert outcome.status == "recorded"
    return validate(ContactIn, who).to_patch().contact_id


def _asked_on(sim: Simulation) -> list[int]:
    return sorted(
        (m.sent_at - START).days
        for m in sim.store.messages.values()
        if m.step_id == "still_interested" and m.sent_at is not None
    )


@pytest.mark.parametrize("kind", [FeedbackKind.OPEN, FeedbackKind.CLICK])
def test_an_open_or_a_click_restarts_the_sunset_clock(sim: Simulation, kind: FeedbackKind) -> None:
    contact_id = _subscribe_and_read(sim, kind)

    sim.run_until(START + timedelta(days=110))

    # Not asked at day 90, and still subscribed at day 97; asked 90 days after the open instead
    assert _asked_on(sim) == []
    assert sim.store.contacts[contact_id].email_marketing is True
    sim.run_until(START + timedelta(days=125))
    assert _asked_on(sim) == [120]
    aggregates = sim.store.contacts[contact_id].aggregates
    assert (aggregates.last_open_at if kind is FeedbackKind.OPEN else aggregates.last_click_at) == START + timedelta(
        days=30
    )


def test_a_redelivered_open_is_one_engagement(sim: Simulation) -> None:
    contact_id = _subscribe_and_read(sim, FeedbackKind.OPEN)
    [welcome] = [m for m in sim.store.messages.values() if m.step_id == "welcome_email"]
    assert welcome.provider_id is not None
    events_before = len(sim.store.events)
    again = sim.container.feedback.record(DeliveryFeedback(FeedbackKind.OPEN, welcome.provider_id, sim.clock.now()))
    assert again.status == "duplicate"
    assert len(sim.store.events) == events_before
    assert sim.store.contacts[contact_id].aggregates.last_open_at == START + timedelta(days=30)


def test_an_apple_mail_privacy_prefetch_is_not_a_reader(sim: Simulation) -> None:
    contact_id = _subscribe_and_read(sim, FeedbackKind.OPEN, machine=True)

    sim.run_until(START + timedelta(days=100))

    # The machine open is recorded (flow metrics count it), but sunset asks at day 90 as if none came
    assert _asked_on(sim) == [90]
    stored = sim.store.contacts[contact_id]
    assert stored.email_marketing is False and stored.aggregates.last_open_at is None
