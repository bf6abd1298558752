"""Checking what the files say against the records they are read into (`nudge.domain.records`), with
pydantic: loaded here, at the first file read, never by a function that only runs the flows it was shipped
(ADR 0020, Decision 11)."""

from __future__ import annotations

import sys
from typing import Any, TypeVar

from pydantic import Field, TypeAdapter, ValidationError

from nudge.domain import records

__all__ = ["ValidationError", "adapter", "dump", "json_schema", "validate"]

T = TypeVar("T")

# What the records' string annotations name from pydantic.
_NAMES = {"Field": Field}


def _give_names() -> None:
    for name in sorted(records.MODULES):
        module = sys.modules.get(name)
        if module is not None:
            for key, value in _NAMES.items():
                module.__dict__.setdefault(key, value)


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def adapter(kind: Any) -> TypeAdapter[Any]:
    """The validator of a record (or any type over records), built once."""
    found = _ADAPTERS.get(kind)
    if found is None:
        _give_names()
        found = _ADAPTERS[kind] = TypeAdapter(kind)
    return found


def validate(kind: type[T], data: Any) -> T:
    """`data` (parsed YAML or JSON) as a `kind`; raises pydantic's ValidationError."""
    value: T = adapter(kind).validate_python(data)
    return value


def dump(value: Any, **options: Any) -> Any:
    """A record as plain data (pydantic's `model_dump` options: mode, exclude_none, by_alias...)."""
    return adapter(type(value)).dump_python(value, **options)


def json_schema(kind: Any, **options: Any) -> dict[str, Any]:
    schema: dict[str, Any] = adapter(kind).json_schema(**options)
    return schema
