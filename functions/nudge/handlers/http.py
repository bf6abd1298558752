"""What every API Gateway handler shares: raw bodies, JSON in and out, and problems as responses."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import parse_qs

from nudge.domain import bounds
from nudge.handlers import problems
from nudge.handlers.logs import Logger
from nudge.handlers.problems import Problem
from nudge.handlers.rest import Response, RestResolver

M = TypeVar("M")


def _jsonable(value: Any) -> Any:
    # Money is a Decimal (kept exact as a string, "42.00"); times are ISO 8601.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """Always valid JSON: a non-finite number stored before input was bounded is written as null."""
    try:
        text = json.dumps(body, separators=(",", ":"), default=_jsonable, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(body), separators=(",", ":"), default=_jsonable, allow_nan=False)
    return Response(status_code=status, content_type="application/json", body=text, headers=headers or {})


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def raw_body(app: RestResolver, limit: int) -> bytes:
    """The body's bytes as sent (signatures are over these), refused past `limit`."""
    event = app.current_event
    raw = event.body or ""
    if event.is_base64_encoded:
        try:
            body = base64.b64decode(raw, validate=True)
        except binascii.Error:
            raise problems.bad_json("the body is flagged base64 but is not valid base64") from None
    else:
        body = raw.encode()
    if len(body) > limit:
        raise problems.too_large(limit)
    return body


def form_fields(app: RestResolver, limit: int) -> dict[str, list[str]]:
    """An application/x-www-form-urlencoded body (a page's form), refused past `limit`."""
    body = raw_body(app, limit)
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=50)


def signed_path(app: RestResolver) -> str:
    """The path a v2 signature covers: the route's resource path with its parameters filled in.

    Not `event.path`: behind a custom domain's base-path mapping that carries the mapping's prefix too,
    which a storefront signing `/v1/events` never sees.
    """
    event = app.current_event
    path = event.request_context.resource_path or event.path
    for name, value in (event.path_parameters or {}).items():
        path = path.replace("{" + name + "}", value).replace("{" + name + "+}", value)
    return path


def require_json_media_type(app: RestResolver) -> None:
    content_type = app.current_event.headers.get("content-type")
    if not content_type or content_type.split(";")[0].strip().lower() != "application/json":
        raise problems.unsupported_media_type(content_type)


def parse_json(body: bytes) -> Any:
    """The body as JSON within nudge's bounds (nudge.domain.bounds); a breach is a problem naming the member."""
    try:
        return bounds.parse_json(body)
    except bounds.OutOfBounds as exc:
        raise problems.invalid_field(exc.pointer, exc.detail) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise problems.bad_json(str(exc)) from None


def parse_model(model: type[M], data: Any) -> M:
    """Validate a JSON value against `model`; a non-object or a bad member is a 422 naming each one.

    pydantic_core is imported here, at the first body checked: the storefront webhooks' function reads its
    payloads without records and never loads it."""
    from nudge.domain.validation import ValidationError, validate

    try:
        if not isinstance(data, dict):
            validate(model, [])  # raises the same "not an object" error pydantic gives
        return validate(model, data)
    except ValidationError as exc:
        raise problems.from_validation_error(exc) from None


@contextmanager
def members_under(prefix: str) -> Iterator[None]:
    """Name a bound breached deep in a service (`/properties`) by where it sits in this route's body."""
    try:
        yield
    except bounds.OutOfBounds as exc:
        raise problems.invalid_field(prefix + exc.pointer, exc.detail) from None


def install_problem_responses(app: RestResolver, logger: Logger) -> None:
    """Every refusal and fault of `app` becomes an RFC 9457 problem; no stack trace ever leaves."""

    @app.exception_handler(Problem)
    def _problem(exc: Problem) -> Response:
        logger.info("request refused", extra={"status": exc.status, "problem": exc.slug, "detail": exc.detail})
        return Response(
            status_code=exc.status,
            content_type=problems.PROBLEM_CONTENT_TYPE,
            body=exc.json(app.current_event.path),
            headers=exc.headers,
        )

    @app.exception_handler(bounds.OutOfBounds)
    def _out_of_bounds(exc: bounds.OutOfBounds) -> Response:
        return _problem(problems.invalid_field(exc.pointer or "/", exc.detail))

    @app.not_found
    def _not_found(_exc: Exception) -> Response:
        problem = problems.not_found(app.current_event.path)
        return Response(status_code=404, content_type=problems.PROBLEM_CONTENT_TYPE, body=problem.json())

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        request_id = app.lambda_context.aws_request_id if app.lambda_context else None
        problem = problems.internal(request_id)
        return Response(status_code=500, content_type=problems.PROBLEM_CONTENT_TYPE, body=problem.json())
