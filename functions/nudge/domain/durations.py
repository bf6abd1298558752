"""Durations as flows write them: "90s", "15m", "1h", "2d", "1w", or combined like "1d12h"; offsets may be signed."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache

_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"(?:\d+[smhdw])+")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@lru_cache(maxsize=1024)  # flows and guardrails name a handful of durations, read on every advance
def parse_duration(text: str) -> timedelta:
    """Parse a compact positive duration; raise ValueError with the accepted forms on anything else."""
    compact = str(text).replace(" ", "").lower()
    if not compact or not _WHOLE.fullmatch(compact):
        raise ValueError(f"{text!r} is not a duration; write e.g. '30m', '1h', '2d', '1w' or '1d12h'")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(compact))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return timedelta(seconds=seconds)


def parse_offset(text: str) -> timedelta:
    """A signed duration ("-7d", "+3d", "0d") for offsets from a date."""
    compact = str(text).replace(" ", "").lower()
    sign = -1 if compact.startswith("-") else 1
    body = compact.lstrip("+-")
    if body in {"0", "0d", "0h", "0m", "0s"}:
        return timedelta(0)
    return sign * parse_duration(body)


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration, largest units first ("1d12h")."""
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "-" + format_duration(-delta)
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
