"""`nudge bench`: throughput and memory of the engine (in memory) and of the AWS adapters (on moto).

Figures, not assertions: tests stay deterministic; this prints what a change did to speed and memory.
"""

from __future__ import annotations

import os
import resource
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from nudge import names
from nudge.clocks import VirtualClock
from nudge.domain.validation import validate
from nudge.local.moto_stack import PROJECT_ROOT
from nudge.services.daily import DailyOutcome
from nudge.settings import Settings

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _cart_event(i: int) -> dict[str, Any]:
    return {
        "id": f"evt_bench_{i}",
        "type": "checkout_started",
        "contact": {
            "email": f"shopper{i}@example.com",
            "phone": f"+1415555{i % 10000:04d}",
            "first_name": "Sam",
            "email_marketing": True,
            "sms_marketing": True,
        },
        "properties": {
            "checkout_id": f"chk_{i}",
            "recovery_url": f"https://shop.example/c/{i}",
            "currency": "USD",
            "lines": [{"title": "Mug", "quantity": 1, "price": 18.0}],
            "total": 18.0,
        },
    }


def _quiet_event(i: int) -> dict[str, Any]:
    """An event that starts no flow, from a contact the store knows (the bench's `_cart_event(i)`)."""
    return {
        "id": f"evt_bench_view_{i}",
        "type": "page_viewed",
        "contact": {"email": f"shopper{i}@example.com"},
        "properties": {"url": f"https://shop.example/about?{i}"},
    }


def _memory_engine(contacts: int) -> Iterator[str]:
    speed = _memory_engine_once(contacts, trace=False)
    memory = _memory_engine_once(contacts, trace=True)
    sent, wake_ups, ingest_s, advance_s, _ = speed
    peak = memory[4]
    yield f"engine, in memory: {contacts} abandoned carts → {sent} messages, {wake_ups} wake-ups"
    yield f"  ingest   {contacts / ingest_s:>9,.0f} events/s per CPU s"
    yield f"  advance  {wake_ups / advance_s:>9,.0f} wake-ups/s per CPU s (bodies rendered, as live)"
    yield f"  peak traced memory {peak / 1e6:,.1f} MB ({peak / contacts / 1024:,.1f} KiB per contact with its history)"
    sent, wake_ups, ingest_s, advance_s, _ = _memory_engine_once(contacts, trace=False, bodies=False)
    yield (
        f"  as a backtest runs it (subjects only, no body): ingest {contacts / ingest_s:,.0f} events/s, "
        f"advance {wake_ups / advance_s:,.0f} wake-ups/s per CPU s"
    )


def _scaling(sizes: Sequence[int]) -> Iterator[str]:
    """The in-memory engine as a backtest runs it, at growing contact counts: flat if the twins cost per contact."""
    yield "engine, in memory, as a backtest runs it (subjects only), by contacts (per CPU s):"
    for contacts in sizes:
        _, wake_ups, ingest_s, advance_s, _ = _memory_engine_once(contacts, trace=False, bodies=False)
        yield (
            f"  {contacts:>7,} contacts  ingest {contacts / ingest_s:>8,.0f} events/s  "
            f"advance {wake_ups / advance_s:>8,.0f} wake-ups/s"
        )


def bench_settings(**overrides: Any) -> Settings:
    """Settings for the in-memory benches (the project's flows and templates, no AWS)."""
    return Settings(
        work_queue_url="https://sqs.local/work",
        work_queue_arn="arn:aws:sqs:us-east-1:123456789012:nudge-work",
        scheduler_role_arn="arn:role",
        from_address="s@shop.example",
        flows_dir=PROJECT_ROOT / "flows",
        templates_dir=PROJECT_ROOT / "templates",
        unsubscribe_key="bench-unsubscribe-key",
        unsubscribe_base_url="https://api.shop.example/v1/unsubscribe",
        postal_address="12 Harbour Street, Portland, ME 04101, USA",  # marketing mail fails closed without one
        **overrides,
    )


def _memory_engine_once(contacts: int, *, trace: bool, bodies: bool = True) -> tuple[int, int, float, float, int]:
    """(messages, wake-ups, ingest CPU s, advance CPU s, peak traced bytes); `bodies=False`: the backtest's renderer."""
    from nudge.local.backtest import kept_heap, subjects_only
    from nudge.local.simulation import Simulation
    from nudge.services.inputs import EventIn

    # The in-memory engine figure measures the engine, not a send budget: no throttling here.
    settings = bench_settings(ses_max_send_rate=10_000)
    renderer = None if bodies else subjects_only(settings.templates_dir)
    sim = Simulation(settings, VirtualClock(START), renderer=renderer)
    # Parsed beforehand, as a backtest parses its history before replaying it: what is timed is the engine
    # (IngestService over the twins, and the worker's first steps), not the API's body validation.
    events = [validate(EventIn, _cart_event(i)).to_event(START) for i in range(contacts)]
    if trace:
        tracemalloc.start()
    # CPU time: the one-core figure on a machine shared with other work.
    # The collector as a backtest runs it (backtest.kept_heap): the records made are kept, so they are frozen
    # out of its scans now and then; else every full collection rescans them all, more with every contact.
    with kept_heap() as checkpoint:
        began = time.process_time()
        for event in events:
            sim.container.ingest.ingest(event)
            checkpoint(1 + sim.settle())
        ingested = time.process_time()
        wake_ups, moment = 0, START
        while moment < START + timedelta(days=30):
            moment += timedelta(hours=1)
            worked = sim.run_until(moment)
            wake_ups += worked
            checkpoint(worked)
        done = time.process_time()
    peak = 0
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    sent = len(sim.mailer.sent) + len(sim.texter.sent)
    return sent, wake_ups, ingested - began, done - ingested, peak


def _named(counts: Any, units: int) -> str:
    """'GetItem 1 · UpdateItem 1.0 · …': the operations of a unit, averaged over `units`, most first."""
    per = sorted(((n / max(units, 1), op) for (_, op), n in counts.items() if n), key=lambda x: (-x[0], x[1]))
    return " · ".join(f"{op} {n:g}" if n == int(n) else f"{op} {n:.2f}" for n, op in per)


def _moto_adapters(contacts: int) -> Iterator[str]:
    """The handlers on moto: what a run-starting request costs, what the worker's first step and wake-ups cost.

    Each figure is followed by the calls it is made of (operation and count per unit), so that
    docs/benchmarks.md can name every one.
    """
    from collections import Counter

    from nudge.local.moto_stack import start_moto_stack

    clock = VirtualClock(START)
    stack = start_moto_stack(clock)

    def counts_since(before: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
        return Counter(stack.requests.counts) - before

    try:
        began = time.perf_counter()
        for i in range(contacts):
            result = stack.call_api("POST", "/v1/events", _cart_event(i), settle=False)
            if result.status != 202:
                raise RuntimeError(f"bench event {i} refused: {result.body}")
        ingested = time.perf_counter()
        request_calls = counts_since(Counter())
        mark = Counter(stack.requests.counts)
        stack.settle()  # the worker: each run's first step (a one-hour wait: it arms the reminder's schedule)
        first_steps = stack.pump.worked
        first_step_calls = counts_since(mark)
        settled = time.perf_counter()
        mark = Counter(stack.requests.counts)
        stack.pump.run_until(START + timedelta(days=4))
        done = time.perf_counter()
        wake_ups = stack.pump.worked - first_steps
        wake_up_calls = counts_since(mark)
        # An event that starts no run: each contact views a product (no flow starts on it today).
        mark = Counter(stack.requests.counts)
        for i in range(contacts):
            result = stack.call_api("POST", "/v1/events", _quiet_event(i), settle=False)
            if result.status != 202:
                raise RuntimeError(f"bench event {i} refused: {result.body}")
        quiet_calls = counts_since(mark)
        started = sum(n for (_, op), n in quiet_calls.items() if op == "SendMessage")
        # One typical unit, alone: a new contact's cart, its first step, then its first reminder's wake-up.
        stack.call_api("POST", "/v1/events", _cart_event(contacts), settle=False)
        stack.settle()
        mark, worked = Counter(stack.requests.counts), stack.pump.worked
        stack.pump.run_until(stack.clock.now() + timedelta(hours=1, minutes=1))
        lone_calls, lone = counts_since(mark), stack.pump.worked - worked
        by_request, by_first_steps = request_calls.total(), first_step_calls.total()
        by_wake_ups, by_quiet = wake_up_calls.total(), quiet_calls.total()
        yield f"handlers on moto: {contacts} signed API calls that each start a run, then {wake_ups} wake-ups"
        yield (
            f"  ingest handler  {contacts / (ingested - began):>7,.0f} requests/s, "
            f"{by_request / contacts:.1f} AWS calls per event (decide, record, arm the first wake-up)"
        )
        yield f"    {_named(request_calls, contacts)}"
        if first_steps:
            yield (
                f"  worker          {first_steps / (settled - ingested):>7,.0f} first steps/s, "
                f"{by_first_steps / first_steps:.1f} AWS calls per first step"
            )
            yield f"    {_named(first_step_calls, first_steps)}"
        else:
            # The cart flow opens with a fixed wait: its runs start past it, the reminder's schedule armed by
            # the request itself (engine.new_run), so the worker has no first step to take.
            yield "  worker          no first steps: each run started past its opening wait, its wake-up armed"
        yield (
            f"  worker          {wake_ups / (done - settled):>7,.0f} wake-ups/s incl. the local pump, "
            f"{by_wake_ups / max(wake_ups, 1):.1f} AWS calls per wake-up (each sends one email)"
        )
        yield f"    {_named(wake_up_calls, wake_ups)}"
        yield (
            f"  ingest handler  {by_quiet / contacts:.1f} AWS calls per event that starts no run "
            f"(a product viewed by a known contact; {started} runs started)"
        )
        yield f"    {_named(quiet_calls, contacts)}"
        yield (
            f"  worker          {lone_calls.total() / max(lone, 1):.1f} AWS calls for one wake-up that sends one email "
            f"right away ({lone} wake-up; the send-rate horizon idle, as for a lone send)"
        )
        yield f"    {_named(lone_calls, lone)}"
    finally:
        stack.stop()


def _send_rate(sends: int) -> Iterator[str]:
    """The shared send-rate limiter on moto: how a burst is spread, and the DynamoDB writes it costs."""
    from nudge.local.moto_stack import start_moto_stack
    from nudge.services.throttle import SendThrottle

    clock = VirtualClock(START)
    stack = start_moto_stack(clock)
    try:
        rate = stack.settings.ses_max_send_rate
        throttle = SendThrottle(stack.container.limiter, per_second=rate)
        stack.requests.counts.clear()
        began = time.perf_counter()
        last = max(throttle.slot(clock.now()) for _ in range(sends))
        elapsed = time.perf_counter() - began
        writes = stack.requests.counts[("dynamodb", "UpdateItem")]
        yield f"send-rate limiter on moto: a burst of {sends} due emails at {rate}/s"
        yield (
            f"  slots spread over {(last - START).total_seconds():,.0f} virtual s; "
            f"{writes} UpdateItem ({writes / sends:.2f} per email); nobody waits: "
            f"{sends / elapsed:,.0f} reservations/s on moto"
        )
    finally:
        stack.stop()


def _daily_job(contacts: int) -> Iterator[str]:
    """The daily job on moto over a base written straight to the tables: scans, RFM writes, co-purchases."""
    import json
    import random
    from dataclasses import replace

    from nudge.domain import aggregates, segments
    from nudge.domain.model import Contact, ContactPatch, Event
    from nudge.local.moto_stack import start_moto_stack

    rng = random.Random(7)
    clock = VirtualClock(START)
    stack = start_moto_stack(clock)
    try:
        store = stack.container.store
        orders = 0
        for i in range(contacts):
            counted = aggregates.Aggregates()
            for k in range(rng.choice((0, 1, 1, 2, 3, 5))):  # a sixth never ordered
                placed = START - timedelta(days=rng.randint(1, 300))
                products = [f"p{rng.randint(1, 60)}" for _ in range(rng.randint(1, 3))]
                properties = {
                    "order_id": f"o{i}_{k}",
                    "total": 20 * len(products),
                    "lines": [{"sku": p} for p in products],
                }
                counted = aggregates.updated(counted, f"o{i}_{k}", "order_placed", properties, placed)
                event = Event(f"bench:o{i}_{k}", "order_placed", ContactPatch(external_id=f"c{i}"), properties, placed)
                store.begin_event(event, START)
                orders += 1
            # As ingest leaves a contact: membership evaluated with its aggregates (else the first run would
            # announce every stage as new, and start the flows listening).
            contact = Contact(contact_id=f"c{i}", aggregates=counted)
            found = segments.evaluate(stack.container.segments, contact.template_view(), counted, START)
            contact = replace(contact, segments=found.segments, review_at=found.review_at)
            store.save_contact(contact, expected_version=0)

        def day() -> DailyOutcome:
            """As deployed: the schedule fires the sweep function, which plans; its pieces run off the jobs queue."""
            from nudge.handlers import sweep
            from nudge.local.lambda_events import FakeLambdaContext

            context = FakeLambdaContext.fresh("nudge-sweep", timeout_ms=names.SWEEP_TIMEOUT * 1000)
            planned = sweep.handler({}, context)
            stack.settle()
            return stack.container.daily.status(planned["day"])

        stack.requests.counts.clear()
        began = time.perf_counter()
        first = day()
        middle = time.perf_counter()
        calls_first = dict(stack.requests.counts)
        stack.requests.counts.clear()
        second = day()  # the same day again: each piece's record is replaced, so it shows this run alone
        done = time.perf_counter()
        size = len(json.dumps(store.get_document("copurchases")))

        def calls(counts: dict[tuple[str, str], int]) -> str:
            return ", ".join(f"{op} {n}" for (_, op), n in sorted(counts.items(), key=lambda kv: -kv[1]))

        yield (
            f"daily job on moto: {contacts} contacts, {first.buyers} buyers, {orders} orders, "
            f"{first.pieces} pieces off the jobs queue"
        )
        yield (
            f"  first run   {middle - began:6.2f} s ({contacts / (middle - began):,.0f} contacts/s), "
            f"{first.rescored} scores written, {first.errors} errors; {calls(calls_first)}"
        )
        yield (
            f"  second run  {done - middle:6.2f} s, {second.rescored} scores written (nothing moved); "
            f"{calls(dict(stack.requests.counts))}"
        )
        yield f"  co-purchase document {size / 1024:,.1f} KiB for {first.products} products"
    finally:
        stack.stop()


def _rfm_cuts(buyers: int) -> Iterator[str]:
    """The daily job's first RFM pass, in memory: what the quintile cuts cost per buyer at scale."""
    import random
    from array import array
    from decimal import Decimal

    from nudge.domain.aggregates import Aggregates
    from nudge.domain.lifecycle import RfmInputs, cuts_of

    rng = random.Random(3)
    now = START + timedelta(days=400)
    base = [
        Aggregates(
            orders_count=rng.randint(1, 6),
            total_spent=Decimal(rng.randint(10, 900)),
            last_order_at=now - timedelta(days=rng.randint(1, 400)),
        )
        for _ in range(buyers)
    ]
    tracemalloc.start()
    began = time.perf_counter()
    recency, orders, spent = array("d"), array("d"), array("d")
    for aggregates in base:
        if (inputs := RfmInputs.of(aggregates, now)) is not None:
            recency.append(inputs.recency_days)
            orders.append(inputs.orders)
            spent.append(inputs.spent)
    cuts_of(recency, orders, spent)
    elapsed = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    yield f"RFM cuts, in memory: {buyers:,} buyers"
    yield (
        f"  {buyers / elapsed:,.0f} buyers/s; peak {peak / 1e6:,.1f} MB while cutting "
        f"({peak / buyers:,.0f} B per buyer: ~{peak / buyers:,.0f} MB at 1M)"
    )


def _recommendations(orders: int) -> Iterator[str]:
    """The co-purchase table in memory: counting, pruning to one item, and answering per message."""
    import json
    import random

    from nudge.domain import recommendations as recs

    rng = random.Random(11)
    baskets = [[{"sku": f"p{rng.randint(1, 500)}"} for _ in range(rng.randint(1, 4))] for _ in range(orders)]
    began = time.perf_counter()
    table = recs.from_orders(baskets)
    counted = time.perf_counter()
    kept = recs.pruned(table)
    pruned_at = time.perf_counter()
    size = len(json.dumps(recs.to_record(kept)))
    contacts = [[f"p{rng.randint(1, 500)}" for _ in range(3)] for _ in range(5000)]
    asked = time.perf_counter()
    for bought in contacts:
        recs.recommend(kept, bought)
    answered = time.perf_counter()
    yield f"recommendations, in memory: {orders:,} orders over 500 products"
    yield (
        f"  count {orders / (counted - began):,.0f} orders/s; prune {1000 * (pruned_at - counted):,.0f} ms "
        f"→ {len(kept.products)} products, {size / 1024:,.1f} KiB stored"
    )
    yield f"  recommend {len(contacts) / (answered - asked):,.0f} contacts/s (per message, from the cached table)"


BUSIEST_FLOW = "post_purchase"  # two emails after every order: the most steps of CDNOW's one-flow backtests


def _backtest(customers: int) -> Iterator[str]:
    """`nudge backtest` over CDNOW (fetched once into .cache/): every flow, time and memory at two sizes."""
    from nudge.local import backtest as bt
    from nudge.local.datasets import DatasetUnavailable, cdnow_orders, fetch_cdnow
    from nudge.services.order_import import Format

    try:
        source = fetch_cdnow(PROJECT_ROOT / ".cache" / "lifetimes")
    except DatasetUnavailable as exc:
        yield f"backtest: skipped, {exc}"
        return
    rows = source.read_text(encoding="utf-8").splitlines()
    settings = bt.backtest_settings(PROJECT_ROOT / "flows", PROJECT_ROOT / "templates", PROJECT_ROOT / "segments")

    def history(count: int) -> bt.History:
        keep = {f"{i:05d}" for i in range(1, count + 1)}
        orders = list(cdnow_orders(rows, keep))
        return bt.load_history(orders, Format.MINIMAL, None, START, assume_consent=True)

    began = began_parse = time.perf_counter()
    found = history(customers)
    loaded = time.perf_counter()
    cpu = time.process_time()  # on a shared machine, the CPU time is the one-core figure
    one, result = bt.backtest_sharded(found, settings, processes=1)
    cpu = time.process_time() - cpu
    replayed = time.perf_counter()
    yield (
        f"backtest, in memory: CDNOW's first {customers:,} customers, {one.replayed:,} orders 1997-01 to 1998-06, "
        f"every flow, consent assumed → {result.sent:,} messages, {one.worked:,} steps worked"
    )
    yield (
        f"  one process: parse {loaded - began:.1f} s, replay and summary {replayed - loaded:.1f} s "
        f"({cpu:.1f} CPU s: {one.replayed / cpu:,.0f} orders and {one.worked / cpu:,.0f} steps per CPU s; "
        f"{one.shards} groups of up to {bt.SHARD_CONTACTS:,} customers)"
    )
    cores = os.cpu_count() or 1
    if cores > 1:
        children = _children_cpu()
        began, cpu = time.perf_counter(), time.process_time()
        every, again = bt.backtest_sharded(found, settings, processes=cores)
        wall = time.perf_counter() - began
        cpu = time.process_time() - cpu + _children_cpu() - children
        same = "the same figures" if again == result else "DIFFERENT figures (a bug)"
        yield (
            f"  {every.processes} processes: replay and summary {wall:.1f} s wall ({cpu:.1f} CPU s in all), "
            f"{same} as one process"
        )
    # What a backtest is mostly asked ("what would this flow have sent"): the library's busiest flow alone.
    with bt.flows_for(PROJECT_ROOT / "flows", [BUSIEST_FLOW]) as staged:
        alone = bt.backtest_settings(staged, PROJECT_ROOT / "templates", PROJECT_ROOT / "segments")
        began = time.perf_counter()
        flow_only, _ = bt.backtest_sharded(found, alone, processes=cores)
        wall = time.perf_counter() - began
    yield (
        f"  one flow ({BUSIEST_FLOW}, the busiest), {flow_only.processes} process(es): replay and summary "
        f"{wall:.1f} s wall, {wall + loaded - began_parse:.1f} s with the parse; {flow_only.worked:,} steps worked"
    )
    del found, result
    sizes = []
    for count in (max(customers // 8, 1), max(customers // 4, 1)):
        small = history(count)
        tracemalloc.start()
        bt.replay(small, settings)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        sizes.append(f"{count:,} customers {peak / 1e6:,.0f} MB ({peak / count / 1024:,.1f} KiB each)")
    yield f"  peak traced memory of a replay in one store (what a group holds, per customer): {'; '.join(sizes)}"


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def run_benchmarks(
    *,
    contacts: int,
    moto_contacts: int,
    daily_contacts: int = 500,
    history_customers: int = 23_570,
    scaling: Sequence[int] = (500, 4_000, 32_000),
    progress: Callable[[str], AbstractContextManager[Any]],
) -> Iterator[str]:
    with progress(f"engine: {contacts} contacts in memory…"):
        lines = list(_memory_engine(contacts))
    yield from lines
    if scaling:
        with progress(f"engine: {', '.join(f'{n:,}' for n in scaling)} contacts in memory…"):
            lines = list(_scaling(scaling))
        yield from lines
    with progress(f"adapters: {moto_contacts} contacts on moto…"):
        lines = list(_moto_adapters(moto_contacts))
    yield from lines
    with progress("send-rate limiter: 1,000 sends on moto…"):
        lines = list(_send_rate(1000))
    yield from lines
    with progress("RFM cuts: 200,000 buyers in memory…"):
        lines = list(_rfm_cuts(200_000))
    yield from lines
    with progress("recommendations: 100,000 orders in memory…"):
        lines = list(_recommendations(100_000))
    yield from lines
    with progress(f"daily job: {daily_contacts} contacts on moto…"):
        lines = list(_daily_job(daily_contacts))
    yield from lines
    if history_customers:
        with progress(f"backtest: CDNOW, {history_customers:,} customers in memory…"):
            lines = list(_backtest(history_customers))
        yield from lines
