"""RFC 9457 problem details: every 4xx/5xx from the API is one of these, never a stack trace."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from nudge.domain.records import message

if TYPE_CHECKING:  # the pages and the unsubscribe function validate nothing with pydantic, and do not import it
    from pydantic import ValidationError

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "urn:nudge:problem:"  # each type is described in docs/api.md


class Problem(Exception):
    """An HTTP problem a handler returns as-is: status, a short title, and the precise detail."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}  # e.g. Retry-After on a 429

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        return body

    def json(self, instance: str | None = None) -> str:
        return json.dumps(self.body(instance), separators=(",", ":"))


def _pointer(location: tuple[Any, ...]) -> str:
    """A JSON Pointer (RFC 6901) to the offending member."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in location]
    return "/" + "/".join(parts) if parts else ""


def from_validation_error(exc: ValidationError) -> Problem:
    errors = []
    for err in exc.errors(include_url=False):
        # Drop pydantic's internal tags (e.g. "function-after[...]") from the location.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        detail = message(err)
        errors.append({"pointer": _pointer(loc), "detail": detail})
    summary = "; ".join(f"{e['pointer'] or '/'}: {e['detail']}" for e in errors)
    return Problem(422, "validation", "Request body failed validation", summary, errors=errors)


def invalid_field(pointer: str, detail: str) -> Problem:
    return Problem(
        422,
        "validation",
        "Request body failed validation",
        f"{pointer}: {detail}",
        errors=[{"pointer": pointer, "detail": detail}],
    )


def bad_json(detail: str) -> Problem:
    return Problem(400, "malformed-json", "Request body is not valid JSON", detail)


def unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", "Request signature rejected", detail)


def too_large(limit: int) -> Problem:
    return Problem(413, "too-large", "Request body too large", f"the body exceeds {limit} bytes")


def unsupported_media_type(got: str | None) -> Problem:
    return Problem(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        f"send application/json, not {got or 'nothing'}",
    )


def not_found(path: str) -> Problem:
    return Problem(404, "not-found", "No such endpoint", f"nothing is served at {path}")


def internal(request_id: str | None) -> Problem:
    where = f"; quote request id {request_id} to find it in the logs" if request_id else ""
    return Problem(500, "internal", "Internal error", f"the request could not be completed{where}")


def missing_header(name: str) -> Problem:
    return Problem(400, "missing-header", "A required header is missing", f"send the {name} header")


def bad_api_key(detail: str) -> Problem:
    return Problem(401, "unauthorized", "API key rejected", detail)


def forbidden_origin(origin: str | None) -> Problem:
    return Problem(403, "forbidden-origin", "Origin not allowed", f"{origin or 'this origin'} may not use this key")


def too_many_requests(retry_after: int) -> Problem:
    return Problem(
        429,
        "rate-limited",
        "Too many requests",
        f"slow down; try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def invalid_link(detail: str) -> Problem:
    return Problem(400, "invalid-link", "This link is not valid", detail)


def bad_token(detail: str) -> Problem:
    return Problem(403, "bad-token", "Unsubscribe link is not valid", detail)


def contact_gone() -> Problem:
    return Problem(404, "contact-gone", "No such contact", "this link's contact no longer exists (it was erased)")


def bad_form(detail: str) -> Problem:
    return Problem(400, "malformed-form", "Request body is not a valid form", detail)
