"""The records the flow, segment and guardrail files and the API's request bodies are read into: plain
frozen dataclasses, checked only when a file or a body is read (`nudge.domain.validation`), so a function
that runs flows imports no pydantic (ADR 0020, Decisions 11 and 13).

A record's fields carry their rules as pydantic metadata in string annotations
(`Annotated[str, Field(pattern=...)]`): nothing evaluates them until `nudge.domain.validation` builds a validator,
and it gives each module that declares records the pydantic names those strings use. A record's
cross-field rules are its `_check` method, a field's own rule a `Check`; a union the files choose a member
of is a `Tagged`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, field, fields
from dataclasses import replace as _replace
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast, dataclass_transform, get_args

from nudge.domain.frozen import dataclass

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler
    from pydantic.json_schema import SkipJsonSchema
    from pydantic_core import CoreSchema
    from pydantic_core.core_schema import SerializationInfo, SerializerFunctionWrapHandler

T = TypeVar("T")

# The modules that declare records: `nudge.domain.validation` gives each the pydantic names their annotations use.
MODULES: set[str] = set()

# Where compiled checks come from, if anywhere (`offer_checks`): called at the first check that needs one.
_CHECKS_FROM: list[Callable[[], Mapping[str, bytes] | None]] = []


def offer_checks(source: Callable[[], Mapping[str, bytes] | None]) -> None:
    """Where `nudge.domain.validation` finds the bundle's compiled checks (a Lambda function's wiring says;
    read at the first check, so a function that checks nothing reads nothing and loads no pydantic_core)."""
    _CHECKS_FROM[:] = [source]


def take_offered_checks() -> Mapping[str, bytes]:
    """The compiled checks offered, read once (nothing when none were offered or the bundle has none)."""
    if not _CHECKS_FROM:
        return {}
    found = _CHECKS_FROM.pop()()
    return found or {}


# pydantic's configuration of every record: an unknown key is an error (a typo in a flow file is caught).
STRICT: dict[str, Any] = {"extra": "forbid"}


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field,))
def record(cls: type[T]) -> type[T]:
    """A frozen, slotted dataclass whose fields are keyword-only (as pydantic models' are), checked with
    `STRICT` unless the class sets its own `__pydantic_config__`."""
    MODULES.add(cls.__module__)
    if not hasattr(cls, "__pydantic_config__"):  # its own, or its base's
        cls.__pydantic_config__ = STRICT  # type: ignore[attr-defined]
    made: type[T] = dataclass(frozen=True, slots=True, kw_only=True)(cls)
    return made


class Checked:
    """A record with rules across its fields: `_check` raises ValueError (which validation reports at the
    record's place in the file, as pydantic's model validators did)."""

    __slots__ = ()

    def _check(self) -> None:
        """Raise ValueError when the fields disagree; nothing when they don't."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return _as_the_class(
            handler(source), lambda inner: core_schema.no_info_after_validator_function(_checked, inner)
        )


def _checked(value: Checked) -> Checked:
    value._check()
    return value


def _as_the_class(schema: CoreSchema, wrap: Callable[[CoreSchema], CoreSchema]) -> CoreSchema:
    """`wrap(schema)` carrying the class's definition reference (`ref`) in the dataclass schema's stead: pydantic
    checks a class met again in the same schema (IdentifyCall's traits and its context's) by that reference,
    so a reference left on the inner schema would skip the wrapper's rules there."""
    ref = cast(dict[str, Any], schema).pop("ref", None)
    outer = wrap(schema)
    if ref is not None:
        cast(dict[str, Any], outer)["ref"] = ref
    return outer


OPEN: dict[str, Any] = {"extra": "allow"}  # what an Open record's schema says: other members are welcome


@record
class Open(Checked):
    """A record that takes members it does not name (Segment's calls, whose libraries add their own) and keeps
    them in its `extra` field: a slotted record has no room for attributes it does not declare. Checking
    gathers every key that is neither a field's name nor its alias into `extra`; dumping puts them back
    beside the fields, as pydantic's `extra="allow"` models dumped them. `OPEN` is its config (for the JSON
    Schema's additionalProperties), which a subclass's own config extends."""

    __pydantic_config__ = OPEN

    extra: Annotated[dict[str, Any], SkipJsonSchema()] = field(default_factory=dict)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        schema = handler(source)
        args = cast(dict[str, Any], handler.resolve_ref_schema(schema))["schema"]  # the dataclass's arguments
        known = {name for item in args["fields"] for name in (item["name"], item.get("validation_alias"))}
        gather = _Gather(frozenset(name for name in known if isinstance(name, str) and name != "extra"))
        return _as_the_class(
            schema,
            lambda inner: core_schema.no_info_before_validator_function(
                gather,
                core_schema.no_info_after_validator_function(_checked, inner),
                serialization=core_schema.wrap_serializer_function_ser_schema(_flat, info_arg=True),
            ),
        )


@dataclass(frozen=True)
class _Gather:
    """An Open record's input with the members it does not name moved into `extra` (a class, not a closure:
    compiled checks are pickled)."""

    known: frozenset[str]

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # pydantic says what is wrong with it
        fields = {key: item for key, item in value.items() if key in self.known}
        return fields | {"extra": {key: item for key, item in value.items() if key not in self.known}}


def _flat(value: Any, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
    """An Open record's dump: its `extra` members beside its fields (without the None ones if asked)."""
    data = handler(value)
    if isinstance(data, dict) and isinstance(extra := data.pop("extra", None), dict):
        data |= {key: item for key, item in extra.items() if not (info.exclude_none and item is None)}
    return data


@dataclass(frozen=True)
class Check:
    """A field's rule, as metadata: `Annotated[str, Check(parse_clock)]` runs the function on the value once
    it has its type, and a ValueError it raises is reported at the field (pydantic's AfterValidator)."""

    rule: Callable[[Any], Any]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self.rule, handler(source))


@dataclass(frozen=True, eq=False)
class Tagged:
    """A union the files choose a member of by a tag: the members with their tags, in order, and how a raw
    value names its tag (`choose`; default: its `type` key). In an annotation, as metadata:
    `Annotated[Step, STEPS]`; `tags` is the one list of kinds (ADR 0020, Decision 3)."""

    members: tuple[tuple[str, type], ...]
    choose: Callable[[Any], str] | None = None

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(tag for tag, _ in self.members)

    def tag_of(self, value: object) -> str | None:
        """The tag of a member record (None for anything else)."""
        return next((tag for tag, member in self.members if isinstance(value, member)), None)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from typing import Annotated, Union

        from pydantic import Discriminator, Tag

        if self.choose is None:  # each member's `type` literal names it
            members = tuple(member for _, member in self.members)
            return handler.generate_schema(Annotated[Union[members], Discriminator("type")])  # noqa: UP007
        tagged = tuple(Annotated[member, Tag(tag)] for tag, member in self.members)
        return handler.generate_schema(Annotated[Union[tagged], Discriminator(self.choose)])  # noqa: UP007


_LITERAL = re.compile(r"""^Literal\[["']([^"']+)["']\]$""")


def literal_tag(cls: type) -> str:
    """The value of a record's `type: Literal["x"]` field (its annotation is a string: not evaluated)."""
    annotation = cls.__dataclass_fields__["type"].type  # type: ignore[attr-defined]
    match = _LITERAL.match(str(annotation))
    if match is None:
        raise TypeError(f"{cls.__name__}.type is not a one-value Literal: {annotation!r}")
    return match.group(1)


def by_type(union: Any, choose: Callable[[Any], str] | None = None) -> Tagged:
    """A union (`A | B`) whose members each have a `type: Literal["x"]` field, tagged by it, in the union's
    order: the union is the one list of its kinds (mypy's `match` over it, the files' tags from it)."""
    return Tagged(tuple((literal_tag(member), member) for member in get_args(union)), choose)


def as_data(value: object, *, drop_none: bool = False) -> dict[str, Any]:
    """A record as plain data (nested records too); `drop_none`: without its fields that are None."""
    data = asdict(value)  # type: ignore[call-overload]
    return {key: item for key, item in data.items() if item is not None} if drop_none else data


def replace(value: T, **changes: Any) -> T:
    """A copy of a record with these fields changed (dataclasses.replace, typed for any record)."""
    copied: T = _replace(value, **changes)  # type: ignore[type-var]
    return copied


def items(value: object) -> Iterator[tuple[str, Any]]:
    """A record's fields and values, in order (what iterating a pydantic model gave)."""
    for item in fields(value):  # type: ignore[arg-type]
        yield item.name, getattr(value, item.name)


def message(error: Mapping[str, Any]) -> str:
    """What a validation error says, for a person: pydantic's message without its "Value error, " prefix; an
    unknown member, which a record refuses as an unexpected argument, as a model refused it."""
    if error["type"] == "unexpected_keyword_argument":
        return "Extra inputs are not permitted"
    return str(error["msg"]).removeprefix("Value error, ")
