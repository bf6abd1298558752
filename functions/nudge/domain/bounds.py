"""Bounds on what callers send, so no input reaches a limit of DynamoDB, of JSON or of Python unrefused.

Every breach is an `OutOfBounds` naming the member (a JSON Pointer) and the limit; handlers turn it into
an RFC 9457 problem. The limits, and why each is where it is:

- nesting: MAX_DEPTH levels of objects and arrays. DynamoDB refuses documents nested deeper than 32, and
  Python's parser recurses; nothing a storefront sends comes close.
- numbers: finite only (no NaN or Infinity, which JSON does not have and json.dumps would write back as
  invalid JSON), integers of at most 38 digits and floats within 1e-130..9.9e125 (DynamoDB's number type).
- timestamps: between EARLIEST and LATEST, so converting to UTC can never overflow a datetime.
- contacts: at most MAX_CONTACT_PROPERTIES properties and MAX_CONTACT_PROPERTIES_BYTES of them as JSON,
  counted after merging, so a contact stays a small DynamoDB item however many events add to it.
- header-bound text (names that end up in From, To or Subject): no control characters at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

MAX_DEPTH = 16
_PRESCAN_DEPTH = 256  # past this the parser is not even started
MAX_INTEGER_DIGITS = 38
MAX_FLOAT = 9.9e125
MIN_FLOAT = 1e-130
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MAX_CONTACT_PROPERTIES = 200
MAX_CONTACT_PROPERTIES_BYTES = 64 * 1024
_BRACKETS = bytes(range(256)).translate(None, b'[]{}"\\')


class OutOfBounds(ValueError):
    """A value past one of nudge's limits: `pointer` names the member, `detail` the limit."""

    def __init__(self, pointer: str, detail: str) -> None:
        super().__init__(f"{pointer or '/'}: {detail}")
        self.pointer = pointer
        self.detail = detail


class _Refused:
    """What the parser puts where a number was out of bounds; found and named after parsing."""

    def __init__(self, detail: str) -> None:
        self.detail = detail


def parse_json(body: bytes) -> Any:
    """json.loads, refusing over-deep nesting and numbers DynamoDB or JSON cannot hold (OutOfBounds)."""
    if _prescan_depth(body) > _PRESCAN_DEPTH:
        raise OutOfBounds("", f"JSON nested deeper than {MAX_DEPTH} levels")
    data = json.loads(body, parse_constant=_constant, parse_float=_float, parse_int=_int)
    for pointer, value, depth in _walk(data, "", 0):
        if isinstance(value, _Refused):
            raise OutOfBounds(pointer, value.detail)
        if depth > MAX_DEPTH:
            raise OutOfBounds(pointer, f"JSON nested deeper than {MAX_DEPTH} levels")
    return data


def check_json_value(value: Any, pointer: str) -> None:
    """The same bounds for a value built in code (a webhook mapper's, a pydantic model's)."""
    for where, item, depth in _walk(value, pointer, 0):
        if isinstance(item, float) and not _finite_in_range(item):
            raise OutOfBounds(where, "numbers must be finite, within ±9.9e125")
        if depth > MAX_DEPTH:
            raise OutOfBounds(where, f"JSON nested deeper than {MAX_DEPTH} levels")


def check_instant(moment: datetime, pointer: str) -> datetime:
    """The instant in UTC, if it lies between EARLIEST and LATEST; else OutOfBounds."""
    try:
        utc = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise OutOfBounds(pointer, f"must lie between {EARLIEST.date()} and {LATEST.date()}")
    return utc


def check_contact_properties(properties: dict[str, Any], pointer: str) -> None:
    """A contact's properties after a merge: at most MAX_CONTACT_PROPERTIES of them, MAX_…_BYTES as JSON."""
    if len(properties) > MAX_CONTACT_PROPERTIES:
        raise OutOfBounds(pointer, f"a contact keeps at most {MAX_CONTACT_PROPERTIES} properties")
    size = len(json.dumps(properties, separators=(",", ":"), default=str).encode())
    if size > MAX_CONTACT_PROPERTIES_BYTES:
        raise OutOfBounds(pointer, f"a contact's properties take at most {MAX_CONTACT_PROPERTIES_BYTES} bytes as JSON")


def check_header_text(value: str | None, pointer: str) -> str | None:
    """Text that may land in an email header (a name): no control characters, CR and LF above all."""
    if value is not None and any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 or ch in "\u2028\u2029" for ch in value):
        raise OutOfBounds(pointer, "no control characters (line breaks, tabs) in a name")
    return value


def header_safe(value: str) -> str:
    """`value` with every control character and line separator replaced by a space (for stored legacy values)."""
    return "".join(" " if ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 or ch in "\u2028\u2029" else ch for ch in value)


def _prescan_depth(body: bytes) -> int:
    """The deepest bracket nesting, ignoring brackets inside strings: a cheap guard before the parser recurses."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body.translate(None, _BRACKETS):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _walk(value: Any, pointer: str, depth: int) -> Iterator[tuple[str, Any, int]]:
    stack = [(pointer, value, depth)]
    while stack:
        where, item, level = stack.pop()
        yield where, item, level
        if isinstance(item, dict):
            for key, child in item.items():
                escaped = str(key).replace("~", "~0").replace("/", "~1")
                stack.append((f"{where}/{escaped}", child, level + 1))
        elif isinstance(item, list):
            stack.extend((f"{where}/{i}", child, level + 1) for i, child in enumerate(item))


def _finite_in_range(number: float) -> bool:
    return math.isfinite(number) and (number == 0 or MIN_FLOAT <= abs(number) <= MAX_FLOAT)


def _constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a JSON number; send a finite number")


def _float(text: str) -> float | _Refused:
    number = float(text)
    return number if _finite_in_range(number) else _Refused("numbers must be finite, within ±9.9e125")


def _int(text: str) -> int | _Refused:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        return _Refused(f"integers have at most {MAX_INTEGER_DIGITS} digits")
    return int(text)
