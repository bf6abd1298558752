"""`dataclass`, as the standard library's, made about three times faster for frozen, slotted classes
(ADR 0020, Decision 12).

A Lambda function's cold start makes ~100 frozen, slotted dataclasses, and the standard decorator compiles
six functions for each (`__init__`, `__repr__`, `__eq__`, `__hash__`, `__setattr__`, `__delattr__`): ~0.6 ms a
class, ~60 ms a function, more than pydantic's import. For `@dataclass(frozen=True, slots=True)` (with or
without `kw_only`) this module asks the standard decorator for the fields and the slots only, compiles the
one function that must be per class (`__init__`, which fills the slots in on the class's writable twin and
then makes the record its class again: `writable`), and gives the class shared functions for the rest. The
result behaves as the standard one: the same parameters, defaults and default factories, `__post_init__`,
equality and hash over the compared fields, the same repr, `FrozenInstanceError` on assignment, pickling,
`dataclasses.fields`, `replace`, `asdict` and `__match_args__`; `tests/unit/test_frozen.py` compares the two
for every frozen class of the package. Any other combination of options is the standard decorator's.

mypy sees the standard `dataclasses.dataclass` (the import below, for type checking only), so every class
is checked as the dataclass it is.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from dataclasses import MISSING, FrozenInstanceError
from operator import attrgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass
else:

    def dataclass(cls: type | None = None, /, **options: Any) -> Any:
        """The standard decorator's signature; frozen, slotted classes made the quick way."""
        quick = _quick(options)

        def wrap(klass: type) -> type:
            return _make(klass, options) if quick else dataclasses.dataclass(klass, **options)

        return wrap if cls is None else wrap(cls)


# Options the quick path takes as given (the others at their defaults).
_QUICK_OPTIONS = {"frozen", "slots", "kw_only"}


def _quick(options: dict[str, Any]) -> bool:
    return options.get("frozen") is True and options.get("slots") is True and set(options) <= _QUICK_OPTIONS


MARK = "__nudge_quick__"  # set on a class made the quick way


def _make(cls: type, options: dict[str, Any]) -> type:
    if any(dataclasses.is_dataclass(base) and not getattr(base, MARK, False) for base in cls.__mro__[1:]):
        return dataclasses.dataclass(cls, **options)  # a standard dataclass base: the standard way throughout
    # The standard decorator gives a class without a docstring its signature as one, from
    # inspect.signature (~0.25 ms a class), which here would be object's (no __init__ yet): named below.
    undocumented = not cls.__doc__
    if undocumented:
        cls.__doc__ = "-"
    # Fields, slots and __match_args__ from the standard decorator, nothing compiled; `frozen=False` for it
    # (frozen behaviour is given below; a frozen flag would make it compile __setattr__ and __delattr__).
    made: type = dataclasses.dataclass(
        cls, init=False, repr=False, eq=False, slots=True, kw_only=options.get("kw_only", False)
    )
    fields = dataclasses.fields(made)
    if undocumented:
        made.__doc__ = f"{made.__name__}({', '.join(f.name for f in fields)})"
    if any(not f.init for f in fields) or any(
        getattr(f, "_field_type", None) is dataclasses._FIELD_INITVAR  # type: ignore[attr-defined]
        for f in made.__dataclass_fields__.values()  # type: ignore[attr-defined]
    ):
        raise TypeError(f"{cls.__name__}: init=False and InitVar fields need the standard dataclass")
    made.__init__ = _init(made, fields)  # type: ignore[misc]
    compared = tuple(f.name for f in fields if f.compare)
    hashed = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
    made.__eq__ = _eq(_getter(compared))  # type: ignore[method-assign,assignment]
    made.__hash__ = _hash(_getter(hashed))  # type: ignore[method-assign,assignment]
    made.__repr__ = _repr(tuple(f.name for f in fields if f.repr))  # type: ignore[method-assign,assignment]
    made.__setattr__ = _refuse_set  # type: ignore[method-assign,assignment]
    made.__delattr__ = _refuse_delete  # type: ignore[method-assign,assignment]
    names = tuple(f.name for f in fields)
    made.__getstate__ = _getstate(_getter(names))  # type: ignore[method-assign,assignment]
    made.__setstate__ = _setstate(names)  # type: ignore[attr-defined]
    setattr(made, MARK, True)
    return made


class _Factory:
    """The marker of a parameter left to its default factory (as the standard library's own)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _init(cls: type, fields: tuple[dataclasses.Field[Any], ...]) -> Callable[..., None]:
    """The class's `__init__`: the default factories called first, then every slot set with the record
    made writable for the while (`writable`); on an instance of a subclass that inherits this `__init__`,
    through the slots' own setters instead."""
    scope: dict[str, Any] = {
        "__FACTORY": _FACTORY,
        "__cls": cls,
        "__writable": None,  # the twin, made at the first record (most classes of a cold start make none)
        "__set_class": object.__setattr__,
        "__slow": _slot_filler(cls, fields),
    }

    def twin() -> type:
        made = scope["__writable"] = writable(cls)
        return made

    scope["__twin"] = twin
    positional: list[str] = []
    keyword: list[str] = []
    factories: list[str] = []
    quick: list[str] = []
    for i, f in enumerate(fields):
        if f.default is not MISSING:
            scope[f"__default_{i}"] = f.default
            param = f"{f.name}=__default_{i}"
        elif f.default_factory is not MISSING:
            scope[f"__factory_{i}"] = f.default_factory
            param = f"{f.name}=__FACTORY"
            factories.append(f"    if {f.name} is __FACTORY:\n        {f.name} = __factory_{i}()")
        else:
            param = f.name
        quick.append(f"        self.{f.name} = {f.name}")
        (keyword if f.kw_only else positional).append(param)
    body = factories + (
        [
            "    if self.__class__ is __cls:",
            "        __set_class(self, '__class__', __writable or __twin())",
            *quick,
            "        self.__class__ = __cls",
            "    else:",
            f"        __slow(self, ({', '.join(f.name for f in fields)},))",
        ]
        if fields
        else []
    )
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    source = "\n".join([f"def __init__({signature}):", *body, "    return None"])
    exec(source, scope)  # noqa: S102 - from the class's own field names
    init: Callable[..., None] = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}  # the standard signature
    return init


def _slot_filler(cls: type, fields: tuple[dataclasses.Field[Any], ...]) -> Callable[[Any, tuple[Any, ...]], None]:
    """Sets the fields' slots of an instance, in field order, through each slot's own setter (for an instance of
    a subclass that inherits the class's `__init__`: rare, so one loop, not a line a field to compile)."""
    setters: list[Callable[[Any, Any], None]] = []

    def fill(record: Any, values: tuple[Any, ...]) -> None:
        if not setters:  # found at the first such instance, not at every class's creation (a cold start)
            setters.extend(slot_setter(cls, f.name) for f in fields)
        for setter, value in zip(setters, values, strict=True):
            setter(record, value)

    return fill


WRITABLE = "__nudge_writable__"  # a quick class's own writable twin (`writable`)


def writable(cls: type) -> type:
    """A frozen, slotted class's writable twin: a subclass that adds no slot and gives back assignment.

    A record is filled in as the twin, then made the class itself again (`record.__class__ = cls`, which
    CPython allows between two classes of the same layout): setting a slot by plain assignment is about
    three times quicker than through the slot's own setter (a call each), and a record is made or copied
    ~100 times per order a backtest replays (ADR 0010). No twin escapes: the class is swapped back before
    the record is handed out, so `type(record)`, equality, repr and pickling are the class's own.
    """
    found: type | None = cls.__dict__.get(WRITABLE)
    if found is None:
        found = type(
            cls.__name__,
            (cls,),
            {
                "__slots__": (),
                "__setattr__": object.__setattr__,
                "__delattr__": object.__delattr__,
                "__module__": cls.__module__,
                "__qualname__": f"{cls.__qualname__}.<writable>",
            },
        )
        setattr(cls, WRITABLE, found)
    return found


def slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """How a record's field is set past its frozen `__setattr__`: its slot's own setter (the member descriptor,
    wherever in the class's bases it is), else `object.__setattr__` (a class without slots)."""
    found: Any = next((klass.__dict__[name] for klass in cls.__mro__ if name in klass.__dict__), None)
    if hasattr(found, "__set__"):
        setter: Callable[[Any, Any], None] = found.__set__
        return setter
    return lambda obj, value: object.__setattr__(obj, name, value)


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The fields' values as a tuple (what the standard methods compare and hash)."""
    if not names:
        return lambda value: ()
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda value: (one(value),)
    many: Callable[[Any], tuple[Any, ...]] = attrgetter(*names)
    return many


def _eq(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, Any], Any]:
    def __eq__(self: Any, other: Any) -> Any:
        if other is self:  # what the tuples' comparison would find, item by identical item
            return True
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    return __eq__


def _hash(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(values(self))

    return __hash__


def _repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({shown})"

    return __repr__


def _refuse_set(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_delete(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


# The standard frozen slotted class's pickling state: its fields' values as a list, in field order (the
# names worked out once a class, not once a record: a cold start unpickles every record of the catalog).
def _getstate(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], list[Any]]:
    def __getstate__(self: Any) -> list[Any]:
        return list(values(self))

    return __getstate__


def _setstate(names: tuple[str, ...]) -> Callable[[Any, list[Any]], None]:
    def __setstate__(self: Any, state: list[Any]) -> None:
        for name, value in zip(names, state, strict=True):
            object.__setattr__(self, name, value)

    return __setstate__
