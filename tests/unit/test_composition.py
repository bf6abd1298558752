"""What every email carries, over the in-memory adapters: the contract with templates and the guarantees."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from nudge.clocks import VirtualClock
from nudge.domain.model import MessageStatus
from nudge.local.simulation import Simulation
from nudge.services.runs import RunService
from nudge.settings import Settings
from nudge.templating import TEMPLATE_VARIABLES, TemplateRenderer
from tests.conftest import START
from tests.factories import checkout_started, order_placed, subscribed


def test_templates_are_validated_against_exactly_the_variables_a_message_gets(
    settings: Settings, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `nudge validate` checks templates against TEMPLATE_VARIABLES; a message must get exactly those.
    seen: list[set[str]] = []
    original = TemplateRenderer.email

    def spy(self: TemplateRenderer, template: str, subject: str, context: dict[str, Any]) -> tuple[str, str, str]:
        seen.append(set(context))
        return original(self, template, subject, context)

    monkeypatch.setattr(TemplateRenderer, "email", spy)
    Simulation(settings, clock).send(subscribed("evt_1"))

    assert seen == [set(TEMPLATE_VARIABLES)]


def test_marketing_email_without_an_unsubscribe_link_is_never_sent(
    settings: Settings, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Simulation(settings.model_copy(update={"unsubscribe_base_url": None}), clock)
    made: list[str] = []
    original = RunService._prepare

    def spy(self: RunService, *args: Any) -> Any:
        made.append(args[2].message_id)
        return original(self, *args)

    monkeypatch.setattr(RunService, "_prepare", spy)
    sim.send(subscribed("evt_1"))

    [message] = sim.store.messages.values()
    assert message.status is MessageStatus.FAILED and "unsubscribe" in (message.reason or "")
    assert sim.mailer.sent == []
    # Failed by the commit that decided it (ADR 0020, Decision 8): made once, not again after the commit.
    assert made == [message.message_id]


def test_text_part_gets_the_footer_and_utm_tags_but_the_unsubscribe_link_stays_clean(
    settings: Settings, clock: VirtualClock
) -> None:
    sim = Simulation(settings, clock)
    sim.send(checkout_started("evt_1", "chk_1"))
    sim.run_until(START + timedelta(hours=1))

    [(_, email)] = sim.mailer.sent

    assert "https://shop.example/checkouts/chk_1?utm_source=nudge&utm_medium=email&utm_campaign=abandoned_cart" in (
        email.text
    )
    assert "12 Harbour Street" in email.text
    unsubscribe = email.headers["List-Unsubscribe"].split(",")[0].strip("<> ")
    assert f"Unsubscribe or choose what you receive: {unsubscribe}" in email.text
    assert "utm_" not in unsubscribe


def test_recommendations_are_computed_only_for_templates_that_read_them(
    settings: Settings, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Simulation(settings, clock)
    reads: list[str] = []
    original = sim.store.get_document
    monkeypatch.setattr(sim.store, "get_document", lambda name: reads.append(name) or original(name))

    sim.send(subscribed("evt_1"))  # the welcome email does not show products
    assert len(sim.mailer.sent) == 1 and reads == []

    sim.send(order_placed("evt_2", "chk_1"))
    sim.run_until(START + timedelta(days=15))  # post-purchase's review request does
    assert "You may also like" not in sim.mailer.sent[-1][1].text  # nothing computed yet: the block stays out
    assert reads == ["copurchases"]
