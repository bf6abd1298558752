"""Campaigns as data (campaigns/*.yaml, or the API): one message to an audience, now or at a time.

A campaign is sent through the same path as a flow's message (ADR 0019): it compiles to a one-off flow
(`campaign.<id>`, an `api` trigger, an email step and/or an SMS step) and each recipient gets one run of
it, with a run id derived from the campaign and the contact, so a campaign resolved twice starts each run
once. Consent, suppression, smart sending, frequency caps and SMS quiet hours are the flow path's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from datetime import UTC, datetime, time, timedelta
from datetime import date as Date
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo

from nudge.domain import send_time
from nudge.domain.durations import parse_duration
from nudge.domain.engine import choose_variant
from nudge.domain.flows import ClockTime, Flow, SplitStep, Utm
from nudge.domain.guardrails import GuardrailOverrides
from nudge.domain.lifecycle import STAGES
from nudge.domain.model import Contact, Run, RunStatus
from nudge.domain.records import Check, Checked, as_data, record, replace
from nudge.domain.timezones import zone_for

if TYPE_CHECKING:
    from pydantic import Field

_ID = r"^[a-z][a-z0-9_]{0,39}$"
CAMPAIGN_ID = _ID
FLOW_PREFIX = "campaign."  # flow ids cannot hold a dot: a campaign's flow never collides with a flow
# The earliest local time zone is UTC+14: a campaign at a local time starts resolving that much before UTC.
EARLIEST_OFFSET = timedelta(hours=14)
# The latest is UTC-12: an A/B test at a local or best time has sent its last test message by the day's
# local time there (23:00 for a best time), and its wait is counted from that moment.
LATEST_OFFSET = timedelta(hours=12)
LAST_BEST_HOUR = time(23)


def _known_stages(value: list[str]) -> list[str]:
    if unknown := [s for s in value if s not in STAGES]:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)} (known: {', '.join(STAGES)})")
    return value


@record
class Audience:
    """Who gets it: contacts in any of the segments or stages, or carrying any of the tags (nothing named:
    every contact); minus those in an excluded segment or carrying an excluded tag. Consent and
    suppression are checked at sending time, for every campaign."""

    segments: Annotated[list[str], Field(description="Segment ids (segments/*.yaml).")] = field(default_factory=list)
    stages: Annotated[
        list[str], Check(_known_stages), Field(description="Lifecycle stages, e.g. repeat_buyer, vip.")
    ] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    exclude_segments: list[str] = field(default_factory=list)
    exclude_tags: list[str] = field(default_factory=list)

    def named_segments(self) -> list[str]:
        return [*self.segments, *self.exclude_segments]

    def matches(self, contact: Contact) -> bool:
        """Pure, from the contact item alone (segments and stage are kept on it), so a Scan decides."""
        member = set(contact.segments)
        tags = set(contact.tags)
        if member & set(self.exclude_segments) or tags & set(self.exclude_tags):
            return False
        wanted = [*self.segments, *self.stages]
        if not wanted and not self.tags:
            return True
        return bool(member & set(wanted) or tags & set(self.tags))


@record
class CampaignEmail:
    template: Annotated[str, Field(min_length=1, description="templates/<template>.html.j2 and .txt.j2")]
    subject: Annotated[str, Field(min_length=1, description="A Jinja2 template for the subject line.")]
    preheader: str | None = None
    utm: Annotated[
        Utm, Field(description="UTM parameters over the account's (utm_campaign: campaign.<id> otherwise).")
    ] = None


@record
class CampaignSms:
    template: Annotated[str, Field(min_length=1, description="templates/<template>.sms.j2")]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.utcoffset() is None:
        raise ValueError("give `at` with its offset (e.g. 2026-12-01T09:00:00Z)")
    return value.astimezone(UTC) if value is not None else None


@record
class Schedule(Checked):
    """When: `now` (the default), `at` a UTC moment, `local_time` on `date` in each recipient's zone, or
    `best_time` on `date`: each recipient's best hour there (send_time.py), or `explore`: hours spread
    over the day to learn the curve."""

    at: Annotated[
        datetime | None, Check(_aware), Field(description="ISO 8601 with an offset, e.g. 2026-12-01T09:00:00Z.")
    ] = None
    date: Annotated[Date | None, Field(description="With local_time or best_time: the day, YYYY-MM-DD.")] = None
    local_time: Annotated[ClockTime, Field(description="HH:MM in each recipient's time zone.")] = None
    best_time: Annotated[
        bool | Literal["explore"],
        Field(description="With date: each recipient's best hour in their zone; explore: spread."),
    ] = False

    def _check(self) -> None:
        if self.at is not None and (self.local_time or self.date):
            raise ValueError("a schedule is `at` a moment or `local_time` on a `date`, not both")
        if self.best_time and (self.local_time is not None or self.date is None):
            raise ValueError("`best_time` needs a `date` (the day) and no `local_time` (it chooses the hour)")
        if not self.best_time and (self.local_time is None) != (self.date is None):
            raise ValueError("`local_time` needs a `date`, and a `date` needs a `local_time`")

    @property
    def per_recipient(self) -> bool:
        """Whether each recipient has their own moment (a local time or a best time)."""
        return self.date is not None

    def starts_at(self, now: datetime) -> datetime:
        """When resolving the audience may start: the moment, or the day's local time in the earliest zone."""
        if self.at is not None:
            return max(self.at, now)
        if self.date is not None:
            first = datetime.combine(self.date, time.fromisoformat(self.local_time or "00:00"), UTC)
            return max(first - EARLIEST_OFFSET, now)
        return now

    def due_for(
        self,
        contact: Contact,
        default_timezone: str,
        now: datetime,
        prior: Sequence[float] | None = None,
        *,
        roll: bool = False,
    ) -> datetime:
        """When this recipient's message goes out: the moment, their local time (DST-aware), their best
        hour (their history shrunk toward `prior`, the shop's curve), or now.

        A local time already past in the recipient's zone (the campaign started late) is now; with `roll`
        (the rest of an A/B test at a local or best time, after the decision) it is that time on the next
        day it is still ahead in their zone: the same day if it still is.
        """
        if self.date is not None:
            zone = zone_for(contact, default_timezone)
            first = max(self.date, now.astimezone(zone).date()) if roll else self.date
            for day in (first, first + timedelta(days=1)) if roll else (first,):
                local = datetime.combine(day, self._moment(contact, zone, day, prior), zone).astimezone(UTC)
                if local >= now:
                    return local
            return max(local, now)
        if self.at is not None:
            return max(self.at, now)
        return now

    def _moment(self, contact: Contact, zone: ZoneInfo, day: Date, prior: Sequence[float] | None) -> time:
        """The recipient's time of day on `day`: the local time, an exploratory hour, or their best hour."""
        if self.local_time is not None:
            return time.fromisoformat(self.local_time)
        if self.best_time == "explore":
            return time(send_time.explore_hour(f"{self.date}|{contact.contact_id}"))
        own = send_time.local_hours(contact.aggregates.engaged_hours, zone, day)
        return time(send_time.best_hour(own, prior or send_time.ShopCurve().prior()))

    def last_send(self) -> datetime | None:
        """With a local or best time, when the last recipient's moment of the day comes in any zone: the
        day's local time (the last best hour, 23:00) in UTC-12."""
        if self.date is None:
            return None
        moment = time.fromisoformat(self.local_time) if self.local_time is not None else LAST_BEST_HOUR
        return datetime.combine(self.date, moment, UTC) + LATEST_OFFSET


# The A/B split step of a campaign's flow, and its two reserved groups (not variant names).
AB_SPLIT = "ab"
REST = "rest"  # the audience outside the test and the holdout: it gets the winner
REST_B = "rest_b"  # with a holdout and no test, the split's second variant: half of the rest, the same send
HOLDOUT = "holdout"  # gets nothing, to measure lift
WEIGHT_SCALE = 100  # split weights are integers: percent x 100


def _not_reserved(value: str) -> str:
    if value in (REST, HOLDOUT):
        raise ValueError(f"{value!r} names a group of the test; call the variant something else")
    return value


@record
class AbVariant:
    """A variant of the email: what it changes (subject, preheader and/or template)."""

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,19}$"), Check(_not_reserved)]
    subject: str | None = None
    preheader: str | None = None
    template: str | None = None


def _wait(value: str) -> str:
    try:
        waited = parse_duration(value)
    except ValueError:
        raise ValueError("wait is a duration such as '4h' or '1d'") from None
    if not timedelta(minutes=30) <= waited <= timedelta(days=7):
        raise ValueError("wait is between 30m and 7d")
    return value


@record
class AbTest(Checked):
    """A/B/n test of the email on `test_percent` of the audience, split evenly; after `wait`, the variant
    with the best `metric` goes to the rest. It is the winner at `confidence` (a two-proportion z-test of
    the leader against the runner-up); a test that does not reach it sends the leader, or the first
    variant with `if_inconclusive: first`."""

    variants: Annotated[list[AbVariant], Field(min_length=2, max_length=5)]
    test_percent: Annotated[float, Field(ge=1, le=50, description="Percent of the audience in the test.")] = 20
    metric: Literal["open_rate", "click_rate"] = "click_rate"
    wait: Annotated[str, Check(_wait), Field(description="How long after the start the winner is chosen, e.g. 4h.")] = (
        "4h"
    )
    confidence: Annotated[float, Field(ge=0.5, lt=1)] = 0.95
    if_inconclusive: Literal["leader", "first"] = "leader"

    def _check(self) -> None:
        ids = [v.id for v in self.variants]
        if len(ids) != len(set(ids)):
            raise ValueError("variant ids must be distinct")

    @property
    def waits(self) -> timedelta:
        return parse_duration(self.wait)


@record
class Campaign(Checked):
    """One send to an audience: email and/or SMS content, a schedule, a priority against flows."""

    id: Annotated[str, Field(pattern=_ID)]
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    topic: Annotated[str | None, Field(max_length=80, description="The preference page's name for it.")] = None
    audience: Audience = field(default_factory=Audience)
    email: CampaignEmail | None = None
    sms: CampaignSms | None = None
    schedule: Schedule = field(default_factory=Schedule)
    priority: Annotated[int, Field(ge=0, le=100, description="Higher wins smart sending against lower.")] = 0
    guardrails: GuardrailOverrides = field(default_factory=GuardrailOverrides)
    ab_test: Annotated[AbTest | None, Field(description="A/B/n test of the email, the winner to the rest.")] = None
    holdout: Annotated[float, Field(ge=0, le=50, description="Percent of the audience who get nothing (lift).")] = 0

    def _check(self) -> None:
        if self.email is None and self.sms is None:
            raise ValueError("a campaign sends an email, an SMS or both: give `email` or `sms`")
        if self.ab_test is not None:
            if self.email is None:
                raise ValueError("ab_test varies the email: give `email`")
            if self.holdout + self.ab_test.test_percent > 90:
                raise ValueError("holdout and ab_test.test_percent leave under 10% for the winner")

    @property
    def tests(self) -> bool:
        """Whether its flow opens with the `ab` split (an A/B test, a holdout or both)."""
        return self.ab_test is not None or self.holdout > 0

    def grouping(self) -> Callable[[str], str]:
        """contact id -> the recipient's group: a test variant's id, `holdout`, or `rest`/`rest_b` (the
        winner's, or everyone's without a test). The engine's own deterministic choice at the `ab` split (a
        hash of the flow, the split and the contact over the shares), so what the resolution decides is
        what the worker does."""
        if not self.tests:
            return lambda contact_id: REST
        split = self.as_flow().step(AB_SPLIT)
        assert isinstance(split, SplitStep)
        return lambda contact_id: choose_variant(self.flow_id, split, contact_id)[0]

    def waits_for_winner(self, group: str) -> bool:
        """Whether this group's runs start only once the A/B test's winner is chosen."""
        return self.ab_test is not None and group == REST

    def decide_at(self, created_at: datetime) -> datetime | None:
        """When an A/B test's winner is chosen: its wait after the start, or, at a local or best time, its
        wait after the last test message's moment in any zone (`Schedule.last_send`)."""
        if self.ab_test is None:
            return None
        start = self.schedule.last_send() or self.schedule.at or created_at
        return max(start, created_at) + self.ab_test.waits

    @property
    def flow_id(self) -> str:
        return FLOW_PREFIX + self.id

    def as_flow(self, winner: str | None = None) -> Flow:
        """The one-off flow each recipient's run follows: the email step, then the SMS step.

        With an A/B test or a holdout it opens with a split (`ab`) whose groups are exactly `group()`'s
        (the engine's deterministic choice over the same shares: test variants, `rest`, and the holdout,
        which ends the run with nothing sent); `rest` goes to the winner's email once it is chosen (before
        that no `rest` run is started, and it would end)."""
        from nudge.domain.validation import validate  # checking: only a campaign's wake-up pays for it

        steps: list[dict[str, Any]] = []
        if self.email is not None and not self.tests:
            steps.append({"id": "email", "type": "email", **as_data(self.email, drop_none=True)})
        elif self.email is not None or self.holdout:
            steps.extend(self._split_steps(winner))
        if self.sms is not None:
            steps.append({"id": "sms", "type": "sms", **as_data(self.sms)})
        if len(steps) > 1 and steps[0]["type"] == "split":
            steps.append({"id": "done", "type": "end"})
        flow = validate(
            Flow,
            {
                "id": "campaign",
                "name": self.name,
                "description": self.description,
                "topic": self.topic,
                "priority": self.priority,
                "trigger": {"type": "api"},
                "entry": {"reentry": "never"},
                "guardrails": as_data(self.guardrails, drop_none=True),
                "steps": steps,
            },
        )
        return replace(flow, id=self.flow_id)  # a dotted id, which the flow's rules refuse

    def _split_steps(self, winner: str | None) -> list[dict[str, Any]]:
        after = "sms" if self.sms is not None else "done"
        emails: list[dict[str, Any]] = []
        variants: list[dict[str, Any]] = []
        test = self.ab_test.variants if self.ab_test is not None else []
        share = self.ab_test.test_percent / len(test) if self.ab_test is not None else 0
        for variant in test:
            assert self.email is not None
            content = {**as_data(self.email, drop_none=True), **as_data(variant, drop_none=True)}
            content.pop("id")
            emails.append({"id": f"email_{variant.id}", "type": "email", "next": after, **content})
            variants.append({"name": variant.id, "weight": round(share * WEIGHT_SCALE), "next": emails[-1]["id"]})
        if self.ab_test is None and self.email is not None:  # a holdout only: everyone else gets the email
            emails.append({"id": "email", "type": "email", "next": after, **as_data(self.email, drop_none=True)})
            rest_next = "email"
        else:
            rest_next = f"email_{winner}" if winner is not None else "done"
        if self.email is None:  # SMS only, with a holdout
            rest_next = after
        rest = round((100 - self.holdout - sum(v["weight"] for v in variants) / WEIGHT_SCALE) * WEIGHT_SCALE)
        variants.append({"name": REST, "weight": rest, "next": rest_next})
        if len(variants) < 2:  # a holdout only; a split needs two variants: a second share of the same send
            variants.append({"name": REST_B, "weight": rest, "next": rest_next})
        split = {"id": AB_SPLIT, "type": "split", "variants": variants, "holdout": self.holdout}
        return [split, *emails]

    def recipient_run(
        self,
        contact: Contact,
        default_timezone: str,
        now: datetime,
        prior: Sequence[float] | None = None,
        first_step: str | None = None,
        *,
        rest: bool = False,
    ) -> Run:
        """The recipient's run: its id derived from campaign and contact (a second resolution finds it).
        `first_step`: `as_flow().first_step_id`, once per piece rather than a flow built per recipient.
        `rest`: a run of the rest of an A/B test, started after the decision: at a local or best time, due
        at the next one still ahead in the recipient's zone."""
        trigger_id = f"{FLOW_PREFIX}{self.id}"
        return Run(
            run_id=Run.id_for(self.flow_id, contact.contact_id, trigger_id),
            contact_id=contact.contact_id,
            flow_id=self.flow_id,
            status=RunStatus.ACTIVE,
            cursor=first_step or self.as_flow().first_step_id,
            seq=1,
            trigger_event_id=trigger_id,
            trigger={"type": "campaign", "campaign": self.id},
            started_at=now,
            updated_at=now,
            due_at=self.schedule.due_for(contact, default_timezone, now, prior, roll=rest),
        )


def choose_winner(test: AbTest, counts: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """The A/B test's verdict from each variant's step counters (deliveries, and opens or clicks): the
    leader on the metric against the runner-up in a two-proportion z-test; the winner is the leader if it
    is ahead at the test's confidence, else the leader or the first variant (`if_inconclusive`)."""
    hit = "open" if test.metric == "open_rate" else "click"
    verdict = rate_verdict([(v.id, f"email_{v.id}") for v in test.variants], counts, hit, test.confidence)
    if not verdict["significant"] and test.if_inconclusive == "first":
        verdict["winner"] = test.variants[0].id
    return {"metric": test.metric, **verdict}


def rate_verdict(
    variants: Sequence[tuple[str, str]], counts: Mapping[str, Mapping[str, int]], hit: str, confidence: float
) -> dict[str, Any]:
    """(variant, its email step) from the step counters (deliveries, and `hit`: opens or clicks): the leader
    on the rate against the runner-up in a two-proportion z-test (`kpis.leader_test`). Campaigns' A/B tests
    and flow splits' automatic winners decide with it."""
    rows = [
        (name, int(counts.get(step, {}).get("delivery", 0)), int(counts.get(step, {}).get(hit, 0)))
        for name, step in variants
    ]
    from nudge.domain.kpis import leader_test  # the KPI module's records: only where a winner is decided

    leader, _, z, p, significant = leader_test(rows, confidence)
    return {
        "winner": leader,
        "significant": significant,
        "confidence": confidence,
        "z": round(z, 4),
        "p_value": round(p, 6),
        "variants": {name: {"delivered": base, hit + "s": hits} for name, base, hits in rows},
    }


def campaign_id_of(flow_id: str) -> str | None:
    """The campaign a flow id names, or None for a flow."""
    return flow_id.removeprefix(FLOW_PREFIX) if flow_id.startswith(FLOW_PREFIX) else None


class CampaignStatus(StrEnum):
    """scheduled -> sending -> sent; paused while sending (resume goes on); cancelled for good."""

    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    SENT = "sent"  # every recipient has a run; their messages go out through the worker

    @property
    def sends(self) -> bool:
        """Whether its messages may go out now."""
        return self in (CampaignStatus.SCHEDULED, CampaignStatus.SENDING, CampaignStatus.SENT)


# What each action may follow: a cancelled campaign stays cancelled. Resume goes back to `sent` when every
# segment was already resolved.
TRANSITIONS: dict[str, dict[CampaignStatus, CampaignStatus]] = {
    "pause": {
        CampaignStatus.SCHEDULED: CampaignStatus.PAUSED,
        CampaignStatus.SENDING: CampaignStatus.PAUSED,
        CampaignStatus.SENT: CampaignStatus.PAUSED,  # its recipients' messages may still be going out
    },
    # A resume of a sending campaign queues its unfinished segments again: the earlier resume's write may
    # have landed and its queueing died (its pieces, if queued, stand down for the new epoch).
    "resume": {CampaignStatus.PAUSED: CampaignStatus.SENDING, CampaignStatus.SENDING: CampaignStatus.SENDING},
    "cancel": {
        CampaignStatus.SCHEDULED: CampaignStatus.CANCELLED,
        CampaignStatus.SENDING: CampaignStatus.CANCELLED,
        CampaignStatus.PAUSED: CampaignStatus.CANCELLED,
        CampaignStatus.SENT: CampaignStatus.CANCELLED,
    },
}
