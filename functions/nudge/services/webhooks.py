"""Carries out what a storefront delivery means: ingest events, follow refs, record privacy requests."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from nudge.domain.model import ContactPatch, Event
from nudge.ports import Clock, ContactRefs, PrivacyKind, PrivacyRequest, PrivacyRequests
from nudge.services.canonical import Canonical, Ignored, Privacy, Track, TrackByRef
from nudge.services.ingest import IngestService

log = logging.getLogger(__name__)

_ERASED = "the customer was erased; a new signup or an API call brings them back, a webhook does not"


class WebhookService:
    def __init__(
        self,
        *,
        ingest: IngestService,
        refs: ContactRefs,
        privacy: PrivacyRequests,
        clock: Clock,
        eraser: Callable[[str], dict[str, int] | None] | None = None,
        erased: Callable[[str], bool] = lambda contact_id: False,
    ) -> None:
        self._ingest = ingest
        self._refs = refs
        self._privacy = privacy
        self._clock = clock
        self._eraser = eraser
        self._erased = erased  # an erased contact's tombstone: their webhooks are not a new customer

    def handle(self, canonical: Canonical) -> dict[str, Any]:
        """Do what the delivery means, once; the result is the response body."""
        if isinstance(canonical, Ignored):
            return {"ignored": canonical.reason}
        if isinstance(canonical, Privacy):
            return self._record_privacy(canonical)
        if isinstance(canonical, TrackByRef):
            contact_id = self._refs.resolve(canonical.ref)
            if contact_id is None:
                return {"ignored": "it refers to an order nudge has not seen"}
            if self._erased(contact_id):
                return {"ignored": _ERASED}
            event = Event(
                canonical.event_id,
                canonical.type,
                ContactPatch(external_id=contact_id),
                canonical.properties,
                canonical.occurred_at,
            )
            return self._ingest.ingest(event).as_dict() | {"type": event.type}
        return self._track(canonical)

    def _track(self, track: Track) -> dict[str, Any]:
        event = track.event
        if self._erased(event.contact_id):
            return {"ignored": _ERASED, "event_id": event.event_id}
        if track.once and self._refs.resolve(track.once) is not None:
            if track.repeat_type is None:
                return {"ignored": "already seen", "event_id": event.event_id}
            event = replace(event, type=track.repeat_type)
        outcome = self._ingest.ingest(event)
        # Linked after the event is processed: a crash before this makes a retry count as a first sighting.
        now = self._clock.now()
        for ref in (track.once, *track.links):
            if ref:
                self._refs.link(ref, event.contact_id, now)
        return outcome.as_dict() | {"type": event.type}

    def _record_privacy(self, privacy: Privacy) -> dict[str, Any]:
        contacts = dict.fromkeys(privacy.contacts)
        for ref in privacy.refs:
            if (found := self._refs.resolve(ref)) is not None:
                contacts[found] = None
        request = PrivacyRequest(
            request_id=privacy.request_id,
            kind=privacy.kind,
            source=privacy.source,
            subject=privacy.subject,
            contact_ids=tuple(contacts),
            received_at=self._clock.now(),
        )
        recorded = self._privacy.record(request)
        erased = 0
        if recorded and privacy.kind is PrivacyKind.ERASE_CONTACT:
            if self._eraser is not None:
                # Carried out at once: every item holding their data goes, only hashed suppressions stay.
                erased = sum(1 for contact_id in contacts if self._eraser(contact_id) is not None)
                self._privacy.complete(request.request_id, "erased")
            else:
                # No eraser wired (a test double): at least send them nothing more.
                for contact_id in contacts:
                    if self._ingest.get_contact(contact_id) is not None:
                        self._ingest.identify(
                            ContactPatch(external_id=contact_id, email_marketing=False, sms_marketing=False)
                        )
        log.info("privacy request recorded", extra={"request_id": request.request_id, "kind": request.kind})
        return {
            "privacy_request": request.request_id,
            "kind": request.kind.value,
            "duplicate": not recorded,
            "contacts": len(contacts),
            "erased": erased,
        }
