"""Local fakes of the Meta, Google Ads and TikTok audience APIs, behind the adapters' transport (tests and
`nudge bench --audiences`; never in the Lambda bundle).

Each checks a request against its platform's documented shape (field names, hashing, batch sizes, session
fields) and answers with that platform's documented responses (tests/fixtures/audiences): success, or a
queued error (rate limit, bad token, partial failure). A request that breaks the shape is answered with the
platform's 400 and listed in `violations`, so a test that expects none fails on it.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nudge.adapters.ad_audiences import HttpResponse

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "audiences"
HEX64 = re.compile(r"[0-9a-f]{64}")
META_TOKEN = "meta-system-user-token"
GOOGLE = {
    "developer_token": "google-dev-token",
    "client_id": "google-client",
    "client_secret": "google-client-secret",
    "refresh_token": "google-refresh",
}
TIKTOK_TOKEN = "tiktok-access-token"
CREDENTIALS: dict[str, dict[str, str]] = {
    "meta": {"access_token": META_TOKEN},
    "google": GOOGLE,
    "tiktok": {"access_token": TIKTOK_TOKEN},
}


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def _answer(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, json.dumps(body).encode(), dict(headers or {}))


class FakeAdPlatforms:
    """The three APIs at once; `members[(platform, audience id)]` is what each audience holds (hashes)."""

    def __init__(self) -> None:
        self.members: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.requests: list[tuple[str, str, str]] = []  # (platform, method, url)
        self.rows: dict[str, list[int]] = defaultdict(list)  # platform -> identifiers per membership request
        self.violations: list[str] = []
        self.errors: dict[str, list[HttpResponse]] = defaultdict(list)  # platform -> answers to give first
        self._sessions: dict[int, int] = {}  # Meta session id -> last batch_seq
        self._jobs: dict[str, dict[str, Any]] = {}  # Google job name -> {user_list, ops, ran}

    def fail(self, platform: str, status: int, fixture_name: str, headers: Mapping[str, str] | None = None) -> None:
        self.errors[platform].append(_answer(status, fixture(fixture_name), headers))

    def count(self, platform: str) -> int:
        return sum(1 for p, _, _ in self.requests if p == platform)

    def __call__(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        host = urllib.parse.urlsplit(url).netloc
        platform = {
            "graph.facebook.com": "meta",
            "oauth2.googleapis.com": "google",
            "googleads.googleapis.com": "google",
            "business-api.tiktok.com": "tiktok",
        }.get(host)
        if platform is None:
            self.violations.append(f"unknown host {host}")
            return _answer(404, {})
        self.requests.append((platform, method, url))
        if host == "oauth2.googleapis.com":
            return self._google_token(headers, body)
        if self.errors[platform]:
            return self.errors[platform].pop(0)
        if platform == "meta":
            return self._meta(method, url, headers, body)
        if platform == "google":
            return self._google(method, url, headers, body)
        return self._tiktok(method, url, headers, body)

    def _refuse(self, platform: str, problem: str) -> HttpResponse:
        self.violations.append(f"{platform}: {problem}")
        if platform == "meta":
            return _answer(400, {"error": {"message": f"(#100) {problem}", "type": "OAuthException", "code": 100}})
        if platform == "google":
            return _answer(400, {"error": {"code": 400, "message": problem, "status": "INVALID_ARGUMENT"}})
        return _answer(200, {"code": 40002, "message": problem, "request_id": "fake", "data": {}})

    # Meta: /{version}/{custom_audience_id}/users ---------------------------------------------------------

    def _meta(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        match = re.fullmatch(r"https://graph\.facebook\.com/v\d+\.\d+/(\d+)/users", url)
        if match is None or method not in ("POST", "DELETE"):
            return self._refuse("meta", f"no such edge: {method} {url}")
        if headers.get("Authorization") != f"Bearer {META_TOKEN}":
            return _answer(400, fixture("meta_error_invalid_token.json"))
        form = dict(urllib.parse.parse_qsl(body.decode()))
        try:
            payload, session = json.loads(form["payload"]), json.loads(form["session"])
        except (KeyError, ValueError):
            return self._refuse("meta", "payload and session are required JSON parameters")
        schema, data = payload.get("schema"), payload.get("data")
        if not isinstance(schema, list) or not set(schema) <= {"EMAIL_SHA256", "PHONE_SHA256"} or not schema:
            return self._refuse("meta", f"bad schema {schema!r}")
        if not isinstance(data, list) or not 0 < len(data) <= 10_000:
            return self._refuse("meta", "data holds 1 to 10,000 rows")
        for row in data:
            if len(row) != len(schema) or not all(v == "" or HEX64.fullmatch(v) for v in row) or not any(row):
                return self._refuse("meta", f"row {row!r} is not {len(schema)} lower-case SHA-256 hex values")
        sid, seq = session.get("session_id"), session.get("batch_seq")
        if not (isinstance(sid, int) and sid > 0 and isinstance(seq, int) and seq >= 1):
            return self._refuse("meta", f"bad session {session!r}")
        if not isinstance(session.get("last_batch_flag"), bool) or not isinstance(
            session.get("estimated_num_total"), int
        ):
            return self._refuse("meta", "session needs last_batch_flag (bool) and estimated_num_total (int)")
        if seq not in (1, self._sessions.get(sid, 0) + 1, self._sessions.get(sid, 0)):  # a retry repeats a seq
            return self._refuse("meta", f"batch_seq {seq} out of order in session {sid}")
        self._sessions[sid] = seq
        audience = match.group(1)
        values = {v for row in data for v in row if v}
        if method == "POST":
            self.members[("meta", audience)] |= values
        else:
            self.members[("meta", audience)] -= values
        self.rows["meta"].append(len(data))
        answer = fixture("meta_users_ok.json") | {
            "audience_id": audience,
            "session_id": str(sid),
            "num_received": len(data),
        }
        return _answer(200, answer)

    # Google Ads: OAuth token, offlineUserDataJobs create / addOperations / run ----------------------------

    def _google_token(self, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        expected = {
            "grant_type": "refresh_token",
            **{k: GOOGLE[k] for k in ("client_id", "client_secret", "refresh_token")},
        }
        if form != expected:
            return _answer(400, {"error": "invalid_grant", "error_description": "Bad Request"})
        return _answer(200, fixture("google_token.json"))

    def _google(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        token = fixture("google_token.json")["access_token"]
        if headers.get("Authorization") != f"Bearer {token}":
            return _answer(401, fixture("google_error_unauthenticated.json"))
        if headers.get("developer-token") != GOOGLE["developer_token"] or method != "POST":
            return self._refuse("google", "a developer-token header and POST are required")
        try:
            request = json.loads(body)
        except ValueError:
            return self._refuse("google", "the body is not JSON")
        if match := re.fullmatch(
            r"https://googleads\.googleapis\.com/v\d+/customers/(\d+)/offlineUserDataJobs:create", url
        ):
            job = request.get("job") or {}
            user_list = (job.get("customerMatchUserListMetadata") or {}).get("userList", "")
            if job.get("type") != "CUSTOMER_MATCH_USER_LIST" or not re.fullmatch(
                rf"customers/{match.group(1)}/userLists/\d+", user_list
            ):
                return self._refuse("google", f"bad job {job!r}")
            name = f"customers/{match.group(1)}/offlineUserDataJobs/{len(self._jobs) + 1}"
            self._jobs[name] = {"user_list": user_list.rsplit("/", 1)[1], "ops": [], "ran": False}
            return _answer(200, {"resourceName": name})
        match = re.fullmatch(
            r"https://googleads\.googleapis\.com/v\d+/(customers/\d+/offlineUserDataJobs/\d+):(\w+)", url
        )
        if match is None or match.group(1) not in self._jobs:
            return self._refuse("google", f"no such job method {url}")
        job = self._jobs[match.group(1)]
        if match.group(2) == "addOperations":
            if job["ran"]:
                return self._refuse("google", "operations added to a job that already ran")
            operations = request.get("operations")
            if not isinstance(operations, list) or not operations:
                return self._refuse("google", "operations is a non-empty list")
            identifiers = 0
            for operation in operations:
                if len(operation) != 1 or next(iter(operation)) not in ("create", "remove"):
                    return self._refuse("google", f"an operation is one create or remove: {operation!r}")
                ids = next(iter(operation.values())).get("userIdentifiers") or []
                for identifier in ids:
                    if len(identifier) != 1 or next(iter(identifier)) not in ("hashedEmail", "hashedPhoneNumber"):
                        return self._refuse("google", f"a userIdentifier sets one field: {identifier!r}")
                    if not HEX64.fullmatch(next(iter(identifier.values()))):
                        return _answer(200, fixture("google_add_operations_partial_failure.json"))
                identifiers += len(ids)
            if identifiers > 100_000:
                return self._refuse("google", f"{identifiers} identifiers in one request (at most 100,000)")
            job["ops"] += operations
            self.rows["google"].append(identifiers)
            return _answer(200, {})
        if match.group(2) == "run":
            job["ran"] = True
            for operation in job["ops"]:
                verb, content = next(iter(operation.items()))
                values = {next(iter(i.values())) for i in content["userIdentifiers"]}
                if verb == "create":
                    self.members[("google", job["user_list"])] |= values
                else:
                    self.members[("google", job["user_list"])] -= values
            return _answer(200, fixture("google_run_job.json"))
        return self._refuse("google", f"no method {match.group(2)}")

    # TikTok: /open_api/v1.3/segment/mapping/ -------------------------------------------------------------

    def _tiktok(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        if method != "POST" or url != "https://business-api.tiktok.com/open_api/v1.3/segment/mapping/":
            return self._refuse("tiktok", f"no such endpoint {method} {url}")
        if headers.get("Access-Token") != TIKTOK_TOKEN:
            return _answer(200, fixture("tiktok_error_token.json"))
        try:
            request = json.loads(body)
        except ValueError:
            return self._refuse("tiktok", "the body is not JSON")
        schema, rows = request.get("id_schema"), request.get("batch_data")
        if request.get("action") not in ("add", "delete") or not request.get("advertiser_ids"):
            return self._refuse("tiktok", "action is add or delete, advertiser_ids non-empty")
        if not isinstance(schema, list) or not set(schema) <= {"EMAIL_SHA256", "PHONE_SHA256"}:
            return self._refuse("tiktok", f"bad id_schema {schema!r}")
        if not isinstance(rows, list) or not 0 < len(rows) <= 1_000:
            return self._refuse("tiktok", "batch_data holds 1 to 1,000 rows")
        values: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            if len(row) != len(schema):
                return self._refuse("tiktok", f"row {row!r} does not follow id_schema")
            for cell in row:
                if set(cell) != {"id", "audience_ids"} or not (cell["id"] == "" or HEX64.fullmatch(cell["id"])):
                    return self._refuse("tiktok", f"cell {cell!r} is not {{id: sha256 hex, audience_ids}}")
                for audience in cell["audience_ids"]:
                    if cell["id"]:
                        values[audience].add(cell["id"])
        for audience, found in values.items():
            if request["action"] == "add":
                self.members[("tiktok", audience)] |= found
            else:
                self.members[("tiktok", audience)] -= found
        self.rows["tiktok"].append(len(rows))
        return _answer(200, fixture("tiktok_mapping_ok.json"))
