"""Flows as data: pydantic models with a `type` discriminator on steps, parsed from flows/*.yaml."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nudge.domain.durations import parse_duration
from nudge.domain.model import Category

_ID = r"^[a-z][a-z0-9_]{0,39}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventTrigger(_Strict):
    """Start a run when an event of this type arrives and every `where` property equals its value."""

    event: str = Field(min_length=1, description="Event type, e.g. checkout_started.")
    where: dict[str, Any] = Field(default_factory=dict, description="Property equalities the event must meet.")

    def matches(self, event_type: str, properties: dict[str, Any]) -> bool:
        return event_type == self.event and all(properties.get(k) == v for k, v in self.where.items())


class ExitRule(_Strict):
    """End an active run when this event arrives; `match` pairs event properties with trigger properties."""

    event: str = Field(min_length=1)
    match: dict[str, str] = Field(
        default_factory=dict,
        description="event property -> trigger property; all pairs must be equal (e.g. checkout_id).",
    )

    def matches(self, event_type: str, properties: dict[str, Any], trigger: dict[str, Any]) -> bool:
        if event_type != self.event:
            return False
        return all(
            properties.get(mine) is not None and properties.get(mine) == trigger.get(theirs)
            for mine, theirs in self.match.items()
        )


class _Step(_Strict):
    id: str = Field(pattern=_ID, description="Stable step id: message ids and metrics hang on it.")


class WaitStep(_Step):
    """Pause the run for a duration, counted from when the previous wake-up was due."""

    type: Literal["wait"]
    duration: str = Field(description="e.g. '1h', '2d', '1d12h'.")

    @field_validator("duration")
    @classmethod
    def _valid_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def delta(self) -> timedelta:
        return parse_duration(self.duration)


class EmailStep(_Step):
    """Send an email rendered from templates/<template>.html.j2 and .txt.j2."""

    type: Literal["email"]
    template: str = Field(min_length=1)
    subject: str = Field(min_length=1, description="A Jinja2 template for the subject line.")
    preheader: str | None = Field(default=None, description="A Jinja2 template for the inbox preview line.")
    category: Category | None = Field(default=None, description="Overrides the flow's category.")


class SmsStep(_Step):
    """Send an SMS rendered from templates/<template>.sms.j2."""

    type: Literal["sms"]
    template: str = Field(min_length=1)
    category: Category | None = None


class EndStep(_Step):
    """Complete the run here."""

    type: Literal["end"]


Step = Annotated[WaitStep | EmailStep | SmsStep | EndStep, Field(discriminator="type")]


class Flow(_Strict):
    """A sequence: what starts it, what ends it early, and its steps in order."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1)
    description: str = ""
    category: Category = Category.MARKETING
    trigger: EventTrigger
    exit: list[ExitRule] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_step_ids(self) -> Flow:
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"step id {step.id!r} is used twice")
            seen.add(step.id)
        return self

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"flow {self.id!r} has no step {step_id!r}")

    def next_step_id(self, step_id: str) -> str | None:
        ids = [s.id for s in self.steps]
        index = ids.index(step_id) + 1
        return ids[index] if index < len(ids) else None

    @property
    def first_step_id(self) -> str:
        return self.steps[0].id

    def category_of(self, step: EmailStep | SmsStep) -> Category:
        return step.category or self.category


class FlowCatalog:
    """The deployed flows, by id."""

    def __init__(self, flows: list[Flow]) -> None:
        self._flows: dict[str, Flow] = {}
        for flow in flows:
            if flow.id in self._flows:
                raise ValueError(f"two flows share the id {flow.id!r}")
            self._flows[flow.id] = flow

    def __iter__(self) -> Iterator[Flow]:
        return iter(self._flows.values())

    def __len__(self) -> int:
        return len(self._flows)

    def get(self, flow_id: str) -> Flow | None:
        return self._flows.get(flow_id)
