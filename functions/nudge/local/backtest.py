"""`nudge backtest`: a shop's own history replayed through the engine on a virtual clock, sending nothing.

The orders (the import's CSV formats) and events (the API's JSON bodies, one a line) are merged oldest
first and fed to the real `IngestService` over the in-memory twins, with the flows, segments and
guardrails of the working tree; the worker's queue (runs' first steps, and due wake-ups) is worked off in
time order in between, and so does the
daily segment review (04:00 UTC). History before `start` is backfilled (contacts, aggregates, stages;
no flow starts), as `nudge import orders` does; events after `end` are left out.

Nothing leaves the process: the mailer, texter and webhook twins only record. No template is rendered
either (subjects are): a backtest asks who would have got what and when, not what it said; `nudge
preview` and `nudge validate` check the bodies. See docs/backtest.md and docs/adr/0010-backtest.md.
"""

from __future__ import annotations

import gc
import json
import operator
import shutil
import tempfile
import time as time_module
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nudge import names
from nudge.adapters.memory import MemoryQueue, MemoryScheduler, MemoryStore
from nudge.clocks import VirtualClock
from nudge.domain import kpis
from nudge.domain.aggregates import ORDER_PLACED
from nudge.domain.frozen import dataclass
from nudge.domain.model import Channel, Event, Message, MessageStatus, Run, RunStatus
from nudge.domain.validation import validate
from nudge.services.inputs import EventIn
from nudge.services.order_import import Format, Rejected, parse_orders
from nudge.services.runs import NotCommittedYet
from nudge.settings import Settings
from nudge.templating import TemplateRenderer
from nudge.wiring import Container, build_memory

DAILY_REVIEW_AT = time(4, 0)  # when the stack's sweep function runs
BUSY_WEEK = 4  # messages to one contact in one week from which the cadence table counts the week as busy


class HistoryError(ValueError):
    """A history file cannot be read at all (an events line that is not an event)."""


@dataclass(slots=True)
class History:
    """What the files hold: events oldest first (orders and the rest), and the order rows that were refused."""

    events: list[Event] = field(default_factory=list)
    orders: int = 0
    other_events: int = 0
    rejected: list[Rejected] = field(default_factory=list)


def load_history(
    orders: Iterable[str] | None,
    fmt: Format,
    events: Iterable[str] | None,
    now: datetime,
    *,
    assume_consent: bool = False,
) -> History:
    """Parse the order export and the JSON-lines events; `assume_consent` gives order-only customers email consent.

    An events line is an API body (`POST /v1/events`) that must say when it happened (`occurred_at`).

    With the collector paused: everything parsed is kept for the run, so a collection would only walk it
    (the collections the parse's allocations set off were ~45 % of CDNOW's parse, ~1 s of 2.3). What it
    made is then frozen out of the collector's reach (`gc.freeze`, as `kept_heap` freezes a replay's
    records): else the first collection after it walks the whole history, and a forked worker's would
    write to the pages it shares with the parent (which copies them).
    """
    with collector_paused():
        history = _load_history(orders, fmt, events, now, assume_consent=assume_consent)
        gc.freeze()
    return history


def _load_history(
    orders: Iterable[str] | None, fmt: Format, events: Iterable[str] | None, now: datetime, *, assume_consent: bool
) -> History:
    history = History()
    found: list[Event] = []
    if orders is not None:
        parsed = parse_orders(orders, fmt, now, email_consent=assume_consent)
        history.orders, history.rejected = parsed.orders, parsed.rejected
        found = parsed.events
    for number, line in enumerate(events or (), start=1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"events line {number}: not JSON: {exc}") from None
        if not isinstance(body, dict) or body.get("occurred_at") is None:
            raise HistoryError(f"events line {number}: a history event needs `occurred_at`")
        try:
            found.append(validate(EventIn, body).to_event(now))
        except (ValidationError, ValueError) as exc:
            raise HistoryError(f"events line {number}: {exc}") from None
        history.other_events += 1
    # Stable: the order export's own order (an order before its refund) survives equal times. The orders
    # alone are already in this order.
    history.events = sorted(found, key=lambda e: e.occurred_at) if history.other_events else found
    return history


class _SubjectsOnly(TemplateRenderer):
    """Renders subjects and preheaders (compiled once each), never a template file: no body is composed."""

    renders_bodies = False

    def render_file(self, name: str, context: dict[str, Any]) -> str:
        return ""


def subjects_only(templates_dir: Path) -> TemplateRenderer:
    """The backtest's renderer: subjects and preheaders, no body (also the bench's engine-as-replayed figure)."""
    return _SubjectsOnly(templates_dir)


@dataclass(slots=True)
class Replayed:
    """The in-memory deployment after the replay, and what it took."""

    container: Container
    start: datetime
    end: datetime
    replayed: int = 0  # events fed to the flows
    backfilled: int = 0  # events before start: history only
    worked: int = 0  # pieces of work the worker did: a started run's first step, or a wake-up
    reviews: int = 0  # daily segment reviews run

    @property
    def store(self) -> MemoryStore:
        return self.container.store  # type: ignore[return-value]


def replay(
    history: History, settings: Settings, *, start: datetime | None = None, end: datetime | None = None
) -> Replayed:
    """Feed the history to the flows on a virtual clock from `start` to `end` (default: the history's span)."""
    events = history.events
    if not events and (start is None or end is None):
        raise HistoryError("the history holds no event: give --from and --to, or some orders")
    first = start or _day(events[0].occurred_at)
    last = end or _day(events[-1].occurred_at) + timedelta(days=1)
    clock = VirtualClock(min(first, events[0].occurred_at) if events else first)
    container = build_memory(settings, clock, renderer=subjects_only(settings.templates_dir))
    # Segments, stages and aggregates only start, end or steer flows (the summary counts the recorded orders):
    # where none of these flows reads them, nobody needs them worked out on every event and every day (a
    # quarter of a post-purchase replay). Segments read the aggregates: with them, everything is worked out.
    flows = list(container.flows)
    if not any(flow.reads_segments() for flow in flows):
        aggregates = any(flow.reads_aggregates() for flow in flows)
        container.work_out_only_what_is_read(segments=False, aggregates=aggregates)
    # No send budget: the account's rate is shared by every contact (the one thing that would tie one
    # customer's replay to another's), and it would only move the virtual clock. Set before the run
    # service is made, which then takes no send slot at all.
    vars(container)["throttle"] = None
    scheduler: MemoryScheduler = container.scheduler  # type: ignore[assignment]
    queue: MemoryQueue = container.queue  # type: ignore[assignment]
    done = Replayed(container=container, start=first, end=last)
    next_review = datetime.combine(first.date(), DAILY_REVIEW_AT, tzinfo=UTC)
    if next_review < first:
        next_review += timedelta(days=1)

    def run_until(moment: datetime) -> None:
        """As the stack would, up to `moment`: due schedules go to the queue, the worker takes the queue's
        work, and the daily review runs at its hour; in time order, the clock following."""
        nonlocal next_review
        while True:
            scheduled, queued = scheduler.next_due(), queue.next_due()  # the sooner of the two, if any
            due = queued if scheduled is None else scheduled if queued is None else min(scheduled, queued)
            if due is not None and due <= moment and due < next_review:
                clock.set(max(due, clock.now()))
                for pending in scheduler.pop_due(clock.now()):
                    queue.enqueue(pending.wake_up)
                for work in queue.pop_due(clock.now()):
                    try:
                        container.runs.wake(work)
                    except NotCommittedYet:
                        queue.enqueue(work, timedelta(seconds=names.WORK_VISIBILITY_TIMEOUT))
                    done.worked += 1
                    checkpoint()
            elif next_review <= moment:
                clock.set(max(next_review, clock.now()))
                container.ingest.sweep()
                done.reviews += 1
                next_review += timedelta(days=1)
            else:
                break
        clock.set(max(moment, clock.now()))

    with kept_heap() as checkpoint:
        for event in events:
            if event.occurred_at >= last:
                break
            checkpoint()
            if event.occurred_at < first:
                clock.set(max(event.occurred_at, clock.now()))
                container.ingest.backfill(event)
                done.backfilled += 1
                continue
            run_until(event.occurred_at)
            container.ingest.ingest(event)
            done.replayed += 1
        run_until(last)
    return done


FREEZE_EVERY = 1_000  # calls to the checkpoint (events and pieces of work) between two freezes (below)


@contextmanager
def kept_heap() -> Iterator[Callable[..., None]]:
    """For a run that keeps every record it makes (a replay): the collector off, and a checkpoint to call
    after each piece of work (or `checkpoint(n)` after n) that freezes what was made every FREEZE_EVERY
    pieces (`gc.freeze`), so no collection scans the kept records, during the run or after it (everything
    is unfrozen into the oldest generation at the end). Without it each full collection rescanned the whole
    growing heap, and the engine slowed as contacts grew (7,500 wake-ups/s at 32,000 contacts, 11,500 with
    the collector off).

    Nothing is collected inside: a replay makes almost no cyclic garbage (201 objects in a 2,000-customer
    CDNOW group, found by 45 collections of what was young that cost 3.5 % of the replay), so what little
    there is waits for the first full collection after the run.
    """
    since = 0

    def checkpoint(units: int = 1) -> None:
        nonlocal since
        since += units
        if since >= FREEZE_EVERY:
            since = 0
            gc.freeze()

    with collector_paused():
        try:
            yield checkpoint
        finally:
            gc.unfreeze()


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off inside (as it was found after)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _day(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(0), tzinfo=UTC)


# The summary: pure, over the replay's runs, messages and orders ------------------------------------------


@dataclass(slots=True)
class StepRow:
    flow_id: str
    step_id: str
    channel: str
    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count
    failed: int = 0
    orders: int = 0  # orders whose last touch within the window was this step's message
    revenue: Decimal = Decimal("0.00")


@dataclass(slots=True)
class FlowRow:
    flow_id: str
    entered: int = 0  # runs started
    contacts: int = 0  # distinct contacts who entered
    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    completed: int = 0
    exited: Counter[str] = field(default_factory=Counter)  # exit reason -> runs (goal exits not included)
    goal_reached: int = 0
    active_at_end: int = 0
    recipients: int = 0
    orders: int = 0
    revenue: Decimal = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class Cadence:
    """Messages (email and SMS sent) per contact per week: the over-automation check."""

    contact_weeks: int  # (contact, week) pairs with at least one message
    histogram: dict[str, int]  # "1", "2", "3", "4+" -> contact-weeks
    busiest: tuple[str, date, int] | None  # contact, week (its Monday), messages
    mean: float
    busiest_to: str | None = None  # the busiest contact's address, when the replay knew it

    @property
    def busy(self) -> int:
        return self.histogram.get(f"{BUSY_WEEK}+", 0)


@dataclass(frozen=True, slots=True)
class Overlap:
    first: str
    second: str
    contacts: int  # contacts with a run of each flow active at the same time


@dataclass(frozen=True, slots=True)
class Backtest:
    start: datetime
    end: datetime
    window: timedelta
    flows: list[FlowRow]
    steps: list[StepRow]
    weekly: dict[date, dict[str, int]]  # week's Monday -> flow -> messages sent
    cadence: Cadence
    overlaps: list[Overlap]
    orders: int  # orders placed between start and end
    revenue: Decimal
    attributed_orders: int
    attributed_revenue: Decimal
    contacts: int  # contacts the replay knows
    messages: list[Message]  # every message record, oldest first (the listing and the tests read them)

    @property
    def sent(self) -> int:
        return sum(f.sent for f in self.flows)


@dataclass(slots=True)
class Tally:
    """What the summary needs of some contacts' replay, and nothing else: mergeable with another group's.

    Contacts do not share runs, messages or orders, so two disjoint groups' tallies add up to the tally of
    both (`merge`): counts add, distinct-contact counts add (no contact is in two groups), the busiest week
    and each step's first message are the larger and the smaller under a total order. A sharded replay
    (`backtest_sharded`) keeps one per group and drops the group's records.
    """

    flows: dict[str, FlowRow] = field(default_factory=dict)
    steps: dict[tuple[str, str], StepRow] = field(default_factory=dict)
    first_message: dict[tuple[str, str], tuple[datetime, str]] = field(default_factory=dict)  # step -> its first
    weekly: dict[date, Counter[str]] = field(default_factory=dict)
    histogram: Counter[str] = field(default_factory=Counter)
    contact_weeks: int = 0
    weekly_messages: int = 0  # messages over all contact-weeks (the mean's numerator)
    busiest: tuple[int, date, str] | None = None  # messages, week, contact
    busiest_to: str | None = None  # the busiest contact's address
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)  # two flows -> contacts in both at once
    orders: int = 0
    revenue: Decimal = Decimal("0.00")
    attributed_orders: int = 0
    attributed_revenue: Decimal = Decimal("0.00")
    contacts: int = 0

    def merge(self, other: Tally) -> None:
        """Add another, disjoint group of contacts' tally to this one."""
        for flow_id, theirs in other.flows.items():
            row = self.flows.setdefault(flow_id, FlowRow(flow_id))
            for name in ("entered", "contacts", "sent", "failed", "completed", "goal_reached", "active_at_end"):
                setattr(row, name, getattr(row, name) + getattr(theirs, name))
            row.recipients += theirs.recipients
            row.orders += theirs.orders
            row.revenue += theirs.revenue
            row.skipped.update(theirs.skipped)
            row.exited.update(theirs.exited)
        for key, other_step in other.steps.items():
            step = self.steps.setdefault(key, StepRow(other_step.flow_id, other_step.step_id, other_step.channel))
            step.sent += other_step.sent
            step.failed += other_step.failed
            step.orders += other_step.orders
            step.revenue += other_step.revenue
            step.skipped.update(other_step.skipped)
        for key, first in other.first_message.items():
            if key not in self.first_message or first < self.first_message[key]:
                self.first_message[key] = first
        for week, counts in other.weekly.items():
            self.weekly.setdefault(week, Counter()).update(counts)
        self.histogram.update(other.histogram)
        self.contact_weeks += other.contact_weeks
        self.weekly_messages += other.weekly_messages
        if other.busiest is not None and (self.busiest is None or other.busiest > self.busiest):
            self.busiest, self.busiest_to = other.busiest, other.busiest_to
        self.pairs.update(other.pairs)
        self.orders += other.orders
        self.revenue += other.revenue
        self.attributed_orders += other.attributed_orders
        self.attributed_revenue += other.attributed_revenue
        self.contacts += other.contacts


def tally(
    runs: Iterable[Run],
    messages: Iterable[Message],
    orders: Iterable[kpis.Order],
    *,
    start: datetime,
    end: datetime,
    window: timedelta = kpis.DEFAULT_WINDOW,
    contacts: int = 0,
) -> Tally:
    """The summary's counts over one group of contacts' runs, messages and orders (see `Tally`)."""
    runs = sorted(runs, key=_STARTED_THEN_ID)
    orders = [o for o in orders if start <= o.placed_at < end]
    found = Tally(contacts=contacts)
    flows, steps, first_message, weekly = found.flows, found.steps, found.first_message, found.weekly
    entrants: dict[str, set[str]] = defaultdict(set)
    recipients: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        row = flows.get(run.flow_id) or flows.setdefault(run.flow_id, FlowRow(run.flow_id))
        row.entered += 1
        entrants[run.flow_id].add(run.contact_id)
        row.goal_reached += run.converted_at is not None
        if run.status is RunStatus.COMPLETED:
            row.completed += 1
        elif run.status is RunStatus.EXITED and not (run.exit_reason or "").startswith("goal:"):
            row.exited[run.exit_reason or "-"] += 1
        elif run.is_active:
            row.active_at_end += 1
    # A plain dict: most contact-weeks are new, and a Counter asks its __missing__ (Python) for each.
    per_contact_week: dict[tuple[str, date], int] = {}
    mondays: dict[date, date] = {}  # a day's week, its Monday (`_monday`), worked out once a day
    touches = []
    sent, skipped, failed, webhook = MessageStatus.SENT, MessageStatus.SKIPPED, MessageStatus.FAILED, Channel.WEBHOOK
    for message in messages:
        flow_id = message.flow_id
        row = flows.get(flow_id) or flows.setdefault(flow_id, FlowRow(flow_id))
        key = (flow_id, message.step_id)
        step = steps.get(key)
        if step is None:
            step = steps[key] = StepRow(flow_id, message.step_id, message.channel.value)
        earliest = first_message.get(key)
        if earliest is None or message.created_at <= earliest[0]:  # else not the first: no pair to compare
            first = (message.created_at, message.message_id)
            if earliest is None or first < earliest:
                first_message[key] = first
        status = message.status
        if status is sent:
            row.sent += 1
            step.sent += 1
            if message.channel is not webhook:
                # Only a message sent touches its contact (kpis.MessageFacts.touches): the rest earn no credit.
                touches.append(kpis.MessageFacts.of(message))
                if (sent_at := message.sent_at) is not None:
                    recipients[flow_id].add(message.contact_id)
                    day = sent_at.astimezone(UTC).date()
                    week = mondays.get(day)
                    if week is None:
                        week = mondays[day] = _monday(sent_at)
                    if (counts := weekly.get(week)) is None:
                        counts = weekly[week] = Counter()
                    counts[flow_id] += 1
                    contact_week = (message.contact_id, week)
                    per_contact_week[contact_week] = per_contact_week.get(contact_week, 0) + 1
        elif status is skipped:
            row.skipped[message.reason or "-"] += 1
            step.skipped[message.reason or "-"] += 1
        elif status is failed:
            row.failed += 1
            step.failed += 1
    credited = kpis.attribute(touches, orders, window)
    by_id = {o.order_id: o for o in orders}
    for order_id, touch in credited.items():
        total = by_id[order_id].total
        for target in (flows[touch.flow_id], steps[(touch.flow_id, touch.step_id)]):
            target.orders += 1
            target.revenue += total
    for flow_id, row in flows.items():
        row.contacts = len(entrants[flow_id])
        row.recipients = len(recipients[flow_id])
    for count in per_contact_week.values():
        found.histogram[str(count) if count < BUSY_WEEK else f"{BUSY_WEEK}+"] += 1
    found.contact_weeks = len(per_contact_week)
    found.weekly_messages = sum(per_contact_week.values())
    busiest = max(per_contact_week.items(), key=lambda kv: (kv[1], kv[0][1], kv[0][0]), default=None)
    found.busiest = (busiest[1], busiest[0][1], busiest[0][0]) if busiest else None
    found.pairs = _overlapping(runs, end)
    found.orders = len(orders)
    found.revenue = sum((o.total for o in orders), Decimal("0.00"))
    found.attributed_orders = len(credited)
    found.attributed_revenue = sum((by_id[o].total for o in credited), Decimal("0.00"))
    return found


def finish(
    counted: Tally, *, start: datetime, end: datetime, window: timedelta, messages: list[Message] | None = None
) -> Backtest:
    """The summary of one tally (of every contact): rows in order, cadence, overlaps."""
    busiest = counted.busiest
    per_week = counted.contact_weeks
    return Backtest(
        start=start,
        end=end,
        window=window,
        flows=sorted(counted.flows.values(), key=lambda r: r.flow_id),
        # Steps in the order the replay first reached them (their order in the flow, for a straight flow).
        steps=sorted(counted.steps.values(), key=lambda r: (r.flow_id, counted.first_message[(r.flow_id, r.step_id)])),
        weekly={week: dict(sorted(counts.items())) for week, counts in sorted(counted.weekly.items())},
        cadence=Cadence(
            contact_weeks=per_week,
            histogram={k: counted.histogram[k] for k in [*map(str, range(1, BUSY_WEEK)), f"{BUSY_WEEK}+"]},
            busiest=(busiest[2], busiest[1], busiest[0]) if busiest else None,
            mean=counted.weekly_messages / per_week if per_week else 0.0,
            busiest_to=counted.busiest_to,
        ),
        overlaps=sorted(
            (Overlap(a, b, people) for (a, b), people in counted.pairs.items()),
            key=lambda o: (-o.contacts, o.first, o.second),
        ),
        orders=counted.orders,
        revenue=counted.revenue,
        attributed_orders=counted.attributed_orders,
        attributed_revenue=counted.attributed_revenue,
        contacts=counted.contacts,
        messages=messages if messages is not None else [],
    )


_STARTED_THEN_ID = operator.attrgetter("started_at", "run_id")


def _monday(moment: datetime) -> date:
    day = moment.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


def _overlapping(runs: Iterable[Run], end: datetime) -> Counter[tuple[str, str]]:
    """Pairs of flows and how many contacts were in both at once (a run's span: started to ended, or end)."""
    spans: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for run in runs:
        spans[run.contact_id].append((run.started_at, run.ended_at or end, run.flow_id))
    pairs: Counter[tuple[str, str]] = Counter()
    for found in spans.values():
        if all(flow == found[0][2] for _, _, flow in found):
            continue  # one run, or runs of one flow: no pair
        found.sort()
        # One pass by start: a run overlaps an earlier-started run of another flow if that flow's
        # latest end so far is after this run's start (each earlier run is compared, as pairwise would).
        latest: dict[str, datetime] = {}
        both: set[tuple[str, str]] = set()
        for began, ended, flow in found:
            for other, other_ended in latest.items():
                if other != flow and other_ended > began:
                    both.add((min(flow, other), max(flow, other)))
            if ended > latest.get(flow, ended - timedelta(seconds=1)):
                latest[flow] = ended
        pairs.update(both)
    return pairs


def backtest(
    history: History,
    settings: Settings,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    window: timedelta = kpis.DEFAULT_WINDOW,
) -> tuple[Replayed, Backtest]:
    """Replay the history in one store, then summarize what the flows did (every record kept: tests read them)."""
    done = replay(history, settings, start=start, end=end)
    with collector_paused():  # the tally keeps nothing it makes: a collection would walk the records for nothing
        messages = sorted(done.store.all_messages(), key=lambda m: (m.created_at, m.message_id))
        counted = _tally_of(done, messages, window)
    return done, finish(counted, start=done.start, end=done.end, window=window, messages=messages)


def _tally_of(done: Replayed, messages: Iterable[Message], window: timedelta) -> Tally:
    """The tally of a replay's store, with the busiest week's address (the store knows it)."""
    store = done.store
    found = tally(
        store.all_runs(),
        messages,
        orders_of(store),
        start=done.start,
        end=done.end,
        window=window,
        contacts=len(store.contacts),
    )
    if found.busiest is not None and (contact := store.get_contact(found.busiest[2])) is not None:
        found.busiest_to = contact.email or contact.phone
    return found


SHARD_CONTACTS = 2_000  # contacts replayed together in one store before their records are summed and dropped


@dataclass(frozen=True, slots=True)
class Counts:
    """What a sharded replay did, as `Replayed` says it (no store is left to read)."""

    start: datetime
    end: datetime
    replayed: int = 0
    backfilled: int = 0
    worked: int = 0
    reviews: int = 0
    shards: int = 0
    processes: int = 1
    peak_shard_contacts: int = 0
    cpu: float = 0.0  # CPU seconds the groups' replays and tallies took, in whichever process ran them


def shards_of(history: History, size: int = SHARD_CONTACTS) -> list[History]:
    """The history cut into groups of at most `size` contacts, each with its contacts' events in order.

    Contacts are dealt out in the order they first appear (the first `size` to the first group...), so a
    group is a cohort; each group's events keep the history's order. Nothing a contact does reaches another
    contact's records in a replay (see ADR 0010), so the groups replay alone.
    """
    group_of: dict[str, int] = {}
    # A contact's id is its patch's: a digest of the address, worth asking once per patch, not per event
    # (the import gives all of a customer's events one patch; the ids' own cache is bounded, so a million
    # orders' 300,000 customers made them again, 5 s before any group could start). By identity: every
    # patch lives as long as the history holding it.
    group_of_patch: dict[int, int] = {}
    groups: list[History] = []
    for event in history.events:
        index = group_of_patch.get(id(event.contact))
        if index is None:
            contact_id = event.contact_id
            index = group_of.get(contact_id)
            if index is None:
                index = group_of[contact_id] = len(group_of) // size
                if index == len(groups):
                    groups.append(History())
            group_of_patch[id(event.contact)] = index
        groups[index].events.append(event)
    return groups


def replay_tally(
    history: History, settings: Settings, *, start: datetime, end: datetime, window: timedelta
) -> tuple[Counts, Tally]:
    """One group's replay, summed: the store and its records are dropped when this returns.

    With the collector off throughout: the tally reads every record the replay made and keeps none of them,
    so a collection would only walk them for nothing (half the tally's time, with it on). Then the
    container forgets its services, and with them the store: its records go at once, by their reference
    counts, instead of waiting, held by the services' references back to the container, for the next full
    collection, which walks every live object (~0.4 s a group of 2,000 customers).
    """
    began = time_module.process_time()
    with collector_paused():
        done = replay(history, settings, start=start, end=end)
        counted = _tally_of(done, done.store.all_messages(), window)
        done.container.forget()
    counts = Counts(
        start=start,
        end=end,
        replayed=done.replayed,
        backfilled=done.backfilled,
        worked=done.worked,
        reviews=done.reviews,
        shards=1,
        peak_shard_contacts=counted.contacts,
        cpu=time_module.process_time() - began,
    )
    return counts, counted


# What a forked worker process replays: set by the parent before the pool forks, read by index.
_WORK: tuple[list[History], Settings, datetime, datetime, timedelta] | None = None


def _replay_shard(index: int) -> tuple[Counts, Tally]:
    assert _WORK is not None
    shards, settings, start, end, window = _WORK
    return replay_tally(shards[index], settings, start=start, end=end, window=window)


def backtest_sharded(
    history: History,
    settings: Settings,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    window: timedelta = kpis.DEFAULT_WINDOW,
    shard_contacts: int = SHARD_CONTACTS,
    processes: int = 1,
    progress: Callable[[int, int, Counts], object] | None = None,
) -> tuple[Counts, Backtest]:
    """The backtest of `backtest`, replayed group by group of contacts, across `processes` (forked) workers.

    Each group is replayed in its own store, summed into a `Tally` and dropped, so memory holds one group's
    records per process (plus the history) instead of everyone's; the tallies are merged in group order.
    The result is the unsharded one's, figure for figure (tests/unit/test_backtest.py checks it), except
    that no message record is kept (`Backtest.messages` is empty). `progress(done, groups, counts so far)`
    hears of each group merged.
    """
    global _WORK
    events = history.events
    if not events and (start is None or end is None):
        raise HistoryError("the history holds no event: give --from and --to, or some orders")
    first = start or _day(events[0].occurred_at)
    last = end or _day(events[-1].occurred_at) + timedelta(days=1)
    shards = shards_of(history, shard_contacts) or [History()]
    results: Iterable[tuple[Counts, Tally]]
    workers = max(1, min(processes, len(shards)))
    if workers == 1:
        results = (replay_tally(shard, settings, start=first, end=last, window=window) for shard in shards)
        merged = _merge(results, first, last, len(shards), progress)
    else:
        import multiprocessing

        _WORK = (shards, settings, first, last, window)
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                merged = _merge(pool.imap(_replay_shard, range(len(shards))), first, last, len(shards), progress)
        finally:
            _WORK = None
    counts, counted = merged
    counts = replace(counts, processes=workers)
    return counts, finish(counted, start=first, end=last, window=window)


def _merge(
    results: Iterable[tuple[Counts, Tally]],
    start: datetime,
    end: datetime,
    groups: int,
    progress: Callable[[int, int, Counts], object] | None,
) -> tuple[Counts, Tally]:
    """Sum the groups' counts and tallies, in group order (every sum is exact: integers and decimals)."""
    total = Counts(start=start, end=end)
    merged = Tally()
    for counts, counted in results:
        total = replace(
            total,
            replayed=total.replayed + counts.replayed,
            backfilled=total.backfilled + counts.backfilled,
            worked=total.worked + counts.worked,
            reviews=max(total.reviews, counts.reviews),  # every group reviews every day of the span
            shards=total.shards + 1,
            peak_shard_contacts=max(total.peak_shard_contacts, counts.peak_shard_contacts),
            cpu=total.cpu + counts.cpu,
        )
        merged.merge(counted)
        if progress is not None:
            progress(total.shards, groups, total)
    return total, merged


def orders_of(store: MemoryStore) -> Iterator[kpis.Order]:
    """Every order_placed event the replay recorded (backfilled ones too), as the attribution reads them."""
    for record in store.events.values():
        event: Event = record["event"]
        if event.type == ORDER_PLACED:
            yield kpis.order_of(event.contact_id, event.event_id, event.properties, event.occurred_at)


# Which flows run: the working tree's, a chosen few, or another version of one ------------------------


@contextmanager
def flows_for(flows_dir: Path, chosen: Sequence[str] = (), replacing: Path | None = None) -> Iterator[Path]:
    """A flows directory holding the chosen flows (ids or files; default all) and the guardrails.

    `replacing` is a flow file that stands in for the flow of the same id (how --compare runs a version).
    Yields `flows_dir` itself when nothing changes.
    """
    if not chosen and replacing is None:
        yield flows_dir
        return
    from nudge.flow_files import load_flow

    files = {load_flow(p).id: p for p in sorted(flows_dir.glob("*.yaml")) if not p.name.startswith("_")}
    keep: dict[str, Path] = {}
    for name in chosen:
        path = Path(name)
        if path.suffix in {".yaml", ".yml"}:
            keep[load_flow(path).id] = path
        elif name in files:
            keep[name] = files[name]
        else:
            raise HistoryError(f"no flow {name!r} in {flows_dir}")
    keep = keep or dict(files)
    if replacing is not None:
        keep[load_flow(replacing).id] = replacing
    with tempfile.TemporaryDirectory(prefix="nudge-backtest-") as staged:
        target = Path(staged)
        for path in flows_dir.glob("_*.yaml"):
            shutil.copy(path, target / path.name)
        for flow_id, path in keep.items():
            shutil.copy(path, target / f"{flow_id}.yaml")
        yield target


@dataclass(frozen=True, slots=True)
class Side:
    """One version of the compared flow: its file, and the backtest with it in place."""

    path: Path
    result: Backtest

    def flow(self, flow_id: str) -> FlowRow:
        return next((f for f in self.result.flows if f.flow_id == flow_id), FlowRow(flow_id))

    def steps(self, flow_id: str) -> list[StepRow]:
        return [s for s in self.result.steps if s.flow_id == flow_id]


def backtest_settings(flows_dir: Path, templates_dir: Path, segments_dir: Path) -> Settings:
    """Settings for an in-memory replay: no AWS resource is named because none is called."""
    return Settings(
        work_queue_url="https://sqs.us-east-1.amazonaws.com/000000000000/backtest",
        work_queue_arn="arn:aws:sqs:us-east-1:000000000000:backtest",
        scheduler_role_arn="arn:aws:iam::000000000000:role/backtest",
        from_address="backtest@shop.invalid",
        flows_dir=flows_dir,
        templates_dir=templates_dir,
        segments_dir=segments_dir,
        unsubscribe_key="backtest-unsubscribe-key",  # marketing email needs a link, even one never mailed
        unsubscribe_base_url="https://shop.invalid/v1/unsubscribe",
        # Marketing email needs the sender's postal address (issue #14) even when never mailed.
        postal_address="(the shop's postal address)",
    )
