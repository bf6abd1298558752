"""Durations as flows write them: "90s", "15m", "1h", "2d", "1w", or combined like "1d12h"."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"(?:\d+[smhdw])+")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """Parse a compact duration; raise ValueError with the accepted forms on anything else."""
    compact = text.replace(" ", "").lower()
    if not compact or not _WHOLE.fullmatch(compact):
        raise ValueError(f"{text!r} is not a duration; write e.g. '30m', '1h', '2d', '1w' or '1d12h'")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(compact))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration, largest units first ("1d12h")."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
