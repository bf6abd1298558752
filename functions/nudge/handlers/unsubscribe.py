"""Public unsubscribe endpoints: RFC 8058 one-click POST and a small preference page. The token authorizes.

No request signature here (a mail client or a person calls these); the token in the path is an HMAC
over the contact id, checked before anything is read or written.
"""

from __future__ import annotations

import base64
import binascii
import html
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from nudge import names, wiring
from nudge.domain.feedback import FeedbackKind
from nudge.domain.unsubscribe import BadToken
from nudge.handlers import flow_metrics, pages, problems
from nudge.handlers.logs import Logger
from nudge.handlers.problems import Problem
from nudge.handlers.rest import Response, RestResolver
from nudge.services.preferences import BadCsrf, ConsentMissing, NoSuchContact, Preferences

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service=names.SERVICE)
app = RestResolver()

MAX_FORM_BYTES = 16 * 1024


def _form() -> dict[str, list[str]]:
    event = app.current_event
    raw = event.body or ""
    try:
        body = base64.b64decode(raw, validate=True) if event.is_base64_encoded else raw.encode()
    except binascii.Error:
        raise problems.bad_form("the body is flagged base64 but is not valid base64") from None
    if len(body) > MAX_FORM_BYTES:
        raise problems.too_large(MAX_FORM_BYTES)
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)


def _page(title: str, notice: str | None, prefs: Preferences, token: str) -> Response:
    container = wiring.current()
    csrf = html.escape(container.preferences.csrf_for(token))
    hidden = f'<input type="hidden" name="csrf" value="{csrf}">'
    topics = "".join(
        f'<label><input type="checkbox" name="topic" value="{html.escape(t.id)}"{" checked" if t.subscribed else ""}> '
        f"{html.escape(t.name)}</label>"
        for t in prefs.topics
    )
    status = "subscribed to marketing email" if prefs.subscribed else "unsubscribed from all marketing email"
    if prefs.subscribed:
        change = """<form method="post"><button class="secondary" name="action" value="unsubscribe">
Unsubscribe from everything</button></form>"""
    else:  # fresh consent, ticked and recorded, is what lifts an unsubscribe or a complaint
        change = f"""<form method="post">{hidden}<label><input type="checkbox" name="consent" value="yes" required>
Yes, send me marketing email again</label>
<button name="action" value="resubscribe">Resubscribe</button></form>"""
    body = f"""{f'<p class="notice">{html.escape(notice)}</p>' if notice else ""}
<p>{html.escape(prefs.email_hint)} is {status}.</p>
<form method="post">{hidden}<fieldset><legend>Email me about</legend>{topics}</fieldset>
<button name="action" value="save_topics">Save my choices</button></form>
{change}
<p><small>Order confirmations and receipts still reach you.</small></p>"""
    return pages.page(pages.shop_name(container.settings.from_address), title, body)


@app.get("/v1/unsubscribe/<token>")
def show(token: str) -> Response:
    """Safe to prefetch: link scanners and previews GET links, so a GET never changes anything."""
    prefs = wiring.current().preferences.show(token)
    return _page("Your email preferences", None, prefs, token)


@app.post("/v1/unsubscribe/<token>")
def change(token: str) -> Response:
    service = wiring.current().preferences
    form = _form()
    action = (form.get("action") or [""])[0]
    if action in ("resubscribe", "save_topics"):
        # Only from the page itself: its forms carry a fresh CSRF token bound to this link.
        service.show(token)  # a bad token or an erased contact is refused as such first
        service.check_csrf(token, next(iter(form.get("csrf") or ()), None))
    if action == "resubscribe":
        consented = (form.get("consent") or [""])[0] == "yes"
        prefs = service.resubscribe(token, consented=consented)
        return _page("Your email preferences", "You are subscribed again.", prefs, token)
    if action == "save_topics":
        prefs = service.choose_topics(token, set(form.get("topic", [])))
        return _page("Your email preferences", "Your choices are saved.", prefs, token)
    if action not in ("", "unsubscribe"):
        raise problems.invalid_field("/action", "one of unsubscribe, resubscribe, save_topics")
    # RFC 8058: the mailbox provider POSTs "List-Unsubscribe=One-Click"; the page's button posts action.
    source = "unsubscribe:page" if action else "unsubscribe:one_click"
    message_id = app.current_event.get_query_string_value("m")  # which message's link, for the KPIs
    prefs = service.unsubscribe(token, source=source, message_id=message_id)
    if prefs.credited_flow:
        flow_metrics.record_feedback(prefs.credited_flow, FeedbackKind.UNSUBSCRIBE)
    logger.info("unsubscribed", extra={"source": source})
    return _page("You are unsubscribed", "You will get no more marketing email from us.", prefs, token)


@app.exception_handler(BadToken)
def _bad_token(exc: BadToken) -> Response:
    return _problem(problems.bad_token(str(exc)))


@app.exception_handler(BadCsrf)
def _bad_csrf(exc: BadCsrf) -> Response:
    detail = f"reload the preference page and use its buttons ({exc})"
    return _problem(Problem(403, "bad-csrf", "This form is out of date", detail))


@app.exception_handler(ConsentMissing)
def _no_consent(exc: ConsentMissing) -> Response:
    return _problem(problems.invalid_field("/consent", str(exc)))


@app.exception_handler(NoSuchContact)
def _gone(_exc: NoSuchContact) -> Response:
    return _problem(problems.contact_gone())


@app.exception_handler(Problem)
def _problem(exc: Problem) -> Response:
    logger.info("request refused", extra={"status": exc.status, "problem": exc.slug})
    # The path holds the token: never echo it back as the problem's instance.
    return Response(status_code=exc.status, content_type=problems.PROBLEM_CONTENT_TYPE, body=exc.json())


@app.not_found
def _not_found(_exc: Exception) -> Response:
    problem = problems.not_found("this path")
    return Response(status_code=404, content_type=problems.PROBLEM_CONTENT_TYPE, body=problem.json())


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unhandled error")
    request_id = app.lambda_context.aws_request_id if app.lambda_context else None
    problem = problems.internal(request_id)
    return Response(status_code=500, content_type=problems.PROBLEM_CONTENT_TYPE, body=problem.json())


def warm() -> None:
    """Build what this function's first request builds: the preference page and one-click unsubscribes.

    `nudge bench --cold-start` times import + this; nothing calls it at import (ADR 0020).
    """
    wiring.current().warm("preferences")


@logger.inject_lambda_context(clear_state=True, cold_start=warm)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
