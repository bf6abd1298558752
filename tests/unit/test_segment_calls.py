"""Segment's calls as nudge reads them: members Segment's libraries add are kept (a trait becomes a contact
property) and a retry without a messageId maps to the same event as the first try, across releases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from nudge.adapters.memory import MemoryContactRefs
from nudge.clocks import VirtualClock
from nudge.domain.model import Event
from nudge.domain.validation import ValidationError, dump, validate
from nudge.integrations.segment_api import CALLS, SegmentService, Traits
from nudge.services.ingest import IngestOutcome


class _Recorder:
    """The ingest service, reduced to what the Segment service hands it."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def ingest(self, event: Event) -> IngestOutcome:
        self.events.append(event)
        return IngestOutcome(event_id=event.event_id, contact_id=event.contact.external_id or "")


def _taken(kind: str, body: dict[str, Any]) -> Event:
    recorder = _Recorder()
    clock = VirtualClock(datetime(2026, 11, 2, 12, tzinfo=UTC))
    service = SegmentService(ingest=recorder, refs=MemoryContactRefs(), clock=clock)  # type: ignore[arg-type]
    getattr(service, kind)(validate(CALLS[kind], body))
    [event] = recorder.events
    return event


TRACK = {
    "userId": "u_42",
    "event": "Checkout Started",
    "timestamp": "2026-11-02T08:59:00+01:00",
    "context": {"traits": {"email": "Gus@Example.com", "firstName": "Gus", "plan": "pro"}, "ip": "1.2.3.4"},
    "properties": {"checkout_id": "chk_9", "revenue": 24.0, "gift": None, "nested": {"a": None}},
    "integrations": {"All": True},
    "sentAt": "2026-11-02T08:59:01Z",
    "channel": None,
    "_metadata": {"x": [1, None]},
}
IDENTIFY = {
    "type": "identify",
    "anonymousId": "  anon-7 ",
    "traits": {
        **{"email": "hal@example.com", "lastName": "Lee", "first_name": "Hal", "phone": "+1 415 555 0123"},
        **{"sms_marketing": True, "plan": None, "company": {"name": "Acme", "size": None}, "timezone": "Europe/Paris"},
    },
    "version": 2,
}

# Worked out by the release whose calls were pydantic models (d27bc68): a retry of a call sent before an
# upgrade must still be the same event after it, so these never change.
PINNED = {
    "track": (TRACK, "segment:be0b633d38ec7d280861d4afacd76068974e426d9"),
    "identify": (IDENTIFY, "segment:b1afcbc3f2f3fa1e34fd0b3339166aecb3a905071"),
    "identify-bare": ({"userId": "u_9"}, "segment:b975d21a8cfb8216fc52db620f3c147910bc8113c"),
}


@pytest.mark.parametrize("case", sorted(PINNED))
def test_a_call_without_a_message_id_has_the_event_id_it_always_had(case: str) -> None:
    body, event_id = PINNED[case]

    assert _taken(str(body.get("type") or case.partition("-")[0]), body).event_id == event_id


def test_a_retry_differs_from_the_first_try_only_in_sent_at_and_context_and_is_the_same_event() -> None:
    retry = TRACK | {"sentAt": "2026-11-02T09:30:00Z", "context": {"ip": "5.6.7.8"}}

    assert _taken("track", retry).event_id == _taken("track", TRACK).event_id
    assert _taken("track", TRACK | {"channel": "server"}).event_id != _taken("track", TRACK).event_id


def test_unnamed_traits_become_contact_properties_and_named_ones_fill_the_contact() -> None:
    event = _taken("identify", IDENTIFY)

    assert (event.contact.email, event.contact.first_name, event.contact.last_name) == (
        "hal@example.com",
        "Hal",
        "Lee",
    )
    assert event.contact.phone == "+14155550123"
    # timezone and the consent traits are read elsewhere, never kept as free properties
    assert event.contact.properties == {"company": {"name": "Acme", "size": None}, "anonymous_id": "anon-7"}


def test_a_trait_is_checked_wherever_it_sits_in_a_call() -> None:
    # Traits appears twice in an identify call (its traits and its context's): both places check it.
    for where in ({"traits": {"email": "nope"}}, {"context": {"traits": {"email": "nope"}}}):
        with pytest.raises(ValidationError):
            validate(CALLS["identify"], {"userId": "u_1"} | where)
    huge = {"pad": "x" * 70_000}
    for where in ({"traits": huge}, {"context": {"traits": huge}}):
        with pytest.raises(ValidationError, match="properties"):
            validate(CALLS["identify"], {"userId": "u_1"} | where)


def test_a_call_dumps_with_its_unnamed_members_beside_its_fields() -> None:
    traits = validate(Traits, {"firstName": "Gus", "plan": "pro", "gone": None, "extra": 1})

    assert traits.extra == {"plan": "pro", "gone": None, "extra": 1}  # a member called extra is a member
    assert dump(traits, exclude_none=True) == {"first_name": "Gus", "plan": "pro", "extra": 1}
    assert dump(traits, by_alias=True)["firstName"] == "Gus"
    assert dump(traits)["gone"] is None
