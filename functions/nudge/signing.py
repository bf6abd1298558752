"""Request signatures: `X-Nudge-Signature: t=<unix seconds>,v2=<hex HMAC-SHA256 of the canonical request>`.

v2 signs the request, not only its body (docs/adr/0014-request-signing-v2.md):

    v2\n<t>\n<METHOD>\n<path>\n<canonical query>\n<raw body>

`path` is the path after the stage (`/v1/contacts/c_1`), the canonical query its parameters sorted by
name then value, each percent-encoded (RFC 3986 unreserved characters kept) and joined `name=value` by `&`.
So a captured GET cannot be replayed as a DELETE, nor on another contact, flow or query.

v1 (`v1=<hex HMAC-SHA256 of "<t>.<raw body>">`) signs the body only. It stays verifiable until V1_SUNSET,
and only on the two routes whose bodies cannot be mistaken for another route's (POST /v1/events and
POST /v1/contacts: each body model forbids the other's members); anywhere else v1 is refused.

The timestamp is signed too and requests older than the tolerance are refused, so a captured request
cannot be replayed later; comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

TOLERANCE = timedelta(minutes=5)
# v1 (body only) is accepted until then, on V1_ROUTES only; docs/api.md announces the date.
V1_SUNSET = datetime(2027, 6, 1, tzinfo=UTC)
V1_ROUTES = frozenset({("POST", "/v1/events"), ("POST", "/v1/contacts")})
_MAX_TIMESTAMP_DIGITS = 12  # unix seconds until the year 33658; more is no timestamp (and overflows floats)
_MAX_HEADER = 512


class SignatureError(Exception):
    """The signature is missing, malformed, stale or wrong; the message says which (never the expected value)."""


def sign(key: str, body: bytes, at: datetime) -> str:
    """A v1 header value for `body` sent at `at` (outbound webhooks; v1 callers until V1_SUNSET)."""
    timestamp = int(at.timestamp())
    return f"t={timestamp},v1={_v1(key, timestamp, body)}"


def sign_request(key: str, method: str, path: str, query: Mapping[str, str] | None, body: bytes, at: datetime) -> str:
    """The v2 header value for this request sent at `at`."""
    timestamp = int(at.timestamp())
    return f"t={timestamp},v2={_v2(key, timestamp, method, path, query or {}, body)}"


def canonical_query(query: Mapping[str, str]) -> str:
    """Parameters sorted by name then value, percent-encoded (unreserved characters kept), joined by &."""
    return "&".join(f"{quote(k, safe='-._~')}={quote(v, safe='-._~')}" for k, v in sorted(query.items()))


def verify_request(
    key: str,
    header: str | None,
    *,
    method: str,
    path: str,
    query: Mapping[str, str] | None,
    body: bytes,
    now: datetime,
) -> None:
    """Raise SignatureError unless `header` is a fresh, valid signature of this request under `key`."""
    timestamp, parts = _parse(header, now)
    if given := parts.get("v2"):
        expected = _v2(key, timestamp, method, path, query or {}, body)
        if not _same(expected, given):
            raise SignatureError("v2 signature does not match the method, path, query and body")
        return
    if given := parts.get("v1"):
        if now >= V1_SUNSET:
            raise SignatureError(f"v1 signatures were retired on {V1_SUNSET.date()}; sign with v2")
        if (method.upper(), path) not in V1_ROUTES:
            raise SignatureError("v1 signatures cover only the body: this route needs a v2 signature")
        if not _same(_v1(key, timestamp, body), given):
            raise SignatureError("signature does not match the body")
        return
    raise SignatureError("malformed signature header; expected t=<unix seconds>,v2=<hex digest>")


def verify(key: str, header: str | None, body: bytes, now: datetime) -> None:
    """Raise SignatureError unless `header` is a fresh, valid v1 signature of `body` (what outbound webhooks get)."""
    timestamp, parts = _parse(header, now)
    given = parts.get("v1", "")
    if not given or not _same(_v1(key, timestamp, body), given):
        raise SignatureError("signature does not match the body")


def _parse(header: str | None, now: datetime) -> tuple[int, dict[str, str]]:
    """The header's timestamp (checked fresh) and its members."""
    if not header:
        raise SignatureError("missing signature header")
    if len(header) > _MAX_HEADER:
        raise SignatureError(f"malformed signature header; longer than {_MAX_HEADER} characters")
    parts = dict(part.strip().partition("=")[::2] for part in header.split(","))
    text = parts.get("t", "")
    if not (parts.get("v2") or parts.get("v1")) or not (
        text.isascii() and text.isdigit() and len(text) <= _MAX_TIMESTAMP_DIGITS
    ):
        raise SignatureError("malformed signature header; expected t=<unix seconds>,v2=<hex digest>")
    timestamp = int(text)
    age = abs(int(now.timestamp()) - timestamp)
    if age > TOLERANCE.total_seconds():
        raise SignatureError(
            f"signature timestamp is {age} s away from now; the limit is {int(TOLERANCE.total_seconds())} s"
        )
    return timestamp, parts


def _same(expected: str, given: str) -> bool:
    """Constant-time, and safe for any text a caller sends (compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def _v1(key: str, timestamp: int, body: bytes) -> str:
    return hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _v2(key: str, timestamp: int, method: str, path: str, query: Mapping[str, str], body: bytes) -> str:
    head = f"v2\n{timestamp}\n{method.upper()}\n{path}\n{canonical_query(query)}\n".encode()
    return hmac.new(key.encode(), head + body, hashlib.sha256).hexdigest()


def verify_base64_hmac(secret: str, header: str | None, body: bytes) -> None:
    """Shopify and WooCommerce: the header is base64(HMAC-SHA256(secret, raw body)); no timestamp is signed."""
    if not header:
        raise SignatureError("missing signature header")
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected.encode(), header.strip().encode()):
        raise SignatureError("signature does not match the body")


def base64_hmac(secret: str, body: bytes) -> str:
    """The header value a storefront sends for `body` (for tests, fixtures and the README's curl)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def sign_token(key: str, claims: dict[str, Any]) -> str:
    """A URL-safe token carrying `claims` (include an "exp" unix time), signed with `key`."""
    payload = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=")
    digest = hmac.new(key.encode(), b"token." + payload, hashlib.sha256).digest()
    return payload.decode() + "." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify_token(key: str, token: str | None, now: datetime) -> dict[str, Any]:
    """The claims of a token made by sign_token, if its signature holds and it has not expired."""
    payload, _, given = (token or "").partition(".")
    if not payload or not given:
        raise SignatureError("malformed token")
    expected = hmac.new(key.encode(), b"token." + payload.encode(), hashlib.sha256).digest()
    if not _same(base64.urlsafe_b64encode(expected).rstrip(b"=").decode(), given):
        raise SignatureError("token signature does not match")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) or claims["exp"] < now.timestamp():
        raise SignatureError("token has expired")
    return claims
