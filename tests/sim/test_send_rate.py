"""The send-rate budget on a virtual clock: a burst of due sends is spread out, never duplicated."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from nudge.adapters.memory import MemorySendRateLimiter
from nudge.clocks import VirtualClock
from nudge.domain.model import MessageStatus
from nudge.local.simulation import Simulation
from nudge.ports import TransientSendError
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
    assert all(o.status == "advanced" for o in sim.fired)


@pytest.mark.parametrize("rate", [1, 5, 50])
def test_the_rate_is_configurable(settings: Settings, clock: VirtualClock, rate: int) -> None:
    sim = Simulation(settings.model_copy(update={"ses_max_send_rate": rate}), clock)
    for i in range(60):
        sim.send(checkout_started(f"evt_{i}", f"chk_{i}", contact(f"shopper{i}")))

    sim.run_until(START + timedelta(hours=2))

    per_second = Counter(email.date.replace(microsecond=0) for _, email in sim.mailer.sent)
    assert len(sim.mailer.sent) == 60 and max(per_second.values()) == min(rate, 60)


def test_a_send_throttled_past_its_wait_is_retried_and_sent_once(settings: Settings, clock: VirtualClock) -> None:
    sim = Simulation(settings, clock)
    sim.send(checkout_started("evt_1", "chk_1"))
    [pending] = sim.scheduler.pop_due(START + timedelta(hours=1))
    clock.set(START + timedelta(hours=1))
    # Given other invocations hold every slot for longer than a send may wait (10 s)
    limiter = sim.container.limiter
    assert isinstance(limiter, MemorySendRateLimiter)
    first_window = int(clock.now().timestamp())
    for window in range(first_window, first_window + 11):
        limiter.taken[("email", window)] = 14

    # When the wake-up fires, the send gives up as retryable (Scheduler will retry the invocation)
    with pytest.raises(TransientSendError):
        sim.container.runs.wake(pending.wake_up)
    [claimed] = sim.store.messages_for(pending.wake_up.contact_id)
    assert claimed.status is MessageStatus.RETRYABLE and sim.mailer.sent == []

    # And the retry, once slots are free again, sends it once
    clock.set(START + timedelta(hours=1, seconds=11))
    retried = sim.container.runs.wake(pending.wake_up)
    again = sim.container.runs.wake(pending.wake_up)

    assert retried.sent == ["reminder_1"] and again.status == "stale"
    assert len(sim.mailer.sent) == 1
