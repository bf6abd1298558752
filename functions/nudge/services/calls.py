"""Use case: a missed call becomes a `call_missed` event, once per call, on the caller's contact.

The library flow `flows/missed_call.yaml` texts the caller back; its entry rule keeps it to once a day.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from nudge.domain.calls import CALL_MISSED, MissedCall
from nudge.domain.model import ContactPatch, Event
from nudge.ports import ContactRefs
from nudge.services.whatsapp_inbound import phone_ref

if TYPE_CHECKING:
    from nudge.services.ingest import IngestOutcome


class MissedCallService:
    def __init__(self, *, refs: ContactRefs, ingest: Callable[[Event], IngestOutcome]) -> None:
        self._refs = refs
        self._ingest = ingest

    def record(self, call: MissedCall) -> IngestOutcome:
        """Ingest the event (a redelivered callback or a retried invocation is the same event id, so once)."""
        # The contact nudge last messaged on this number, if a WhatsApp status linked it; else the caller
        # by number (a phone-only contact, as any event with only a phone).
        known = self._refs.resolve(phone_ref(call.caller))
        patch = ContactPatch(external_id=known) if known else ContactPatch(phone=call.caller)
        properties: dict[str, object] = {"source": call.source, "call_id": call.call_id}
        if call.line:
            properties["line"] = call.line
        event = Event(f"{CALL_MISSED}:{call.source}:{call.call_id}", CALL_MISSED, patch, properties, call.at)
        return self._ingest(event)
