"""API Gateway entry point: the signed API (events, contacts, enrollments, campaigns). Thin: parse, check, call."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from nudge import names, signing, wiring
from nudge.domain.campaigns import CAMPAIGN_ID, Campaign
from nudge.domain.model import Contact, ContactPatch
from nudge.domain.validation import prepare
from nudge.handlers import flow_metrics, http, problems
from nudge.handlers.logs import Logger
from nudge.handlers.problems import Problem
from nudge.handlers.rest import Response, RestResolver
from nudge.services.campaigns import CampaignConflict, InvalidCampaign, UnknownCampaign
from nudge.services.ingest import UnknownFlow
from nudge.services.inputs import ContactIn, EnrollmentIn, EventIn, is_contact_id

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

MAX_BODY_BYTES = 256 * 1024

logger = Logger(service=names.SERVICE)
app = RestResolver()
http.install_problem_responses(app, logger)
_json = http.json_response
_parse = http.parse_model


def _authenticated_json(container: wiring.Container) -> Any:
    """Check size, media type and signature on the raw bytes, then parse JSON. Nothing is parsed unsigned."""
    body = http.raw_body(app, MAX_BODY_BYTES)
    http.require_json_media_type(app)
    _verify(container, body)
    return http.parse_json(body)


def _verify(container: wiring.Container, body: bytes) -> None:
    key = container.signing_key()
    if not key:
        logger.error("no signing key configured; refusing every request")
        raise problems.internal(None)
    request = app.current_event
    try:
        signing.verify_request(
            key,
            request.headers.get(names.SIGNATURE_HEADER),
            method=request.http_method,
            path=http.signed_path(app),
            query=request.query_string_parameters,
            body=body,
            now=container.clock.now(),
        )
    except signing.SignatureError as exc:
        raise problems.unauthorized(str(exc)) from None


@app.post("/v1/events")
def post_event() -> Response:
    container = wiring.current()
    event_in = _parse(EventIn, _authenticated_json(container))
    try:
        event = event_in.to_event(container.clock.now())
    except ValueError as exc:
        raise problems.invalid_field("/occurred_at", str(exc)) from None
    with http.members_under("/contact"):
        _fits(container, event.contact)
        outcome = container.ingest.ingest(event)
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
        with http.members_under("/contact"):
            _fits(container, event.contact)
            outcome = container.ingest.enroll(flow_id, event)
    except UnknownFlow:
        raise Problem(404, "unknown-flow", "No such flow", f"no deployed flow has the id {flow_id!r}") from None
    return _json(200 if outcome.duplicate else 202, outcome.as_dict())


@app.post("/v1/contacts")
def post_contact() -> Response:
    container = wiring.current()
    patch = _parse(ContactIn, _authenticated_json(container)).to_patch()
    _fits(container, patch)
    contact = container.ingest.identify(patch)
    return _json(200, {"contact_id": contact.contact_id, "version": contact.version})


def _fits(container: wiring.Container, patch: ContactPatch) -> None:
    """Refuse (bounds.OutOfBounds) new properties past the contact's budget before anything is written.

    The merge checks again when it writes; this read only spares a refused event its event record.
    """
    if patch.properties:
        stored = container.ingest.get_contact(patch.contact_id) or Contact(contact_id=patch.contact_id)
        stored.merged(patch, container.clock.now())


def _contact_request(contact_id: str) -> wiring.Container:
    """A signed call about one contact; an id no contact can have is a 404 before it reaches DynamoDB
    (which refuses keys over 2 KB with a 500)."""
    container = wiring.current()
    _verify(container, http.raw_body(app, MAX_BODY_BYTES))
    if not is_contact_id(contact_id):
        detail = "no contact has this id: contact ids are 1-128 characters of A-Z a-z 0-9 _ . : @ + -"
        raise Problem(404, "not-found", "No such contact", detail)
    return container


@app.get("/v1/contacts/<contact_id>")
def export_contact(contact_id: str) -> Response:
    """Everything nudge holds about the contact (GDPR art. 15/20); signed like every other call."""
    container = _contact_request(contact_id)
    exported = container.privacy.export(contact_id)
    if exported is None:
        raise problems.not_found(f"/v1/contacts/{contact_id}")
    return _json(200, exported)


@app.delete("/v1/contacts/<contact_id>")
def erase_contact(contact_id: str) -> Response:
    """Erase the contact (GDPR art. 17): only hashed suppressions remain, so they are not re-added."""
    container = _contact_request(contact_id)
    erased = container.privacy.erase(contact_id)
    if erased is None:
        raise problems.not_found(f"/v1/contacts/{contact_id}")
    logger.info("contact erased", extra={"items": erased})
    return _json(200, {"contact_id": contact_id, "erased": erased})


# campaigns (ADR 0019) -----------------------------------------------------------------------------------


@app.post("/v1/campaigns")
def post_campaign() -> Response:
    """Create a campaign and queue its audience pieces; the same definition again changes nothing (200)."""
    container = wiring.current()
    campaign = _parse(Campaign, _authenticated_json(container))
    try:
        record, created = container.campaigns.create(campaign)
    except InvalidCampaign as exc:
        errors = [{"pointer": "/" + p.split(":", 1)[0].replace(".", "/"), "detail": p} for p in exc.problems]
        raise Problem(422, "validation", "Request body failed validation", str(exc), errors=errors) from None
    except CampaignConflict as exc:
        raise Problem(409, "campaign-conflict", "The campaign cannot do that", str(exc)) from None
    return _json(202 if created else 200, record.view())


def _campaign_request(campaign_id: str) -> wiring.Container:
    container = wiring.current()
    _verify(container, http.raw_body(app, MAX_BODY_BYTES))
    if not re.fullmatch(CAMPAIGN_ID, campaign_id):
        raise problems.not_found(f"/v1/campaigns/{campaign_id}")
    return container


@app.get("/v1/campaigns/<campaign_id>")
def get_campaign(campaign_id: str) -> Response:
    """The campaign's status and how far its audience is resolved."""
    container = _campaign_request(campaign_id)
    record = container.campaigns.get(campaign_id)
    progress = container.campaigns.progress(campaign_id)
    if record is None or progress is None:
        raise problems.not_found(f"/v1/campaigns/{campaign_id}")
    return _json(200, {**record.view(), "progress": progress.as_dict()})


def _act(campaign_id: str, action: str) -> Response:
    container = _campaign_request(campaign_id)
    try:
        record = container.campaigns.act(campaign_id, action)
    except UnknownCampaign:
        raise problems.not_found(f"/v1/campaigns/{campaign_id}") from None
    except CampaignConflict as exc:
        raise Problem(409, "campaign-conflict", "The campaign cannot do that", str(exc)) from None
    return _json(200, record.view())


@app.post("/v1/campaigns/<campaign_id>/pause")
def pause_campaign(campaign_id: str) -> Response:
    """Hold its sends (within a minute) and stop resolving its audience."""
    return _act(campaign_id, "pause")


@app.post("/v1/campaigns/<campaign_id>/resume")
def resume_campaign(campaign_id: str) -> Response:
    return _act(campaign_id, "resume")


@app.post("/v1/campaigns/<campaign_id>/cancel")
def cancel_campaign(campaign_id: str) -> Response:
    """For good: what has not gone out never will."""
    return _act(campaign_id, "cancel")


def warm() -> None:
    """Build what this function's first request builds: the signed API's events, and their body's check.

    `nudge bench --cold-start` times import + this; nothing calls it at import (ADR 0020).
    """
    wiring.current().warm("ingest")  # first: the wiring offers the bundle's compiled checks
    prepare(EventIn)


@logger.inject_lambda_context(clear_state=True, cold_start=warm)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
