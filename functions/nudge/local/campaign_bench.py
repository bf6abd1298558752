"""`nudge bench --campaign N [--moto-campaign M]`: what a campaign costs (ADR 0019, docs/benchmarks.md).

Also the campaign at an SES quota (`quota_simulation`): N recipients paced by the pieces' rule
(`pace`, runs due spread over each minute) and sent through the send throttle's
spare slots (`SendThrottle.spare` on the in-memory limiter) beside flows that reserve theirs, on a virtual
clock, event by event: how long the campaign takes against N / quota, and how long a flow's send waited.

In memory: N consenting contacts, the campaign's audience resolved and every recipient's run started
(the pieces, one after another in this process), timed, with peak traced memory. On moto: M contacts,
the campaign sent through the real handlers, and the AWS calls from POST /v1/campaigns to the last send,
per recipient and by operation; and its throughput on the virtual clock: recipients over the configured
SES rate times the time from the POST to the last send (the share of the rate the campaign used).
"""

from __future__ import annotations

import heapq
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from nudge.clocks import VirtualClock
from nudge.domain.campaigns import Campaign
from nudge.domain.frozen import dataclass
from nudge.domain.model import Contact
from nudge.domain.validation import dump, validate
from nudge.local.bench import START, bench_settings
from nudge.services.campaigns import PACE, SEGMENTS, CampaignPiece, pace

BENCH_CAMPAIGN = validate(
    Campaign,
    {
        "id": "bench",
        "name": "Bench",
        "audience": {"exclude_tags": ["no_newsletter"]},
        "email": {"template": "campaigns/newsletter", "subject": "Hello {{ contact.first_name }}"},
    },
)


def campaign_in_memory(recipients: int, rate: int = 500) -> Iterator[str]:
    """Resolve the audience and start every run in this process, the pieces one after another (no clock
    moves): each piece starts its minute's share of `rate` (the quota), so a million makes ~280 pieces."""
    from nudge.local.simulation import Simulation

    sim = Simulation(bench_settings(ses_max_send_rate=rate), VirtualClock(START))
    for i in range(recipients):
        sim.store.save_contact(Contact(f"b{i:07d}", email=f"b{i}@example.com", email_marketing=True), 0)
    # Peak resident memory, before and after (tracemalloc would slow every allocation several times over).
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    began = time.perf_counter()
    record = sim.container.campaigns.run(BENCH_CAMPAIGN)
    elapsed = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    progress = sim.container.campaigns.progress(BENCH_CAMPAIGN.id)
    assert progress is not None and record.status.value == "sent"
    yield f"campaign, in memory: {recipients:,} contacts, audience resolved and every run started (quota {rate:,}/s)"
    per_second = progress.recipients / elapsed
    yield f"  {progress.recipients:,} recipients in {elapsed:,.1f} s ({per_second:,.0f} runs started/s),"
    per_recipient = peak / max(recipients, 1)
    yield (
        f"  peak resident memory +{peak / 1e6:,.1f} MB over the contacts ({per_recipient:,.0f} B per recipient:"
        f" the stored runs and queued first steps, DynamoDB items and SQS messages on AWS)"
    )


def throughput_line(sent: int, seconds: float, rate: float) -> str:
    """The share of the SES rate a campaign used: its sends over rate x (POST to the last send)."""
    used = sent / (rate * seconds) if seconds > 0 else 0.0
    return (
        f"  throughput: {sent:,} sends in {seconds:,.0f} s of virtual time at {rate:g}/s: "
        f"{sent / max(seconds, 1e-9):,.1f}/s, "
        f"{used:.1%} of the SES rate (flows keep priority and a reserve; the campaign takes what they leave)"
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
        created = stack.call_api("POST", "/v1/campaigns", dump(BENCH_CAMPAIGN, mode="json", exclude_none=True))
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


def drive(sim: Any, end: datetime, during: Sequence[tuple[datetime, Callable[[], object]]] = ()) -> None:
    """Run an in-memory Simulation to `end` with its jobs queue on the virtual clock too: each campaign piece
    is done at its delay (as SQS and the sweep function would), between the worker's due work; each of
    `during` (a moment, something to do then: an event arriving) at its moment."""
    jobs = sim.container.jobs
    due: list[tuple[datetime, int, dict[str, Any] | Callable[[], object]]] = []
    seq = 0

    def collect() -> None:
        nonlocal seq
        delays = list(jobs.delays)
        for body, delay in zip(jobs.take(), delays, strict=True):
            seq += 1
            heapq.heappush(due, (sim.clock.now() + delay, seq, body))

    for at, act in during:
        seq += 1
        heapq.heappush(due, (at, seq, act))
    collect()
    while due and due[0][0] <= end:
        at, _, item = heapq.heappop(due)
        sim.run_until(at)
        if callable(item):
            item()
        else:
            sim.container.campaigns.work(CampaignPiece.parse(item))
        collect()
    sim.run_until(end)


@dataclass(frozen=True)
class QuotaRun:
    recipients: int
    rate: int
    seconds: float  # from the campaign's start to its last send
    flow_sends: int
    flow_wait_max: float  # seconds between a steady flow's send falling due and its slot
    retries: int  # campaign sends that found no spare slot and looked again
    peak_waiting: int  # campaign sends due or waiting at once, at most (what memory holds)

    @property
    def ideal(self) -> float:
        return self.recipients / self.rate

    @property
    def utilisation(self) -> float:
        """The share of the quota used over the campaign's time: its sends and the flows'."""
        return (self.recipients + self.flow_sends) / (self.rate * self.seconds) if self.seconds else 0.0


def quota_simulation(
    recipients: int, rate: int, *, flows_per_second: float = 2.0, burst: int = 200, segments: int = SEGMENTS
) -> QuotaRun:
    """A campaign of `recipients` at an SES quota of `rate`/s, beside flows sending `flows_per_second` and one
    burst of `burst` flow sends at once (a flash sale's cart reminders) a third of the way through.

    The pacing is the pieces' own (`pace`: the minute's budget from the flows' count on the limiter, less the
    segment's backlog; the runs spread over the minute), the slots the throttle's (flows `slot`, the campaign
    `spare`, a send that found none looks again after `spare_retry`), on the in-memory limiter. Not modelled:
    the time the pieces take to start runs (ADR 0019's arithmetic), moto, the worker's reads and writes (the
    virtual-clock test in tests/unit/test_campaigns.py runs those, at a small scale).
    """
    from nudge.adapters.memory import MemorySendRateLimiter
    from nudge.services.throttle import SPARE_WITHIN, SendThrottle, spare_retry

    throttle = SendThrottle(MemorySendRateLimiter(), per_second=rate)
    start = START
    per_minute = rate * 60
    # Events: (moment, order, kind, payload). kind 0: a piece of segment `payload`; 1: a flow's send;
    # 2: a campaign send (payload: its number).
    events: list[tuple[datetime, int, int, int]] = []
    order = 0

    def push(at: datetime, kind: int, payload: int) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (at, order, kind, payload))

    for segment in range(segments):
        push(start, 0, segment)
    flow_gap = 1 / flows_per_second if flows_per_second > 0 else None
    if flow_gap is not None:
        push(start, 1, 0)
    burst_at = start + timedelta(seconds=recipients / rate / 3)
    for _ in range(burst):
        push(burst_at, 1, -1)
    previous: dict[int, dict[str, Any]] = {}  # each segment's last record, as the job log keeps it
    started_by: dict[int, int] = {}
    started = sent = flow_sends = retries = waiting = peak = finished = 0
    last = start
    flow_wait = 0.0
    while events:
        at, _, kind, payload = heapq.heappop(events)
        if kind == 0:
            used = throttle.used()
            piece = CampaignPiece("q", payload, segments)
            batch, backlog = pace(previous.get(payload, {}), used, at, per_minute, piece, max(1, segments - finished))
            # this segment's share of the audience: every `segments`-th recipient
            left = (recipients - payload + segments - 1) // segments
            take = min(batch, max(0, left - started_by.get(payload, 0)))
            for i in range(take):
                push(at + PACE * i / batch, 2, started)
                started += 1
            started_by[payload] = started_by.get(payload, 0) + take
            previous[payload] = {"slots_used": list(used), "slots_at": at.isoformat(), "backlog": backlog}
            previous[payload]["last_started"] = take
            waiting += take
            peak = max(peak, waiting)
            if started_by[payload] < left:
                push(at + PACE, 0, payload)
            else:
                finished += 1
        elif kind == 1:
            slot = throttle.slot(at)
            flow_sends += 1
            if payload == 0:  # the steady flows (the burst waits behind itself at the quota)
                flow_wait = max(flow_wait, (slot - at).total_seconds())
            if payload == 0 and flow_gap is not None and sent < recipients:
                push(at + timedelta(seconds=flow_gap), 1, 0)
        else:
            spare = throttle.spare(at, SPARE_WITHIN)
            if spare is None:
                retries += 1
                push(at + spare_retry(f"m{payload}-{retries}"), 2, payload)
                continue
            sent += 1
            waiting -= 1
            last = max(last, spare)
    return QuotaRun(recipients, rate, (last - start).total_seconds() + 1 / rate, flow_sends, flow_wait, retries, peak)


def quota_lines(recipients: int, rate: int) -> Iterator[str]:
    began = time.perf_counter()
    run = quota_simulation(recipients, rate)
    elapsed = time.perf_counter() - began
    yield (
        f"campaign at an SES quota (simulated: the pieces' pacing and the throttle's spare slots on a virtual"
        f" clock, {elapsed:,.1f} s of wall time):"
    )
    yield (
        f"  {recipients:,} recipients at {rate:,}/s beside flows at 2/s and a burst of 200 flow sends:"
        f" done in {run.seconds:,.0f} s against {run.ideal:,.0f} s at the whole quota"
        f" ({run.seconds / run.ideal - 1:+.1%}); quota used {run.utilisation:.1%}"
    )
    yield (
        f"  {run.flow_sends:,} flow sends; the steady ones waited at most {run.flow_wait_max:.1f} s for a slot;"
        f" {run.retries:,} campaign sends looked again for a spare slot; at most {run.peak_waiting:,} waiting at once"
    )
