"""Checking what the files and requests say against the records they are read into (`nudge.domain.records`).

Two ways, one result (ADR 0020, Decisions 11 and 13):

- **pydantic**, imported at the first check: a `TypeAdapter` over the record builds the validator from the
  record's annotations. The CLI, the local stack and the tests check this way, and the bundler.
- **compiled**: the bundler writes each request record's core schema (what pydantic built, as plain data)
  into the bundle (`compiled_catalog`), and a Lambda function's wiring offers them (`records.offer_checks`);
  a record with one is checked by `pydantic_core` alone, which builds a validator from a core schema in a
  fraction of a millisecond. A function that checks only such records imports no pydantic.

`ValidationError` is pydantic_core's, which is pydantic's: the same errors, the same messages.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic_core import SchemaSerializer, SchemaValidator, ValidationError

from nudge.domain import records

if TYPE_CHECKING:
    from pydantic import TypeAdapter

__all__ = ["ValidationError", "adapter", "compiled", "dump", "json_schema", "key", "prepare", "validate"]

T = TypeVar("T")

_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}
_OFFERED: dict[str, bytes] = {}  # key -> the pickled core schema (records.offer_checks), a validator at first use
_COMPILED: dict[str, tuple[SchemaValidator, SchemaSerializer]] = {}
_CHECKS: dict[Any, Callable[[Any], Any]] = {}  # kind -> how it is checked (a backtest checks every event)


def key(kind: type) -> str:
    """How a record is named in the bundle's compiled schemas."""
    return f"{kind.__module__}:{kind.__qualname__}"


def _compiled(kind: Any) -> tuple[SchemaValidator, SchemaSerializer] | None:
    if not isinstance(kind, type):
        return None
    _OFFERED.update(records.take_offered_checks())
    name = key(kind)
    found = _COMPILED.get(name)
    if found is None and name in _OFFERED:
        schema = pickle.loads(_OFFERED.pop(name))  # noqa: S301  (the bundle's own file, checked against its sources)
        found = _COMPILED[name] = (SchemaValidator(schema), SchemaSerializer(schema))
    return found


def adapter(kind: Any) -> TypeAdapter[Any]:
    """pydantic's validator of a record (or any type over records), built once."""
    found = _ADAPTERS.get(kind)
    if found is None:
        from pydantic import AwareDatetime, Field, TypeAdapter
        from pydantic.json_schema import SkipJsonSchema

        # What the records' string annotations name from pydantic.
        names = {"Field": Field, "AwareDatetime": AwareDatetime, "SkipJsonSchema": SkipJsonSchema}
        for name in sorted(records.MODULES):
            module = sys.modules.get(name)
            if module is not None:
                for label, value in names.items():
                    module.__dict__.setdefault(label, value)
        found = _ADAPTERS[kind] = TypeAdapter(kind)
    return found


def validate(kind: type[T], data: Any) -> T:
    """`data` (parsed YAML or JSON) as a `kind`; raises ValidationError."""
    check = _CHECKS.get(kind) or _check(kind)
    value: T = check(data)
    return value


def prepare(*kinds: type) -> None:
    """Build these records' checks now: a function's cold start, for the bodies its first request checks."""
    for kind in kinds:
        _check(kind)


def _check(kind: Any) -> Callable[[Any], Any]:
    found = _compiled(kind)
    check = _CHECKS[kind] = found[0].validate_python if found is not None else adapter(kind).validate_python
    return check


def dump(value: Any, **options: Any) -> Any:
    """A record as plain data (pydantic's `model_dump` options: mode, exclude_none, by_alias...)."""
    found = _compiled(type(value))
    if found is not None:
        return found[1].to_python(value, **options)
    return adapter(type(value)).dump_python(value, **options)


def json_schema(kind: Any, **options: Any) -> dict[str, Any]:
    schema: dict[str, Any] = adapter(kind).json_schema(**options)
    return schema


def compiled(kind: type) -> bytes:
    """A record's core schema as the bundle stores it: pickled, without the metadata only JSON Schema uses
    (its functions are closures)."""
    return pickle.dumps(_without_metadata(adapter(kind).core_schema), protocol=pickle.HIGHEST_PROTOCOL)


def _without_metadata(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_metadata(v) for k, v in value.items() if k != "metadata"}
    if isinstance(value, list):
        return [_without_metadata(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_without_metadata(v) for v in value)
    return value
