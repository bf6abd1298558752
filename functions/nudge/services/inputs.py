"""The public API's request bodies, validated strictly and turned into domain objects.

Records (`nudge.domain.records`): checked by pydantic's rules in their annotations, compiled into the bundle
so a Lambda function checks them with pydantic_core alone (ADR 0020, Decision 13)."""

from __future__ import annotations

import re
from dataclasses import field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nudge.domain import bounds
from nudge.domain.addresses import normalize_email
from nudge.domain.model import ContactPatch, Event
from nudge.domain.records import Check, Checked, record
from nudge.domain.sms import to_e164

if TYPE_CHECKING:
    from pydantic import AwareDatetime, Field

_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
# An event may claim to have happened a little in the future (clock skew), never more.
MAX_FUTURE_SKEW = timedelta(minutes=5)
# A contact id the API takes (and every id nudge derives, em_…, ph_…, fits it): also what a path may name.
CONTACT_ID_PATTERN = r"^[A-Za-z0-9_.:@+-]+$"
CONTACT_ID_MAX = 128


def bounded_instant(value: datetime | None) -> datetime | None:
    """A timestamp member, in UTC, within nudge.domain.bounds' range (a ValueError names the range)."""
    if value is None:
        return None
    try:
        return bounds.check_instant(value, "")
    except bounds.OutOfBounds as exc:
        raise ValueError(exc.detail) from None


def header_text(value: str | None) -> str | None:
    """A name member: it may end up in an email header, so no control characters."""
    try:
        return bounds.check_header_text(value, "")
    except bounds.OutOfBounds as exc:
        raise ValueError(exc.detail) from None


def bounded_properties(value: dict[str, Any]) -> dict[str, Any]:
    """A properties member: JSON-safe numbers and nesting, within a contact's property budget."""
    try:
        bounds.check_json_value(value, "")
        bounds.check_contact_properties(value, "")
    except bounds.OutOfBounds as exc:
        raise ValueError(exc.detail) from None
    return value


def is_contact_id(value: str) -> bool:
    return len(value) <= CONTACT_ID_MAX and re.fullmatch(CONTACT_ID_PATTERN, value) is not None


# pydantic's configuration of every request record: unknown members refused, text stripped.
INPUT: dict[str, Any] = {"extra": "forbid", "str_strip_whitespace": True}


def email_field(value: str | None) -> str | None:
    """An optional `email` member, normalized (a Check)."""
    return normalize_email(value) if value is not None else None


def _phone(value: str | None) -> str | None:
    if value is None:
        return value
    # Spaces, dashes and brackets are fine ("+1 (415) 555-0123"); the result is E.164 and valid.
    if not value.startswith("+"):
        raise ValueError("not an E.164 phone number (e.g. +14155550123)")
    return to_e164(value)


def _timezone(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not an IANA time zone name (e.g. America/New_York)") from None
    return value


Properties = Annotated[dict[str, Any], Check(bounded_properties)]
Instant = Annotated["AwareDatetime | None", Check(bounded_instant)]


@record
class ContactIn(Checked):
    """Who the event is about. At least one of id, email and phone."""

    __pydantic_config__ = INPUT

    id: Annotated[str | None, Field(min_length=1, max_length=CONTACT_ID_MAX, pattern=CONTACT_ID_PATTERN)] = None
    email: Annotated[str | None, Field(max_length=254, json_schema_extra={"format": "email"}), Check(email_field)] = (
        None
    )
    phone: Annotated[
        str | None,
        Field(
            description="E.164, e.g. +14155550123 (spaces, dashes and brackets are taken too).",
            json_schema_extra={"pattern": r"^\+[1-9][0-9]{6,14}$"},
        ),
        Check(_phone),
    ] = None
    first_name: Annotated[str | None, Field(max_length=100), Check(header_text)] = None
    last_name: Annotated[str | None, Field(max_length=100), Check(header_text)] = None
    timezone: Annotated[str | None, Field(description="IANA name, e.g. Europe/Paris."), Check(_timezone)] = None
    email_marketing: bool | None = None
    sms_marketing: bool | None = None
    whatsapp_marketing: Annotated[bool | None, Field(description="Consent to marketing WhatsApp messages.")] = None
    ads_marketing: Annotated[
        bool | None,
        Field(description="Consent to be in the shop's ad audiences (Meta, Google, TikTok): docs/audiences.md."),
    ] = None
    properties: Properties = field(default_factory=dict)

    def _check(self) -> None:
        if not (self.id or self.email or self.phone):
            raise ValueError("a contact needs at least one of id, email or phone")

    def to_patch(self) -> ContactPatch:
        return ContactPatch(
            external_id=self.id,
            email=self.email,
            phone=self.phone,
            first_name=self.first_name,
            last_name=self.last_name,
            timezone=self.timezone,
            email_marketing=self.email_marketing,
            sms_marketing=self.sms_marketing,
            whatsapp_marketing=self.whatsapp_marketing,
            ads_marketing=self.ads_marketing,
            properties=self.properties,
        )


def _event_type(value: str) -> str:
    if not _EVENT_TYPE.match(value):
        raise ValueError("event types are lower_snake_case, e.g. checkout_started")
    return value


@record
class EventIn:
    """POST /v1/events: something a contact did. `id` makes retries safe: the same id is processed once."""

    __pydantic_config__ = INPUT | {
        "json_schema_extra": {
            "examples": [
                {
                    "id": "evt_1",
                    "type": "checkout_started",
                    "contact": {"email": "jo@example.com", "first_name": "Jo", "email_marketing": True},
                    "properties": {"checkout_id": "chk_1", "total": 42.5},
                    "occurred_at": "2026-11-02T08:59:00Z",
                }
            ]
        }
    }

    id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
    type: Annotated[str, Field(json_schema_extra={"pattern": _EVENT_TYPE.pattern}), Check(_event_type)]
    contact: ContactIn
    properties: Properties = field(default_factory=dict)
    occurred_at: Instant = None

    def to_event(self, now: datetime) -> Event:
        occurred = self.occurred_at.astimezone(UTC) if self.occurred_at else now
        if occurred > now + MAX_FUTURE_SKEW:
            raise ValueError(f"occurred_at is more than {MAX_FUTURE_SKEW} in the future")
        return Event(
            event_id=self.id,
            type=self.type,
            contact=self.contact.to_patch(),
            properties=self.properties,
            occurred_at=occurred,
        )


@record
class EnrollmentIn:
    """POST /v1/flows/<flow_id>/enrollments: start a flow for a contact. `id` makes retries safe."""

    __pydantic_config__ = INPUT

    id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
    contact: ContactIn
    properties: Annotated[Properties, Field(description="What the flow's templates see as event.")] = field(
        default_factory=dict
    )
    occurred_at: Instant = None

    def to_event(self, flow_id: str, now: datetime) -> Event:
        as_event = EventIn(
            id=self.id,
            type="enrolled",
            contact=self.contact,
            properties={**self.properties, "flow_id": flow_id},
            occurred_at=self.occurred_at,
        )
        return as_event.to_event(now)
