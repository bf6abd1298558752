"""`model.quick_init`: a frozen dataclass's records made by the quicker `__init__` are the ones its own makes."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from nudge import ports
from nudge.domain import engine, kpis, model
from nudge.domain.model import quick_init


@dataclass(frozen=True, slots=True)
class _Plain:
    a: str
    b: int = 2
    c: list[int] = field(default_factory=list)
    d: dict[str, int] = field(default_factory=lambda: {"x": 1})
    e: str | None = field(default=None, kw_only=True)


@quick_init
@dataclass(frozen=True, slots=True)
class _Quick:
    a: str
    b: int = 2
    c: list[int] = field(default_factory=list)
    d: dict[str, int] = field(default_factory=lambda: {"x": 1})
    e: str | None = field(default=None, kw_only=True)


def _as_plain(record: _Quick) -> _Plain:
    return _Plain(**{f.name: getattr(record, f.name) for f in dataclasses.fields(record)})


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("a",), {}),
        (("a", 5), {}),
        (("a", 5, [1]), {"e": "z"}),
        ((), {"a": "a", "d": {"y": 2}}),
        (("a",), {"c": [], "e": None}),
    ],
)
def test_a_quick_record_is_the_record_the_dataclass_makes(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert _as_plain(_Quick(*args, **kwargs)) == _Plain(*args, **kwargs)
    assert repr(_Quick(*args, **kwargs)).removeprefix("_Quick") == repr(_Plain(*args, **kwargs)).removeprefix("_Plain")


def test_a_default_factory_makes_a_fresh_value_each_time() -> None:
    one, two = _Quick("a"), _Quick("a")
    assert one.c == [] and one.c is not two.c and one.d is not two.d


def test_the_quick_init_takes_what_the_dataclass_takes_and_nothing_else() -> None:
    for bad_args, bad_kwargs in [((), {}), (("a", 1, [], {}, "e"), {}), (("a",), {"f": 1}), (("a",), {"a": "b"})]:
        with pytest.raises(TypeError):
            _Plain(*bad_args, **bad_kwargs)
        with pytest.raises(TypeError):
            _Quick(*bad_args, **bad_kwargs)


def test_a_quick_record_stays_frozen() -> None:
    record = _Quick("a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.a = "b"  # type: ignore[misc]
    assert record == _Quick("a")


def test_quick_init_refuses_what_it_cannot_make_alike() -> None:
    @dataclass(slots=True)
    class Mutable:
        a: int

    @dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True)
    class Derived:
        a: int
        b: int = field(init=False, default=0)

    for cls in (Mutable, Checked, Derived):
        with pytest.raises(TypeError):
            quick_init(cls)


def _quick_classes() -> list[type]:
    from nudge.adapters import memory
    from nudge.domain import aggregates, guardrails, segments, suppression
    from nudge.services import runs

    found = []
    for module in (model, engine, ports, runs, memory, kpis, guardrails, aggregates, segments, suppression):
        for value in vars(module).values():
            init = getattr(value, "__init__", None)
            made_here = isinstance(value, type) and value.__module__ == module.__name__
            if made_here and dataclasses.is_dataclass(value) and "_FACTORY" in getattr(init, "__globals__", {}):
                found.append(value)
    return found


def test_every_quick_init_takes_the_parameters_its_dataclass_would() -> None:
    """Names, order, kinds and defaults of each record's `__init__`, against a dataclass made from its fields."""
    classes = _quick_classes()
    assert len(classes) >= 35
    for cls in classes:
        specs = [
            (
                f.name,
                Any,
                field(default=f.default, kw_only=f.kw_only)
                if f.default is not dataclasses.MISSING
                else field(default_factory=f.default_factory, kw_only=f.kw_only)
                if f.default_factory is not dataclasses.MISSING
                else field(kw_only=f.kw_only),
            )
            for f in dataclasses.fields(cls)
        ]
        reference = inspect.signature(dataclasses.make_dataclass(cls.__name__, specs, frozen=True))
        quick = inspect.signature(cls)
        assert [(p.name, p.kind) for p in quick.parameters.values()] == [
            (p.name, p.kind) for p in reference.parameters.values()
        ], cls
        for mine, theirs in zip(quick.parameters.values(), reference.parameters.values(), strict=True):
            if theirs.default is inspect.Parameter.empty or repr(theirs.default) == "<factory>":
                assert (mine.default is inspect.Parameter.empty) == (theirs.default is inspect.Parameter.empty), cls
            else:
                assert mine.default is theirs.default, (cls, mine.name)


def test_a_run_made_quickly_equals_one_made_by_replace() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    run = model.Run(
        run_id="r", contact_id="c", flow_id="f", status=model.RunStatus.ACTIVE, cursor="s", seq=1,
        trigger_event_id="e", trigger={}, started_at=now, updated_at=now,
    )  # fmt: skip
    assert run.variants == {} and run.journal == () and run.version == 0
    assert dataclasses.replace(run, seq=2) == model.evolve(run, seq=2) != run
