"""API keys, rate-limit buckets, contact refs and privacy requests in DynamoDB, through pynamodb.

keys              PK pk "KEY#<sha256 of the key>"            an API key (the key itself is never stored)
                  PK pk "RATE#<bucket>#<window start>"       a rate-limit counter, expires_at TTL
                  PK pk "SIGNUP#<signup id>"                 a signup awaiting confirmation, expires_at TTL
contact-refs      PK ref "<source>:<site>:<kind>:<id>"      an outside id that leads to a contact
                  GSI by-contact: contact_id (KEYS_ONLY)     every ref of a contact, for erasure
privacy-requests  PK request_id                             a data request or redaction, status pending
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from nudge import names
from nudge.adapters.dynamodb.models import bind_model, condition_check_failed, share_connection
from nudge.domain.frozen import dataclass
from nudge.ports import (
    ApiKey,
    KeyKind,
    PendingSignup,
    PrivacyKind,
    PrivacyRequest,
    scope_of,
    waited_item,
    waiting_ref,
)
from nudge.settings import Settings

KEY_PREFIX = "KEY#"
RATE_PREFIX = "RATE#"
SIGNUP_PREFIX = "SIGNUP#"


class ApiKeyModel(Model):
    """PK: pk = KEY#<sha256 hex of the key>."""

    class Meta:
        table_name = "nudge-keys"

    pk = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()
    name = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    origins = ListAttribute(of=UnicodeAttribute, null=True)
    double_opt_in = BooleanAttribute(default=False)
    revoked_at = UTCDateTimeAttribute(null=True)


class RateBucketModel(Model):
    """PK: pk = RATE#<bucket>#<window start, unix seconds>; gone after expires_at (TTL)."""

    class Meta:
        table_name = "nudge-keys"

    pk = UnicodeAttribute(hash_key=True)
    hits = NumberAttribute(default=0)
    expires_at = TTLAttribute(null=True)


class PendingSignupModel(Model):
    """PK: pk = SIGNUP#<signup id>; gone after expires_at (TTL; reads check the time too, TTL lags)."""

    class Meta:
        table_name = "nudge-keys"

    pk = UnicodeAttribute(hash_key=True)
    signup = JSONAttribute()
    expires_at = TTLAttribute()


class RefsByContact(GlobalSecondaryIndex["ContactRefModel"]):
    class Meta:
        index_name = names.CONTACT_REFS_BY_CONTACT_INDEX
        projection = KeysOnlyProjection()

    contact_id = UnicodeAttribute(hash_key=True)


class RefsByScope(GlobalSecondaryIndex["ContactRefModel"]):
    class Meta:
        index_name = names.CONTACT_REFS_BY_SCOPE_INDEX
        projection = KeysOnlyProjection()

    scope = UnicodeAttribute(hash_key=True)
    contact_id = UnicodeAttribute(range_key=True)


class ContactRefModel(Model):
    """PK: ref. GSI by-contact: contact_id. GSI by-scope (sparse: storefront refs only): scope, contact_id."""

    class Meta:
        table_name = "nudge-contact-refs"

    ref = UnicodeAttribute(hash_key=True)
    contact_id = UnicodeAttribute()
    linked_at = UTCDateTimeAttribute()
    claimant = UnicodeAttribute(null=True)  # the event that claimed a first sighting (ContactRefs.claim)
    scope = UnicodeAttribute(null=True)  # `shopify:<shop>` of a storefront's ref (scope_of), else absent
    by_contact = RefsByContact()
    by_scope = RefsByScope()


class CatalogItemModel(Model):
    """In the contact-refs table, PK ref `wait:<item>` (the contacts waiting) or `stock:<key>` (last seen)."""

    class Meta:
        table_name = "nudge-contact-refs"

    ref = UnicodeAttribute(hash_key=True)
    waiting = UnicodeSetAttribute(null=True)
    record = JSONAttribute(null=True)
    observed_at = UTCDateTimeAttribute(null=True)


class PrivacyRequestModel(Model):
    """PK: request_id. `status` is pending until carried out (a redaction: "erased")."""

    class Meta:
        table_name = "nudge-privacy-requests"

    request_id = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()
    source = UnicodeAttribute()
    subject = JSONAttribute()
    contact_ids = ListAttribute(of=UnicodeAttribute, null=True)
    received_at = UTCDateTimeAttribute()
    status = UnicodeAttribute()


@dataclass(frozen=True)
class AccessModels:
    keys: type[ApiKeyModel]
    rates: type[RateBucketModel]
    refs: type[ContactRefModel]
    privacy: type[PrivacyRequestModel]
    signups: type[PendingSignupModel]
    catalog: type[CatalogItemModel]

    def all(self) -> tuple[type[Model], ...]:
        return (self.keys, self.rates, self.refs, self.privacy, self.signups, self.catalog)


def bind_access_models(
    settings: Settings, *, region: str, host: str | None = None, connection: Connection | None = None
) -> AccessModels:
    """Bind the models to this deployment's tables; share `connection` (one botocore session) if given."""
    return bind_access_tables(
        keys=settings.keys_table,
        refs=settings.contact_refs_table,
        privacy=settings.privacy_table,
        region=region,
        host=host,
        connection=connection,
    )


def bind_access_tables(
    *, keys: str, refs: str, privacy: str, region: str, host: str | None = None, connection: Connection | None = None
) -> AccessModels:
    """bind_access_models by table name (the CLI, which needs no full deployment settings)."""
    models = AccessModels(
        keys=bind_model(ApiKeyModel, keys, region, host),  # type: ignore[arg-type]
        rates=bind_model(RateBucketModel, keys, region, host),  # type: ignore[arg-type]
        refs=bind_model(
            ContactRefModel,  # type: ignore[arg-type]
            refs,
            region,
            host,
            {"by_contact": RefsByContact(), "by_scope": RefsByScope()},
        ),
        privacy=bind_model(PrivacyRequestModel, privacy, region, host),  # type: ignore[arg-type]
        signups=bind_model(PendingSignupModel, keys, region, host),  # type: ignore[arg-type]
        catalog=bind_model(CatalogItemModel, refs, region, host),  # type: ignore[arg-type]
    )
    if connection is not None:
        share_connection(models.all(), connection)
    return models


WAIT_PREFIX = "wait:"
STOCK_PREFIX = "stock:"
# A waitlist is spread over this many items (`wait:<item>#<n>`, n from a hash of the contact id): one item
# holds at most 400 KB, ~10,000 contact ids, and a launch's "notify me" can draw more. Reading it is one
# BatchGetItem of every shard; joining it one UpdateItem, leaving it one per shard its contacts are in.
WAIT_SHARDS = 16


def wait_ref(item: str, shard: int) -> str:
    """The key of one of an item's waitlist shards."""
    return f"{WAIT_PREFIX}{item}#{shard}"


def _wait_shard(item: str, contact_id: str) -> str:
    shard = int.from_bytes(hashlib.blake2b(contact_id.encode(), digest_size=2).digest(), "big") % WAIT_SHARDS
    return wait_ref(item, shard)


class DynamoApiKeys:
    def __init__(self, models: AccessModels) -> None:
        self._model = models.keys

    def put(self, key: ApiKey) -> None:
        self._model(
            pk=KEY_PREFIX + key.key_hash,
            kind=key.kind.value,
            name=key.name,
            created_at=key.created_at,
            origins=list(key.origins) or None,
            double_opt_in=key.double_opt_in,
            revoked_at=key.revoked_at,
        ).save()

    def get(self, key_hash: str) -> ApiKey | None:
        try:
            item = self._model.get(KEY_PREFIX + key_hash)
        except self._model.DoesNotExist:
            return None
        return ApiKey(
            key_hash=key_hash,
            kind=KeyKind(item.kind),
            name=item.name,
            created_at=item.created_at,
            origins=tuple(str(origin) for origin in item.origins or ()),
            double_opt_in=bool(item.double_opt_in),
            revoked_at=item.revoked_at,
        )

    def revoke(self, key_hash: str, at: datetime) -> bool:
        try:
            self._model(pk=KEY_PREFIX + key_hash).update(
                actions=[self._model.revoked_at.set(at)], condition=self._model.pk.exists()
            )
        except UpdateError as exc:
            if condition_check_failed(exc):
                return False
            raise
        return True


class DynamoRequestLimiter:
    """Fixed-window counters: one atomic ADD per request, the item expiring with its window."""

    def __init__(self, models: AccessModels) -> None:
        self._model = models.rates

    def hit(self, bucket: str, *, limit: int, window: timedelta, now: datetime) -> bool:
        seconds = int(window.total_seconds())
        start = int(now.timestamp()) // seconds * seconds
        item = self._model(pk=f"{RATE_PREFIX}{bucket}#{start}")
        item.update(
            actions=[
                self._model.hits.add(1),
                self._model.expires_at.set(datetime.fromtimestamp(start, now.tzinfo) + 2 * window),
            ]
        )
        return int(item.hits) <= limit


class DynamoContactRefs:
    def __init__(self, models: AccessModels) -> None:
        self._model = models.refs
        self._catalog = models.catalog

    def link(self, ref: str, contact_id: str, now: datetime, *, claimant: str | None = None) -> None:
        self._model(ref=ref, contact_id=contact_id, linked_at=now, claimant=claimant, scope=scope_of(ref)).save()

    def claim(self, ref: str, contact_id: str, claimant: str, now: datetime) -> str | None:
        model = self._model
        try:
            model(ref=ref, contact_id=contact_id, linked_at=now, claimant=claimant, scope=scope_of(ref)).save(
                condition=model.ref.does_not_exist() | (model.claimant == claimant)
            )
        except PutError as exc:
            if not condition_check_failed(exc):
                raise
            return self.resolve(ref) or contact_id
        return None

    def resolve(self, ref: str) -> str | None:
        try:
            return str(self._model.get(ref, consistent_read=True).contact_id)
        except self._model.DoesNotExist:
            return None

    def forget(self, contact_id: str) -> int:
        items = [self._model(ref=item.ref) for item in self._model.by_contact.query(contact_id)]
        for item in items:  # off the waitlists first: a retried erasure still finds them by their refs
            if (waited := waited_item(str(item.ref), contact_id)) is not None:
                self.unwait(waited, [contact_id])
        with self._model.batch_write() as batch:
            for item in items:
                batch.delete(item)
        return len(items)

    def contacts_of(
        self, scope: str, cursor: dict[str, Any] | None = None, limit: int = 100
    ) -> tuple[list[str], dict[str, Any] | None]:
        page = self._model.by_scope.query(scope, limit=limit, last_evaluated_key=cursor)
        contacts = [str(item.contact_id) for item in page]
        return contacts, page.last_evaluated_key

    def wait(self, item: str, contact_id: str, now: datetime) -> None:
        self.link(waiting_ref(contact_id, item), contact_id, now)  # first: an erasure can always find it
        model = self._catalog
        model(ref=_wait_shard(item, contact_id)).update(
            actions=[model.waiting.add({contact_id}), model.observed_at.set(now)]
        )

    def waiting(self, item: str) -> list[str]:
        keys = [wait_ref(item, n) for n in range(WAIT_SHARDS)]
        found: set[str] = set()
        for shard in self._catalog.batch_get(keys, consistent_read=True):
            found |= set(shard.waiting or ())
        return sorted(found)

    def unwait(self, item: str, contact_ids: list[str]) -> None:
        by_shard: defaultdict[str, set[str]] = defaultdict(set)
        for contact_id in contact_ids:
            by_shard[_wait_shard(item, contact_id)].add(contact_id)
        for ref, shard in by_shard.items():  # one UpdateItem per shard the contacts are in
            self._catalog(ref=ref).update(actions=[self._catalog.waiting.delete(shard)])

    def recall(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self._catalog.get(STOCK_PREFIX + key, consistent_read=True).record or {})
        except self._catalog.DoesNotExist:
            return None

    def observe(self, key: str, record: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        model = self._catalog
        for _ in range(5):
            try:
                old = model.get(STOCK_PREFIX + key, consistent_read=True)
            except model.DoesNotExist:
                old = None
            # Conditional on what was read: of two deliveries at once, the second sees the first's record.
            condition = model.ref.does_not_exist() if old is None else model.observed_at == old.observed_at
            try:
                model(ref=STOCK_PREFIX + key, record=record, observed_at=now).save(condition=condition)
            except PutError as exc:
                if not condition_check_failed(exc):
                    raise
                continue
            return dict(old.record or {}) if old is not None else None
        raise PutError(f"catalog item {key} kept changing")


class DynamoPendingSignups:
    def __init__(self, models: AccessModels) -> None:
        self._model = models.signups

    def put(self, signup: PendingSignup) -> None:
        record = {
            "key_hash": signup.key_hash,
            "email": signup.email,
            "first_name": signup.first_name,
            "phone": signup.phone,
            "sms_marketing": signup.sms_marketing,
            "source": signup.source,
            "requested_at": signup.requested_at.isoformat(),
            "notify_me": signup.notify_me,
        }
        self._model(pk=SIGNUP_PREFIX + signup.signup_id, signup=record, expires_at=signup.expires_at).save()

    def get(self, signup_id: str, now: datetime) -> PendingSignup | None:
        try:
            item = self._model.get(SIGNUP_PREFIX + signup_id, consistent_read=True)
        except self._model.DoesNotExist:
            return None
        if item.expires_at <= now:
            return None
        record = item.signup
        return PendingSignup(
            signup_id=signup_id,
            key_hash=record["key_hash"],
            email=record["email"],
            first_name=record.get("first_name"),
            phone=record.get("phone"),
            sms_marketing=bool(record.get("sms_marketing")),
            source=record.get("source"),
            requested_at=datetime.fromisoformat(record["requested_at"]),
            expires_at=item.expires_at,
            notify_me=record.get("notify_me"),
        )


class DynamoPrivacyRequests:
    def __init__(self, models: AccessModels) -> None:
        self._model = models.privacy

    def record(self, request: PrivacyRequest) -> bool:
        item = self._model(
            request_id=request.request_id,
            kind=request.kind.value,
            source=request.source,
            subject=request.subject,
            contact_ids=list(request.contact_ids) or None,
            received_at=request.received_at,
            status=request.status,
        )
        try:
            item.save(condition=self._model.request_id.does_not_exist())
        except PutError as exc:
            if condition_check_failed(exc):
                return False
            raise
        return True

    def complete(self, request_id: str, status: str) -> None:
        self._model(request_id=request_id).update(actions=[self._model.status.set(status)])

    def get(self, request_id: str) -> PrivacyRequest | None:
        """Read one back (for issue #5's worker and the tests)."""
        try:
            item = self._model.get(request_id, consistent_read=True)
        except self._model.DoesNotExist:
            return None
        return PrivacyRequest(
            request_id=item.request_id,
            kind=PrivacyKind(item.kind),
            source=item.source,
            subject=item.subject,
            contact_ids=tuple(str(contact_id) for contact_id in item.contact_ids or ()),
            received_at=item.received_at,
            status=item.status,
        )
