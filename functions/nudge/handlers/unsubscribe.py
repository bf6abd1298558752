"""Public unsubscribe endpoints: RFC 8058 one-click POST and a small preference page. The token authorizes.

No request signature here (a mail client or a person calls these); the token in the path is an HMAC
over the contact id, checked before anything is read or written.
"""

from __future__ import annotations

import base64
import binascii
import html
from typing import Any
from urllib.parse import parse_qs

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import names, wiring
from nudge.domain.feedback import FeedbackKind
from nudge.domain.unsubscribe import BadToken
from nudge.handlers import flow_metrics, problems
from nudge.handlers.problems import Problem
from nudge.services.preferences import NoSuchContact, Preferences

logger = Logger(service=names.SERVICE)
app = APIGatewayRestResolver()

MAX_FORM_BYTES = 16 * 1024
_HTML = "text/html; charset=utf-8"


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


def _page(title: str, notice: str | None, prefs: Preferences) -> Response:
    topics = "".join(
        f'<label><input type="checkbox" name="topic" value="{html.escape(t.id)}"{" checked" if t.subscribed else ""}> '
        f"{html.escape(t.name)}</label><br>"
        for t in prefs.topics
    )
    status = "subscribed to marketing email" if prefs.subscribed else "unsubscribed from all marketing email"
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title></head>
<body style="font-family:Helvetica,Arial,sans-serif;max-width:480px;margin:40px auto;color:#222;">
<h1 style="font-size:22px;">{html.escape(title)}</h1>
{f"<p><strong>{html.escape(notice)}</strong></p>" if notice else ""}
<p>{html.escape(prefs.email_hint)} is {status}.</p>
<form method="post"><fieldset><legend>Email me about</legend>{topics}</fieldset>
<button name="action" value="save_topics">Save my choices</button></form>
<form method="post"><button name="action" value="unsubscribe">Unsubscribe from everything</button></form>
<form method="post"><button name="action" value="resubscribe">Resubscribe</button></form>
<p style="font-size:12px;color:#777;">Order confirmations and receipts still reach you.</p>
</body></html>"""
    return Response(status_code=200, content_type=_HTML, body=body, headers={"Cache-Control": "no-store"})


@app.get("/v1/unsubscribe/<token>")
def show(token: str) -> Response:
    """Safe to prefetch: link scanners and previews GET links, so a GET never changes anything."""
    prefs = wiring.current().preferences.show(token)
    return _page("Your email preferences", None, prefs)


@app.post("/v1/unsubscribe/<token>")
def change(token: str) -> Response:
    service = wiring.current().preferences
    form = _form()
    action = (form.get("action") or [""])[0]
    if action == "resubscribe":
        return _page("Your email preferences", "You are subscribed again.", service.resubscribe(token))
    if action == "save_topics":
        prefs = service.choose_topics(token, set(form.get("topic", [])))
        return _page("Your email preferences", "Your choices are saved.", prefs)
    if action not in ("", "unsubscribe"):
        raise problems.invalid_field("/action", "one of unsubscribe, resubscribe, save_topics")
    # RFC 8058: the mailbox provider POSTs "List-Unsubscribe=One-Click"; the page's button posts action.
    source = "unsubscribe:page" if action else "unsubscribe:one_click"
    message_id = app.current_event.get_query_string_value("m")  # which message's link, for the KPIs
    prefs = service.unsubscribe(token, source=source, message_id=message_id)
    if prefs.credited_flow:
        flow_metrics.record_feedback(prefs.credited_flow, FeedbackKind.UNSUBSCRIBE)
    logger.info("unsubscribed", extra={"source": source})
    return _page("You are unsubscribed", "You will get no more marketing email from us.", prefs)


@app.exception_handler(BadToken)
def _bad_token(exc: BadToken) -> Response:
    return _problem(problems.bad_token(str(exc)))


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


@logger.inject_lambda_context(clear_state=True)
@flow_metrics.published
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
