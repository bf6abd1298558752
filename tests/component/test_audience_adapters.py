"""The ad platforms' adapters against local fakes of their APIs (tests/adfakes.py): documented request shapes,
hashing, batch sizes and session fields; documented answers and errors; and one contract with the twin."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from nudge.adapters.ad_audiences import GoogleAdsAudiences, MetaAudiences, TikTokAudiences, platforms
from nudge.adapters.memory import MemoryAudiencePlatform
from nudge.domain.audiences import BATCH_LIMITS, Audience, identifiers_for
from nudge.local.ad_fakes import CREDENTIALS, FakeAdPlatforms, fixture
from nudge.ports import AudienceEntry, PermanentSendError, TransientSendError

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
AUDIENCES = {
    "meta": Audience(id="cart_meta", name="Cart", platform="meta", audience_id="23851234567890123"),
    "google": Audience(id="cart_google", name="Cart", platform="google", audience_id="7001", account_id="1234567890"),
    "tiktok": Audience(
        id="cart_tiktok", name="Cart", platform="tiktok", audience_id="6990001", account_id="7000000001"
    ),
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entries(platform: str, count: int, *, phones: bool = True) -> list[AudienceEntry]:
    made = []
    for n in range(count):
        ids = identifiers_for(platform, f"Shopper{n}@Example.com ", f"+1 415 555 {n:04d}" if phones else None)
        made.append(AudienceEntry("cart", f"c{n}", True, False, ids.email, ids.phone, NOW))
    return made


def adapter(platform: str, fake: FakeAdPlatforms) -> Any:
    return platforms(lambda name: CREDENTIALS[name], fake)(platform)


def test_identifiers_are_normalized_and_hashed_as_each_platform_documents() -> None:
    meta = identifiers_for("meta", "  Bob@Example.COM ", "+1 (415) 555-0101")
    google = identifiers_for("google", "  Bob@Example.COM ", "+1 (415) 555-0101")
    tiktok = identifiers_for("tiktok", "bob@example.com", "+14155550101")

    assert meta.email == google.email == tiktok.email == sha("bob@example.com")
    assert meta.phone == sha("14155550101")  # Meta: digits with the country code, no '+'
    assert google.phone == tiktok.phone == sha("+14155550101")  # E.164
    assert identifiers_for("meta", None, "0415 555 0101").phone is None  # not E.164: never guessed
    assert not identifiers_for("meta", "not-an-address", None)


def test_meta_uploads_in_sessions_of_at_most_10000_rows() -> None:
    fake = FakeAdPlatforms()
    members = entries("meta", 25_000)

    result = adapter("meta", fake).upload(AUDIENCES["meta"], "add", members, "ab" * 32)

    assert fake.violations == []
    assert result.requests == 3 and fake.rows["meta"] == [10_000, 10_000, 5_000]
    assert [m for _, m, _ in fake.requests] == ["POST"] * 3
    assert fake.members[("meta", "23851234567890123")] == {m.email for m in members} | {m.phone for m in members}


def test_meta_session_fields_and_a_retry_is_the_same_session() -> None:
    seen: list[dict[str, Any]] = []
    fake = FakeAdPlatforms()

    def spy(method: str, url: str, headers: Any, body: bytes) -> Any:
        from urllib.parse import parse_qsl

        seen.append(json.loads(dict(parse_qsl(body.decode()))["session"]))
        return fake(method, url, headers, body)

    members = entries("meta", 12_000)
    meta = MetaAudiences(lambda: CREDENTIALS["meta"], spy)
    meta.upload(AUDIENCES["meta"], "add", members, "cd" * 32)
    meta.upload(AUDIENCES["meta"], "add", members, "cd" * 32)  # the worker retried the same changes

    assert fake.violations == []
    first, last = seen[0], seen[1]
    assert first == {
        "session_id": int("cd" * 7 + "c", 16),
        "batch_seq": 1,
        "last_batch_flag": False,
        "estimated_num_total": 12_000,
    }
    assert last["batch_seq"] == 2 and last["last_batch_flag"] is True
    assert seen[2]["session_id"] == first["session_id"]
    assert len(fake.members[("meta", "23851234567890123")]) == 24_000  # nothing doubled


def test_meta_removes_with_delete() -> None:
    fake = FakeAdPlatforms()
    members = entries("meta", 3)
    meta = adapter("meta", fake)
    meta.upload(AUDIENCES["meta"], "add", members, "01" * 32)
    meta.upload(AUDIENCES["meta"], "remove", members[:2], "02" * 32)

    assert [m for _, m, _ in fake.requests] == ["POST", "DELETE"]
    assert fake.members[("meta", "23851234567890123")] == {members[2].email, members[2].phone}


@pytest.mark.parametrize(
    ("status", "name", "error", "throttled"),
    [
        (400, "meta_error_rate_limit.json", TransientSendError, True),
        (400, "meta_error_invalid_token.json", PermanentSendError, False),
        (400, "meta_error_blocked.json", PermanentSendError, False),
    ],
)
def test_meta_errors(status: int, name: str, error: type[Exception], throttled: bool) -> None:
    fake = FakeAdPlatforms()
    fake.fail("meta", status, name)

    with pytest.raises(error) as raised:
        adapter("meta", fake).upload(AUDIENCES["meta"], "add", entries("meta", 1), "03" * 32)

    assert str(fixture(name)["error"]["code"]) in str(raised.value)
    if isinstance(raised.value, TransientSendError):
        assert raised.value.throttled is throttled


def test_google_runs_one_job_with_at_most_100000_identifiers_a_request() -> None:
    fake = FakeAdPlatforms()
    members = entries("google", 60_000)  # an email and a phone each: 120,000 identifiers

    result = adapter("google", fake).upload(AUDIENCES["google"], "add", members, "04" * 32)

    assert fake.violations == []
    assert fake.rows["google"] == [100_000, 20_000]
    urls = [url.rsplit("/", 1)[-1] for _, _, url in fake.requests]
    assert urls == ["token", "offlineUserDataJobs:create", "1:addOperations", "1:addOperations", "1:run"]
    assert result.requests == 5
    assert len(fake.members[("google", "7001")]) == 120_000


def test_google_remove_operations_and_partial_failure() -> None:
    fake = FakeAdPlatforms()
    google = adapter("google", fake)
    members = entries("google", 2, phones=False)
    google.upload(AUDIENCES["google"], "add", members, "05" * 32)
    google.upload(AUDIENCES["google"], "remove", members[:1], "06" * 32)
    assert fake.members[("google", "7001")] == {members[1].email}

    bad = [AudienceEntry("cart", "x", True, False, "NOT-A-HASH", None, NOW)]
    result = google.upload(AUDIENCES["google"], "add", bad, "07" * 32)
    assert result.invalid == 1  # the documented partialFailureError, counted, the rest of the job still runs


@pytest.mark.parametrize(
    ("status", "name", "error"),
    [
        (429, "google_error_resource_exhausted.json", TransientSendError),
        (401, "google_error_unauthenticated.json", PermanentSendError),
    ],
)
def test_google_errors(status: int, name: str, error: type[Exception]) -> None:
    fake = FakeAdPlatforms()
    fake.fail("google", status, name, {"Retry-After": "30"})

    with pytest.raises(error) as raised:
        adapter("google", fake).upload(AUDIENCES["google"], "add", entries("google", 1), "08" * 32)

    assert fixture(name)["error"]["status"] in str(raised.value)
    if isinstance(raised.value, TransientSendError):
        assert raised.value.throttled and raised.value.retry_after is not None
        assert raised.value.retry_after.total_seconds() == 30


def test_tiktok_maps_in_batches_of_1000_and_deletes() -> None:
    fake = FakeAdPlatforms()
    members = entries("tiktok", 2_500)
    tiktok = adapter("tiktok", fake)

    result = tiktok.upload(AUDIENCES["tiktok"], "add", members, "09" * 32)
    tiktok.upload(AUDIENCES["tiktok"], "remove", members[:500], "10" * 32)

    assert fake.violations == []
    assert result.requests == 3 and fake.rows["tiktok"] == [1_000, 1_000, 500, 500]
    assert len(fake.members[("tiktok", "6990001")]) == 2 * 2_000


@pytest.mark.parametrize(
    ("name", "error"),
    [("tiktok_error_rate_limit.json", TransientSendError), ("tiktok_error_token.json", PermanentSendError)],
)
def test_tiktok_errors_come_in_a_200_envelope(name: str, error: type[Exception]) -> None:
    fake = FakeAdPlatforms()
    fake.fail("tiktok", 200, name)

    with pytest.raises(error, match=str(fixture(name)["code"])):
        adapter("tiktok", fake).upload(AUDIENCES["tiktok"], "add", entries("tiktok", 1), "11" * 32)


def test_a_bad_token_is_refused_by_every_fake() -> None:
    fake = FakeAdPlatforms()
    wrong: dict[str, dict[str, str]] = {
        "meta": {"access_token": "stale"},
        "google": {**CREDENTIALS["google"], "refresh_token": "revoked"},
        "tiktok": {"access_token": "stale"},
    }
    made = platforms(lambda name: wrong[name], fake)
    for name, audience in AUDIENCES.items():
        with pytest.raises(PermanentSendError):
            made(name).upload(audience, "add", entries(name, 1), "12" * 32)
    with pytest.raises(PermanentSendError, match="no access_token"):
        MetaAudiences(lambda: {}, fake).upload(AUDIENCES["meta"], "add", entries("meta", 1), "13" * 32)


def _real(platform: str) -> tuple[Any, Callable[[], set[str]]]:
    fake = FakeAdPlatforms()
    made = {"meta": MetaAudiences, "google": GoogleAdsAudiences, "tiktok": TikTokAudiences}[platform](
        lambda: CREDENTIALS[platform], fake
    )
    key = (platform, AUDIENCES[platform].audience_id)
    return made, lambda: fake.members[key]


def _twin(platform: str) -> tuple[Any, Callable[[], set[str]]]:
    twin = MemoryAudiencePlatform(BATCH_LIMITS[platform])
    audience_id = AUDIENCES[platform].audience_id
    return twin, lambda: {v for row in twin.members[audience_id] for v in row if v}


@pytest.mark.parametrize("platform", ["meta", "google", "tiktok"])
@pytest.mark.parametrize("make", [_real, _twin], ids=["adapter", "twin"])
def test_contract_add_remove_and_repeat(
    platform: str, make: Callable[[str], tuple[Any, Callable[[], set[str]]]]
) -> None:
    made, members = make(platform)
    audience = AUDIENCES[platform]
    people = entries(platform, 3)

    made.upload(audience, "add", people, "14" * 32)
    made.upload(audience, "add", people, "14" * 32)  # a retry changes nothing
    made.upload(audience, "remove", people[:1], "15" * 32)
    made.upload(audience, "remove", people[:1], "15" * 32)

    assert members() == {v for p in people[1:] for v in (p.email, p.phone) if v}


def test_the_urllib_transport_answers_http_errors_and_makes_network_failures_transient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import urllib.error
    import urllib.request
    from email.message import Message

    from nudge.adapters import ad_audiences

    headers = Message()
    headers["Retry-After"] = "30"
    body = json.dumps(fixture("google_error_resource_exhausted.json")).encode()
    seen: list[tuple[str, str, float]] = []

    def refused(request: urllib.request.Request, timeout: float) -> Any:
        seen.append((request.get_method(), request.full_url, timeout))
        raise urllib.error.HTTPError(request.full_url, 429, "Too Many Requests", headers, io.BytesIO(body))

    monkeypatch.setattr(urllib.request, "urlopen", refused)
    answer = ad_audiences.urllib_transport("POST", "https://googleads.googleapis.com/v22/x", {}, b"{}")
    assert (answer.status, answer.json()["error"]["status"], answer.headers["Retry-After"]) == (
        429,
        "RESOURCE_EXHAUSTED",
        "30",
    )
    assert seen == [("POST", "https://googleads.googleapis.com/v22/x", ad_audiences.TIMEOUT_SECONDS)]

    def down(request: urllib.request.Request, timeout: float) -> Any:
        raise urllib.error.URLError("connection refused")

    monkeypatch.setattr(urllib.request, "urlopen", down)
    with pytest.raises(TransientSendError):
        ad_audiences.urllib_transport("DELETE", "https://graph.facebook.com/v25.0/1/users", {}, b"")
    with pytest.raises(PermanentSendError, match="not an https URL"):
        ad_audiences.urllib_transport("POST", "http://graph.facebook.com/v25.0/1/users", {}, b"")
