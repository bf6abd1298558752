"""Flows as data: frozen records (`nudge.domain.records`) with a `type` discriminator, read from flows/*.yaml.

A flow is a trigger, entry and exit rules, an optional goal, guardrail overrides, and a list of steps.
Steps run in list order unless one names its `next` step (or a branch or split chooses one).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import field
from datetime import time, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from nudge.domain import expressions
from nudge.domain.durations import parse_duration, parse_offset
from nudge.domain.guardrails import GuardrailOverrides
from nudge.domain.model import CONTACT_FIELDS, Category
from nudge.domain.records import Check, Checked, as_data, by_type, record

if TYPE_CHECKING:
    from pydantic import Field

_ID = r"^[a-z][a-z0-9_]{0,39}$"
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TEMPLATED = re.compile(r"\{\{.*\}\}")


def _expression(value: str | None) -> str | None:
    if value is not None and (problem := expressions.check(value)):
        raise ValueError(problem)
    if value is not None and (unknown := expressions.unknown_fields(value, "contact", CONTACT_FIELDS)):
        raise ValueError(
            f"{value!r}: a contact has no {', '.join(unknown)} (it has {', '.join(sorted(CONTACT_FIELDS))};"
            " order counts and spend are under contact.aggregates)"
        )
    return value


def _clock_time(value: str | None) -> str | None:
    if value is not None:
        try:
            time.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a time of day; write HH:MM, e.g. '09:30'") from None
    return value


def _offset(value: str) -> str:
    parse_offset(value)
    return value


Expression = Annotated[str | None, Check(_expression)]
ClockTime = Annotated[str | None, Check(_clock_time)]


# Triggers -------------------------------------------------------------------------------------------


EventTypes = str | list[str]
_EVENT_TYPES = "An event type, or a list of them."


def _types(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _is_one_of(event_type: str, value: str | list[str]) -> bool:
    """`event_type in _types(value)` without the list: asked for every flow on every event."""
    return event_type == value if isinstance(value, str) else event_type in value


@record
class EventTrigger:
    """Start a run when an event of this type arrives, its `where` properties are equal and `filter` holds."""

    type: Literal["event"] = "event"
    event: Annotated[EventTypes, Field(description=_EVENT_TYPES)]
    where: Annotated[dict[str, Any], Field(description="Property equalities the event must meet.")] = field(
        default_factory=dict
    )
    filter: Annotated[Expression, Field(description="A Jinja2 expression over event, contact and now.")] = None

    def accepts(self, event_type: str) -> bool:
        return _is_one_of(event_type, self.event)


def _date_path(value: str) -> str:
    if not re.fullmatch(r"contact(\.[a-z_][a-z0-9_]*)+", value):
        raise ValueError("a date trigger reads a contact field, e.g. contact.properties.birthday")
    return value


@record
class DateTrigger:
    """Start a run on a date the contact carries (birthday, anniversary), at a local time, every year."""

    type: Literal["date"]
    date: Annotated[
        str, Check(_date_path), Field(description="Dotted path to the date, e.g. contact.properties.birthday.")
    ]
    offset: Annotated[str, Check(_offset), Field(description="Signed duration from the date, e.g. '-7d'.")] = "0d"
    time: Annotated[str, Check(_clock_time), Field(description="Local time of day in the contact's time zone.")] = (
        "09:00"
    )
    repeat: Literal["yearly", "once"] = "yearly"


@record
class ApiTrigger:
    """Start a run only when the API enrolls a contact: POST /v1/flows/<id>/enrollments."""

    type: Literal["api"]


@record
class SegmentTrigger:
    """Start a run when the contact enters (or leaves) a segment or a lifecycle stage, e.g. `lapsed`."""

    type: Literal["segment"]
    segment: Annotated[str, Field(pattern=_ID, description="A segment id from segments/, or a lifecycle stage.")]
    # Not `on`: YAML 1.1 reads a bare `on` key as the boolean true.
    when: Literal["entered", "exited"] = "entered"

    @property
    def event_type(self) -> str:
        return "segment_entered" if self.when == "entered" else "segment_exited"


def _trigger_kind(value: Any) -> str:
    if isinstance(value, dict):
        implied = "date" if "date" in value else "segment" if "segment" in value else "event"
        return str(value.get("type") or implied)
    return str(getattr(value, "type", "event"))


Trigger = EventTrigger | DateTrigger | ApiTrigger | SegmentTrigger
# A trigger without a `type` is read by its keys: a `date`, a `segment`, else an event.
TRIGGERS = by_type(Trigger, choose=_trigger_kind)


def _policy(value: str) -> str:
    if value not in {"always", "never"}:
        try:
            parse_duration(value)
        except ValueError:
            raise ValueError("reentry is 'always', 'never' or a duration such as '30d'") from None
    return value


@record
class EntryRules:
    """Who may start again: `always` (once the previous run ended), `never`, or a duration since the last start."""

    reentry: Annotated[str, Check(_policy), Field(description="always | never | a duration such as 30d")] = "always"

    @property
    def cooldown(self) -> timedelta | None:
        return None if self.reentry in {"always", "never"} else parse_duration(self.reentry)


@record
class ExitRule:
    """End an active run when this event arrives and its `match` pairs and `filter` hold."""

    event: Annotated[EventTypes, Field(description=_EVENT_TYPES)]
    match: Annotated[
        dict[str, str],
        Field(description="event property -> trigger property; all pairs must be equal (e.g. checkout_id)."),
    ] = field(default_factory=dict)
    filter: Annotated[Expression, Field(description="A Jinja2 expression over event, trigger and contact.")] = None

    def accepts(self, event_type: str) -> bool:
        return _is_one_of(event_type, self.event)


@record
class Goal:
    """The event that counts as this flow's conversion; by default it also ends the run."""

    event: Annotated[EventTypes, Field(description=_EVENT_TYPES)]
    filter: Expression = None
    exit: bool = True

    def accepts(self, event_type: str) -> bool:
        return _is_one_of(event_type, self.event)


# Steps ----------------------------------------------------------------------------------------------


@record
class _Step:
    id: Annotated[str, Field(pattern=_ID, description="Stable step id: message ids and metrics hang on it.")]
    next: Annotated[str | None, Field(description="The step to go to next (default: the following one).")] = None


def _valid_duration(value: str) -> str:
    if not _TEMPLATED.search(value):
        parse_duration(value)
    return value


@record
class WaitStep(_Step):
    """Pause for a duration, counted from when the previous wake-up was due. May be a template."""

    type: Literal["wait"]
    duration: Annotated[
        str, Check(_valid_duration), Field(description="e.g. '1h', '2d', or '{{ event.replenish_days }}d'.")
    ]


@record
class WaitUntilStep(_Step, Checked):
    """Pause until a local time of day (and weekday), or until a date (fixed or from a property) plus offset;
    `best_time` instead of a time: the contact's best local hour (send_time.py, as best-time campaigns)."""

    type: Literal["wait_until"]
    time: Annotated[ClockTime, Field(description="Local time of day, HH:MM, in the contact's zone.")] = None
    best_time: Annotated[
        bool, Field(description="Instead of `time`: the contact's best hour, from their opens and clicks.")
    ] = False
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = field(default_factory=list)
    date: Annotated[str | None, Field(description="YYYY-MM-DD, or a template like '{{ event.launch_date }}'.")] = None
    offset: Annotated[str, Check(_offset), Field(description="Signed duration added to `date`, e.g. '-7d'.")] = "0d"
    if_past: Annotated[str, Field(description="When the moment has passed: 'continue', or a step id to jump to.")] = (
        "continue"
    )

    def _check(self) -> None:
        if self.best_time and self.time is not None:
            raise ValueError("wait_until takes a `time` or `best_time` (which chooses the hour), not both")
        if self.date is None and self.time is None and not self.best_time:
            raise ValueError("wait_until needs a time of day, a date, or both")
        if self.date is not None and self.weekdays:
            raise ValueError("wait_until takes weekdays or a date, not both")


UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


def check_utm(value: dict[str, str] | None) -> dict[str, str] | None:
    """UTM parameters that override the account's and the defaults (utm_campaign = the flow, utm_content =
    the step): only the five UTM keys, each a short printable value."""
    for key, text in (value or {}).items():
        if key not in UTM_KEYS:
            raise ValueError(f"utm: {key!r} is not one of {', '.join(UTM_KEYS)}")
        if not 1 <= len(text) <= 100 or not text.isprintable():
            raise ValueError(f"utm: {key} must be 1 to 100 printable characters")
    return value


Utm = Annotated[dict[str, str] | None, Check(check_utm)]


@record
class EmailStep(_Step):
    """Send an email rendered from templates/<template>.html.j2 and .txt.j2."""

    type: Literal["email"]
    template: Annotated[str, Field(min_length=1)]
    subject: Annotated[str, Field(min_length=1, description="A Jinja2 template for the subject line.")]
    preheader: Annotated[str | None, Field(description="A Jinja2 template for the inbox preview line.")] = None
    category: Annotated[Category | None, Field(description="Overrides the flow's category.")] = None
    utm: Annotated[Utm, Field(description="UTM parameters over the defaults, e.g. utm_campaign.")] = None


@record
class SmsStep(_Step):
    """Send an SMS rendered from templates/<template>.sms.j2."""

    type: Literal["sms"]
    template: Annotated[str, Field(min_length=1)]
    category: Category | None = None


@record
class SmsFallback:
    """What a WhatsApp step sends instead, by SMS, to a contact without WhatsApp consent."""

    type: Literal["sms"]
    template: Annotated[str, Field(min_length=1, description="templates/<template>.sms.j2")]


@record
class EmailFallback:
    """What a WhatsApp step sends instead, by email, to a contact without WhatsApp consent."""

    type: Literal["email"]
    template: Annotated[str, Field(min_length=1, description="templates/<template>.html.j2 and .txt.j2")]
    subject: Annotated[str, Field(min_length=1)]
    preheader: str | None = None


FALLBACKS = by_type(SmsFallback | EmailFallback)


@record
class WhatsAppStep(_Step, Checked):
    """Send a WhatsApp message: a Meta-approved template (flows/_whatsapp.yaml) with its parameters, or
    free-form `text`, which goes out only inside the 24-hour customer-service window (else skipped)."""

    type: Literal["whatsapp"]
    template: Annotated[str | None, Field(pattern=r"^[a-z0-9_]{1,512}$", description="Approved template name.")] = None
    language: Annotated[str | None, Field(description="The template's language code, e.g. en_US.")] = None
    parameters: Annotated[
        dict[str, str], Field(description="Template parameter -> a Jinja2 template over contact, event, run, now.")
    ] = field(default_factory=dict)
    text: Annotated[str | None, Field(min_length=1, description="Free-form text (a Jinja2 template).")] = None
    category: Category | None = None
    fallback: Annotated[
        Annotated[SmsFallback | EmailFallback, FALLBACKS] | None,
        Field(description="Sent instead when the contact has no WhatsApp consent (or no phone)."),
    ] = None

    def _check(self) -> None:
        if (self.template is None) == (self.text is None):
            raise ValueError("a whatsapp step sends a template (with its language) or a text, not both or neither")
        if self.template is not None and not self.language:
            raise ValueError("a whatsapp template needs its language, e.g. language: en_US")
        if self.text is not None and (self.language or self.parameters):
            raise ValueError("language and parameters belong to a template; a text step has neither")

    def fallback_step(self) -> EmailStep | SmsStep | None:
        """The fallback as the message step it stands for (same id: one message per step and wake-up)."""
        if isinstance(self.fallback, SmsFallback):
            return SmsStep(id=self.id, type="sms", template=self.fallback.template, category=self.category)
        if isinstance(self.fallback, EmailFallback):
            return EmailStep(
                id=self.id,
                type="email",
                template=self.fallback.template,
                subject=self.fallback.subject,
                preheader=self.fallback.preheader,
                category=self.category,
            )
        return None


@record
class BranchStep(_Step):
    """Go to `then` if the condition holds, else to `else` (default: the following step)."""

    # The file's `if` and `else` (Python's keywords) are `condition` and `otherwise` here.
    __pydantic_config__ = {"extra": "forbid", "validate_by_name": True, "validate_by_alias": True}

    type: Literal["branch"]
    condition: Annotated[
        str, Check(_expression), Field(alias="if", description="A Jinja2 expression over contact, event, run and now.")
    ]
    then: str
    otherwise: Annotated[str | None, Field(alias="else")] = None


@record
class Variant:
    name: Annotated[str, Field(pattern=_ID)]
    weight: Annotated[int, Field(ge=1, le=10_000)] = 1
    next: str | None = None


def _after(value: str) -> str:
    if not timedelta(hours=1) <= parse_duration(value) <= timedelta(days=90):
        raise ValueError("after is between 1h and 90d")
    return value


@record
class AutoWinner:
    """A split's automatic winner: once `after` has passed since its first entrant, the variant whose email
    leads on `metric` (opens or clicks over deliveries) against the runner-up at `confidence` in a
    two-proportion z-test gets every later entrant (the holdout stays a holdout)."""

    metric: Literal["open", "click"] = "click"
    after: Annotated[
        str, Check(_after), Field(description="How long the test runs at least, from its first entrant.")
    ] = "2d"
    confidence: Annotated[float, Field(ge=0.5, lt=1)] = 0.95

    @property
    def waits(self) -> timedelta:
        return parse_duration(self.after)


@record
class SplitStep(_Step, Checked):
    """A/B/n split: each contact lands in one variant for good (hash of flow, step and contact)."""

    type: Literal["split"]
    variants: Annotated[list[Variant], Field(min_length=2)]
    holdout: Annotated[float, Field(ge=0, le=50, description="Percent of contacts who get nothing more.")] = 0
    auto_winner: Annotated[
        AutoWinner | None, Field(description="Send every later entrant to the variant that wins on opens or clicks.")
    ] = None

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def _check(self) -> None:
        names = [v.name for v in self.variants]
        if len(names) != len(set(names)):
            raise ValueError("variant names must be distinct")


@record
class UpdateProfileStep(_Step):
    """Set or unset contact properties, add or remove tags, or change consent."""

    type: Literal["update_profile"]
    set: Annotated[dict[str, Any], Field(description="Values may be templates.")] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    add_tags: list[str] = field(default_factory=list)
    remove_tags: list[str] = field(default_factory=list)
    email_marketing: bool | None = None
    sms_marketing: bool | None = None
    whatsapp_marketing: bool | None = None


def _timeout(value: str) -> str:
    if parse_duration(value) > timedelta(seconds=30):
        raise ValueError("a webhook timeout is at most 30s")
    return value


@record
class WebhookStep(_Step):
    """POST a signed JSON body to a URL; retried on failure, then recorded as failed."""

    type: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://")]
    body: Annotated[dict[str, Any], Field(description="Values may be templates.")] = field(default_factory=dict)
    timeout: Annotated[str, Check(_timeout)] = "10s"
    retries: Annotated[int, Field(ge=0, le=5)] = 2


@record
class AudienceStep(_Step):
    """Add the contact to an ad audience (audiences/*.yaml), or take them out of it. Only contacts whose
    consent covers advertising are uploaded; the upload is the worker's, in batches (docs/audiences.md)."""

    type: Literal["audience"]
    action: Annotated[Literal["add", "remove"], Field(description="add | remove")]
    audience: Annotated[str, Field(pattern=_ID, description="An audience id from audiences/*.yaml.")]


@record
class EndStep(_Step, Checked):
    """Complete the run here."""

    type: Literal["end"]

    def _check(self) -> None:
        if self.next is not None:
            raise ValueError("an end step has no next")


Step = (
    WaitStep
    | WaitUntilStep
    | EmailStep
    | SmsStep
    | WhatsAppStep
    | BranchStep
    | SplitStep
    | UpdateProfileStep
    | WebhookStep
    | AudienceStep
    | EndStep
)
# The kinds, read off the union (a test walks each through validate, graph and the docs).
STEPS = by_type(Step)
MessageStep = EmailStep | SmsStep | WhatsAppStep
WAITS = (WaitStep, WaitUntilStep)
STEP_KINDS = STEPS.tags
TRIGGER_KINDS = TRIGGERS.tags


@record
class Flow(Checked):
    """A sequence: what starts it, what ends it early, what counts as success, and its steps."""

    id: Annotated[str, Field(pattern=_ID)]
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    topic: Annotated[
        str | None,
        Field(
            max_length=80,
            description="What the preference page calls this flow's emails, in the reader's words "
            "(e.g. 'Reminders about your cart'); the flow's name when not given.",
        ),
    ] = None
    category: Category = Category.MARKETING
    priority: Annotated[int, Field(ge=0, le=100, description="Higher wins smart sending against lower.")] = 0
    trigger: Annotated[Trigger, TRIGGERS]
    entry: EntryRules = field(default_factory=EntryRules)
    exit: list[ExitRule] = field(default_factory=list)
    goal: Goal | None = None
    guardrails: GuardrailOverrides = field(default_factory=GuardrailOverrides)
    steps: Annotated[list[Annotated[Step, STEPS]], Field(min_length=1)]

    def _check(self) -> None:
        ids = [step.id for step in self.steps]
        seen: set[str] = set()
        for step_id in ids:
            if step_id in seen:
                raise ValueError(f"step id {step_id!r} is used twice")
            seen.add(step_id)
        for step in self.steps:
            for target in self._targets(step):
                if target not in seen:
                    raise ValueError(f"step {step.id!r} goes to {target!r}, which is not a step of this flow")
        by_id = {s.id: s for s in self.steps}
        for step in self.steps:
            if not isinstance(step, SplitStep) or step.auto_winner is None:
                continue
            if not all(v.next and isinstance(by_id[v.next], EmailStep) for v in step.variants):
                raise ValueError(
                    f"split {step.id!r}: auto_winner judges each variant by its email: "
                    "every variant's `next` must be an email step"
                )
        self._check_reachable_and_waits()

    @staticmethod
    def _targets(step: Step) -> list[str]:
        targets = [step.next] if step.next else []
        if isinstance(step, BranchStep):
            targets += [step.then] + ([step.otherwise] if step.otherwise else [])
        elif isinstance(step, SplitStep):
            targets += [v.next for v in step.variants if v.next]
        elif isinstance(step, WaitUntilStep) and step.if_past != "continue":
            targets.append(step.if_past)
        return targets

    def successors(self, step: Step) -> list[str]:
        """Every step that may run after this one."""
        default = self.following(step.id)
        found: list[str | None]
        if isinstance(step, EndStep):
            found = []
        elif isinstance(step, BranchStep):
            found = [step.then, step.otherwise or default]
        elif isinstance(step, SplitStep):
            found = [v.next or default for v in step.variants]
        else:
            found = [step.next or default]
            if isinstance(step, WaitUntilStep) and step.if_past != "continue":
                found.append(step.if_past)
        return [s for s in found if s]

    def _check_reachable_and_waits(self) -> None:
        by_id = {s.id: s for s in self.steps}
        reachable: set[str] = set()
        stack = [self.steps[0].id]
        while stack:
            current = stack.pop()
            if current in reachable:
                continue
            reachable.add(current)
            stack.extend(self.successors(by_id[current]))
        unreachable = [s.id for s in self.steps if s.id not in reachable]
        if unreachable:
            raise ValueError(f"steps {unreachable} can never run; remove them or point a `next` at them")
        # A loop must pass through a wait, or one advance would spin forever.
        graph = {
            s.id: [t for t in self.successors(s) if not isinstance(by_id[t], WAITS)]
            for s in self.steps
            if not isinstance(s, WAITS)
        }
        visiting: set[str] = set()
        done: set[str] = set()

        def visit(node: str) -> None:
            visiting.add(node)
            for target in graph.get(node, []):
                if target in visiting:
                    raise ValueError(f"steps loop through {target!r} without a wait")
                if target not in done:
                    visit(target)
            visiting.discard(node)
            done.add(node)

        for node in graph:
            if node not in done:
                visit(node)

    def step(self, step_id: str) -> Step:
        found = _steps_of(self).get(step_id)
        if found is None:
            raise KeyError(f"flow {self.id!r} has no step {step_id!r}")
        return found[0]

    def following(self, step_id: str) -> str | None:
        """The step after this one in the list (the default next)."""
        found = _steps_of(self).get(step_id)
        if found is None:
            raise ValueError(f"{step_id!r} is not in list")  # what the list's index() said
        return found[1]

    @property
    def first_step_id(self) -> str:
        return self.steps[0].id

    def category_of(self, step: MessageStep) -> Category:
        return step.category or self.category

    def reads_segments(self) -> bool:
        """Whether anything the flow runs may read a contact's segments or lifecycle stage: a segment trigger,
        a segment event it exits or converts on, or a filter, condition, path, subject or other text that
        names them or reads the contact in a way not seen here (`contact[key]`, `contact.get(...)`, the
        contact whole, another template pulled in). Cautious: any text that may, does (a step id `stage_2`
        too); only the name, description and topic are left out, which nothing evaluates.

        A backtest of flows that read none evaluates no segment and no stage (ADR 0010): ~a sixth of a
        post-purchase replay, with every message, skip and figure the same."""
        return self._texts_read(_SEGMENT_WORDS, _SEGMENT_FIELDS)

    def reads_aggregates(self) -> bool:
        """Whether anything the flow runs may read a contact's aggregates (orders, spend, products, engaged
        hours), as `reads_segments` asks it: a text naming them, the recommendations (made from the products
        bought) or the predictions, a read of the contact not seen here, or a `wait_until` at the contact's
        best time (their engaged hours). Segments read them too: a backtest counts no aggregates only where
        its flows read neither (ADR 0010)."""
        best_time = any(isinstance(step, WaitUntilStep) and step.best_time for step in self.steps)
        return best_time or self._texts_read(_AGGREGATE_WORDS, _AGGREGATE_FIELDS)

    def _texts_read(self, words: str, fields: frozenset[str]) -> bool:
        plain = CONTACT_FIELDS - fields
        texts = (text for key, value in as_data(self).items() if key not in _PROSE for text in _texts(value))
        return any(_may_read(text, words, plain) for text in texts)


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

    def deployed(self, flow_id: str) -> Flow | None:
        """One of the catalog's own flows, never a campaign's (`CampaignCatalog.get` adds those, reading the
        campaign's document)."""
        return self._flows.get(flow_id)

    def started_by(self, event_type: str) -> list[Flow]:
        """The flows an event of this type may start, in catalog order: an event trigger that names the type
        (its `where` and `filter` are the engine's to judge), or a segment trigger on that move. Worked out once
        per type: the engine asks on every event, and most flows want another type."""
        index: dict[str, list[Flow]] | None = self.__dict__.get("_started_by")
        if index is None or len(index) >= _STARTERS_KEPT:  # any type an API caller sends: kept bounded
            index = self.__dict__["_started_by"] = {}
        found = index.get(event_type)
        if found is None:
            found = index[event_type] = [flow for flow in self._flows.values() if may_start(flow, event_type)]
        return found

    def __getstate__(self) -> dict[str, Any]:
        return {"_flows": self._flows}  # not the index: it is rebuilt as types arrive

    def marketing_topics(self) -> tuple[tuple[str, str], ...]:
        """What the preference page offers: each marketing flow's id and its topic (else its name), by name."""
        ordered = sorted(self._flows.values(), key=lambda flow: flow.name)
        return tuple((flow.id, flow.topic or flow.name) for flow in ordered if flow.category is Category.MARKETING)


_STARTERS_KEPT = 1024

# Flow.reads_segments and reads_aggregates: the words that name them (a field, a trigger's type, an event, a
# template variable), a template that pulls in another (whose text is not the flow's), and each read of
# `contact` with the field it reads, if plain. Patterns as text, compiled (and cached by `re`) at a
# backtest's first question, not at every import.
_PROSE = frozenset({"name", "description", "topic"})
_SEGMENT_WORDS = r"segment|stage"
_SEGMENT_FIELDS = frozenset({"segments", "stage"})
_AGGREGATE_WORDS = r"aggregates|recommendations|predicted"
_AGGREGATE_FIELDS = frozenset({"aggregates", "predicted"})
_PULLS_IN = r"\{%-?\s*(?:include|import|extends|from)\b"
_CONTACT_READ = r"\bcontact\b(?:\s*\.\s*(\w+)|\s*\[\s*(['\"])(\w+)\2\s*\])?"


def _texts(value: Any) -> Iterator[str]:
    """Every string in plain data (a record's `as_data`), keys too."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(key)
            yield from _texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)


def _may_read(text: str, words: str, plain: frozenset[str]) -> bool:
    if re.search(words, text) or re.search(_PULLS_IN, text):
        return True
    for read in re.finditer(_CONTACT_READ, text):
        field_read = read.group(1) or read.group(3)
        if field_read not in plain:  # None: the contact itself, or a key computed as it runs
            return True
    return False


def may_start(flow: Flow, event_type: str) -> bool:
    """Whether an event of this type may start the flow: its event trigger names the type, or its segment
    trigger is on that move (the trigger's `where`, `filter` and segment are the engine's to judge)."""
    trigger = flow.trigger
    if isinstance(trigger, EventTrigger):
        return _is_one_of(event_type, trigger.event)
    if isinstance(trigger, SegmentTrigger):
        return event_type == trigger.event_type
    return False


WEEKDAY_INDEX = {name: index for index, name in enumerate(_WEEKDAYS)}


# Flow object id -> (it, its steps list, step id -> (step, the id of the step after it in the list)): the
# engine asks a flow for its current step and the one after it on every step a run takes, and a flow is
# frozen. The flow is held, so its id is not reused while cached; the list is held to notice a flow whose
# list was replaced (a copy) or grew.
_STEP_INDEX: dict[int, tuple[Flow, list[Step], int, dict[str, tuple[Step, str | None]]]] = {}
_STEP_INDEX_KEPT = 1024


def _steps_of(flow: Flow) -> dict[str, tuple[Step, str | None]]:
    cached = _STEP_INDEX.get(id(flow))
    steps = flow.steps
    if cached is None or cached[0] is not flow or cached[1] is not steps or cached[2] != len(steps):
        if len(_STEP_INDEX) >= _STEP_INDEX_KEPT:
            _STEP_INDEX.clear()
        index: dict[str, tuple[Step, str | None]] = {}
        for i, step in enumerate(steps):
            # The first step of an id wins, as the scans did (validation refuses duplicate ids anyway).
            index.setdefault(step.id, (step, steps[i + 1].id if i + 1 < len(steps) else None))
        cached = _STEP_INDEX[id(flow)] = (flow, steps, len(steps), index)
    return cached[3]
