"""API Gateway entry point: POST /v1/events and POST /v1/contacts. Parse, authenticate, call one service."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from nudge import names, signing, wiring
from nudge.handlers import flow_metrics, problems
from nudge.handlers.problems import Problem
from nudge.services.ingest import UnknownFlow
from nudge.services.inputs import ContactIn, EnrollmentIn, EventIn

MAX_BODY_BYTES = 256 * 1024
M = TypeVar("M", bound=BaseModel)

logger = Logger(service=names.SERVICE)
app = APIGatewayRestResolver()


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body, separators=(",", ":")))


def _raw_body() -> bytes:
    event = app.current_event
    raw = event.body or ""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error:
            raise problems.bad_json("the body is flagged base64 but is not valid base64") from None
    return raw.encode()


def _authenticated_json(container: wiring.Container) -> Any:
    """Check size, media type and signature on the raw bytes, then parse JSON. Nothing is parsed unsigned."""
    body = _raw_body()
    if len(body) > MAX_BODY_BYTES:
        raise problems.too_large(MAX_BODY_BYTES)
    content_type = app.current_event.headers.get("content-type")
    if not content_type or content_type.split(";")[0].strip().lower() != "application/json":
        raise problems.unsupported_media_type(content_type)
    _verify(container, body)
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise problems.bad_json(str(exc)) from None


def _verify(container: wiring.Container, body: bytes) -> None:
    key = container.signing_key()
    if not key:
        logger.error("no signing key configured; refusing every request")
        raise problems.internal(None)
    header = app.current_event.headers.get(names.SIGNATURE_HEADER)
    try:
        signing.verify(key, header, body, container.clock.now())
    except signing.SignatureError as exc:
        raise problems.unauthorized(str(exc)) from None


def _parse(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise problems.from_validation_error(_type_error(model))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise problems.from_validation_error(exc) from None


def _type_error(model: type[BaseModel]) -> ValidationError:
    try:
        model.model_validate([])
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


@app.post("/v1/events")
def post_event() -> Response:
    container = wiring.current()
    event_in = _parse(EventIn, _authenticated_json(container))
    try:
        event = event_in.to_event(container.clock.now())
    except ValueError as exc:
        raise problems.invalid_field("/occurred_at", str(exc)) from None
    outcome = container.ingest.ingest(event)
    flow_metrics.publish(flow_metrics.from_ingest(outcome))
    logger.info("event ingested", extra=outcome.as_dict())
    return _json(200 if outcome.duplicate else 202, outcome.as_dict())


@app.post("/v1/flows/<flow_id>/enrollments")
def post_enrollment(flow_id: str) -> Response:
    container = wiring.current()
    enrollment = _parse(EnrollmentIn, _authenticated_json(container))
    try:
        event = enrollment.to_event(flow_id, container.clock.now())
    except ValueError as exc:
        raise problems.invalid_field("/occurred_at", str(exc)) from None
    try:
        outcome = container.ingest.enroll(flow_id, event)
    except UnknownFlow:
        raise Problem(404, "unknown-flow", "No such flow", f"no deployed flow has the id {flow_id!r}") from None
    flow_metrics.publish(flow_metrics.from_ingest(outcome))
    return _json(200 if outcome.duplicate else 202, outcome.as_dict())


@app.post("/v1/contacts")
def post_contact() -> Response:
    container = wiring.current()
    contact_in = _parse(ContactIn, _authenticated_json(container))
    contact = container.ingest.identify(contact_in.to_patch())
    return _json(200, {"contact_id": contact.contact_id, "version": contact.version})


@app.get("/v1/contacts/<contact_id>")
def export_contact(contact_id: str) -> Response:
    """Everything nudge holds about the contact (GDPR art. 15/20); signed like every other call."""
    container = wiring.current()
    _verify(container, _raw_body())
    exported = container.privacy.export(contact_id)
    if exported is None:
        raise problems.not_found(f"/v1/contacts/{contact_id}")
    return _json(200, exported)


@app.delete("/v1/contacts/<contact_id>")
def erase_contact(contact_id: str) -> Response:
    """Erase the contact (GDPR art. 17): only hashed suppressions remain, so they are not re-added."""
    container = wiring.current()
    _verify(container, _raw_body())
    erased = container.privacy.erase(contact_id)
    if erased is None:
        raise problems.not_found(f"/v1/contacts/{contact_id}")
    logger.info("contact erased", extra={"items": erased})
    return _json(200, {"contact_id": contact_id, "erased": erased})


@app.exception_handler(Problem)
def _problem(exc: Problem) -> Response:
    logger.info("request refused", extra={"status": exc.status, "problem": exc.slug, "detail": exc.detail})
    return Response(
        status_code=exc.status,
        content_type=problems.PROBLEM_CONTENT_TYPE,
        body=exc.json(app.current_event.path),
    )


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


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
