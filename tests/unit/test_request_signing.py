"""Signature v2 covers method, path, query and body; v1 survives only where a body cannot be replayed elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nudge import signing

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
KEY = "k"


def verify(
    header: str,
    method: str = "GET",
    path: str = "/v1/contacts/c_1",
    query: dict[str, str] | None = None,
    body: bytes = b"",
    now: datetime = NOW,
) -> None:
    signing.verify_request(KEY, header, method=method, path=path, query=query, body=body, now=now)


def test_a_v2_signature_holds_only_for_its_method_path_query_and_body() -> None:
    header = signing.sign_request(KEY, "GET", "/v1/contacts/c_1", {"b": "2", "a": "1 x"}, b"", NOW)

    verify(header, query={"a": "1 x", "b": "2"})  # the query's order does not matter
    for changed in (
        {"method": "DELETE"},
        {"path": "/v1/contacts/c_2"},
        {"query": {"a": "1 x"}},
        {"query": {"a": "1 x", "b": "3"}},
        {"body": b"{}"},
    ):
        with pytest.raises(signing.SignatureError):
            verify(header, **{"query": {"a": "1 x", "b": "2"}} | changed)  # type: ignore[arg-type]


def test_v1_is_refused_off_its_two_routes_and_after_its_sunset() -> None:
    body = b'{"id":"e1"}'
    v1 = signing.sign(KEY, body, NOW)

    verify(v1, method="POST", path="/v1/events", body=body)
    with pytest.raises(signing.SignatureError, match="needs a v2 signature"):
        verify(signing.sign(KEY, b"", NOW), method="DELETE", path="/v1/contacts/c_1")
    with pytest.raises(signing.SignatureError, match="needs a v2 signature"):
        verify(v1, method="POST", path="/v1/flows/vip/enrollments", body=body)
    late = signing.V1_SUNSET + timedelta(seconds=1)
    with pytest.raises(signing.SignatureError, match="retired"):
        verify(signing.sign(KEY, body, late), method="POST", path="/v1/events", body=body, now=late)


@pytest.mark.parametrize(
    "header",
    ["t=" + "9" * 400 + ",v2=00", "t=-5,v2=00", "t=1²,v2=00", "t=1793610000,v2=é", "t=1,v1=x" * 200, "v2=00", ""],
)
def test_a_malformed_header_is_a_signature_error_never_a_crash(header: str) -> None:
    with pytest.raises(signing.SignatureError):
        verify(header)


def test_a_token_with_a_non_ascii_signature_is_refused() -> None:
    token = signing.sign_token(KEY, {"exp": int(NOW.timestamp()) + 60})
    with pytest.raises(signing.SignatureError):
        signing.verify_token(KEY, token.partition(".")[0] + ".é", NOW)
