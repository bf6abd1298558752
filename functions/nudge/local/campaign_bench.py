"""`nudge bench --campaign N [--moto-campaign M]`: what a campaign costs (ADR 0019, docs/benchmarks.md).

In memory: N consenting contacts, the campaign's audience resolved and every recipient's run started
(the pieces, one after another in this process), timed, with peak traced memory. On moto: M contacts,
the campaign sent through the real handlers, and the AWS calls from POST /v1/campaigns to the last send,
per recipient and by operation; and its throughput on the virtual clock: recipients over the configured
SES rate times the time from the POST to the last send (the share of the rate the campaign used).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta

from nudge.clocks import VirtualClock
from nudge.domain.campaigns import Campaign
from nudge.domain.model import Contact
from nudge.local.bench import START, bench_settings
from nudge.services.campaigns import RATE_SHARE

BENCH_CAMPAIGN = Campaign.model_validate(
    {
        "id": "bench",
        "name": "Bench",
        "audience": {"exclude_tags": ["no_newsletter"]},
        "email": {"template": "campaigns/newsletter", "subject": "Hello {{ contact.first_name }}"},
    }
)


def campaign_in_memory(recipients: int) -> Iterator[str]:
    from nudge.local.simulation import Simulation

    sim = Simulation(bench_settings(), VirtualClock(START))
    for i in range(recipients):
        sim.store.save_contact(Contact(f"b{i:07d}", email=f"b{i}@example.com", email_marketing=True), 0)
    tracemalloc.start()
    began = time.perf_counter()
    record = sim.container.campaigns.run(BENCH_CAMPAIGN)
    elapsed = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    progress = sim.container.campaigns.progress(BENCH_CAMPAIGN.id)
    assert progress is not None and record.status.value == "sent"
    yield f"campaign, in memory: {recipients:,} contacts, audience resolved and every run started"
    per_second = progress.recipients / elapsed
    yield f"  {progress.recipients:,} recipients in {elapsed:,.1f} s ({per_second:,.0f} runs started/s),"
    per_recipient = peak / max(recipients, 1)
    yield f"  peak traced memory {peak / 1e6:,.1f} MB beyond the contacts ({per_recipient:,.0f} B per recipient)"


def throughput_line(sent: int, seconds: float, rate: float) -> str:
    """The share of the SES rate a campaign used: its sends over rate x (POST to the last send)."""
    used = sent / (rate * seconds) if seconds > 0 else 0.0
    return (
        f"  throughput: {sent:,} sends in {seconds:,.0f} s of virtual time at {rate:g}/s: "
        f"{sent / max(seconds, 1e-9):,.1f}/s, "
        f"{used:.1%} of the SES rate (the campaign's share is {RATE_SHARE:.0%}; flows keep the rest)"
    )


def campaign_on_moto(recipients: int) -> Iterator[str]:
    from nudge.local.moto_stack import start_moto_stack

    clock = VirtualClock(START)
    stack = start_moto_stack(clock)
    try:
        store = stack.container.store
        for i in range(recipients):  # straight into the table: the API's cost is not the campaign's
            store.save_contact(Contact(f"b{i:07d}", email=f"b{i}@example.com", email_marketing=True), 0)
        stack.requests.counts.clear()
        posted = clock.now()
        began = time.perf_counter()
        created = stack.call_api("POST", "/v1/campaigns", BENCH_CAMPAIGN.model_dump(mode="json", exclude_none=True))
        assert created.status == 202, created.body
        rate = stack.settings.ses_max_send_rate
        stack.pump.run_until(clock.now() + timedelta(seconds=recipients / (rate * 0.8) + 600))
        elapsed = time.perf_counter() - began
        sent = len(stack.sent_emails())
        calls = dict(stack.requests.counts)
        last = max((m.sent_at for m in store.all_messages() if m.sent_at is not None), default=posted)  # type: ignore[attr-defined]
        total = sum(calls.values())
        yield f"campaign on moto: {recipients:,} recipients through POST /v1/campaigns, the sweep and the worker"
        yield f"  {sent:,} sent in {elapsed:,.1f} s of wall time; {total / max(sent, 1):.1f} AWS calls per recipient:"
        for (service, operation), n in sorted(calls.items(), key=lambda item: -item[1]):
            yield f"    {service + ' ' + operation:<36} {n / max(sent, 1):>6.2f}"
        yield throughput_line(sent, (last - posted).total_seconds(), rate)
    finally:
        stack.stop()
