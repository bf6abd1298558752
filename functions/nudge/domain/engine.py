"""The engine: pure functions from (state, input, now) to decisions. No clock reads, no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import field
from datetime import date, datetime, time, timedelta
from typing import Any, assert_never
from zoneinfo import ZoneInfo

from nudge.domain import expressions, send_time
from nudge.domain.durations import parse_duration, parse_offset
from nudge.domain.flows import (
    WEEKDAY_INDEX,
    AudienceStep,
    BranchStep,
    DateTrigger,
    EmailStep,
    EndStep,
    EventTrigger,
    Flow,
    FlowCatalog,
    MessageStep,
    SegmentTrigger,
    SmsStep,
    SplitStep,
    UpdateProfileStep,
    WaitStep,
    WaitUntilStep,
    WebhookStep,
    WhatsAppStep,
    may_start,
)
from nudge.domain.frozen import dataclass
from nudge.domain.guardrails import Guardrails, judge
from nudge.domain.model import (
    Category,
    Channel,
    Contact,
    Event,
    FlowSlot,
    JsonDict,
    Message,
    MessageStatus,
    Run,
    RunStatus,
    SentRecord,
    evolve,
)
from nudge.domain.timezones import zone_for
from nudge.domain.whatsapp import WINDOW_CLOSED, window_open

STEP_BUDGET = 200  # steps one advance may execute; only a flow bug could need more
JOURNAL_LIMIT = 50


@dataclass(frozen=True, slots=True)
class StartRun:
    run: Run
    slot: FlowSlot | None  # the slot as read, so the store can refuse a start that raced another
    # A date flow's run, due on the day: its wake-up is armed before it is stored (RunService.start); every
    # attempt works out the same due time, so a retry finds the schedule an attempt that died armed.
    armed_first: bool = False


@dataclass(frozen=True, slots=True)
class ExitRun:
    run: Run  # the run as it should be stored: status EXITED, with its reason
    previous_version: int


@dataclass(frozen=True, slots=True)
class GoalReached:
    run: Run  # converted; ended too if the goal exits
    previous_version: int


@dataclass(frozen=True, slots=True)
class Redrive:
    """The event was seen before and already started this run: make sure its wake-up is pending.

    A request retried after a failure finds its run started; without this, a run whose first wake-up was
    never queued would wait forever (a `reentry: never` welcome lost for good).
    """

    run: Run


@dataclass(frozen=True, slots=True)
class Refresh:
    """The cart a run reminds of changed (`checkout_updated` for its checkout): later steps show the new one."""

    run: Run  # with the updated trigger
    previous_version: int


Decision = StartRun | ExitRun | GoalReached | Redrive | Refresh

# What a `checkout_updated` replaces in the trigger of a run its checkout started: items added or removed,
# a new total, a fresh recovery link. The checkout id (the goal's key) never changes.
CART_UPDATE = "checkout_updated"
CART_KEYS = ("lines", "total", "subtotal", "currency", "recovery_url", "discount_codes", "checkout_token")


@dataclass(frozen=True, slots=True)
class SendIntent:
    """A message the run wants sent now; `skip_reason` set means consent or a guardrail said no."""

    message: Message
    flow: Flow
    step: MessageStep
    context: JsonDict
    skip_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ProfileUpdate:
    contact_id: str
    set: JsonDict
    unset: tuple[str, ...] = ()
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    email_marketing: bool | None = None
    sms_marketing: bool | None = None
    whatsapp_marketing: bool | None = None

    def apply(self, contact: Contact, now: datetime) -> Contact:
        properties = {k: v for k, v in contact.properties.items() if k not in self.unset}
        properties.update(self.set)
        tags = [t for t in contact.tags if t not in self.remove_tags]
        tags += [t for t in self.add_tags if t not in tags]
        return evolve(
            contact,
            properties=properties,
            tags=tuple(tags),
            email_marketing=contact.email_marketing if self.email_marketing is None else self.email_marketing,
            sms_marketing=contact.sms_marketing if self.sms_marketing is None else self.sms_marketing,
            whatsapp_marketing=(
                contact.whatsapp_marketing if self.whatsapp_marketing is None else self.whatsapp_marketing
            ),
            updated_at=now,
        )


@dataclass(frozen=True, slots=True)
class WebhookIntent:
    message: Message
    url: str
    body: JsonDict
    timeout: timedelta
    retries: int


@dataclass(frozen=True, slots=True)
class AudienceIntent:
    """An audience step's membership change: its outbox record (PENDING, or SKIPPED without ad consent)."""

    message: Message
    step: AudienceStep


@dataclass(frozen=True, slots=True)
class Advance:
    """What executing a run up to its next wait decided, and the run's next state."""

    run: Run
    sends: list[SendIntent] = field(default_factory=list)
    profile_updates: list[ProfileUpdate] = field(default_factory=list)
    webhooks: list[WebhookIntent] = field(default_factory=list)
    audiences: list[AudienceIntent] = field(default_factory=list)
    # The template view of the contact the advance was given, if a step built it and no profile update
    # changed the contact: what delivering the advance's messages renders them with (built once, not twice).
    # Derived from the contact: neither compared nor shown (a repr in a log would print the contact).
    contact_view: JsonDict | None = field(default=None, repr=False, compare=False)

    @property
    def wake_at(self) -> datetime | None:
        return self.run.due_at if self.run.is_active else None


# Entry and exit -------------------------------------------------------------------------------------


def may_enter(flow: Flow, slot: FlowSlot | None, now: datetime) -> bool:
    """One active run per contact and flow, and the flow's re-entry rule."""
    if slot is None or slot.started_count == 0:
        return slot is None or slot.active_run_id is None
    if slot.active_run_id is not None:
        return False
    if flow.entry.reentry == "never":
        return False
    cooldown = flow.entry.cooldown
    return not (cooldown and slot.last_started_at and slot.last_started_at + cooldown > now)


def refreshed_cart(run: Run, event: Event, now: datetime) -> Run | None:
    """The run with the cart `event` (a `checkout_updated` of the run's own checkout) carries; None if no change."""
    checkout_id = event.properties.get("checkout_id")
    if event.type != CART_UPDATE or checkout_id is None or run.trigger.get("checkout_id") != checkout_id:
        return None
    cart = {key: event.properties[key] for key in CART_KEYS if key in event.properties}
    if all(run.trigger.get(key) == value for key, value in cart.items()):
        return None
    return evolve(run, trigger={**run.trigger, **cart}, updated_at=now)


def on_event(
    event: Event,
    contact: Contact | None,
    slots: Mapping[str, FlowSlot],
    active_runs: Iterable[Run],
    flows: Iterable[Flow],
    now: datetime,
) -> list[Decision]:
    """Decide which runs this event converts or ends, and which flows it starts (or started, if seen before)."""
    decisions: list[Decision] = []
    event_type = event.type
    # Active runs are judged against the deployed flows, as iterating a catalog gives them: a campaign's run
    # has no goal or exit rule, and looking its flow up (CampaignCatalog.get) would read its document.
    find: Callable[[str], Flow | None]
    if isinstance(flows, FlowCatalog):
        # The catalog's index: the flows this type may start, worked out once per type (not every flow asked).
        find = flows.deployed
        starters: Iterable[Flow] = flows.started_by(event_type)
    else:
        by_id = {flow.id: flow for flow in flows}
        find = by_id.get
        starters = [flow for flow in by_id.values() if may_start(flow, event_type)]
    event_view = {**event.properties, "type": event_type}  # a property named `type` does not change the event
    # The contact's view, built when a filter first reads it (most events run none): the same view each time.
    viewed: list[JsonDict] = []

    def contact_view() -> JsonDict:
        if not viewed:
            viewed.append(contact.template_view() if contact else {})
        return viewed[0]

    freed: set[str] = set()
    for run in active_runs:
        flow = find(run.flow_id)
        if flow is None:
            continue
        if run.trigger_event_id == event.event_id:
            decisions.append(Redrive(run))
            continue

        context = {"event": event_view, "trigger": run.trigger, "now": now}

        if flow.goal and run.converted_at is None and _goal_met(flow, event, context, contact_view):
            converted = evolve(
                run,
                converted_at=now,
                conversion={"event_id": event.event_id, "type": event.type, "value": event.properties.get("total")},
                updated_at=now,
            )
            if flow.goal.exit:
                converted = _ended(converted, RunStatus.EXITED, f"goal:{event.type}", now)
                freed.add(flow.id)
            decisions.append(GoalReached(run=converted, previous_version=run.version))
            continue
        for rule in flow.exit:
            if not rule.accepts(event.type):
                continue
            if not all(
                event.properties.get(mine) is not None and event.properties.get(mine) == run.trigger.get(theirs)
                for mine, theirs in rule.match.items()
            ):
                continue
            if rule.filter and not _safe_truthy(rule.filter, context, contact_view):
                continue
            decisions.append(ExitRun(_ended(run, RunStatus.EXITED, f"exit:{event.type}", now), run.version))
            freed.add(flow.id)
            break
        else:
            if (refreshed := refreshed_cart(run, event, now)) is not None:
                decisions.append(Refresh(refreshed, run.version))
    for flow in starters:
        trigger = flow.trigger
        # The starters are the flows this event's type may start (flows.may_start): what is left to judge.
        if isinstance(trigger, EventTrigger):
            if not _triggers(trigger, event_view, contact_view, now):
                continue
        elif isinstance(trigger, SegmentTrigger):
            if event.properties.get("segment") != trigger.segment:
                continue
        else:
            continue
        slot = slots.get(flow.id)
        if flow.id in freed and slot is not None:
            slot = evolve(slot, active_run_id=None)
        if may_enter(flow, slot, now):
            decisions.append(StartRun(new_run(flow, event, now), slots.get(flow.id)))
    return decisions


def enroll(flow: Flow, event: Event, slot: FlowSlot | None, now: datetime) -> StartRun | None:
    """API enrollment: start the flow for the event's contact if its entry rules allow, whatever the trigger."""
    if isinstance(flow.trigger, DateTrigger):
        return None
    return StartRun(new_run(flow, event, now), slot) if may_enter(flow, slot, now) else None


def date_starts(
    contact: Contact, slots: Mapping[str, FlowSlot], flows: Iterable[Flow], default_timezone: str, now: datetime
) -> list[StartRun]:
    """Runs of date-triggered flows (birthday...) the contact should have pending, anchored on the next occurrence."""
    starts = []
    for flow in flows:
        trigger = flow.trigger
        if not isinstance(trigger, DateTrigger) or not may_enter(flow, slots.get(flow.id), now):
            continue
        if _parse_date(_contact_value(contact, trigger.date.split(".")[1:])) is None:
            continue  # no date, no run: and no zone to work out (a phone number's is a parse)
        moment = next_occurrence(trigger, contact, zone_for(contact, default_timezone), now)
        if moment is None:
            continue
        occurrence = f"date:{moment.date().isoformat()}"
        run = Run(
            run_id=Run.id_for(flow.id, contact.contact_id, occurrence),
            contact_id=contact.contact_id,
            flow_id=flow.id,
            status=RunStatus.ACTIVE,
            cursor=flow.first_step_id,
            seq=1,
            trigger_event_id=occurrence,
            trigger={"type": "date", "date": moment.isoformat()},
            started_at=now,
            updated_at=now,
            due_at=moment,
        )
        starts.append(StartRun(run, slots.get(flow.id), armed_first=True))
    return starts


def next_occurrence(trigger: DateTrigger, contact: Contact, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The next moment (UTC) the date trigger fires for this contact, or None (no date, or a past one-off)."""
    raw = _contact_value(contact, trigger.date.split(".")[1:])
    base = _parse_date(raw)
    if base is None:
        return None
    at = time.fromisoformat(trigger.time)
    offset = parse_offset(trigger.offset)
    today = now.astimezone(zone).date()
    years = range(today.year - 1, today.year + 2) if trigger.repeat == "yearly" else [base.year]
    for year in years:
        day = _same_day_in(base, year) + offset
        moment = datetime.combine(day, at, tzinfo=zone).astimezone(now.tzinfo)
        if moment > now:
            return moment
    return None


def new_run(flow: Flow, event: Event, now: datetime) -> Run:
    """A fresh run positioned on the flow's first step, due at once; or, when that step is a wait of a fixed
    duration, on the step after it, due when the wait ends.

    The second is the state the run's first wake-up would have left it in (its cursor, its wake-up number
    and when it is due: a wait counts from when its wake-up was due, here the start), without that
    wake-up: starting it arms the wake-up at the wait's end directly (ADR 0020, Decision 15). An
    abandoned-cart or win-back run costs one piece of work fewer, and a backtest replays one fewer. A wait
    that reads the event or the contact (`{{ }}` in its duration) is worked out by the first wake-up as
    before, where a bad value ends the run with its error noted."""
    first = flow.steps[0]
    cursor: str | None = first.id
    seq, due = 0, now
    if isinstance(first, WaitStep) and "{{" not in first.duration:
        cursor, seq, due = first.next or flow.following(first.id), 1, now + parse_duration(first.duration)
    contact_id = event.contact_id  # derived from the event's contact on each ask
    return Run(
        run_id=Run.id_for(flow.id, contact_id, event.event_id),
        contact_id=contact_id,
        flow_id=flow.id,
        status=RunStatus.ACTIVE,
        cursor=cursor,
        seq=seq,
        trigger_event_id=event.event_id,
        trigger={**event.properties, "type": event.type},
        started_at=now,
        updated_at=now,
        due_at=due,  # an overdue start (a lost first wake-up) is one the repair job re-drives
    )


def exit_run(run: Run, reason: str, now: datetime) -> Run:
    """The run, ended early for `reason`."""
    return _ended(run, RunStatus.EXITED, reason, now)


# Advancing ------------------------------------------------------------------------------------------


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def advance(
    run: Run,
    flow: Flow,
    contact: Contact | None,
    history: Iterable[SentRecord],
    policy: Guardrails,
    now: datetime,
    send_time_prior: Callable[[], Sequence[float]] | None = None,
    split_winner: Callable[[str, SplitStep], str | None] | None = None,
) -> Advance:
    """Execute steps from the run's cursor until a wait, a deferral or the end.

    `send_time_prior`: the shop's send-time curve (`ShopCurve.prior`), asked only by a `best_time` wait.
    `split_winner(flow id, split)`: the winner an `auto_winner` split has chosen, or None (still testing).

    Waits are counted from when the current wake-up was due (not when it fired), so a late firing does
    not push the rest of the sequence later.
    """
    if not run.is_active:
        return Advance(run=run)
    guard = policy.merged(flow.guardrails)
    # The contact's zone as the advance began, worked out when a step first reads it (a plain wait does not).
    zoned: list[ZoneInfo] = []
    original = contact

    def zone() -> ZoneInfo:
        if not zoned:
            zoned.append(zone_for(original, guard.default_timezone))
        return zoned[0]

    anchor = run.due_at if run.due_at is not None and run.due_at <= now else now
    sent = list(history)
    # What the advance decides, gathered here and made into its Advance once, with the run's next state.
    sends: list[SendIntent] = []
    profile_updates: list[ProfileUpdate] = []
    webhooks: list[WebhookIntent] = []
    audiences: list[AudienceIntent] = []

    def planned(state: Run) -> Advance:
        return Advance(state, sends, profile_updates, webhooks, audiences, None if profile_updates else view)

    journal = list(run.journal)
    variants = dict(run.variants)
    cursor = run.cursor
    # The contact's view, built when a step first reads it (a plain wait does not); a profile update below
    # drops it, to be built again from the updated contact.
    view: JsonDict | None = None

    def moved(next_cursor: str | None, due: datetime) -> Advance:
        state = evolve(
            run,
            cursor=next_cursor,
            seq=run.seq + 1,
            due_at=due,
            updated_at=now,
            variants=variants,
            journal=tuple(journal[-JOURNAL_LIMIT:]),
        )
        return planned(state)

    try:
        for _ in range(STEP_BUDGET):
            if cursor is None:
                break
            step = flow.step(cursor)
            following = step.next or flow.following(cursor)
            if isinstance(step, WaitStep) and "{{" not in step.duration:
                context: JsonDict = {}  # a fixed duration reads no context
            else:
                if view is None:
                    view = contact.template_view() if contact else {}
                context = _context_of(run, view, variants, now)
            match step:
                case WaitStep():
                    due = anchor + _wait_duration(step, context)
                    if due > now:
                        return moved(following, due)
                    anchor, cursor = due, following
                case WaitUntilStep():
                    moment = _wait_until(step, context, zone(), anchor, contact, send_time_prior)
                    if moment is None or moment <= now:
                        if moment is None or (step.date is not None and step.if_past != "continue"):
                            journal.append(_note(step.id, "past", now))
                            cursor = following if step.if_past == "continue" else step.if_past
                        else:
                            anchor, cursor = moment, following
                        continue
                    return moved(following, moment)
                case EmailStep() | SmsStep() | WhatsAppStep():
                    intent, deferral = _message(run, flow, step, contact, sent, guard, zone(), variants, context, now)
                    if deferral is not None:
                        journal.append(
                            _note(step.id, "deferred", now, reason=deferral[0], until=deferral[1].isoformat())
                        )
                        return moved(step.id, deferral[1])
                    sends.append(intent)
                    if intent.skip_reason is None:
                        sent.append(
                            SentRecord(intent.message.channel, intent.message.category, flow.priority, now, flow.id)
                        )
                    cursor = following
                case BranchStep():
                    taken = _truthy(step.condition, context, step.id)
                    journal.append(_note(step.id, "branch", now, result=taken))
                    cursor = step.then if taken else (step.otherwise or flow.following(step.id))
                case SplitStep():
                    name, target = choose_variant(flow.id, step, run.contact_id)
                    if step.auto_winner is not None and name != "holdout" and split_winner is not None:
                        won = step.variant(split_winner(flow.id, step) or name)
                        name, target = (won.name, won.next) if won is not None else (name, target)
                    variants[step.id] = name
                    journal.append(_note(step.id, "split", now, variant=name))
                    if name == "holdout":
                        return planned(_ended(run, RunStatus.COMPLETED, "holdout", now, variants, tuple(journal)))
                    cursor = target or flow.following(step.id)
                case UpdateProfileStep():
                    update = _profile_update(step, run.contact_id, context)
                    profile_updates.append(update)
                    if contact is not None:
                        contact = update.apply(contact, now)
                        view = None
                    cursor = following
                case WebhookStep():
                    webhooks.append(_webhook(run, flow, step, context, now))
                    cursor = following
                case AudienceStep():
                    audiences.append(_audience(run, flow, step, contact, now))
                    cursor = following
                case EndStep():
                    cursor = None
                case _:
                    assert_never(step)  # a step kind added to the union without a case fails mypy
        else:
            raise _Stop(f"error:{cursor}: more than {STEP_BUDGET} steps without a wait")
    except _Stop as stop:
        journal.append(_note(cursor or "-", "error", now, reason=stop.reason))
        return planned(_ended(run, RunStatus.EXITED, stop.reason[:300], now, variants, tuple(journal[-JOURNAL_LIMIT:])))
    return planned(_ended(run, RunStatus.COMPLETED, None, now, variants, tuple(journal[-JOURNAL_LIMIT:])))


def choose_variant(flow_id: str, step: SplitStep, contact_id: str) -> tuple[str, str | None]:
    """Deterministic per contact: the same contact lands in the same variant on every run and retry."""
    digest = hashlib.sha256(f"{flow_id}|{step.id}|{contact_id}".encode()).hexdigest()
    point = int(digest[:12], 16) / float(16**12) * 100  # uniform in [0, 100)
    if point < step.holdout:
        return "holdout", None
    scaled = (point - step.holdout) / (100 - step.holdout) * sum(v.weight for v in step.variants)
    for variant in step.variants:
        if scaled < variant.weight:
            return variant.name, variant.next
        scaled -= variant.weight
    last = step.variants[-1]
    return last.name, last.next


def consent_problem(contact: Contact | None, channel: Channel, category: Category) -> str | None:
    """Why this contact may not get this message, or None. Transactional mail skips the consent check."""
    if contact is None:
        return "unknown_contact"
    address = contact.email if channel is Channel.EMAIL else contact.phone
    if not address:
        return f"no_{'email' if channel is Channel.EMAIL else 'phone'}"
    if category is Category.TRANSACTIONAL:
        return None
    consent = {
        Channel.EMAIL: contact.email_marketing,
        Channel.SMS: contact.sms_marketing,
        Channel.WHATSAPP: contact.whatsapp_marketing,
    }.get(channel)
    if consent is not True:
        return f"no_{channel.value}_marketing_consent"
    return None


def template_context(
    run: Run, contact: Contact | None, variants: Mapping[str, str], now: datetime, view: JsonDict | None = None
) -> JsonDict:
    """What templates, conditions and filters see; `view`: the contact's template view, if already built."""
    if view is not None:
        return _context_of(run, view, variants, now)
    return _context(run, contact, variants, now)


# Helpers --------------------------------------------------------------------------------------------


def _context(run: Run, contact: Contact | None, variants: Mapping[str, str], now: datetime) -> JsonDict:
    return _context_of(run, contact.template_view() if contact else {}, variants, now)


def _context_of(run: Run, view: JsonDict, variants: Mapping[str, str], now: datetime) -> JsonDict:
    return {
        "contact": view,
        "event": dict(run.trigger),
        "trigger": dict(run.trigger),
        "run": {"id": run.run_id, "flow_id": run.flow_id, "started_at": run.started_at, "variants": dict(variants)},
        "now": now,
        # Is the customer-service window open now (free-form WhatsApp text allowed)? Branches may ask.
        "whatsapp": {"window_open": window_open(view.get("whatsapp_inbound_at"), now)},
    }


def _message(
    run: Run,
    flow: Flow,
    step: MessageStep,
    contact: Contact | None,
    sent: list[SentRecord],
    guard: Guardrails,
    zone: ZoneInfo,
    variants: Mapping[str, str],
    context: JsonDict,
    now: datetime,
) -> tuple[SendIntent, tuple[str, datetime] | None]:
    channel = channel_of(step)
    category = flow.category_of(step)
    problem = consent_problem(contact, channel, category)
    if isinstance(step, WhatsAppStep):
        fallback = step.fallback_step()
        if problem is not None and fallback is not None:
            # No WhatsApp consent (or no phone): the step's fallback goes out instead, under its own consent.
            channel = channel_of(fallback)
            problem = consent_problem(contact, channel, category)
        elif problem is None and step.text is not None and not _window_open(contact, now):
            problem = WINDOW_CLOSED  # free-form text outside the 24-hour window: Meta would refuse it
    recipient = None
    if contact is not None:
        recipient = contact.email if channel is Channel.EMAIL else contact.phone
    last_split = list(variants.items())[-1] if variants else None
    variant = f"{last_split[0]}:{last_split[1]}" if last_split else None
    deferral: tuple[str, datetime] | None = None
    if problem is None:
        verdict = judge(
            channel=channel, category=category, priority=flow.priority, history=sent, policy=guard, zone=zone, now=now
        )
        if verdict.defer and verdict.until is not None and verdict.reason is not None:
            deferral = (verdict.reason, verdict.until)  # the step is taken again then: no message now
        else:
            problem = verdict.reason
    message = _record(run, flow, step.id, channel, category, recipient, now, variant, skipped=problem)
    return SendIntent(message=message, flow=flow, step=step, context=context, skip_reason=problem), deferral


def _window_open(contact: Contact | None, now: datetime) -> bool:
    return contact is not None and window_open(contact.whatsapp_inbound_at, now)


def channel_of(step: MessageStep) -> Channel:
    if isinstance(step, EmailStep):
        return Channel.EMAIL
    return Channel.WHATSAPP if isinstance(step, WhatsAppStep) else Channel.SMS


def _wait_duration(step: WaitStep, context: JsonDict) -> timedelta:
    text = step.duration
    if "{{" in text:
        text = _render(text, context, step.id)
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise _Stop(f"error:{step.id}: {exc}") from None


def _wait_until(
    step: WaitUntilStep,
    context: JsonDict,
    zone: ZoneInfo,
    anchor: datetime,
    contact: Contact | None = None,
    prior: Callable[[], Sequence[float]] | None = None,
) -> datetime | None:
    """The moment (UTC) this wait ends, counted from `anchor`; None if its date is missing.

    `best_time`: the contact's best local hour that day (their history shrunk toward `prior`, as a
    best-time campaign); a run that reaches it within that hour goes on at once."""

    def at(day: date) -> time:
        if not step.best_time:
            return time.fromisoformat(step.time) if step.time else time(0, 0)
        history = contact.aggregates.engaged_hours if contact is not None else ()
        curve = prior() if prior is not None else send_time.ShopCurve().prior()
        return time(send_time.best_hour(send_time.local_hours(history, zone, day), curve))

    if step.date is not None:
        raw = _render(step.date, context, step.id) if "{{" in step.date else step.date
        day = _parse_date(raw)
        if day is None:
            return None
        day = day + parse_offset(step.offset)
        return datetime.combine(day, at(day), tzinfo=zone).astimezone(anchor.tzinfo)
    local = anchor.astimezone(zone)
    allowed = {WEEKDAY_INDEX[d] for d in step.weekdays} or set(range(7))
    for days in range(0, 8):
        day = local.date() + timedelta(days=days)
        if day.weekday() not in allowed:
            continue
        candidate = datetime.combine(day, at(day), tzinfo=zone).astimezone(anchor.tzinfo)
        if candidate > anchor:
            return candidate
        if step.best_time and anchor < candidate + timedelta(hours=1):
            return anchor  # within the best hour already: on at once
    raise AssertionError("a week always holds an allowed day")


def _profile_update(step: UpdateProfileStep, contact_id: str, context: JsonDict) -> ProfileUpdate:
    values = {key: _render_value(value, context, step.id) for key, value in step.set.items()}
    return ProfileUpdate(
        contact_id=contact_id,
        set=values,
        unset=tuple(step.unset),
        add_tags=tuple(step.add_tags),
        remove_tags=tuple(step.remove_tags),
        email_marketing=step.email_marketing,
        sms_marketing=step.sms_marketing,
        whatsapp_marketing=step.whatsapp_marketing,
    )


def _webhook(run: Run, flow: Flow, step: WebhookStep, context: JsonDict, now: datetime) -> WebhookIntent:
    message = _record(run, flow, step.id, Channel.WEBHOOK, Category.TRANSACTIONAL, step.url, now, None)
    return webhook_intent(run, flow, step, context, message)


def _audience(run: Run, flow: Flow, step: AudienceStep, contact: Contact | None, now: datetime) -> AudienceIntent:
    """The change as an outbox record named `<action>:<audience>`; an add without ad consent is skipped here
    (and checked again at delivery). A removal needs no consent: taking someone out is always allowed."""
    recipient = f"{step.action}:{step.audience}"
    message = _record(run, flow, step.id, Channel.AUDIENCE, Category.MARKETING, recipient, now, None)
    # Imported here: the audience declarations are pydantic models most functions never read (ADR 0020).
    from nudge.domain.audiences import ad_consent_problem

    problem = ad_consent_problem(contact) if step.action == "add" else None
    if problem is not None:
        message = evolve(message, status=MessageStatus.SKIPPED, reason=problem)
    return AudienceIntent(message, step)


def webhook_intent(run: Run, flow: Flow, step: WebhookStep, context: JsonDict, message: Message) -> WebhookIntent:
    """The POST a webhook step makes: its body rendered in `context` (again, when delivered from the outbox)."""
    body = {key: _render_value(value, context, step.id) for key, value in step.body.items()}
    return WebhookIntent(message, step.url, body, parse_duration(step.timeout), step.retries)


def _record(
    run: Run,
    flow: Flow,
    step_id: str,
    channel: Channel,
    category: Category,
    recipient: str | None,
    now: datetime,
    variant: str | None,
    *,
    skipped: str | None = None,
) -> Message:
    """The message record a step claims: keyed by run, wake-up and step, so a duplicate firing collides.

    As the advance's commit stores it: `SKIPPED` for the reason consent or a guardrail gave, else decided
    now (`sent_at`: the guardrails count it from this moment, the index's sort key) at the run version the
    commit gives the run."""
    return Message(
        contact_id=run.contact_id,
        message_id=f"{run.run_id}#{run.seq:04d}#{step_id}",
        run_id=run.run_id,
        flow_id=flow.id,
        step_id=step_id,
        channel=channel,
        category=category,
        status=MessageStatus.PENDING if skipped is None else MessageStatus.SKIPPED,
        created_at=now,
        recipient=recipient,
        reason=skipped,
        sent_at=now if skipped is None else None,
        priority=flow.priority,
        variant=variant,
        run_version=run.version + 1 if skipped is None else 0,
    )


def _render_value(value: Any, context: JsonDict, step_id: str) -> Any:
    if isinstance(value, str) and "{{" in value:
        return _render(value, context, step_id)
    if isinstance(value, dict):
        return {k: _render_value(v, context, step_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, context, step_id) for v in value]
    return value


def _render(source: str, context: JsonDict, step_id: str) -> str:
    try:
        return str(expressions.render(source, context))
    except expressions.ExpressionError as exc:
        raise _Stop(f"error:{step_id}: {exc}") from None


def _truthy(source: str, context: JsonDict, step_id: str) -> bool:
    try:
        return expressions.truthy(source, context)
    except expressions.ExpressionError as exc:
        raise _Stop(f"error:{step_id}: {exc}") from None


def _safe_truthy(source: str, context: JsonDict, contact_view: Callable[[], JsonDict]) -> bool:
    """For filters: an expression that fails on this event (a missing property) does not match it. The
    contact's view joins the context only for an expression that reads `contact` (building it is most of
    the cost of an order-triggered filter such as replenishment's, which reads only the order's lines)."""
    names = expressions.names_read(source)
    if names is None or "contact" in names:
        context = {**context, "contact": contact_view()}
    try:
        return expressions.truthy(source, context)
    except expressions.ExpressionError:
        return False


def _triggers(trigger: EventTrigger, event_view: JsonDict, contact_view: Callable[[], JsonDict], now: datetime) -> bool:
    if not trigger.accepts(event_view["type"]):
        return False
    if any(event_view.get(k) != v for k, v in trigger.where.items()):
        return False
    return trigger.filter is None or _safe_truthy(trigger.filter, {"event": event_view, "now": now}, contact_view)


def _goal_met(flow: Flow, event: Event, context: JsonDict, contact_view: Callable[[], JsonDict]) -> bool:
    goal = flow.goal
    assert goal is not None
    return goal.accepts(event.type) and (goal.filter is None or _safe_truthy(goal.filter, context, contact_view))


def _contact_value(contact: Contact, path: list[str]) -> Any:
    """`_lookup(contact.template_view(), path)`; a property without building the whole view (asked on every
    event for each date flow: a birthday is a property)."""
    if path and path[0] == "properties":
        properties = contact.properties
        return _lookup(properties if isinstance(properties, dict) else dict(properties), path[1:])
    return _lookup(contact.template_view(), path)


def _lookup(view: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(view, dict):
            return None
        view = view.get(part)
    return view


def _parse_date(raw: Any) -> date | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    text = str(raw).strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        pass
    try:  # "--MM-DD" or "MM-DD" (a birthday without a year)
        month, day = (int(p) for p in text.lstrip("-").split("-"))
        return date(2000, month, day)
    except ValueError:
        return None


def _same_day_in(base: date, year: int) -> date:
    try:
        return base.replace(year=year)
    except ValueError:  # 29 February in a common year
        return date(year, 2, 28)


def _note(step_id: str, action: str, now: datetime, **details: Any) -> JsonDict:
    return {"at": now.isoformat(), "step": step_id, "action": action, **details}


def _ended(
    run: Run,
    status: RunStatus,
    reason: str | None,
    now: datetime,
    variants: dict[str, str] | None = None,
    journal: tuple[JsonDict, ...] | None = None,
) -> Run:
    """The run ended; with `variants` and `journal`, those too (one copy, not two)."""
    # due_at stays: it names the wake-up that was pending, whose schedule the exit then deletes.
    if variants is None or journal is None:
        return evolve(run, status=status, cursor=None, ended_at=now, updated_at=now, exit_reason=reason)
    return evolve(
        run,
        status=status,
        cursor=None,
        ended_at=now,
        updated_at=now,
        exit_reason=reason,
        variants=variants,
        journal=journal,
    )
