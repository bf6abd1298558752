"""Campaigns as data (campaigns/*.yaml, or the API): one message to an audience, now or at a time.

A campaign is sent through the same path as a flow's message (ADR 0019): it compiles to a one-off flow
(`campaign.<id>`, an `api` trigger, an email step and/or an SMS step) and each recipient gets one run of
it, with a run id derived from the campaign and the contact, so a campaign resolved twice starts each run
once. Consent, suppression, smart sending, frequency caps and SMS quiet hours are the flow path's own.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from datetime import date as Date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nudge.domain.flows import Flow, _clock_time
from nudge.domain.guardrails import GuardrailOverrides
from nudge.domain.lifecycle import STAGES
from nudge.domain.model import Contact, Run, RunStatus
from nudge.domain.timezones import zone_for

_ID = r"^[a-z][a-z0-9_]{0,39}$"
CAMPAIGN_ID = _ID
FLOW_PREFIX = "campaign."  # flow ids cannot hold a dot: a campaign's flow never collides with a flow
# The earliest local time zone is UTC+14: a campaign at a local time starts resolving that much before UTC.
EARLIEST_OFFSET = timedelta(hours=14)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Audience(_Strict):
    """Who gets it: contacts in any of the segments or stages, or carrying any of the tags (nothing named:
    every contact); minus those in an excluded segment or carrying an excluded tag. Consent and
    suppression are checked at sending time, for every campaign."""

    segments: list[str] = Field(default_factory=list, description="Segment ids (segments/*.yaml).")
    stages: list[str] = Field(default_factory=list, description="Lifecycle stages, e.g. repeat_buyer, vip.")
    tags: list[str] = Field(default_factory=list)
    exclude_segments: list[str] = Field(default_factory=list)
    exclude_tags: list[str] = Field(default_factory=list)

    @field_validator("stages", mode="after")
    @classmethod
    def _known_stages(cls, value: list[str]) -> list[str]:
        if unknown := [s for s in value if s not in STAGES]:
            raise ValueError(f"unknown stage(s) {', '.join(unknown)} (known: {', '.join(STAGES)})")
        return value

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


class CampaignEmail(_Strict):
    template: str = Field(min_length=1, description="templates/<template>.html.j2 and .txt.j2")
    subject: str = Field(min_length=1, description="A Jinja2 template for the subject line.")
    preheader: str | None = None


class CampaignSms(_Strict):
    template: str = Field(min_length=1, description="templates/<template>.sms.j2")


class Schedule(_Strict):
    """When: `now` (the default), `at` a UTC moment, or `local_time` on `date` in each recipient's zone."""

    at: datetime | None = Field(default=None, description="ISO 8601 with an offset, e.g. 2026-12-01T09:00:00Z.")
    date: Date | None = Field(default=None, description="With local_time: the day, YYYY-MM-DD.")
    local_time: str | None = Field(default=None, description="HH:MM in each recipient's time zone.")

    @field_validator("at", mode="after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("give `at` with its offset (e.g. 2026-12-01T09:00:00Z)")
        return value.astimezone(UTC) if value is not None else None

    _check_local_time = field_validator("local_time")(_clock_time)

    @model_validator(mode="after")
    def _one_way(self) -> Schedule:
        if self.at is not None and (self.local_time or self.date):
            raise ValueError("a schedule is `at` a moment or `local_time` on a `date`, not both")
        if (self.local_time is None) != (self.date is None):
            raise ValueError("`local_time` needs a `date`, and a `date` needs a `local_time`")
        return self

    def starts_at(self, now: datetime) -> datetime:
        """When resolving the audience may start: the moment, or the day's local time in the earliest zone."""
        if self.at is not None:
            return max(self.at, now)
        if self.date is not None and self.local_time is not None:
            first = datetime.combine(self.date, time.fromisoformat(self.local_time), UTC) - EARLIEST_OFFSET
            return max(first, now)
        return now

    def due_for(self, contact: Contact, default_timezone: str, now: datetime) -> datetime:
        """When this recipient's message goes out: the moment, their local time (DST-aware), or now.

        A local time already past in the recipient's zone (the campaign started late) is now.
        """
        if self.date is not None and self.local_time is not None:
            zone = zone_for(contact, default_timezone)
            local = datetime.combine(self.date, time.fromisoformat(self.local_time), zone)
            return max(local.astimezone(UTC), now)
        if self.at is not None:
            return max(self.at, now)
        return now


class Campaign(_Strict):
    """One send to an audience: email and/or SMS content, a schedule, a priority against flows."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1)
    description: str = ""
    topic: str | None = Field(default=None, max_length=80, description="The preference page's name for it.")
    audience: Audience = Field(default_factory=Audience)
    email: CampaignEmail | None = None
    sms: CampaignSms | None = None
    schedule: Schedule = Field(default_factory=Schedule)
    priority: int = Field(default=0, ge=0, le=100, description="Higher wins smart sending against lower.")
    guardrails: GuardrailOverrides = Field(default_factory=GuardrailOverrides)

    @model_validator(mode="after")
    def _content(self) -> Campaign:
        if self.email is None and self.sms is None:
            raise ValueError("a campaign sends an email, an SMS or both: give `email` or `sms`")
        return self

    @property
    def flow_id(self) -> str:
        return FLOW_PREFIX + self.id

    def as_flow(self) -> Flow:
        """The one-off flow each recipient's run follows: the email step, then the SMS step."""
        steps: list[dict[str, Any]] = []
        if self.email is not None:
            steps.append({"id": "email", "type": "email", **self.email.model_dump(exclude_none=True)})
        if self.sms is not None:
            steps.append({"id": "sms", "type": "sms", **self.sms.model_dump()})
        flow = Flow.model_validate(
            {
                "id": "campaign",
                "name": self.name,
                "description": self.description,
                "topic": self.topic,
                "priority": self.priority,
                "trigger": {"type": "api"},
                "entry": {"reentry": "never"},
                "guardrails": self.guardrails.model_dump(exclude_unset=True),
                "steps": steps,
            }
        )
        return flow.model_copy(update={"id": self.flow_id})  # a dotted id, which the flow model refuses

    def recipient_run(self, contact: Contact, default_timezone: str, now: datetime) -> Run:
        """The recipient's run: its id derived from campaign and contact (a second resolution finds it)."""
        trigger_id = f"{FLOW_PREFIX}{self.id}"
        return Run(
            run_id=Run.id_for(self.flow_id, contact.contact_id, trigger_id),
            contact_id=contact.contact_id,
            flow_id=self.flow_id,
            status=RunStatus.ACTIVE,
            cursor=self.as_flow().first_step_id,
            seq=1,
            trigger_event_id=trigger_id,
            trigger={"type": "campaign", "campaign": self.id},
            started_at=now,
            updated_at=now,
            due_at=self.schedule.due_for(contact, default_timezone, now),
        )


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
    "resume": {CampaignStatus.PAUSED: CampaignStatus.SENDING},
    "cancel": {
        CampaignStatus.SCHEDULED: CampaignStatus.CANCELLED,
        CampaignStatus.SENDING: CampaignStatus.CANCELLED,
        CampaignStatus.PAUSED: CampaignStatus.CANCELLED,
        CampaignStatus.SENT: CampaignStatus.CANCELLED,
    },
}
