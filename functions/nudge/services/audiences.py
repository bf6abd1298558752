"""Use case: keep ad audiences in step with flows and segments (ADR 0024).

Request paths and flow steps *decide*: they record a wish in the audience ledger (this contact should, or
should not, be in that audience) and queue the audience's upload. The worker *acts*: `sync` uploads what
is pending, in each platform's batch size, and marks each entry synced only after the platform took it. An
upload that fails is left pending and tried again (the queue's delay, then the next sync): re-sending a
batch is harmless, as adding someone already in an audience, or removing someone not in it, is a no-op on
every platform.

The ad-consent rule: only a contact whose `ads_marketing` consent is true is added, and only with an email
or phone. Withdrawing that consent, or erasing the contact, removes them from every audience they are in.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import field
from datetime import datetime, timedelta

from nudge.domain.audiences import AudienceCatalog, ad_consent_problem, identifiers_for
from nudge.domain.frozen import dataclass
from nudge.domain.model import Contact
from nudge.domain.segments import Transition
from nudge.ports import (
    AudienceEntry,
    AudienceLedger,
    AudiencePlatform,
    AudienceStats,
    Clock,
    PermanentSendError,
    StepWakeUp,
    TransientSendError,
    WorkQueue,
)

log = logging.getLogger(__name__)

RETRY_AFTER = timedelta(minutes=1)  # a failed upload, when the platform does not say how long to wait
MAX_QUEUE_DELAY = timedelta(minutes=15)  # SQS's longest delay
UNKNOWN_AUDIENCE = "unknown_audience"
SEGMENT_BATCH_DELAY = timedelta(minutes=5)  # segment moves wait this long for others to share their upload


@dataclass(slots=True)
class SyncOutcome:
    """What one upload pass of one audience did (or, dry, would do)."""

    audience_id: str
    added: int = 0
    removed: int = 0
    requests: int = 0
    invalid: int = 0
    error: str | None = None
    retry_at: datetime | None = None
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> contacts not added (segment sync)


class AudienceService:
    def __init__(
        self,
        *,
        ledger: AudienceLedger,
        platform: Callable[[str], AudiencePlatform],
        audiences: AudienceCatalog,
        queue: WorkQueue,
        clock: Clock,
    ) -> None:
        """`platform(name)` gives the adapter of "meta", "google" or "tiktok" (built on first use)."""
        self._ledger = ledger
        self._platform = platform
        self._audiences = audiences
        self._queue = queue
        self._clock = clock

    @property
    def catalog(self) -> AudienceCatalog:
        return self._audiences

    # deciding ---------------------------------------------------------------------------------------------

    def change(self, audience_id: str, action: str, contact_id: str, contact: Contact | None) -> str | None:
        """Record that the contact should be added to (or removed from) the audience; the reason it is not, or
        None. The upload is `sync`'s."""
        audience = self._audiences.get(audience_id)
        if audience is None:
            return UNKNOWN_AUDIENCE
        now = self._clock.now()
        if action == "add":
            if (problem := ad_consent_problem(contact)) is not None:
                return problem
            assert contact is not None
            ids = identifiers_for(audience.platform, contact.email, contact.phone)
            if not ids:
                return "no_email_or_phone"
            self._ledger.want(audience_id, member_key(contact_id), True, ids.email, ids.phone, now)
        else:
            self._ledger.want(audience_id, member_key(contact_id), False, None, None, now)
        return None

    def forget(self, contact_id: str) -> list[str]:
        """Take the contact out of every audience they are (or were to be) in, and queue the uploads: consent
        to ads withdrawn, or the contact erased. Returns the audiences."""
        now = self._clock.now()
        touched = []
        key = member_key(contact_id)
        for entry in self._ledger.of_contact(key):
            if entry.wanted or entry.synced:
                self._ledger.want(entry.audience_id, key, False, None, None, now)
                touched.append(entry.audience_id)
        for audience_id in touched:
            self._queue.enqueue(StepWakeUp.for_audience(audience_id))
        return touched

    def segment_moved(self, contact: Contact, moves: Iterable[Transition]) -> list[str]:
        """The contact entered or left segments: record the change in each audience that follows one, and
        queue those audiences' uploads a few minutes out, so one upload carries the moves of many contacts."""
        touched = set()
        for move in moves:
            for audience in self._audiences:
                if audience.segment != move.segment:
                    continue
                action = "add" if move.entered else "remove"
                if self.change(audience.id, action, contact.contact_id, contact) is None:
                    touched.add(audience.id)
        for audience_id in sorted(touched):
            self.queue_sync(audience_id, SEGMENT_BATCH_DELAY)
        return sorted(touched)

    def queue_sync(self, audience_id: str, delay: timedelta = timedelta(0)) -> None:
        self._queue.enqueue(StepWakeUp.for_audience(audience_id), min(delay, MAX_QUEUE_DELAY))

    # acting -----------------------------------------------------------------------------------------------

    def sync(self, audience_id: str, *, dry_run: bool = False) -> SyncOutcome:
        """Upload the audience's pending changes: removals, then additions, each in the platform's batches.

        Each batch's entries are marked synced once the platform took it. On a transient failure the rest
        stays pending and the audience's upload is queued again (`retry_at`); on a permanent one the error
        is recorded (the report shows it) and the entries stay pending for the next sync.
        """
        outcome = SyncOutcome(audience_id)
        audience = self._audiences.get(audience_id)
        if audience is None:
            outcome.error = UNKNOWN_AUDIENCE
            return outcome
        pending = self._ledger.pending(audience_id)
        removals = [e for e in pending if not e.wanted]
        additions = [e for e in pending if e.wanted]
        if dry_run:
            outcome.added, outcome.removed = len(additions), len(removals)
            return outcome
        now = self._clock.now()
        try:
            for action, entries in (("remove", removals), ("add", additions)):
                if not entries:
                    continue
                result = self._platform(audience.platform).upload(audience, action, entries, _upload_key(entries))
                outcome.requests += result.requests
                outcome.invalid += result.invalid
                settled = sum(1 for entry in entries if self._ledger.settle(entry))
                if action == "add":
                    outcome.added += settled
                else:
                    outcome.removed += settled
        except TransientSendError as exc:
            outcome.error = str(exc)[:300]
            wait = exc.retry_after or RETRY_AFTER
            outcome.retry_at = now + wait
            self.queue_sync(audience_id, wait)
            log.warning("audience upload deferred", extra={"audience": audience_id, "error": outcome.error})
        except PermanentSendError as exc:
            outcome.error = str(exc)[:300]
            log.error("audience upload refused", extra={"audience": audience_id, "error": outcome.error})
        self._ledger.record(
            audience_id,
            AudienceStats(
                added=outcome.added,
                removed=outcome.removed,
                requests=outcome.requests,
                invalid=outcome.invalid,
                failures=1 if outcome.error else 0,
                last_sync_at=now,
                last_error=outcome.error,
            ),
        )
        return outcome

    def sync_segment(self, audience_id: str, contacts: Iterable[Contact], *, dry_run: bool = False) -> SyncOutcome:
        """A segment-sourced audience: record the difference between the segment's consenting members now and
        the ledger (joiners added, leavers and withdrawn consent removed), then upload it.

        Only changes are recorded, so a second run over the same segment finds nothing to upload.
        """
        audience = self._audiences.get(audience_id)
        if audience is None or audience.segment is None:
            return SyncOutcome(audience_id, error=f"{audience_id} is not a segment audience")
        segment = audience.segment
        known = self._ledger.members(audience_id)
        now = self._clock.now()
        skipped: dict[str, int] = {}
        keep: set[str] = set()
        changes: list[tuple[str, bool, str | None, str | None]] = []
        for contact in contacts:
            if segment not in contact.segments:
                continue
            problem = ad_consent_problem(contact)
            ids = identifiers_for(audience.platform, contact.email, contact.phone)
            if problem is None and not ids:
                problem = "no_email_or_phone"
            if problem is not None:
                skipped[problem] = skipped.get(problem, 0) + 1
                continue
            key = member_key(contact.contact_id)
            keep.add(key)
            entry = known.get(key)
            if entry is None or not entry.wanted or (entry.email, entry.phone) != (ids.email, ids.phone):
                changes.append((key, True, ids.email, ids.phone))
        for contact_id, entry in known.items():
            if contact_id not in keep and entry.wanted:
                changes.append((contact_id, False, None, None))
        if dry_run:
            pending = {e.contact_id: e.wanted for e in self._ledger.pending(audience_id)}
            pending.update({contact_id: wanted for contact_id, wanted, _, _ in changes})
            added = sum(1 for wanted in pending.values() if wanted)
            return SyncOutcome(audience_id, added=added, removed=len(pending) - added, skipped=skipped)
        for contact_id, wanted, email, phone in changes:
            self._ledger.want(audience_id, contact_id, wanted, email, phone, now)
        outcome = self.sync(audience_id)
        outcome.skipped = skipped
        return outcome

    def stats(self, audience_id: str) -> AudienceStats:
        return self._ledger.stats(audience_id)


def member_key(contact_id: str) -> str:
    """How the ledger names a contact: a hash of the id, so that after an erasure no table holds the id while
    the removal waits for its upload (README, Guarantees)."""
    return hashlib.sha256(f"nudge-audience-member:{contact_id}".encode()).hexdigest()[:32]


def _upload_key(entries: list[AudienceEntry]) -> str:
    """Names this exact batch of changes: the same entries at the same versions give the same key, so a
    retry re-sends the same upload (Meta's session id is made from it)."""
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(f"{entry.audience_id}|{entry.contact_id}|{entry.version}|{entry.wanted}\n".encode())
    return digest.hexdigest()
