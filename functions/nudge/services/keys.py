"""API keys: created once and shown once, stored as a SHA-256 hash, checked on every call."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import replace

from nudge.ports import ApiKey, ApiKeys, Clock, KeyKind

PREFIXES = {KeyKind.SECRET: "nudge_sk_", KeyKind.PUBLISHABLE: "nudge_pk_"}
_KEY_BYTES = 32  # 256 bits of entropy: a plain SHA-256 is enough, no slow hash needed


def hash_key(key: str) -> str:
    """The stored form of a key; also the id `nudge keys revoke` accepts."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyService:
    def __init__(self, keys: ApiKeys, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock

    def create(
        self, kind: KeyKind, name: str, *, origins: Iterable[str] = (), double_opt_in: bool = False
    ) -> tuple[str, ApiKey]:
        """Make a new key; the plain key is returned here and never stored."""
        plain = PREFIXES[kind] + secrets.token_urlsafe(_KEY_BYTES)
        record = ApiKey(
            key_hash=hash_key(plain),
            kind=kind,
            name=name,
            created_at=self._clock.now(),
            origins=tuple(o.rstrip("/") for o in origins),
            double_opt_in=double_opt_in,
        )
        self._keys.put(record)
        return plain, record

    def install(self, plain: str, kind: KeyKind, name: str, **options: object) -> ApiKey:
        """Store a key chosen by the caller (local servers with a fixed developer key)."""
        record = ApiKey(key_hash=hash_key(plain), kind=kind, name=name, created_at=self._clock.now())
        record = replace(record, **options)  # type: ignore[arg-type]
        self._keys.put(record)
        return record

    def authenticate(self, presented: str | None, kind: KeyKind) -> ApiKey | None:
        """The live key of this kind matching `presented`, else None."""
        if not presented or not presented.startswith(PREFIXES[kind]) or len(presented) > 200:
            return None
        record = self._keys.get(hash_key(presented))
        if record is None or record.kind is not kind or record.revoked_at is not None:
            return None
        return record

    def live(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, unless it was revoked."""
        record = self._keys.get(key_hash)
        return record if record is not None and record.revoked_at is None else None

    def revoke(self, key_or_hash: str) -> bool:
        """Revoke by the key itself or by its hash; False if no such key exists."""
        is_plain = key_or_hash.startswith(tuple(PREFIXES.values()))
        key_hash = hash_key(key_or_hash) if is_plain else key_or_hash.lower()
        return self._keys.revoke(key_hash, self._clock.now())
