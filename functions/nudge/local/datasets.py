"""Public purchase histories for the backtest's bench and docs: fetched from a registry package, never committed.

CDNOW: 69,659 purchases by the 23,570 customers who first bought at the CD retailer CDNOW in the first
quarter of 1997, followed until June 1998 (Fader & Hardie's well-known data set). The `lifetimes` package
(MIT licence) ships it as `lifetimes/datasets/CDNOW_master.txt`; the data set itself carries no licence
of its own, so nudge fetches the package (`uv pip install --no-deps --target`) instead of committing the
file. Only a few rows of three customers are committed, in tests/fixtures/backtest/, with their source.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path

LIFETIMES = "lifetimes==0.11.3"
CDNOW_IN_PACKAGE = Path("lifetimes/datasets/CDNOW_master.txt")
MINIMAL_HEADER = ("order_id", "email", "created_at", "total", "currency", "product_id", "title", "quantity", "price")


class DatasetUnavailable(RuntimeError):
    """The package holding the data set could not be fetched (no uv, no registry)."""


def fetch_cdnow(cache_dir: Path, uv: str | None = None) -> Path:
    """CDNOW_master.txt from the lifetimes package, installed without its dependencies into `cache_dir` once."""
    found = cache_dir / CDNOW_IN_PACKAGE
    if found.is_file():
        return found
    uv = uv or shutil.which("uv") or _project_uv()
    if uv is None:
        raise DatasetUnavailable("no uv on PATH or in .tools/bin: run `make setup` first")
    command = [uv, "pip", "install", "--quiet", "--no-deps", "--target", str(cache_dir), LIFETIMES]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0 or not found.is_file():
        raise DatasetUnavailable(f"could not fetch {LIFETIMES}: {done.stderr.strip() or 'no CDNOW_master.txt in it'}")
    return found


def _project_uv() -> str | None:
    from nudge.local.moto_stack import PROJECT_ROOT

    candidate = PROJECT_ROOT / ".tools" / "bin" / "uv"
    return str(candidate) if candidate.is_file() else None


def cdnow_orders(lines: Iterable[str], customers: set[str] | None = None) -> Iterator[str]:
    """CDNOW's rows (`customer date cds dollars`) as the import's `minimal` CSV, header first.

    The data set has a day, not a time: each purchase is placed at noon UTC. A customer has no address
    in it, so each gets `customer<id>@cdnow.example`; several purchases on one day are orders 1, 2...
    `customers` keeps only those ids (as written in the file, e.g. "00004").
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MINIMAL_HEADER)
    yield _take(out)
    seen: Counter[tuple[str, str]] = Counter()
    for raw in lines:
        cells = raw.split()
        if len(cells) != 4 or not cells[0].isdigit():
            continue  # the header, a blank line
        customer, day, cds, dollars = cells
        if customers is not None and customer not in customers:
            continue
        seen[(customer, day)] += 1
        placed = date(int(day[:4]), int(day[4:6]), int(day[6:]))
        quantity = max(int(cds), 1)
        writer.writerow(
            (
                f"cdnow-{customer}-{day}-{seen[(customer, day)]}",
                f"customer{customer}@cdnow.example",
                f"{placed.isoformat()}T12:00:00+00:00",
                dollars,
                "USD",
                "cd",
                "CDs",
                quantity,
                f"{float(dollars) / quantity:.2f}",
            )
        )
        yield _take(out)


def _take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
