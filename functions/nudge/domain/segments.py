"""Segments as data (segments/*.yaml): conditions over the profile, aggregates, stage and recent events.

A contact's membership is evaluated whenever the contact changes, and again at `review_at`: the next
moment a time-based condition (a stage threshold, an event window) can flip with no new event. The
lifecycle stages are built-in segments, so a flow can start on entering `lapsed` like any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from nudge.domain.aggregates import VIEW_ATTRIBUTES, Aggregates
from nudge.domain.durations import parse_duration
from nudge.domain.frozen import dataclass
from nudge.domain.lifecycle import DEFAULT_RULES, STAGES, Stage, StageRules, stage, stage_changes_at
from nudge.domain.lifecycle import REVIEW_LOOKBACK_DAYS as REVIEW_LOOKBACK_DAYS  # re-exported
from nudge.domain.records import Check, Tagged, record

if TYPE_CHECKING:
    from pydantic import Field

_ID = r"^[a-z][a-z0-9_]{0,39}$"
FIELD_ROOTS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "timezone",
    "email_marketing",
    "sms_marketing",
    "tags",
    "properties",
    "aggregates",
    "rfm",
    "predicted",
)
SEGMENT_ENTERED = "segment_entered"
SEGMENT_EXITED = "segment_exited"


def _window(value: str) -> str:
    if parse_duration(value) <= timedelta(0):
        raise ValueError("a window is a positive duration such as '30d'")
    return value


def _path(value: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*(\.[A-Za-z0-9_]+)*", value) or value.split(".")[0] not in FIELD_ROOTS:
        raise ValueError(f"a field starts with one of {', '.join(FIELD_ROOTS)}")
    return value


Window = Annotated[str, Check(_window)]


@record
class FieldCondition:
    """Compare a contact field (`aggregates.orders_count`, `properties.country`, `tags`) with a value."""

    field: Annotated[
        str,
        Check(_path),
        Field(description="Dotted path into the contact: aggregates.total_spent, properties.plan, tags."),
    ]
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists"] = "eq"
    value: Any = None

    def holds(self, view: Mapping[str, Any], path: list[str] | None = None) -> bool:
        """`path`: the field already split (the catalog keeps it; evaluated on every event of a contact)."""
        return self.judge(*_lookup(view, path if path is not None else self.field.split(".")))

    def judge(self, found: Any, present: bool) -> bool:
        """Whether the field's value (`found`; `present`: there, and not null) meets the condition."""
        if self.op == "exists":
            return present == bool(True if self.value is None else self.value)
        if not present:
            return False
        try:
            return bool(_OPS[self.op](found, self.value))
        except TypeError:
            return False  # a value of another type (text against a number) does not match


_OPS: dict[str, Any] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "in": lambda a, b: a in b,
    "contains": lambda a, b: a is not None and b in a,
}


@record
class StageCondition:
    """The contact's lifecycle stage is one of these."""

    stage: Annotated[list[Stage], Field(min_length=1)]


@record
class DidCondition:
    """The contact did this event at least once within the window (e.g. clicked in the last 30 days)."""

    did: str
    within: Annotated[Window, Field(description="A duration such as '30d'.")]


@record
class DidNotCondition:
    """The contact did not do this event within the window (e.g. no order in 90 days)."""

    did_not: str
    within: Window


def _condition_kind(value: Any) -> str:
    if isinstance(value, dict):
        return next((key for key in ("field", "stage", "did", "did_not") if key in value), "field")
    return CONDITIONS.tag_of(value) or "field"


Condition = FieldCondition | StageCondition | DidCondition | DidNotCondition
# A condition's kind is the key it has, in the union's order (a field, a stage, did, did_not).
CONDITIONS = Tagged(tuple(zip(("field", "stage", "did", "did_not"), get_args(Condition), strict=True)), _condition_kind)
CONDITION_TAGS = set(CONDITIONS.tags)


def _not_a_stage(value: str) -> str:
    if value in STAGES:
        raise ValueError(f"{value!r} is a built-in lifecycle stage; choose another id")
    return value


@record
class Segment:
    """A named set of contacts: those meeting all (or any) of its conditions."""

    id: Annotated[
        str,
        Field(pattern=_ID, description="Stable: flows trigger on it, membership is stored under it."),
        Check(_not_a_stage),
    ]
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    match: Literal["all", "any"] = "all"
    conditions: Annotated[list[Annotated[Condition, CONDITIONS]], Field(min_length=1)]


class SegmentCatalog:
    """The deployed segments, by id, with the stage rules."""

    def __init__(
        self, segments: Iterable[Segment] = (), rules: StageRules = DEFAULT_RULES, *, evaluated: bool = True
    ) -> None:
        self.rules = rules
        # False: nothing is evaluated, not even the stage; every contact is in no segment, for good (a backtest
        # of flows that read none, `Flow.reads_segments`).
        self.evaluated = evaluated
        self._segments: dict[str, Segment] = {}
        for segment in segments:
            if segment.id in self._segments:
                raise ValueError(f"two segments share the id {segment.id!r}")
            self._segments[segment.id] = segment
        # Each segment's conditions with what they read worked out once: `evaluate` runs on every event.
        self.compiled: list[tuple[str, bool, list[_Check], list[tuple[str, timedelta]]]] = [
            (
                segment.id,
                segment.match == "all",
                [_check_of(condition) for condition in segment.conditions],
                [window for condition in segment.conditions if (window := _window_of(condition)) is not None],
            )
            for segment in self._segments.values()
        ]

    def __reduce__(self) -> tuple[type[SegmentCatalog], tuple[list[Segment], StageRules]]:
        """Pickled as its segments and rules (the compiled catalog in the bundle, ADR 0020 Decision 9): the
        checks are closures, made again when it is read."""
        return SegmentCatalog, (list(self._segments.values()), self.rules)

    def __iter__(self) -> Iterator[Segment]:
        return iter(self._segments.values())

    def __len__(self) -> int:
        return len(self._segments)

    def ids(self) -> set[str]:
        """Every segment a flow may name: the built-in stages and the defined segments."""
        return set(STAGES) | set(self._segments)


@dataclass(frozen=True, slots=True)
class Membership:
    """The segments a contact is in (stage first), and when that can next change with time alone."""

    segments: tuple[str, ...]
    review_at: datetime | None


_IN_NONE = Membership(segments=(), review_at=None)


@dataclass(frozen=True, slots=True)
class Transition:
    segment: str
    entered: bool

    @property
    def event_type(self) -> str:
        return SEGMENT_ENTERED if self.entered else SEGMENT_EXITED


def evaluate(catalog: SegmentCatalog, view: Mapping[str, Any], aggregates: Aggregates, now: datetime) -> Membership:
    """Membership at `now`. `view` is the contact's template view (profile, tags, aggregates)."""
    if not catalog.evaluated:
        return _IN_NONE
    current = stage(aggregates, now, catalog.rules)
    members = [current.value]
    moments = [stage_changes_at(aggregates, now, catalog.rules)]
    last_event_at = aggregates.last_event_at
    for segment_id, match_all, checks, windows in catalog.compiled:
        results = [check(view, current, aggregates, now) for check in checks]
        if all(results) if match_all else any(results):
            members.append(segment_id)
        for event_type, window in windows:  # _flips_at: the last occurrence plus the window, if still ahead
            last = last_event_at.get(event_type)
            if last is not None and (moment := last + window) > now:
                moments.append(moment)
    upcoming = [m for m in moments if m is not None]
    return Membership(segments=tuple(members), review_at=min(upcoming) if upcoming else None)


def transitions(before: Iterable[str], after: Iterable[str]) -> list[Transition]:
    """Exits first (a stage change leaves the old stage before entering the new), each in a stable order."""
    old, new = list(before), list(after)
    return [Transition(s, False) for s in old if s not in new] + [Transition(s, True) for s in new if s not in old]


_Check = Callable[[Mapping[str, Any], Stage, Aggregates, datetime], bool]


def _check_of(condition: Condition) -> _Check:
    """Whether one condition holds, with its path split and its window parsed once."""
    if isinstance(condition, FieldCondition):
        path = condition.field.split(".")
        if len(path) == 2 and path[0] == "aggregates" and path[1] in VIEW_ATTRIBUTES:
            # `aggregates.total_spent`: the aggregates' own attribute, which is what the view holds there
            # (evaluate's view and aggregates are the same contact's), read without the view.
            name = path[1]

            def from_aggregates(view: Mapping[str, Any], current: Stage, aggregates: Aggregates, now: datetime) -> bool:
                value = getattr(aggregates, name)
                return condition.judge(value, value is not None)

            return from_aggregates
        return lambda view, current, aggregates, now: condition.holds(view, path)
    if isinstance(condition, StageCondition):
        stages = condition.stage
        return lambda view, current, aggregates, now: current in stages
    did = condition.did if isinstance(condition, DidCondition) else condition.did_not
    window = parse_duration(condition.within)
    if isinstance(condition, DidCondition):
        return lambda view, current, aggregates, now: _recent(aggregates.last_event_at.get(did), window, now)
    return lambda view, current, aggregates, now: not _recent(aggregates.last_event_at.get(did), window, now)


def _recent(last: datetime | None, window: timedelta, now: datetime) -> bool:
    return last is not None and last > now - window


def _window_of(condition: Condition) -> tuple[str, timedelta] | None:
    """What `_flips_at` reads of an event-window condition: the event type and the window."""
    if isinstance(condition, DidCondition | DidNotCondition):
        event_type = condition.did if isinstance(condition, DidCondition) else condition.did_not
        return event_type, parse_duration(condition.within)
    return None


def _lookup(view: Mapping[str, Any], path: list[str]) -> tuple[Any, bool]:
    current: Any = view
    for part in path:
        if not (type(current) is dict or isinstance(current, Mapping)) or part not in current:
            return None, False
        current = current[part]
    return current, current is not None
