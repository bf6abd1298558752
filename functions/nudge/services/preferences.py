"""Use case: the public unsubscribe link — one-click unsubscribe, the preference page, resubscribe."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Protocol

from nudge.domain.feedback import FeedbackKind
from nudge.domain.frozen import dataclass
from nudge.domain.model import Channel, Contact
from nudge.domain.suppression import AddressState, ConsentRecord, Suppression, address_key
from nudge.domain.unsubscribe import BadToken, read_token
from nudge.ports import AddressBook, Clock, Contacts, Outbox, StepCounters
from nudge.services.consent import set_email_marketing
from nudge.signing import SignatureError, sign_token, verify_token

# What Message.id_for makes (<run id>#<seq>#<step id>); anything else in `m` is ignored, never looked up.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_.:#-]{1,200}")


CSRF_VALID_FOR = timedelta(hours=2)


class NoSuchContact(LookupError):
    """The token is genuine but its contact is gone (erased)."""


class BadCsrf(ValueError):
    """A page form posted without the page's own, fresh CSRF token: refuse, change nothing."""


class ConsentMissing(ValueError):
    """Resubscribe without ticking the consent box: nothing is lifted without fresh consent."""


@dataclass(frozen=True, slots=True)
class Topic:
    id: str
    name: str
    subscribed: bool


@dataclass(frozen=True, slots=True)
class Preferences:
    """What the preference page shows."""

    contact_id: str
    email_hint: str  # "b***@example.com": enough to recognise, not enough to harvest
    subscribed: bool  # to marketing email at all
    topics: tuple[Topic, ...]
    credited_flow: str | None = None  # an unsubscribe through a message's link: that message's flow


class PreferenceStore(Contacts, AddressBook, Outbox, StepCounters, Protocol):
    """What the preference page reads and writes: the contact, its addresses' state and consent, the message a
    link came from and its step's counters."""


class PreferenceService:
    """Every method checks the token first and writes nothing unless it verifies."""

    def __init__(
        self,
        *,
        store: PreferenceStore,
        topics: Callable[[], tuple[tuple[str, str], ...]],
        clock: Clock,
        key: Callable[[], str | None],
    ) -> None:
        """`topics`: the marketing flows' (id, topic), FlowCatalog.marketing_topics(); asked when a page needs them."""
        self._store = store
        self._marketing_topics = topics
        self._clock = clock
        self._key = key

    def show(self, token: str) -> Preferences:
        contact = self._contact(token)
        return self._preferences(contact, self._state(contact))

    def unsubscribe(self, token: str, *, source: str, message_id: str | None = None) -> Preferences:
        """Stop all marketing email at once (RFC 8058 one-click, or the page's button).

        `message_id` (the link's `m`) is the message whose link was used: its flow step is credited with the
        unsubscribe, once, and only if that message was sent to the token's contact.
        """
        contact = self._contact(token)
        now = self._clock.now()
        named = message_id if message_id and _MESSAGE_ID.fullmatch(message_id) else None  # else: credit nobody
        message = self._store.get_message(contact.contact_id, named) if named else None
        credited = None
        if message is not None and self._store.record_feedback(message, FeedbackKind.UNSUBSCRIBE, now):
            self._store.count_step(message.flow_id, message.step_id, FeedbackKind.UNSUBSCRIBE)
            credited = message.flow_id
        key = self._address(contact)
        if key:
            self._store.suppress(key, Suppression.UNSUBSCRIBED, now)
            self._store.record_consent(ConsentRecord(key, Channel.EMAIL, False, now, source, contact.contact_id))
        updated = set_email_marketing(self._store, contact.contact_id, False, source, now) or contact
        return replace(self._preferences(updated, self._state(updated)), credited_flow=credited)

    def csrf_for(self, token: str) -> str:
        """The CSRF token the page's forms carry: bound to this link's token, good for CSRF_VALID_FOR."""
        expires = int((self._clock.now() + CSRF_VALID_FOR).timestamp())
        return sign_token(self._key() or "", {"p": "prefs", "c": _bound(token), "exp": expires})

    def check_csrf(self, token: str, csrf: str | None) -> None:
        """BadCsrf unless `csrf` is this page's fresh CSRF token (a forged or replayed form is refused)."""
        try:
            claims = verify_token(self._key() or "", csrf, self._clock.now())
        except SignatureError as exc:
            raise BadCsrf(str(exc)) from None
        if claims.get("p") != "prefs" or claims.get("c") != _bound(token):
            raise BadCsrf("the form belongs to another page")

    def resubscribe(self, token: str, *, consented: bool) -> Preferences:
        """The person asks for marketing email again, ticking the consent box: lift their unsubscribe,
        complaint or erasure (never a bounce), after recording that fresh consent."""
        contact = self._contact(token)
        if not consented:
            raise ConsentMissing("tick the box to confirm you want marketing email again")
        now = self._clock.now()
        key = self._address(contact)
        if key:
            # The record first: no suppression is lifted without the consent that lifts it on file.
            source = "preference_page:resubscribe:consent_box"
            self._store.record_consent(ConsentRecord(key, Channel.EMAIL, True, now, source, contact.contact_id))
            self._store.lift_suppression(key, Suppression.UNSUBSCRIBED)
            self._store.lift_suppression(key, Suppression.COMPLAINT)
            self._store.lift_suppression(key, Suppression.ERASED)
        updated = set_email_marketing(
            self._store, contact.contact_id, True, "preference_page:resubscribe:consent_box", now
        )
        updated = updated or contact
        return self._preferences(updated, self._state(updated))

    def choose_topics(self, token: str, subscribed: set[str]) -> Preferences:
        """Keep only the chosen marketing flows; unknown topic ids are ignored."""
        contact = self._contact(token)
        key = self._address(contact)
        if key:
            for topic in self._topics():
                self._store.set_topic(key, topic.id, subscribed=topic.id in subscribed)
        return self._preferences(contact, self._state(contact))

    def _contact(self, token: str) -> Contact:
        contact_id = read_token(self._key() or "", token)  # BadToken propagates: nothing written yet
        contact = self._store.get_contact(contact_id)
        if contact is None:
            raise NoSuchContact(contact_id)
        return contact

    @staticmethod
    def _address(contact: Contact) -> str | None:
        return address_key(Channel.EMAIL, contact.email) if contact.email else None

    def _state(self, contact: Contact) -> AddressState | None:
        key = self._address(contact)
        return self._store.address_state(key) if key else None

    def _topics(self) -> list[Topic]:
        return [Topic(flow_id, name, True) for flow_id, name in self._marketing_topics()]

    def _preferences(self, contact: Contact, state: AddressState | None) -> Preferences:
        off = state.topics_off if state else frozenset()
        blocked = bool(state and {Suppression.UNSUBSCRIBED, Suppression.COMPLAINT} & state.suppressed.keys())
        subscribed = contact.email_marketing is True and not blocked
        return Preferences(
            contact_id=contact.contact_id,
            email_hint=_hint(contact.email),
            subscribed=subscribed,
            # Unsubscribed from everything, no box is ticked: a tick would claim mail that will not come.
            topics=tuple(Topic(t.id, t.name, subscribed and t.id not in off) for t in self._topics()),
        )


def _bound(token: str) -> str:
    return hashlib.sha256(f"csrf|{token}".encode()).hexdigest()[:22]


def _hint(email: str | None) -> str:
    if not email:
        return "(no email address)"
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


__all__ = ["BadCsrf", "BadToken", "ConsentMissing", "NoSuchContact", "PreferenceService", "Preferences", "Topic"]
