"""Storefront webhooks: POST /webhooks/shopify and /webhooks/woocommerce. Verify the raw bytes, then map.

And Twilio's call status callback, POST /webhooks/twilio/calls: a missed call becomes `call_missed`."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from nudge import names, signing, wiring
from nudge.domain import calls
from nudge.handlers import flow_metrics, http, problems
from nudge.handlers.logs import Logger
from nudge.handlers.rest import Response, RestResolver
from nudge.integrations import shopify, woocommerce

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# Shopify caps payloads far lower; the limit only keeps a forged giant body from costing an HMAC.
MAX_BODY_BYTES = 1024 * 1024
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_WC_PING = re.compile(rb"^webhook_id=\d{1,20}$")
ANY_SITE = "*"  # a secret under this name serves every shop (a Shopify app's one client secret)

logger = Logger(service=names.SERVICE)
app = RestResolver()
http.install_problem_responses(app, logger)


def _secret_for(platform: str, site: str | None) -> str:
    secrets: Any = wiring.current().webhook_secrets().get(platform) or {}
    secret = (secrets.get(site) if site else None) or secrets.get(ANY_SITE)
    if not isinstance(secret, str) or not secret:
        raise problems.unauthorized(f"no {platform} webhook secret is configured for {site or 'this site'}")
    return secret


def _delivery_id(header: str, value: str | None) -> str:
    if not value:
        raise problems.missing_header(header)
    if not _DELIVERY_ID.match(value):
        raise problems.Problem(400, "missing-header", "A required header is missing", f"{header} is malformed")
    return value


def _result(outcome: dict[str, Any]) -> Response:
    processed = not (outcome.get("duplicate") or "ignored" in outcome or "privacy_request" in outcome)
    logger.info("webhook handled", extra=outcome)
    return http.json_response(202 if processed else 200, outcome)


@app.post("/webhooks/shopify")
def post_shopify() -> Response:
    container = wiring.current()
    headers = app.current_event.headers
    body = http.raw_body(app, MAX_BODY_BYTES)
    shop = (headers.get(names.SHOPIFY_SHOP_HEADER) or "").strip().lower() or None
    try:
        signing.verify_base64_hmac(_secret_for("shopify", shop), headers.get(names.SHOPIFY_HMAC_HEADER), body)
    except signing.SignatureError as exc:
        raise problems.unauthorized(f"{names.SHOPIFY_HMAC_HEADER}: {exc}") from None
    webhook_id = _delivery_id(names.SHOPIFY_WEBHOOK_ID_HEADER, headers.get(names.SHOPIFY_WEBHOOK_ID_HEADER))
    topic = headers.get(names.SHOPIFY_TOPIC_HEADER) or ""
    payload = http.parse_json(body)
    canonical = shopify.map_webhook(topic, webhook_id, shop or "", payload, container.clock.now())
    return _result(container.webhooks.handle(canonical) | {"topic": topic})


@app.post("/webhooks/woocommerce")
def post_woocommerce() -> Response:
    container = wiring.current()
    headers = app.current_event.headers
    body = http.raw_body(app, MAX_BODY_BYTES)
    content_type = (headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded" and _WC_PING.match(body.strip()):
        # WooCommerce checks a new webhook's URL with this unsigned form post; answer it, store nothing.
        return http.json_response(200, {"ping": True})
    site = urlsplit(headers.get(names.WC_SOURCE_HEADER) or "").hostname
    try:
        signing.verify_base64_hmac(_secret_for("woocommerce", site), headers.get(names.WC_SIGNATURE_HEADER), body)
    except signing.SignatureError as exc:
        raise problems.unauthorized(f"{names.WC_SIGNATURE_HEADER}: {exc}") from None
    delivery = headers.get(names.WC_DELIVERY_HEADER)
    # Without a delivery id, the body itself identifies a resend of the same delivery.
    event_id = "woocommerce:" + (
        _delivery_id(names.WC_DELIVERY_HEADER, delivery) if delivery else "b" + hashlib.sha256(body).hexdigest()[:40]
    )
    topic = headers.get(names.WC_TOPIC_HEADER) or ""
    payload = http.parse_json(body)
    canonical = woocommerce.map_webhook(topic, event_id, site or "", payload, container.clock.now())
    return _result(container.webhooks.handle(canonical) | {"topic": topic})


def _signed_url() -> str:
    """The URL Twilio requested, as it signed it: https://<Host><the path API Gateway saw, stage included>."""
    event = app.current_event
    headers = event.headers
    proto = (headers.get("x-forwarded-proto") or "https").split(",")[0].strip()
    host = headers.get("host") or ""
    path = event.request_context.path or event.path
    query = event.raw_event.get("multiValueQueryStringParameters") or {}
    pairs = "&".join(f"{name}={value}" for name, values in query.items() for value in values)
    return f"{proto}://{host}{path}" + (f"?{pairs}" if pairs else "")


@app.post("/webhooks/twilio/calls")
def post_twilio_call() -> Response:
    container = wiring.current()
    headers = app.current_event.headers
    body = http.raw_body(app, MAX_BODY_BYTES)
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body), max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as exc:
        raise problems.bad_form(f"not a form: {exc}") from None
    params = dict(pairs)
    if len(params) != len(pairs):
        raise problems.bad_form("a parameter is repeated")
    account = params.get("AccountSid") or ""
    if not calls.twilio_signature_matches(
        _secret_for("twilio", account), _signed_url(), params, headers.get(names.TWILIO_SIGNATURE_HEADER)
    ):
        raise problems.unauthorized(f"{names.TWILIO_SIGNATURE_HEADER} does not match the URL and the parameters")
    try:
        call = calls.from_twilio(params, container.clock.now())
    except calls.NotAMissedCall as exc:
        return http.json_response(200, {"ignored": str(exc)})
    except calls.BadCall as exc:
        raise problems.bad_form(str(exc)) from None
    outcome = container.missed_calls.record(call)
    return _result(outcome.as_dict())


def warm() -> None:
    """Build what this function's first request builds: storefront webhooks.

    `nudge bench --cold-start` times import + this; nothing calls it at import (ADR 0020).
    """
    wiring.current().warm("webhooks")


@logger.inject_lambda_context(clear_state=True, cold_start=warm)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
