"""What a benchmark ran on: the interpreter and its build, and the cores.

The build matters as much as the code for an interpreter-bound figure: the same backtest took 116 s on a
CPython compiled by pyenv's defaults (no profile-guided or link-time optimisation, libpython a shared
library) and 100 s on Debian's CPython (both, libpython linked into the binary), the same machine and
results (docs/benchmarks.md). So `nudge bench` says which one it measured before any figure.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def libpython(maps: Path = Path("/proc/self/maps")) -> str | None:
    """'shared' if this process maps a libpython shared library, 'linked in' if not; None where unknown."""
    try:
        text = maps.read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux, or no /proc
        return None
    return "shared" if "/libpython" in text else "linked in"


def interpreter_line() -> str:
    """One line: the implementation, version, executable, compiler, how libpython is linked, and the cores."""
    parts = [
        str(Path(sys.executable).resolve()),
        platform.python_compiler(),
        "built " + " ".join(platform.python_build()[1].split()),  # C's __DATE__ pads the day
    ]
    if (linked := libpython()) is not None:
        parts.append(f"libpython {linked}")
    cores = os.cpu_count() or 1
    return (
        f"on {platform.python_implementation()} {platform.python_version()} ({'; '.join(parts)}), "
        f"{cores} core{'s' if cores != 1 else ''}"
    )
