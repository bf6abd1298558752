"""Request signatures: `X-Nudge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.

The timestamp is signed with the body, and requests older than the tolerance are refused, so a
captured request cannot be replayed later; the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

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
