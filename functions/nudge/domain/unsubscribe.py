"""Unsubscribe tokens: an HMAC-SHA256 over the contact id, so a link cannot be forged for someone else.

`v1.<base64url(contact id)>.<base64url(HMAC(key, "v1|unsubscribe|<contact id>"))>`. The purpose is
signed with the id, so a token minted for another use of the same key can never pass as this one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

VERSION = "v1"
PURPOSE = "unsubscribe"
MAX_TOKEN_LENGTH = 512


class BadToken(ValueError):
    """The token is malformed or its signature does not match: refuse, change nothing."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _mac(key: str, contact_id: str) -> bytes:
    return hmac.new(key.encode(), f"{VERSION}|{PURPOSE}|{contact_id}".encode(), hashlib.sha256).digest()


def make_token(key: str, contact_id: str) -> str:
    """The token that lets its bearer manage this contact's email preferences, and nothing else."""
    if not key:
        raise ValueError("an unsubscribe token needs a key")
    return f"{VERSION}.{_b64(contact_id.encode())}.{_b64(_mac(key, contact_id))}"


def read_token(key: str, token: str) -> str:
    """The contact id the token was made for; BadToken unless it verifies (constant-time compare)."""
    if not key:
        raise BadToken("no unsubscribe key is configured")
    parts = token.split(".")
    if len(token) > MAX_TOKEN_LENGTH or len(parts) != 3 or parts[0] != VERSION:
        raise BadToken("malformed token")
    try:
        contact_id = _unb64(parts[1]).decode()
        given = _unb64(parts[2])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadToken("malformed token") from None
    # base64 ignores the spare bits of the last character: only the canonical spelling is accepted,
    # so each contact has exactly one valid token string.
    if _b64(contact_id.encode()) != parts[1] or _b64(given) != parts[2]:
        raise BadToken("malformed token")
    if not contact_id or not hmac.compare_digest(_mac(key, contact_id), given):
        raise BadToken("token signature does not match")
    return contact_id
