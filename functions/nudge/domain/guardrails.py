"""Guardrails against over-messaging: smart sending, frequency caps and quiet hours for the phone.

Global defaults live in flows/_guardrails.yaml; a flow may override any section. Consent is checked
for marketing messages only; transactional messages also bypass the guardrails here (a receipt is
never held back), but never suppression.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated, Literal
from zoneinfo import ZoneInfo

from nudge.domain.durations import parse_duration
from nudge.domain.frozen import dataclass
from nudge.domain.model import Category, Channel, SentRecord
from nudge.domain.records import Check, items, record, replace

if TYPE_CHECKING:
    from pydantic import Field

DAY = timedelta(days=1)
WEEK = timedelta(days=7)
# The channels that reach the same phone: smart sending counts them together, quiet hours hold them both.
PHONE = frozenset({Channel.SMS, Channel.WHATSAPP})


def _duration_or_off(value: str | None) -> str | None:
    if value is not None and value != "off":
        parse_duration(value)
    return value


def _clock(value: str) -> str:
    time.fromisoformat(value)
    return value


def _zone(value: str) -> str:
    ZoneInfo(value)
    return value


Window = Annotated[str | None, Check(_duration_or_off)]
Clock = Annotated[str, Check(_clock)]


@record
class SmartSending:
    """Skip (or delay) a marketing message if one went out on that channel within the window.

    SMS and WhatsApp reach the same phone, so each counts the other's messages too (across channels).
    """

    email: Annotated[Window, Field(description="Window for email, or 'off'.")] = "16h"
    sms: Annotated[Window, Field(description="Window for SMS, or 'off'.")] = "24h"
    whatsapp: Annotated[Window, Field(description="Window for WhatsApp, or 'off'.")] = "24h"
    mode: Literal["skip", "delay"] = "skip"

    def window(self, channel: Channel) -> timedelta | None:
        value = {Channel.EMAIL: self.email, Channel.WHATSAPP: self.whatsapp}.get(channel, self.sms)
        return None if value in (None, "off") else parse_duration(value)


@record
class Cap:
    day: Annotated[int | None, Field(ge=0)] = None
    week: Annotated[int | None, Field(ge=0)] = None


@record
class FrequencyCaps:
    """At most this many marketing messages per channel in any rolling day and week."""

    email: Cap = Cap(day=2, week=7)
    sms: Cap = Cap(day=1, week=3)
    whatsapp: Cap = Cap(day=1, week=3)

    def cap(self, channel: Channel) -> Cap:
        return {Channel.EMAIL: self.email, Channel.WHATSAPP: self.whatsapp}.get(channel, self.sms)


@record
class QuietHours:
    """No SMS or WhatsApp between start and end, local time; a message due then waits for the end."""

    enabled: bool = True
    start: Clock = "21:00"
    end: Clock = "08:00"


@record
class Guardrails:
    smart_sending: SmartSending = SmartSending()
    frequency_caps: FrequencyCaps = FrequencyCaps()
    sms_quiet_hours: QuietHours = QuietHours()
    default_timezone: Annotated[str, Check(_zone)] = "UTC"

    def merged(self, overrides: GuardrailOverrides) -> Guardrails:
        """This policy with a flow's overrides applied, section by section (once per pair: both are frozen,
        and every advance asks)."""
        key = (id(self), id(overrides))
        found = _MERGED.get(key)
        if found is not None and found[0] is self and found[1] is overrides:
            return found[2]
        changes = {name: value for name, value in items(overrides) if value is not None}
        merged = replace(self, **changes) if changes else self  # frozen: the same policy serves as is
        if len(_MERGED) >= 256:
            _MERGED.clear()
        _MERGED[key] = (self, overrides, merged)  # both held: their ids are not reused while cached
        return merged


@record
class GuardrailOverrides:
    """A flow's `guardrails:` block: any section given replaces the global one."""

    smart_sending: SmartSending | None = None
    frequency_caps: FrequencyCaps | None = None
    sms_quiet_hours: QuietHours | None = None


_MERGED: dict[tuple[int, int], tuple[Guardrails, GuardrailOverrides, Guardrails]] = {}


@dataclass(frozen=True, slots=True)
class Verdict:
    """`reason` None: send now. `until` set: defer to then. Otherwise skip for `reason`."""

    reason: str | None = None
    until: datetime | None = None

    @property
    def send(self) -> bool:
        return self.reason is None

    @property
    def defer(self) -> bool:
        return self.until is not None


SEND = Verdict()


def judge(
    *,
    channel: Channel,
    category: Category,
    priority: int,
    history: list[SentRecord],
    policy: Guardrails,
    zone: ZoneInfo,
    now: datetime,
) -> Verdict:
    """May this message go out now? Pure: the history and clock are inputs."""
    if category is Category.TRANSACTIONAL:
        return SEND
    if channel in PHONE and policy.sms_quiet_hours.enabled:
        resume = quiet_hours_end(now, zone, policy.sms_quiet_hours)
        if resume is not None:
            return Verdict(reason=f"{channel.value}_quiet_hours", until=resume)
    marketing = [r for r in history if r.channel is channel and r.category is Category.MARKETING]
    window = policy.smart_sending.window(channel)
    if window is not None:
        reach = PHONE if channel in PHONE else {channel}
        same_person = [r for r in history if r.channel in reach and r.category is Category.MARKETING]
        blocking = [r for r in same_person if r.sent_at > now - window and r.priority >= priority]
        if blocking:
            latest = max(r.sent_at for r in blocking)
            if policy.smart_sending.mode == "delay":
                return Verdict(reason=f"smart_sending:{channel.value}", until=latest + window)
            return Verdict(reason=f"smart_sending:{channel.value}")
    cap = policy.frequency_caps.cap(channel)
    for label, limit, span in (("day", cap.day, DAY), ("week", cap.week, WEEK)):
        if limit is not None and sum(1 for r in marketing if r.sent_at > now - span) >= limit:
            return Verdict(reason=f"frequency_cap:{channel.value}:{label}")
    return SEND


def quiet_hours_end(now: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime | None:
    """If `now` is inside the quiet hours in `zone`, the (UTC) moment they end; else None."""
    local = now.astimezone(zone)
    start, end = time.fromisoformat(quiet.start), time.fromisoformat(quiet.end)
    current = local.time()
    overnight = start > end
    inside = (current >= start or current < end) if overnight else (start <= current < end)
    if not inside:
        return None
    day = local.date() if (not overnight or current < end) else local.date() + DAY
    resume = datetime.combine(day, end, tzinfo=zone)
    return resume.astimezone(now.tzinfo)
