"""The audience ledger (nudge.ports.AudienceLedger) in the counters table (ADR 0024).

    PK "AUD#<audience id>", SK "M#<member key>"   one member: wanted, synced, hashed identifiers, version
    PK "AUD#<audience id>", SK "STATS"            the audience's upload totals (ADD), last sync and error

No new table: the functions that run flows already read and write the counters table. The member key is a
hash of the contact id (services/audiences.member_key). Every write is conditional on the version read, so
two workers settling the same entry, or a wish that changes during an upload, never lose a change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, PutError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.models import Model

from nudge.adapters.dynamodb.models import bind_model, condition_check_failed, share_connection
from nudge.ports import AudienceEntry, AudienceStats

AUDIENCE_PREFIX = "AUD#"
MEMBER_PREFIX = "M#"
STATS_SK = "STATS"
_ATTEMPTS = 5


class AudienceMemberModel(Model):
    class Meta:
        table_name = "nudge-counters"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    wanted = BooleanAttribute(null=True)
    synced = BooleanAttribute(null=True)
    pending = BooleanAttribute(null=True)  # not (wanted and synced): what the next upload takes
    email = UnicodeAttribute(null=True)
    phone = UnicodeAttribute(null=True)
    changed_at = UTCDateTimeAttribute(null=True)
    version = NumberAttribute(null=True)
    added = NumberAttribute(null=True)
    removed = NumberAttribute(null=True)
    requests = NumberAttribute(null=True)
    invalid = NumberAttribute(null=True)
    failures = NumberAttribute(null=True)
    last_sync_at = UTCDateTimeAttribute(null=True)
    last_error = UnicodeAttribute(null=True)


class DynamoAudienceLedger:
    """`audience_ids()` names the audiences (audiences/*.yaml): a contact's entries are looked up in each."""

    def __init__(
        self,
        table: str,
        region: str,
        host: str | None,
        connection: Connection | None,
        audience_ids: Callable[[], Iterable[str]],
    ) -> None:
        self._model: type[AudienceMemberModel] = bind_model(AudienceMemberModel, table, region, host)  # type: ignore[assignment]
        if connection is not None:
            share_connection([self._model], connection)
        self._audience_ids = audience_ids

    def _entry(self, item: AudienceMemberModel) -> AudienceEntry:
        return AudienceEntry(
            audience_id=item.pk.removeprefix(AUDIENCE_PREFIX),
            contact_id=item.sk.removeprefix(MEMBER_PREFIX),
            wanted=bool(item.wanted),
            synced=bool(item.synced),
            email=item.email,
            phone=item.phone,
            changed_at=item.changed_at,
            version=int(item.version or 1),
        )

    def _get(self, audience_id: str, contact_id: str) -> AudienceMemberModel | None:
        try:
            return self._model.get(AUDIENCE_PREFIX + audience_id, MEMBER_PREFIX + contact_id, consistent_read=True)
        except self._model.DoesNotExist:
            return None

    def want(
        self, audience_id: str, contact_id: str, wanted: bool, email: str | None, phone: str | None, now: datetime
    ) -> AudienceEntry | None:
        model = self._model
        for _ in range(_ATTEMPTS):
            stored = self._get(audience_id, contact_id)
            if stored is None:
                if not wanted:
                    return None
                item = model(
                    AUDIENCE_PREFIX + audience_id,
                    MEMBER_PREFIX + contact_id,
                    wanted=True,
                    synced=False,
                    pending=True,
                    email=email,
                    phone=phone,
                    changed_at=now,
                    version=1,
                )
                try:
                    item.save(condition=model.pk.does_not_exist())
                except PutError as exc:
                    if condition_check_failed(exc):
                        continue
                    raise
                return self._entry(item)
            entry = self._entry(stored)
            if entry.wanted == wanted and (email, phone) in ((None, None), (entry.email, entry.phone)):
                return entry
            keep = not (email or phone)
            actions: list[Action] = [
                model.wanted.set(wanted),
                model.pending.set(not (wanted and entry.synced)),
                model.email.set(entry.email if keep else email),  # type: ignore[arg-type]  # None writes NULL
                model.phone.set(entry.phone if keep else phone),  # type: ignore[arg-type]
                model.changed_at.set(now),
                model.version.set(entry.version + 1),
            ]
            try:
                stored.update(actions=actions, condition=model.version == entry.version)
            except UpdateError as exc:
                if condition_check_failed(exc):
                    continue
                raise
            return self._entry(stored)
        raise RuntimeError(f"audience entry {audience_id}/{contact_id} kept changing")

    def _query(self, audience_id: str, **kwargs: object) -> list[AudienceEntry]:
        model = self._model
        items = model.query(
            AUDIENCE_PREFIX + audience_id,
            model.sk.startswith(MEMBER_PREFIX),
            consistent_read=True,
            **kwargs,  # type: ignore[arg-type]
        )
        return [self._entry(item) for item in items]

    def pending(self, audience_id: str) -> list[AudienceEntry]:
        found = self._query(audience_id, filter_condition=self._model.pending == True)  # noqa: E712
        return sorted(found, key=lambda e: (e.changed_at, e.contact_id))

    def settle(self, entry: AudienceEntry) -> bool:
        model = self._model
        item = model(AUDIENCE_PREFIX + entry.audience_id, MEMBER_PREFIX + entry.contact_id)
        try:
            if entry.wanted:
                item.update(
                    actions=[model.synced.set(True), model.pending.set(False)],
                    condition=model.version == entry.version,
                )
            else:
                item.delete(condition=model.version == entry.version)
        except (UpdateError, DeleteError) as exc:
            if condition_check_failed(exc):
                return False
            raise
        return True

    def of_contact(self, contact_id: str) -> list[AudienceEntry]:
        found = (self._get(audience_id, contact_id) for audience_id in self._audience_ids())
        return [self._entry(item) for item in found if item is not None]

    def members(self, audience_id: str) -> dict[str, AudienceEntry]:
        return {entry.contact_id: entry for entry in self._query(audience_id)}

    def record(self, audience_id: str, update: AudienceStats) -> None:
        model = self._model
        item = model(AUDIENCE_PREFIX + audience_id, STATS_SK)
        actions: list[Action] = [
            model.added.add(update.added),
            model.removed.add(update.removed),
            model.requests.add(update.requests),
            model.invalid.add(update.invalid),
            model.failures.add(update.failures),
            model.last_error.set(update.last_error) if update.last_error else model.last_error.remove(),
        ]
        if update.last_sync_at is not None:
            actions.append(model.last_sync_at.set(update.last_sync_at))
        item.update(actions=actions)

    def stats(self, audience_id: str) -> AudienceStats:
        try:
            item = self._model.get(AUDIENCE_PREFIX + audience_id, STATS_SK, consistent_read=True)
        except self._model.DoesNotExist:
            return AudienceStats()
        return AudienceStats(
            added=int(item.added or 0),
            removed=int(item.removed or 0),
            requests=int(item.requests or 0),
            invalid=int(item.invalid or 0),
            failures=int(item.failures or 0),
            last_sync_at=item.last_sync_at,
            last_error=item.last_error,
        )
