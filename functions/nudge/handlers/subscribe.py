"""Public signup forms: POST /v1/subscribe (and its CORS preflight); the confirmation page at
GET /v1/subscribe/confirm, and its button, POST /v1/subscribe/confirm.

Called from shop pages with a publishable key in the query string (`?key=nudge_pk_…`), so a browser's
preflight carries it too; only the key's configured origins get CORS headers.

The confirmation link's GET only shows a page (link scanners and mail previews fetch links); the
person's click on its button POSTs, and only that confirms. The link names a pending signup by id and
carries no address.
"""

from __future__ import annotations

import html
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from nudge import names, signing, wiring
from nudge.domain.validation import prepare
from nudge.handlers import flow_metrics, http, pages, problems
from nudge.handlers.logs import Logger
from nudge.handlers.problems import Problem
from nudge.handlers.rest import Response, RestResolver
from nudge.ports import ApiKey, KeyKind, PendingSignup
from nudge.services.subscribe import SignupGone, SubscribeIn

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

MAX_BODY_BYTES = 4 * 1024
MAX_TOKEN_LENGTH = 1024
RATE_LIMIT = 10  # submissions per minute from one address to one key: plenty for people, dull for scripts
RATE_WINDOW = timedelta(minutes=1)

logger = Logger(service=names.SERVICE)
app = RestResolver()
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
        if not container.request_limiter.hit(bucket, limit=RATE_LIMIT, window=RATE_WINDOW, now=container.clock.now()):
            raise problems.too_many_requests(int(RATE_WINDOW.total_seconds()))
        http.require_json_media_type(app)
        form = http.parse_model(SubscribeIn, http.parse_json(body))
        if form.is_bot:
            # Answer as if it worked, so the bot learns nothing; store nothing.
            logger.info("honeypot filled; ignored")
            return http.json_response(202, {"status": "subscribed"}, cors)
        result = container.subscribe.subscribe(form, key, link_for=lambda signup: _confirm_url(container, signup))
    except Problem as problem:
        problem.headers.update(cors)  # so the page's script can read why
        raise
    logger.info("signup", extra={"status": result["status"], "key": key.name})
    return http.json_response(202, {"status": result["status"]}, cors)


def _confirm_url(container: wiring.Container, signup: PendingSignup) -> str:
    signing_key = container.signing_key()
    if not signing_key:
        logger.error("no signing key configured; cannot sign confirmation links")
        raise problems.internal(None)
    token = signing.sign_token(signing_key, container.subscribe.confirmation_claims(signup))
    return f"{_base_url(container)}/v1/subscribe/confirm?token={token}"


def _base_url(container: wiring.Container) -> str:
    if container.settings.public_base_url:
        return container.settings.public_base_url.rstrip("/")
    context = app.current_event.request_context
    return f"https://{context.domain_name}/{context.stage}"


def _claims(container: wiring.Container, token: str | None) -> dict[str, Any]:
    """The verified claims of a confirmation link whose form is still live."""
    signing_key = container.signing_key()
    if not signing_key:
        raise problems.internal(None)
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise problems.invalid_link("the confirmation link is broken; sign up again")
    try:
        claims = signing.verify_token(signing_key, token, container.clock.now())
    except signing.SignatureError as exc:
        raise problems.invalid_link(f"the confirmation link is broken or too old ({exc}); sign up again") from None
    if container.keys.live(str(claims.get("k"))) is None:
        raise problems.invalid_link("this signup form is no longer active")
    return claims


def _pending(container: wiring.Container, claims: dict[str, Any]) -> PendingSignup:
    try:
        return container.subscribe.pending(claims)
    except SignupGone:
        raise problems.invalid_link("this confirmation link has expired; sign up again") from None


@app.get("/v1/subscribe/confirm")
def show_confirmation() -> Response:
    """Safe to prefetch: shows what would be confirmed, with a button; changes nothing."""
    container = wiring.current()
    token = app.current_event.get_query_string_value("token")
    signup = _pending(container, _claims(container, token))
    sms = (
        f"<p>Texts to {html.escape(_phone_hint(signup.phone))} too, if you have not given us another number.</p>"
        if signup.phone and signup.sms_marketing
        else ""
    )
    if signup.notify_me:  # no form text: the variant is not named, only that a restock notice was asked for
        sms += "<p>We will also tell you, once, when the item you asked about is back in stock.</p>"
    who = html.escape(_email_hint(signup.email))
    body = f"""<p>Please confirm that <strong>{who}</strong> should get our emails.</p>
{sms}<form method="post"><input type="hidden" name="token" value="{html.escape(token or "")}">
<button type="submit">Yes, subscribe me</button></form>
<p><small>Did not sign up? Close this page: nothing happens unless you press the button.</small></p>"""
    return pages.page(_shop(container), "Confirm your subscription", body)


@app.post("/v1/subscribe/confirm")
def confirm() -> Response:
    """The person pressed the page's button: subscribe them (once, however often it is pressed)."""
    container = wiring.current()
    form = http.form_fields(app, MAX_BODY_BYTES)
    token = next(iter(form.get("token") or ()), None) or app.current_event.get_query_string_value("token")
    claims = _claims(container, token)
    try:
        result = container.subscribe.confirm(claims)
    except SignupGone:
        raise problems.invalid_link("this confirmation link has expired; sign up again") from None
    logger.info("signup confirmed", extra={"duplicate": result["duplicate"]})
    body = "<p class=notice>Thank you: you are subscribed. Look out for our welcome email.</p>"
    return pages.page(_shop(container), "You are subscribed", body)


def _shop(container: wiring.Container) -> str:
    return pages.shop_name(container.settings.from_address)


def _email_hint(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _phone_hint(phone: str) -> str:
    return phone[:3] + "•" * max(len(phone) - 5, 0) + phone[-2:]


def warm() -> None:
    """Build what this function's first request builds: signups, and their body's check.

    `nudge bench --cold-start` times import + this; nothing calls it at import (ADR 0020).
    """
    wiring.current().warm("request_limiter", "keys", "subscribe")  # first: it offers the compiled checks
    prepare(SubscribeIn)


@logger.inject_lambda_context(clear_state=True, cold_start=warm)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
