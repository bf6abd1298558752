"""The AudiencePlatform port over each ad platform's documented HTTP API, with urllib (no SDK in the bundle).

- Meta Marketing API: POST (add) or DELETE (remove) /{version}/{custom_audience_id}/users with
  `payload` {schema, data} and `session` {session_id, batch_seq, last_batch_flag, estimated_num_total},
  at most 10,000 rows a request. The session id is made from the batch's upload key, so a retry of the
  same changes is the same session.
- Google Ads API, Customer Match: offlineUserDataJobs:create (CUSTOMER_MATCH_USER_LIST on the user list),
  :addOperations with create/remove operations of userIdentifiers {hashedEmail} / {hashedPhoneNumber}
  (at most 100,000 identifiers a request, partial failure enabled), then :run.
- TikTok API for Business: POST /open_api/v1.3/segment/mapping/ with advertiser_ids, action add|delete,
  id_schema and batch_data rows, 1,000 rows a request.

Errors: rate limits and 5xx are TransientSendError (the service queues the audience again), bad tokens and
refusals PermanentSendError. Sources and recorded examples: tests/fixtures/audiences/SOURCES.md.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol

from nudge.domain.audiences import BATCH_LIMITS, Audience, batches
from nudge.domain.frozen import dataclass
from nudge.ports import AudienceEntry, PermanentSendError, TransientSendError, UploadResult

TIMEOUT_SECONDS = 20.0
META_API_VERSION = "v25.0"
GOOGLE_ADS_API_VERSION = "v22"
META_RATE_LIMIT_CODES = {4, 17, 32, 613, 80003}  # application, user, page, call-rate and custom-audience throttles
META_TRANSIENT_CODES = {1, 2}  # "unknown error", "service temporarily unavailable"
TIKTOK_RATE_LIMIT_CODES = {40100}
TIKTOK_TOKEN_CODES = {40001, 40102, 40104, 40105}


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            return {}


class Transport(Protocol):
    def __call__(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse: ...


def urllib_transport(method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
    """One HTTPS request; network failures are transient (every audience upload is safe to repeat)."""
    if not url.startswith("https://"):
        raise PermanentSendError(f"not an https URL: {url}")
    request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 (https only)
            return HttpResponse(int(response.status), response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return HttpResponse(int(exc.code), exc.read(), dict(exc.headers or {}))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise TransientSendError(f"{url}: {exc}") from exc


Credentials = Callable[[], Mapping[str, Any]]  # the platform's part of the audience secret, read when used


def _retry_after(response: HttpResponse) -> timedelta | None:
    value = {k.lower(): v for k, v in response.headers.items()}.get("retry-after")
    return timedelta(seconds=int(value)) if value and value.isdigit() else None


def _secret(credentials: Credentials, key: str, platform: str) -> str:
    value = credentials().get(key)
    if not isinstance(value, str) or not value:
        raise PermanentSendError(f"{platform}: no {key} in the audience secret (docs/audiences.md)")
    return value


# Meta ---------------------------------------------------------------------------------------------------


class MetaAudiences:
    def __init__(self, credentials: Credentials, transport: Transport = urllib_transport, *, version: str = "") -> None:
        self._credentials = credentials
        self._transport = transport
        self._version = version or META_API_VERSION

    def upload(
        self, audience: Audience, action: str, members: Sequence[AudienceEntry], upload_key: str
    ) -> UploadResult:
        token = _secret(self._credentials, "access_token", "meta")
        url = f"https://graph.facebook.com/{self._version}/{audience.audience_id}/users"
        method = "POST" if action == "add" else "DELETE"
        # Positive and below 2**63: a retry of the same changes resumes the same session.
        session_id = int(upload_key[:15], 16) or 1
        chunks = list(batches(members, BATCH_LIMITS["meta"]))
        invalid = 0
        for seq, chunk in enumerate(chunks, start=1):
            payload = {
                "schema": ["EMAIL_SHA256", "PHONE_SHA256"],
                "data": [[m.email or "", m.phone or ""] for m in chunk],
            }
            session = {
                "session_id": session_id,
                "batch_seq": seq,
                "last_batch_flag": seq == len(chunks),
                "estimated_num_total": len(members),
            }
            form = {"payload": json.dumps(payload, separators=(",", ":")), "session": json.dumps(session)}
            body = urllib.parse.urlencode(form).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {token}"}
            response = self._transport(method, url, headers, body)
            answer = response.json()
            if response.status != 200 or "error" in answer:
                raise _meta_error(response, answer)
            invalid += int(answer.get("num_invalid_entries") or 0)
        return UploadResult(requests=len(chunks), invalid=invalid)


def _meta_error(response: HttpResponse, answer: Any) -> Exception:
    error = answer.get("error") if isinstance(answer, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    text = f"meta: HTTP {response.status} code {code}: {error.get('message', '')}"
    if code in META_RATE_LIMIT_CODES or response.status == 429:
        return TransientSendError(text, retry_after=_retry_after(response), throttled=True)
    if code in META_TRANSIENT_CODES or response.status >= 500 or error.get("is_transient") is True:
        return TransientSendError(text)
    return PermanentSendError(text)  # 190: the token is invalid or expired; 100: a bad parameter


# Google Ads ---------------------------------------------------------------------------------------------


class GoogleAdsAudiences:
    """Customer Match through an offline user data job: create, add operations in batches, run."""

    def __init__(self, credentials: Credentials, transport: Transport = urllib_transport, *, version: str = "") -> None:
        self._credentials = credentials
        self._transport = transport
        self._version = version or GOOGLE_ADS_API_VERSION

    def _headers(self) -> dict[str, str]:
        secret = self._credentials()
        form = {
            "grant_type": "refresh_token",
            "client_id": _secret(self._credentials, "client_id", "google"),
            "client_secret": _secret(self._credentials, "client_secret", "google"),
            "refresh_token": _secret(self._credentials, "refresh_token", "google"),
        }
        response = self._transport(
            "POST",
            "https://oauth2.googleapis.com/token",
            {"Content-Type": "application/x-www-form-urlencoded"},
            urllib.parse.urlencode(form).encode(),
        )
        token = response.json().get("access_token") if response.status == 200 else None
        if not token:
            raise _google_error(response, "token")
        headers = {
            "Authorization": f"Bearer {token}",
            "developer-token": _secret(self._credentials, "developer_token", "google"),
            "Content-Type": "application/json",
        }
        if login := secret.get("login_customer_id"):
            headers["login-customer-id"] = str(login)
        return headers

    def _post(self, url: str, headers: Mapping[str, str], body: Mapping[str, Any], what: str) -> Any:
        response = self._transport("POST", url, headers, json.dumps(body, separators=(",", ":")).encode())
        if response.status != 200:
            raise _google_error(response, what)
        return response.json()

    def upload(
        self, audience: Audience, action: str, members: Sequence[AudienceEntry], upload_key: str
    ) -> UploadResult:
        customer = audience.account_id
        base = f"https://googleads.googleapis.com/{self._version}"
        headers = self._headers()
        job = {
            "job": {
                "type": "CUSTOMER_MATCH_USER_LIST",
                "customerMatchUserListMetadata": {"userList": f"customers/{customer}/userLists/{audience.audience_id}"},
            }
        }
        created = self._post(f"{base}/customers/{customer}/offlineUserDataJobs:create", headers, job, "create")
        job_name = created.get("resourceName")
        if not isinstance(job_name, str):
            raise TransientSendError("google: offlineUserDataJobs:create answered without a resourceName")
        verb = "create" if action == "add" else "remove"
        requests = 2  # the token, the job
        invalid = 0
        for chunk in _by_identifiers(members, BATCH_LIMITS["google"]):
            operations = [{verb: {"userIdentifiers": _google_identifiers(m)}} for m in chunk]
            answer = self._post(
                f"{base}/{job_name}:addOperations",
                headers,
                {"enablePartialFailure": True, "operations": operations},
                "addOperations",
            )
            requests += 1
            failure = answer.get("partialFailureError") if isinstance(answer, dict) else None
            if failure:
                invalid += max(1, len(failure.get("details") or []))
        self._post(f"{base}/{job_name}:run", headers, {}, "run")
        return UploadResult(requests=requests + 1, invalid=invalid)


def _google_identifiers(member: AudienceEntry) -> list[dict[str, str]]:
    found = []
    if member.email:
        found.append({"hashedEmail": member.email})
    if member.phone:
        found.append({"hashedPhoneNumber": member.phone})
    return found


def _by_identifiers(members: Sequence[AudienceEntry], limit: int) -> list[list[AudienceEntry]]:
    """Chunks of members holding at most `limit` identifiers each (a member has one or two)."""
    chunks: list[list[AudienceEntry]] = [[]]
    count = 0
    for member in members:
        size = len(_google_identifiers(member))
        if count + size > limit:
            chunks.append([])
            count = 0
        chunks[-1].append(member)
        count += size
    return [chunk for chunk in chunks if chunk]


def _google_error(response: HttpResponse, what: str) -> Exception:
    error = response.json().get("error") if isinstance(response.json(), dict) else None
    error = error if isinstance(error, dict) else {}
    text = f"google {what}: HTTP {response.status} {error.get('status', '')}: {error.get('message', '')}"
    if response.status == 429 or error.get("status") == "RESOURCE_EXHAUSTED":
        return TransientSendError(text, retry_after=_retry_after(response), throttled=True)
    if response.status >= 500:
        return TransientSendError(text)
    return PermanentSendError(text)  # 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 400 INVALID_ARGUMENT


# TikTok -------------------------------------------------------------------------------------------------


class TikTokAudiences:
    def __init__(self, credentials: Credentials, transport: Transport = urllib_transport) -> None:
        self._credentials = credentials
        self._transport = transport

    def upload(
        self, audience: Audience, action: str, members: Sequence[AudienceEntry], upload_key: str
    ) -> UploadResult:
        token = _secret(self._credentials, "access_token", "tiktok")
        url = "https://business-api.tiktok.com/open_api/v1.3/segment/mapping/"
        headers = {"Access-Token": token, "Content-Type": "application/json"}
        chunks = list(batches(members, BATCH_LIMITS["tiktok"]))
        for chunk in chunks:
            body = {
                "advertiser_ids": [audience.account_id],
                "action": "add" if action == "add" else "delete",
                "id_schema": ["EMAIL_SHA256", "PHONE_SHA256"],
                "batch_data": [
                    [
                        {"id": m.email or "", "audience_ids": [audience.audience_id]},
                        {"id": m.phone or "", "audience_ids": [audience.audience_id]},
                    ]
                    for m in chunk
                ],
            }
            response = self._transport("POST", url, headers, json.dumps(body, separators=(",", ":")).encode())
            answer = response.json()
            code = answer.get("code") if isinstance(answer, dict) else None
            if response.status == 200 and code == 0:
                continue
            text = f"tiktok: HTTP {response.status} code {code}: {answer.get('message', '') if answer else ''}"
            if code in TIKTOK_RATE_LIMIT_CODES or response.status == 429:
                raise TransientSendError(text, retry_after=_retry_after(response), throttled=True)
            if response.status >= 500 or (isinstance(code, int) and code >= 50000):
                raise TransientSendError(text)
            raise PermanentSendError(text)
        return UploadResult(requests=len(chunks))


def platforms(
    credentials: Callable[[str], Mapping[str, Any]], transport: Transport = urllib_transport
) -> Callable[[str], Any]:
    """`platform(name)` over one credentials source (the audience secret's part for that platform)."""
    made: dict[str, Any] = {}

    def platform(name: str) -> Any:
        if name not in made:
            part: Credentials = lambda: credentials(name)  # noqa: E731
            made[name] = {"meta": MetaAudiences, "google": GoogleAdsAudiences, "tiktok": TikTokAudiences}[name](
                part, transport
            )
        return made[name]

    return platform
