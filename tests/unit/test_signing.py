"""Request signatures: valid ones pass; forged, stale, malformed and missing ones are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nudge.signing import SignatureError, sign, verify

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BODY = b'{"id":"e1"}'


def test_a_fresh_signature_verifies() -> None:
    verify("key", sign("key", BODY, NOW), BODY, NOW + timedelta(seconds=30))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing signature header"),
        ("", "missing signature header"),
        ("v1=abc", "malformed"),
        ("t=abc,v1=abc", "malformed"),
        ("t=1,v1=", "malformed"),
    ],
)
def test_malformed_headers_are_refused(header: str | None, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        verify("key", header, BODY, NOW)


def test_another_key_is_refused() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify("key", sign("other", BODY, NOW), BODY, NOW)


def test_a_changed_body_is_refused() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify("key", sign("key", BODY, NOW), BODY + b" ", NOW)


def test_a_replay_after_the_tolerance_is_refused() -> None:
    with pytest.raises(SignatureError, match="away from now"):
        verify("key", sign("key", BODY, NOW), BODY, NOW + timedelta(minutes=6))
