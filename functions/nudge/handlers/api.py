"""The Segment-style API: POST /v1/track, /v1/identify, /v1/alias, /v1/batch; GET /v1/openapi.json."""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from nudge import names, wiring
from nudge.domain.bounds import OutOfBounds
from nudge.domain.validation import ValidationError, prepare, validate
from nudge.handlers import flow_metrics, http, problems
from nudge.handlers.logs import Logger
from nudge.handlers.problems import Problem
from nudge.handlers.rest import Response, RestResolver
from nudge.integrations.segment_api import (
    CALLS,
    MAX_BATCH_BYTES,
    MAX_CALL_BYTES,
    AliasCall,
    BatchCall,
    IdentifyCall,
    InvalidCall,
    SegmentCall,
    TrackCall,
)
from nudge.ports import KeyKind

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service=names.SERVICE)
app = RestResolver()
http.install_problem_responses(app, logger)


def _presented_key() -> str | None:
    """Segment sends the write key as the Basic user name (no password); Bearer works too."""
    scheme, _, value = (app.current_event.headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[0] or None
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


def _authenticated_json(limit: int) -> Any:
    """Size, key and media type, checked before the body is parsed."""
    body = http.raw_body(app, limit)
    if wiring.current().keys.authenticate(_presented_key(), KeyKind.SECRET) is None:
        problem = problems.bad_api_key("send a live secret key: Authorization: Basic base64(<key>:) or Bearer <key>")
        problem.headers["WWW-Authenticate"] = 'Basic realm="nudge"'
        raise problem
    http.require_json_media_type(app)
    return http.parse_json(body)


def _run(call: SegmentCall) -> tuple[int, dict[str, Any]]:
    """Carry out one parsed call; (status, result)."""
    segment = wiring.current().segment
    try:
        if isinstance(call, TrackCall):
            result = segment.track(call)
        elif isinstance(call, IdentifyCall):
            result = segment.identify(call)
        else:
            assert isinstance(call, AliasCall)
            return 200, segment.alias(call)
    except InvalidCall as exc:
        raise problems.invalid_field(exc.pointer, exc.detail) from None
    except OutOfBounds as exc:  # the contact's property budget, found when merging
        where = "/context/traits" if isinstance(call, TrackCall) else "/traits"
        raise problems.invalid_field(where + exc.pointer.removeprefix("/properties"), exc.detail) from None
    return (200 if result["duplicate"] else 202), result


def _single(model: type[SegmentCall]) -> Response:
    call = http.parse_model(model, _authenticated_json(MAX_CALL_BYTES))
    status, result = _run(call)
    logger.info("segment call", extra={"status": status} | result)
    return http.json_response(status, result)


@app.post("/v1/track")
def post_track() -> Response:
    return _single(TrackCall)


@app.post("/v1/identify")
def post_identify() -> Response:
    return _single(IdentifyCall)


@app.post("/v1/alias")
def post_alias() -> Response:
    return _single(AliasCall)


@app.post("/v1/batch")
def post_batch() -> Response:
    batch = http.parse_model(BatchCall, _authenticated_json(MAX_BATCH_BYTES))
    results = []
    for index, item in enumerate(batch.batch):
        try:
            model = CALLS.get(str(item.get("type")))
            if model is None:
                raise problems.invalid_field("/type", "each batch item needs a type: track, identify or alias")
            if len(json.dumps(item, separators=(",", ":"), default=str)) > MAX_CALL_BYTES:
                raise problems.too_large(MAX_CALL_BYTES)
            try:
                call = validate(model, item)
            except ValidationError as exc:
                raise problems.from_validation_error(exc) from None
            status, result = _run(call)
            results.append({"index": index, "status": status, "result": result})
        except Problem as problem:
            results.append({"index": index, "status": problem.status, "problem": problem.body()})
        except Exception:  # one item's fault must not fail the others (a retry would fail them all again)
            logger.exception("batch item failed", extra={"index": index})
            fault = problems.internal(app.lambda_context.aws_request_id if app.lambda_context else None)
            results.append({"index": index, "status": fault.status, "problem": fault.body()})
    logger.info("segment batch", extra={"items": len(results)})
    return http.json_response(200, {"results": results})


@app.get("/v1/openapi.json")
def get_openapi() -> Response:
    from nudge import openapi  # every route's schema: built for this route only, not at cold start

    return http.json_response(200, openapi.document())


def warm() -> None:
    """Build what this function's first request builds: track, identify and alias, and their bodies' checks.

    `nudge bench --cold-start` times import + this; nothing calls it at import (ADR 0020).
    """
    wiring.current().warm("keys", "segment")  # first: the wiring offers the bundle's compiled checks
    prepare(TrackCall, IdentifyCall, AliasCall)


@logger.inject_lambda_context(clear_state=True, cold_start=warm)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
