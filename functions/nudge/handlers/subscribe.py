"""Public signup forms: POST /v1/subscribe (and its CORS preflight), GET /v1/subscribe/confirm.

Called from shop pages with a publishable key in the query string (`?key=nudge_pk_…`), so a browser's
preflight carries it too; only the key's configured origins get CORS headers.
"""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import names, signing, wiring
from nudge.handlers import flow_metrics, http, problems
from nudge.handlers.problems import Problem
from nudge.ports import ApiKey, KeyKind
from nudge.services.subscribe import SubscribeIn

MAX_BODY_BYTES = 4 * 1024
RATE_LIMIT = 10  # submissions per minute from one address to one key: plenty for people, dull for scripts
RATE_WINDOW = timedelta(minutes=1)

logger = Logger(service=names.SERVICE)
app = APIGatewayRestResolver()
http.install_problem_responses(app, logger)


def _publishable_key() -> ApiKey:
    key = wiring.current().keys.authenticate(app.current_event.get_query_string_value("key"), KeyKind.PUBLISHABLE)
    if key is None:
        raise problems.bad_api_key("pass a live publishable key as ?key=nudge_pk_…")
    return key


def _cors(key: ApiKey) -> dict[str, str]:
    """CORS headers for the request's Origin, if the key allows it; an unlisted origin is refused."""
    origin = app.current_event.headers.get("origin")
    if origin is None:
        return {}  # not a browser's cross-origin call (curl, a server)
    if origin.rstrip("/") not in key.origins:
        raise problems.forbidden_origin(origin)
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


@app.route("/v1/subscribe", method="OPTIONS")
def preflight() -> Response:
    headers = _cors(_publishable_key()) | {
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600",
    }
    return Response(status_code=204, headers=headers)


@app.post("/v1/subscribe")
def post_subscribe() -> Response:
    container = wiring.current()
    body = http.raw_body(app, MAX_BODY_BYTES)
    key = _publishable_key()
    cors = _cors(key)
    try:
        source_ip = app.current_event.request_context.identity.source_ip or "unknown"
        bucket = f"subscribe:{key.key_hash[:16]}:{source_ip}"
        if not container.rate_limiter.hit(bucket, limit=RATE_LIMIT, window=RATE_WINDOW, now=container.clock.now()):
            raise problems.too_many_requests(int(RATE_WINDOW.total_seconds()))
        http.require_json_media_type(app)
        form = http.parse_model(SubscribeIn, http.parse_json(body))
        if form.is_bot:
            # Answer as if it worked, so the bot learns nothing; store nothing.
            logger.info("honeypot filled; ignored")
            return http.json_response(202, {"status": "subscribed"}, cors)
        confirm_url = _confirm_url(container, form, key) if key.double_opt_in else None
        result = container.subscribe.subscribe(form, key, confirm_url=confirm_url)
    except Problem as problem:
        problem.headers.update(cors)  # so the page's script can read why
        raise
    logger.info("signup", extra={"status": result["status"], "key": key.name})
    return http.json_response(202, {"status": result["status"]}, cors)


def _confirm_url(container: wiring.Container, form: SubscribeIn, key: ApiKey) -> str:
    signing_key = container.signing_key()
    if not signing_key:
        logger.error("no signing key configured; cannot sign confirmation links")
        raise problems.internal(None)
    token = signing.sign_token(signing_key, container.subscribe.confirmation_claims(form, key))
    return f"{_base_url(container)}/v1/subscribe/confirm?token={token}"


def _base_url(container: wiring.Container) -> str:
    if container.settings.public_base_url:
        return container.settings.public_base_url.rstrip("/")
    context = app.current_event.request_context
    return f"https://{context.domain_name}/{context.stage}"


@app.get("/v1/subscribe/confirm")
def confirm() -> Response:
    container = wiring.current()
    signing_key = container.signing_key()
    if not signing_key:
        raise problems.internal(None)
    try:
        claims = signing.verify_token(
            signing_key, app.current_event.get_query_string_value("token"), container.clock.now()
        )
    except signing.SignatureError as exc:
        raise problems.invalid_link(f"the confirmation link is broken or too old ({exc}); sign up again") from None
    if container.keys.live(str(claims.get("k"))) is None:
        raise problems.invalid_link("this signup form is no longer active")
    result = container.subscribe.confirm(claims)
    logger.info("signup confirmed", extra={"duplicate": result["duplicate"]})
    page = (
        "<!doctype html><meta charset=utf-8><title>Subscribed</title>"
        f"<p>Thank you: <strong>{html.escape(str(claims['e']))}</strong> is subscribed.</p>"
    )
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=page)


@logger.inject_lambda_context(clear_state=True)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
