"""`nudge.domain.frozen.dataclass` behaves as the standard `dataclasses.dataclass` (ADR 0020, Decision 12):
the same classes made both ways, compared on everything a caller can see."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pickle
import pkgutil
from collections.abc import Callable
from typing import Any

import pytest

import nudge
from nudge.domain import frozen


def _shapes(decorate: Callable[..., Any], prefix: str) -> dict[str, type]:
    """A few classes covering what the package's records use, made with `decorate` (and named in this module,
    as pickle finds a class)."""

    @decorate(frozen=True, slots=True)
    class Plain:
        name: str
        count: int = 0
        tags: list[str] = dataclasses.field(default_factory=list)
        note: str = dataclasses.field(default="", compare=False, repr=False)

    @decorate(frozen=True, slots=True, kw_only=True)
    class Keyword:
        name: str
        weight: float = 1.0
        extra: dict[str, int] = dataclasses.field(default_factory=dict, hash=False)

    @decorate(frozen=True, slots=True)
    class Base:
        id: str
        next: str | None = None

    @decorate(frozen=True, slots=True)
    class Child(Base):
        kind: str = "child"

    @decorate(frozen=True, slots=True)
    class Checked:
        low: int
        high: int

        def __post_init__(self) -> None:
            if self.low > self.high:
                raise ValueError("low above high")

    @decorate(frozen=True, slots=True)
    class Empty:
        pass

    made = {"Plain": Plain, "Keyword": Keyword, "Base": Base, "Child": Child, "Checked": Checked, "Empty": Empty}
    for name, cls in made.items():
        cls.__qualname__ = cls.__name__ = prefix + name
        globals()[prefix + name] = cls
    return made


QUICK = _shapes(frozen.dataclass, "Quick")
STANDARD = _shapes(dataclasses.dataclass, "Standard")
EXAMPLES: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "Plain": (("a",), {"count": 2, "tags": ["x"], "note": "n"}),
    "Keyword": ((), {"name": "k", "weight": 2.5, "extra": {"a": 1}}),
    "Base": (("s1",), {"next": "s2"}),
    "Child": (("s1",), {"kind": "other"}),
    "Checked": ((1, 2), {}),
    "Empty": ((), {}),
}


def _both(shape: str, /, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    return QUICK[shape](*args, **kwargs), STANDARD[shape](*args, **kwargs)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_quick_class_is_a_standard_dataclass_to_every_caller(name: str) -> None:
    quick_cls, standard_cls = QUICK[name], STANDARD[name]
    assert getattr(quick_cls, frozen.MARK) is True and not hasattr(standard_cls, frozen.MARK)
    assert dataclasses.is_dataclass(quick_cls)
    assert str(inspect.signature(quick_cls)) == str(inspect.signature(standard_cls))
    assert [
        (f.name, f.default, f.default_factory, f.compare, f.repr, f.kw_only) for f in dataclasses.fields(quick_cls)
    ] == [
        (f.name, f.default, f.default_factory, f.compare, f.repr, f.kw_only) for f in dataclasses.fields(standard_cls)
    ]
    assert quick_cls.__match_args__ == standard_cls.__match_args__
    assert quick_cls.__slots__ == standard_cls.__slots__
    args, kwargs = EXAMPLES[name]
    quick, standard = _both(name, *args, **kwargs)
    assert repr(quick) == repr(standard).replace("Standard", "Quick")
    assert dataclasses.asdict(quick) == dataclasses.asdict(standard)
    assert dataclasses.astuple(quick) == dataclasses.astuple(standard)
    # Equality and hash: over the compared fields, only with the same class.
    again = QUICK[name](*args, **kwargs)
    assert quick == again
    assert not quick != again  # noqa: SIM202 (the standard class defines no __ne__: Python's, from __eq__)
    assert quick != standard  # another class
    if name == "Plain":  # its list is hashed: unhashable, as the standard's
        with pytest.raises(TypeError, match="unhashable"):
            hash(quick)
        with pytest.raises(TypeError, match="unhashable"):
            hash(standard)
    else:  # the same fields hashed the same way: the standard class's very hash
        assert hash(quick) == hash(again) == hash(standard)
    # Frozen: assignment and deletion refused with the standard error.
    field_name = next((f.name for f in dataclasses.fields(quick_cls)), None)
    if field_name is not None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(quick, field_name, "x")
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(quick, field_name)
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        quick.undeclared = 1
    # Copies: pickle, copy, deepcopy, replace.
    for copied in (pickle.loads(pickle.dumps(quick)), copy.copy(quick), copy.deepcopy(quick)):
        assert copied == quick and type(copied) is quick_cls
    if field_name is not None:
        changed = dataclasses.replace(quick, **{field_name: getattr(quick, field_name)})
        assert changed == quick and changed is not quick


def test_defaults_factories_and_post_init_behave_as_the_standard_ones() -> None:
    quick, standard = _both("Plain", "a")
    assert (quick.count, quick.tags, quick.note) == (standard.count, standard.tags, standard.note)
    assert quick.tags is not QUICK["Plain"]("b").tags  # a fresh list each time
    assert QUICK["Plain"]("a", note="other") == quick  # `note` is not compared
    keyword = QUICK["Keyword"](name="k", extra={"a": 1})  # `extra` is compared, not hashed
    assert hash(keyword) == hash(QUICK["Keyword"](name="k", extra={"b": 2}))
    assert keyword != QUICK["Keyword"](name="k", extra={"b": 2})
    with pytest.raises(ValueError, match="low above high"):
        QUICK["Checked"](3, 2)
    with pytest.raises(TypeError):
        QUICK["Keyword"]("positional")  # keyword-only, as the standard's
    with pytest.raises(TypeError):
        QUICK["Base"]()  # a required field


def test_options_the_quick_way_does_not_take_are_the_standard_decorators() -> None:
    @frozen.dataclass(frozen=True, slots=True, order=True)
    class Ordered:
        rank: int

    @frozen.dataclass
    class Mutable:
        value: int

    assert not hasattr(Ordered, frozen.MARK) and Ordered(1) < Ordered(2)
    assert not hasattr(Mutable, frozen.MARK)
    mutable = Mutable(1)
    mutable.value = 2
    assert mutable.value == 2


def test_every_frozen_slotted_dataclass_of_the_package_is_made_the_quick_way() -> None:
    quick = []
    for module in pkgutil.walk_packages(nudge.__path__, "nudge."):
        loaded = importlib.import_module(module.name)
        for value in vars(loaded).values():
            if not (isinstance(value, type) and value.__module__ == module.name and dataclasses.is_dataclass(value)):
                continue
            params = value.__dataclass_params__  # type: ignore[attr-defined]
            slotted_and_frozen = "__slots__" in value.__dict__ and params.frozen
            assert not (slotted_and_frozen and not params.order), f"{value.__qualname__} is made the standard way"
            if getattr(value, frozen.MARK, False):
                quick.append(value)
                assert list(inspect.signature(value).parameters) == [f.name for f in dataclasses.fields(value)]
    assert len(quick) > 150  # the records, the catalog's types, the services' results


def test_a_class_without_a_docstring_is_described_by_its_fields_and_one_with_keeps_its_own() -> None:
    # The standard decorator would ask inspect.signature (~0.25 ms a class at every cold start).
    @frozen.dataclass(frozen=True, slots=True, kw_only=True)
    class Bare:
        name: str
        count: int = 0

    @frozen.dataclass(frozen=True, slots=True)
    class Told:
        """What it is."""

        name: str

    assert (Bare.__doc__, Told.__doc__) == ("Bare(name, count)", "What it is.")


def test_a_record_is_filled_in_as_its_writable_twin_and_handed_out_as_its_class() -> None:
    """Made or copied (`model.evolve`), a record is of its class, frozen, whatever filled it in; a subclass
    that inherits a record's `__init__` (and has a `__dict__` of its own) is filled in slot by slot."""
    from nudge.domain.model import evolve

    for name, (args, kwargs) in EXAMPLES.items():
        cls = QUICK[name]
        twin = frozen.writable(cls)
        assert twin is frozen.writable(cls) and issubclass(twin, cls) and twin.__slots__ == ()
        made = cls(*args, **kwargs)
        assert type(made) is cls
        first = next((f.name for f in dataclasses.fields(cls)), None)
        if first is None:
            continue
        copied = evolve(made, **{first: getattr(made, first)})
        assert type(copied) is cls and copied == made and copied is not made
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(copied, first, "x")

    class Labelled(QUICK["Base"]):  # type: ignore[misc,valid-type]
        pass

    labelled = Labelled("s1", next="s2")
    assert type(labelled) is Labelled and (labelled.id, labelled.next) == ("s1", "s2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        labelled.id = "x"
    moved = evolve(labelled, next=None)
    assert type(moved) is Labelled and (moved.id, moved.next) == ("s1", None)
