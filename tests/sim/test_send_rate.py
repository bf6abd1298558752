"""The send-rate budget on a virtual clock: a burst of due sends is spread out, never duplicated."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest

from nudge.adapters.memory import MemoryMailer
from nudge.clocks import VirtualClock
from nudge.domain.model import MessageStatus
from nudge.local.simulation import Simulation
from nudge.ports import OutgoingEmail, TransientSendError
from nudge.settings import Settings
from tests.conftest import START
from tests.factories import checkout_started, contact


def test_a_burst_of_1000_due_sends_never_exceeds_the_configured_rate(settings: Settings, clock: VirtualClock) -> None:
    # Given 1,000 shoppers who all left a checkout at the same instant (their reminders fall due together)
    sim = Simulation(settings, clock)  # ses_max_send_rate defaults to 14, the SES production start
    for i in range(1000):
        sim.send(checkout_started(f"evt_{i}", f"chk_{i}", contact(f"shopper{i}")))

    # When the first reminder falls due for all of them
    sim.run_until(START + timedelta(hours=2))

    # Then all 1,000 go out, once each, at no more than 14 in any one second
    sent = [email for _, email in sim.mailer.sent]
    assert len(sent) == 1000 and len({email.to for email in sent}) == 1000
    per_second = Counter(email.date.replace(microsecond=0) for email in sent)
    assert max(per_second.values()) == 14
    spread = max(per_second) - min(per_second)
    assert spread == timedelta(seconds=71)  # ceil(1000 / 14) = 72 one-second windows
    assert {o.status for o in sim.fired} == {"advanced", "delivered"}  # most wait for their slot


@pytest.mark.parametrize("rate", [1, 5, 50])
def test_the_rate_is_configurable(settings: Settings, clock: VirtualClock, rate: int) -> None:
    sim = Simulation(settings.model_copy(update={"ses_max_send_rate": rate}), clock)
    for i in range(60):
        sim.send(checkout_started(f"evt_{i}", f"chk_{i}", contact(f"shopper{i}")))

    sim.run_until(START + timedelta(hours=2))

    per_second = Counter(email.date.replace(microsecond=0) for _, email in sim.mailer.sent)
    assert len(sim.mailer.sent) == 60 and max(per_second.values()) == min(rate, 60)


class ThrottledMailer:
    """SES saying "Maximum sending rate exceeded" from `start` for `duration`, then accepting again."""

    def __init__(self, inner: MemoryMailer, clock: VirtualClock, start: datetime, duration: timedelta) -> None:
        self.inner, self.clock, self.start, self.end = inner, clock, start, start + duration
        self.refused = 0

    def send(self, email: OutgoingEmail) -> str:
        if self.start <= self.clock.now() < self.end:
            self.refused += 1
            raise TransientSendError("SES Throttling: Maximum sending rate exceeded.", throttled=True)
        return self.inner.send(email)


def test_ses_throttling_for_30_minutes_during_a_burst_of_5000_delays_every_send_and_loses_none(
    settings: Settings, clock: VirtualClock
) -> None:
    # Given 5,000 shoppers whose first cart reminder falls due at the same instant, at 14 sends/s
    sim = Simulation(settings, clock)
    mailer = ThrottledMailer(sim.mailer, clock, START + timedelta(hours=1, minutes=2), timedelta(minutes=30))
    sim.container.runs._mailer = mailer  # the one adapter this story replaces
    for i in range(5000):
        sim.send(checkout_started(f"evt_{i}", f"chk_{i}", contact(f"shopper{i}")))

    # When SES throttles every send for 30 minutes, two minutes into the burst
    sim.run_until(START + timedelta(hours=3))

    # Then every reminder goes out exactly once, none during the throttling, never above the rate
    sent = [email for _, email in sim.mailer.sent]
    assert len(sent) == 5000 and len({email.to for email in sent}) == 5000
    assert mailer.refused > 0
    assert not any(mailer.start <= email.date < mailer.end for email in sent)
    per_second = Counter(email.date.replace(microsecond=0) for email in sent)
    assert max(per_second.values()) <= 14
    statuses = Counter(m.status for m in sim.store.messages.values())
    assert statuses == {MessageStatus.SENT: 5000}
    # And nothing is left waiting: no work in the queue, no schedule but the runs' next reminders
    assert sim.queue.next_due() is None or sim.queue.next_due() > START + timedelta(hours=3)


def test_a_send_the_provider_refuses_for_now_is_sent_later_once(settings: Settings, clock: VirtualClock) -> None:
    sim = Simulation(settings, clock)
    sim.send(checkout_started("evt_1", "chk_1"))
    mailer = ThrottledMailer(sim.mailer, clock, START + timedelta(hours=1), timedelta(seconds=20))
    sim.container.runs._mailer = mailer

    sim.run_until(START + timedelta(hours=1, seconds=5))
    [message] = sim.store.messages_for(next(iter(sim.store.contacts)))
    assert message.status is MessageStatus.PENDING and sim.mailer.sent == [] and mailer.refused == 1

    sim.run_until(START + timedelta(hours=2))
    [message] = sim.store.messages_for(message.contact_id)
    assert message.status is MessageStatus.SENT and len(sim.mailer.sent) == 1
    assert sim.mailer.sent[0][1].date >= mailer.end
