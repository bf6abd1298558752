"""Signup forms: a site's pop-up or footer form subscribes an address, at once or after email confirmation."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nudge.domain.addresses import normalize_email
from nudge.domain.model import ContactPatch, Event
from nudge.ports import ApiKey, Clock
from nudge.services.canonical import phone_or_none
from nudge.services.ingest import IngestService

CONFIRMATION_VALID_FOR = timedelta(days=7)
HONEYPOT = "website"  # hidden from people by the snippet's CSS; bots fill every field they find


class SubscribeIn(BaseModel):
    """POST /v1/subscribe: what the signup form sends."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(max_length=254)
    first_name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, description="E.164; with sms_marketing true, consent to marketing SMS.")
    sms_marketing: bool = False
    source: str | None = Field(default=None, max_length=100, description='Where the form sits, e.g. "footer".')
    website: str | None = Field(default=None, max_length=500, description="Leave empty: a trap for bots.")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalize_email(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and phone_or_none(value) is None:
            raise ValueError("not an E.164 phone number (e.g. +14155550123)")
        return phone_or_none(value)

    @property
    def is_bot(self) -> bool:
        return bool(self.website)


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


class SubscribeService:
    def __init__(self, *, ingest: IngestService, clock: Clock) -> None:
        self._ingest = ingest
        self._clock = clock

    def confirmation_claims(self, form: SubscribeIn, key: ApiKey) -> dict[str, Any]:
        """What the confirmation link carries (signed by the caller): the address, the key, an expiry."""
        expires = self._clock.now() + CONFIRMATION_VALID_FOR
        return {"e": form.email, "k": key.key_hash, "s": form.source or "", "exp": int(expires.timestamp())}

    def subscribe(self, form: SubscribeIn, key: ApiKey, *, confirm_url: str | None) -> dict[str, Any]:
        """Subscribe at once, or (confirm_url given) send the confirmation email and wait for the click."""
        now = self._clock.now()
        source = {"signup_source": form.source} if form.source else {}
        if confirm_url is not None:
            # One confirmation email per address and key a day, however often the form is sent.
            event = Event(
                event_id="subscribe_requested:" + _digest(key.key_hash, form.email, now.date().isoformat()),
                type="subscribe_requested",
                contact=ContactPatch(email=form.email, first_name=form.first_name, properties=source),
                properties={"confirm_url": confirm_url, "source": form.source or "form"},
                occurred_at=now,
            )
            outcome = self._ingest.ingest(event)
            return {"status": "confirmation_sent", "contact_id": outcome.contact_id}
        return self._subscribed(form.email, key.key_hash, form.source, form.first_name, form.phone, form.sms_marketing)

    def confirm(self, claims: dict[str, Any]) -> dict[str, Any]:
        """The address owner clicked the link: now they are subscribed, and the welcome flow starts."""
        return self._subscribed(str(claims["e"]), str(claims["k"]), str(claims.get("s") or "") or None)

    def _subscribed(
        self,
        email: str,
        key_hash: str,
        source: str | None,
        first_name: str | None = None,
        phone: str | None = None,
        sms_marketing: bool = False,
    ) -> dict[str, Any]:
        event = Event(
            # The same address on the same key subscribes once: a resent form or a second click is a duplicate.
            event_id="subscribe:" + _digest(key_hash, email),
            type="subscribed",
            contact=ContactPatch(
                email=email,
                first_name=first_name,
                phone=phone,
                email_marketing=True,
                sms_marketing=True if (phone and sms_marketing) else None,
                properties={"signup_source": source} if source else {},
            ),
            properties={"source": source or "form"},
            occurred_at=self._clock.now(),
        )
        outcome = self._ingest.ingest(event)
        return {"status": "subscribed", "contact_id": outcome.contact_id, "duplicate": outcome.duplicate}
