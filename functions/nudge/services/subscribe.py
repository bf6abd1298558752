"""Signup forms: a site's pop-up or footer form subscribes an address, at once or after email confirmation."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

from nudge.domain.addresses import normalize_email
from nudge.domain.model import ContactPatch, Event, contact_id_for
from nudge.domain.records import Check, record
from nudge.integrations.canonical import phone_field
from nudge.ports import ApiKey, Clock, ContactRefs, PendingSignup, PendingSignups
from nudge.services.ingest import IngestService
from nudge.services.inputs import INPUT, header_text

if TYPE_CHECKING:
    from pydantic import Field

CONFIRMATION_VALID_FOR = timedelta(days=7)
HONEYPOT = "website"  # hidden from people by the snippet's CSS; bots fill every field they find


@record
class SubscribeIn:
    """POST /v1/subscribe: what the signup form sends."""

    __pydantic_config__ = INPUT | {
        "json_schema_extra": {"examples": [{"email": "jo@example.com", "first_name": "Jo", "source": "footer"}]}
    }

    email: Annotated[str, Field(max_length=254, json_schema_extra={"format": "email"}), Check(normalize_email)]
    first_name: Annotated[str | None, Field(max_length=100), Check(header_text)] = None
    phone: Annotated[
        str | None,
        Field(description="E.164; with sms_marketing true, consent to marketing SMS."),
        Check(phone_field),
    ] = None
    sms_marketing: bool = False
    source: Annotated[
        str | None,
        Field(
            max_length=40,
            pattern=r"^[A-Za-z0-9_.-]+$",
            description='Where the form sits, e.g. "footer" (letters, digits, _ . -).',
        ),
    ] = None
    notify_me: Annotated[
        str | None,
        Field(
            max_length=64,
            pattern=r"^[A-Za-z0-9_.:-]+$",
            description='A "notify me" form: the variant (Shopify variant id, WooCommerce product or variation id) '
            "whose next restock this address is told about, once. Applied when the signup is.",
        ),
    ] = None
    website: Annotated[str | None, Field(max_length=500, description="Leave empty: a trap for bots.")] = None

    @property
    def is_bot(self) -> bool:
        return bool(self.website)


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


class SignupGone(LookupError):
    """The link's pending signup expired (or never existed): sign up again."""


class SubscribeService:
    """A signup form never changes a contact it did not create until the address owner confirms.

    - A new address on a single opt-in form is subscribed at once, with everything the form sent.
    - Otherwise (a double opt-in form, or an address nudge already knows) the submission is kept as a
      PendingSignup and the address gets a confirmation link naming only that signup's id; nothing of
      the contact changes. The form answers the same either way, so it tells nobody who is a customer.
    - The owner's click (a POST from the confirmation page) subscribes the address and fills in what the
      contact lacks (name, phone with its SMS consent); an existing name or phone is never replaced.
    - A "notify me" form (`notify_me`, a variant) puts the address on that variant's waitlist when, and only
      when, the signup is applied: at once for a new address on a single opt-in form, else on the click.
    """

    def __init__(self, *, ingest: IngestService, pending: PendingSignups, refs: ContactRefs, clock: Clock) -> None:
        self._ingest = ingest
        self._pending = pending
        self._refs = refs
        self._clock = clock

    def subscribe(self, form: SubscribeIn, key: ApiKey, *, link_for: Callable[[PendingSignup], str]) -> dict[str, Any]:
        """Subscribe a new address at once (single opt-in), else keep the signup and send the confirmation."""
        now = self._clock.now()
        contact_id = contact_id_for(external_id=None, email=form.email, phone=None)
        known = self._ingest.get_contact(contact_id) is not None
        if not key.double_opt_in and not known:
            self._subscribed(form.email, key.key_hash, form.source, form.first_name, form.phone, form.sms_marketing)
            self._wait(form.notify_me, contact_id)
            return {"status": "subscribed", "contact_id": contact_id}
        # One pending signup per distinct submission: a stranger's later form cannot alter what a link confirms.
        details: tuple[str, ...] = (form.first_name or "", form.phone or "", str(form.sms_marketing), form.source or "")
        details += (form.notify_me,) if form.notify_me else ()  # ids of signups without one stay as they were
        signup = PendingSignup(
            signup_id=_digest(key.key_hash, form.email, now.date().isoformat(), *details),
            key_hash=key.key_hash,
            email=form.email,
            first_name=form.first_name,
            phone=form.phone,
            sms_marketing=form.sms_marketing,
            source=form.source,
            requested_at=now,
            expires_at=now + CONFIRMATION_VALID_FOR,
            notify_me=form.notify_me,
        )
        self._pending.put(signup)
        # One confirmation email per address and key a day, however often the form is sent. The event names
        # the address only: the form's name or source never reach the contact or the email.
        event = Event(
            event_id="subscribe_requested:" + _digest(key.key_hash, form.email, now.date().isoformat()),
            type="subscribe_requested",
            contact=ContactPatch(email=form.email),
            properties={"confirm_url": link_for(signup), "source": form.source or "form"},
            occurred_at=now,
        )
        self._ingest.ingest(event)
        status = "confirmation_sent" if key.double_opt_in else "subscribed"
        return {"status": status, "contact_id": contact_id}

    def confirmation_claims(self, signup: PendingSignup) -> dict[str, Any]:
        """What the confirmation link carries (signed by the caller): the signup's id, its key, an expiry."""
        return {"p": signup.signup_id, "k": signup.key_hash, "exp": int(signup.expires_at.timestamp())}

    def pending(self, claims: dict[str, Any]) -> PendingSignup:
        """The signup a verified link names; SignupGone if it expired."""
        signup = self._pending.get(str(claims.get("p")), self._clock.now())
        if signup is None or signup.key_hash != claims.get("k"):
            raise SignupGone(str(claims.get("p")))
        return signup

    def confirm(self, claims: dict[str, Any]) -> dict[str, Any]:
        """The address owner confirmed: subscribe them, fill in what their contact lacks, start the welcome."""
        signup = self.pending(claims)
        contact = self._ingest.get_contact(contact_id_for(external_id=None, email=signup.email, phone=None))
        first_name = signup.first_name if contact is None or not contact.first_name else None
        phone = signup.phone if contact is None or not contact.phone or contact.phone == signup.phone else None
        result = self._subscribed(
            signup.email, signup.key_hash, signup.source, first_name, phone, signup.sms_marketing and phone is not None
        )
        self._wait(signup.notify_me, result["contact_id"])
        return result

    def _wait(self, item: str | None, contact_id: str) -> None:
        """Put the contact on the variant's waitlist: its next restock tells them once (ADR 0017)."""
        if item is not None:
            self._refs.wait(item, contact_id, self._clock.now())

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
