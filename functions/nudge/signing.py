"""Request signatures: `X-Nudge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.

The timestamp is signed with the body, and requests older than the tolerance are refused, so a
captured request cannot be replayed later; the comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

TOLERANCE = timedelta(minutes=5)


class SignatureError(Exception):
    """The signature is missing, malformed, stale or wrong; the message says which (never the expected value)."""


def sign(key: str, body: bytes, at: datetime) -> str:
    """The header value for `body` sent at `at`."""
    timestamp = int(at.timestamp())
    digest = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(key: str, header: str | None, body: bytes, now: datetime) -> None:
    """Raise SignatureError unless `header` is a fresh, valid signature of `body` under `key`."""
    if not header:
        raise SignatureError("missing signature header")
    parts = dict(part.strip().partition("=")[::2] for part in header.split(","))
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    if not timestamp.isdigit() or not given:
        raise SignatureError("malformed signature header; expected t=<unix seconds>,v1=<hex digest>")
    age = abs(now.timestamp() - int(timestamp))
    if age > TOLERANCE.total_seconds():
        raise SignatureError(
            f"signature timestamp is {int(age)} s away from now; the limit is {int(TOLERANCE.total_seconds())} s"
        )
    expected = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise SignatureError("signature does not match the body")


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
    if not hmac.compare_digest(base64.urlsafe_b64encode(expected).rstrip(b"=").decode(), given):
        raise SignatureError("token signature does not match")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) or claims["exp"] < now.timestamp():
        raise SignatureError("token has expired")
    return claims
