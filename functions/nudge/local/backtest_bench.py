"""`nudge bench --backtest-orders N`: `nudge backtest` over a generated history of N orders, in a fresh
process (so that its peak memory is the backtest's own), replayed in groups of customers across the cores.

It prints the wall time, the CPU time of the process and of its workers, the orders and the worker's steps
per CPU second (the one-core rate), and the memory: the parsed history (which grows with the orders) and
the largest worker (which holds one group of customers at a time, so it does not grow with the history).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nudge.local import backtest as bt
from nudge.local.import_bench import write_orders
from nudge.local.moto_stack import PROJECT_ROOT

CUSTOMERS_PER_ORDER = 3  # up to one customer per three orders (CDNOW has 2.96 orders a customer)


def bench(orders: int, work_dir: Path, *, processes: int = 0, flows: Sequence[str] = ()) -> Iterator[str]:
    """`flows`: the flows to backtest (none named: every flow)."""
    with bt.flows_for(PROJECT_ROOT / "flows", flows) as staged:  # an unknown name fails before the file is made
        yield from _bench(orders, work_dir, staged, processes, ", ".join(flows) or "every flow")


def _bench(orders: int, work_dir: Path, flows_dir: Path, processes: int, flows: str) -> Iterator[str]:
    path = work_dir / f"generated_orders_{orders}.csv"
    started = time.perf_counter()
    customers = max(1, orders // CUSTOMERS_PER_ORDER)
    write_orders(path, orders, customers)
    yield (
        f"backtest, generated: {orders:,} one-line orders of up to {customers:,} customers over two years "
        f"({path.stat().st_size / 1e6:,.0f} MB, written in {time.perf_counter() - started:.0f} s), {flows}, "
        "consent assumed, in a fresh process"
    )
    found = _in_child(path, flows_dir, processes or os.cpu_count() or 1)
    path.unlink()
    cpu, workers = found["cpu"], f"{found['processes']} process{'es' if found['processes'] != 1 else ''}"
    yield (
        f"  {found['elapsed']:,.1f} s in all: parse {found['parse']:,.1f} s, replay and summary "
        f"{found['replay']:,.1f} s on {workers} ({found['shards']:,} groups of up to "
        f"{found['shard_contacts']:,} customers); {cpu:,.1f} CPU s in all → {found['replayed'] / cpu:,.0f} orders "
        f"and {found['worked'] / cpu:,.0f} steps per CPU s ({found['worked']:,} steps, {found['sent']:,} messages, "
        f"{found['contacts']:,} contacts)"
    )
    yield (
        f"  memory: the parsed history {found['history_mb']:,.0f} MB ({found['history_mb'] * 1e6 / orders:,.0f} "
        f"bytes an order: it grows with the orders), peak RSS {found['peak_mb']:,.0f} MB for the process and "
        f"{found['worker_mb']:,.0f} MB for its largest worker (one group of customers at a time: it does not grow)"
    )


def _in_child(path: Path, flows_dir: Path, processes: int) -> dict[str, Any]:
    """A spawned, non-daemon process (its own workers are forked from it): its figures, through a pipe."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_backtest, args=(str(path), str(flows_dir), processes, send))
    child.start()
    send.close()
    found: dict[str, Any] = receive.recv()
    child.join()
    return found


def _backtest(path: str, flows_dir: str, processes: int, reply: Any, parent: int | None = None) -> None:
    """The child's backtest. It stops at the next group once `parent` (the bench) is gone: a bench killed
    by a signal to it alone (not Ctrl-C, which reaches the whole group) does not leave it and its workers
    running for minutes."""
    from nudge.services.order_import import Format

    parent = os.getppid() if parent is None else parent

    def rss_mb() -> float:
        with Path("/proc/self/statm").open(encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    settings = bt.backtest_settings(Path(flows_dir), PROJECT_ROOT / "templates", PROJECT_ROOT / "segments")
    before = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    with Path(path).open(newline="", encoding="utf-8") as lines:
        history = bt.load_history(lines, Format.MINIMAL, None, datetime.now(UTC), assume_consent=True)
    parsed = time.perf_counter()
    history_mb = rss_mb() - before
    every = max(1, len(history.events) // 40_000)  # a line per ~40,000 orders' worth of groups

    def progress(done: int, groups: int, counts: bt.Counts) -> None:
        if os.getppid() != parent:  # adopted: the bench that started it has died
            print("  the bench is gone: stopping", flush=True)  # noqa: T201
            raise SystemExit(1)  # leaving the pool's `with` terminates its workers
        if done % every == 0 or done == groups:
            print(  # noqa: T201 - the bench's progress, for a run that may be stopped before its end
                f"  … {done:,}/{groups:,} groups, {counts.replayed:,} orders, {counts.worked:,} steps in "
                f"{counts.cpu:,.0f} CPU s of the workers ({counts.replayed / max(counts.cpu, 1e-9):,.0f} orders and "
                f"{counts.worked / max(counts.cpu, 1e-9):,.0f} steps per CPU s), {time.perf_counter() - parsed:,.0f} s "
                f"since parsed; history {history_mb:,.0f} MB, RSS now {rss_mb():,.0f} MB",
                flush=True,
            )

    counts, result = bt.backtest_sharded(history, settings, processes=processes, progress=progress)
    done = time.perf_counter()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    reply.send(
        {
            "elapsed": done - started,
            "parse": parsed - started,
            "replay": done - parsed,
            "cpu": time.process_time() - cpu + children.ru_utime + children.ru_stime,
            "processes": counts.processes,
            "shards": counts.shards,
            "shard_contacts": bt.SHARD_CONTACTS,
            "replayed": counts.replayed,
            "worked": counts.worked,
            "sent": result.sent,
            "contacts": result.contacts,
            "history_mb": history_mb,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_mb": children.ru_maxrss / 1024,
        }
    )
    reply.close()
