"""`nudge bench --import-orders N`: a generated order history imported into memory and into moto, each in a
fresh process, so that its peak memory (ru_maxrss) is the import's own."""

from __future__ import annotations

import csv
import multiprocessing
import random
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nudge.local.datasets import MINIMAL_HEADER

START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=730)


def write_orders(path: Path, orders: int, customers: int, seed: int = 7) -> None:
    """`orders` one-line orders in the minimal format, oldest first over two years; a few customers buy
    often (customer = customers * u^2), as in a real shop."""
    rng = random.Random(seed)
    step = SPAN / orders
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(MINIMAL_HEADER)
        for n in range(orders):
            customer = int(customers * rng.random() ** 2)
            total = f"{rng.randint(1000, 20000) / 100:.2f}"
            placed = (START + n * step).replace(microsecond=0).isoformat()
            product = f"p{int(200 * rng.random() ** 2)}"
            writer.writerow((f"g{n}", f"c{customer}@bench.example", placed, total, "USD", product, "P", 1, total))


def import_in_child(path: Path, target: str) -> dict[str, Any]:
    """Import `path` into `target` (memory or moto) in a fresh process; its figures."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_import, (str(path), target))


def _import(path: str, target: str) -> dict[str, Any]:
    from nudge.clocks import ScaledClock, SystemClock
    from nudge.services.order_import import Format, ImportProgress
    from nudge.wiring import build_dry_run, bulk_importer

    stack = None
    if target == "moto":
        from nudge.local.moto_stack import start_moto_stack

        stack = start_moto_stack(ScaledClock())
        container = stack.container
    else:
        container = build_dry_run(SystemClock())
    try:
        importer = bulk_importer(container, workers=8 if target == "moto" else 1)
        if stack is not None:
            stack.requests.counts.clear()
        read_mb: list[float] = []

        def watch(progress: ImportProgress) -> None:
            if progress.phase == "writing" and not read_mb:  # the file read, one group of customers written
                read_mb.append(_peak_mb())
            # A line per step on stderr, so that a run stopped early still says how far it got.
            sent = sum(stack.requests.counts.values()) if stack is not None else 0
            print(
                f"  [{target}] {progress.phase} {progress.share:.0%}: {progress.rows:,} rows, "
                f"{time.perf_counter() - started:,.0f} s, {time.process_time() - cpu:,.0f} CPU s, "
                f"{sent:,} requests, peak {_peak_mb():,.0f} MB",
                file=sys.stderr,
                flush=True,
            )

        started, cpu = time.perf_counter(), time.process_time()
        with Path(path).open(newline="", encoding="utf-8") as lines:
            report = importer.run(lines, Format.MINIMAL, file_key=target, progress=watch)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        requests = {op: n for (_, op), n in stack.requests.counts.items()} if stack is not None else {}
    finally:
        if stack is not None:
            stack.stop()
    return {
        "elapsed": elapsed,
        "cpu": cpu,  # on a shared machine, rows per CPU second is the figure that does not depend on the others
        "rows": report.rows,
        "orders": report.orders_imported,
        "customers": sum(report.stages.values()),
        "writes": report.contacts_written,
        "requests": requests,
        "peak_mb": _peak_mb(),
        "read_mb": read_mb[0] if read_mb else _peak_mb(),
    }


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(orders: int, customers: int, work_dir: Path, targets: Sequence[str] = ("memory", "moto")) -> Iterator[str]:
    path = work_dir / f"generated_orders_{orders}.csv"
    started = time.perf_counter()
    write_orders(path, orders, customers)
    yield (
        f"order import: a generated file of {orders:,} one-line orders of up to {customers:,} customers "
        f"({path.stat().st_size / 1e6:,.0f} MB, written in {time.perf_counter() - started:.0f} s)"
    )
    for target in targets:
        found = import_in_child(path, target)
        rate, cpu_rate = found["rows"] / found["elapsed"], found["rows"] / found["cpu"]
        line = (
            f"  into {target}: {found['elapsed']:,.1f} s, {rate:,.0f} rows/s ({found['cpu']:,.1f} CPU s: "
            f"{cpu_rate:,.0f} rows per CPU second); peak memory {found['read_mb']:,.0f} MB after reading the file "
            f"and writing one group, {found['peak_mb']:,.0f} MB at the end (the whole process, with what the "
            f"{target} store holds); {found['customers']:,} customers, {found['writes']:,} contact writes"
        )
        if found["requests"]:
            total = sum(found["requests"].values())
            ops = ", ".join(f"{op} {n:,}" for op, n in sorted(found["requests"].items(), key=lambda kv: -kv[1]))
            line += f"; {total:,} DynamoDB requests, {total / found['orders']:.3f} per order ({ops})"
        yield line
    path.unlink()
