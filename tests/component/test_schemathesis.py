"""schemathesis against the OpenAPI document: every route, every request correctly signed or keyed.

Requests go through the local gateway to the real handlers on moto. A signing middleware sits where a
client library would: it reads each generated request as it will be sent and adds what the route's
authentication needs (a v2 signature over method, path, query and body; a write key; a publishable key;
a Shopify or WooCommerce HMAC with a real topic; a genuine unsubscribe token for half the page
requests), so the parsers behind authentication are what gets fuzzed, not the 401s in front of them.

Checks: no 5xx; status codes, content types and response bodies as the document says; and every 4xx an
RFC 9457 problem. Bounded and deterministic here (FUZZ_EXAMPLES per operation, derandomized);
`make fuzz` runs the same with many more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    CheckContext,
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from nudge import routes, signing
from nudge.clocks import VirtualClock
from nudge.domain.unsubscribe import make_token
from nudge.local.gateway import wsgi_app
from nudge.local.moto_stack import DEV_SHOPIFY_SHOP, DEV_WOOCOMMERCE_SITE, MotoStack, start_moto_stack
from nudge.openapi import document
from nudge.ports import KeyKind

FUZZ_EXAMPLES = int(os.environ.get("NUDGE_FUZZ_EXAMPLES", "10"))
SHOPIFY_TOPICS = ["orders/create", "checkouts/create", "refunds/create", "customers/redact", "customers/create"]
WOO_TOPICS = ["order.created", "order.updated", "customer.created", "customer.updated"]
ENROLLABLE = ["welcome", "client_onboarding", "course_drip"]

schema = schemathesis.openapi.from_dict(document())
SENT: dict[str, int] = {}  # requests sent, by status class: the example count in the run's summary
BY_ROUTE: dict[str, int] = {}  # by route and status, printed with NUDGE_FUZZ_REPORT=1


class SigningMiddleware:
    """What a well-behaved client adds to each request of a route, computed over the bytes it sends."""

    def __init__(self, stack: MotoStack, secret_key: str, publishable_key: str, token: str, confirmation: str) -> None:
        self.stack = stack
        self.secret_key = secret_key
        self.publishable_key = publishable_key
        self.token = token  # a genuine unsubscribe token
        self.confirmation = confirmation  # a genuine signup confirmation token

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"
        found = routes.find(method, path)
        environ["wsgi.input"] = io.BytesIO(body)
        if found is not None:
            route, parameters = found
            path = self._authenticate(route, parameters, path, body, environ)
        body = environ["wsgi.input"].read()
        environ["PATH_INFO"] = path
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))

        def counting_start(status: str, headers: Any, *rest: Any) -> Any:
            SENT[status[0] + "xx"] = SENT.get(status[0] + "xx", 0) + 1
            label = f"{method} {found[0].path if found else path} {status[:3]}"
            BY_ROUTE[label] = BY_ROUTE.get(label, 0) + 1
            return start_response(status, headers, *rest)

        return wsgi_app(environ, counting_start)

    def _authenticate(
        self, route: routes.Route, parameters: dict[str, str], path: str, body: bytes, environ: dict[str, Any]
    ) -> str:
        digest = int(hashlib.sha256(body + path.encode()).hexdigest(), 16)
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        if route.path == "/v1/flows/{flow_id}/enrollments" and digest % 2:
            path = f"/v1/flows/{ENROLLABLE[digest % len(ENROLLABLE)]}/enrollments"
        if route.auth == "signed":
            at = self.stack.clock.now()
            header = signing.sign_request(self.stack.signing_key, method_of(environ), path, query, body, at)
            environ["HTTP_X_NUDGE_SIGNATURE"] = header
        elif route.auth == "write-key":
            environ["HTTP_AUTHORIZATION"] = f"Bearer {self.secret_key}"
        elif route.auth == "publishable-key":
            environ["QUERY_STRING"] = urlencode(query | {"key": self.publishable_key})
            environ["HTTP_ORIGIN"] = "https://shop.example"
            environ["REMOTE_ADDR"] = f"10.0.{digest % 250}.{digest // 250 % 250}"  # past the per-address limit
        elif route.path == "/v1/subscribe/confirm" and digest % 2:
            environ["QUERY_STRING"] = urlencode(query | {"token": self.confirmation})
            if body.startswith(b"token="):
                body_token = self.confirmation.encode()
                environ["wsgi.input"] = io.BytesIO(b"token=" + body_token)
        elif route.path == "/webhooks/shopify":
            secret = self.stack.webhook_secrets["shopify"][DEV_SHOPIFY_SHOP]
            environ["HTTP_X_SHOPIFY_HMAC_SHA256"] = _b64_hmac(secret, body)
            environ["HTTP_X_SHOPIFY_SHOP_DOMAIN"] = DEV_SHOPIFY_SHOP
            environ["HTTP_X_SHOPIFY_TOPIC"] = SHOPIFY_TOPICS[digest % len(SHOPIFY_TOPICS)]
            environ["HTTP_X_SHOPIFY_WEBHOOK_ID"] = f"wh-{digest % 10**12}"
        elif route.path == "/webhooks/woocommerce":
            secret = self.stack.webhook_secrets["woocommerce"][DEV_WOOCOMMERCE_SITE]
            environ["HTTP_X_WC_WEBHOOK_SIGNATURE"] = _b64_hmac(secret, body)
            environ["HTTP_X_WC_WEBHOOK_SOURCE"] = f"https://{DEV_WOOCOMMERCE_SITE}/"
            environ["HTTP_X_WC_WEBHOOK_TOPIC"] = WOO_TOPICS[digest % len(WOO_TOPICS)]
            environ["HTTP_X_WC_WEBHOOK_DELIVERY_ID"] = str(digest % 10**9)
        elif route.path == "/v1/unsubscribe/{token}" and digest % 2:
            return path.removesuffix(quote(parameters["token"], safe="")).removesuffix(parameters["token"]) + self.token
        return path


def method_of(environ: dict[str, Any]) -> str:
    return str(environ["REQUEST_METHOD"])


def _b64_hmac(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def every_4xx_is_a_problem(ctx: CheckContext, response: Any, case: schemathesis.Case) -> bool | None:
    """RFC 9457: a refusal is application/problem+json with type, title, status (the response's) and detail."""
    if 400 <= response.status_code < 500:
        found = [v for k, v in response.headers.items() if k.lower() == "content-type"] or [""]
        content_type = found[0][0] if isinstance(found[0], list) else found[0]
        assert content_type.startswith("application/problem+json"), f"{response.status_code} as {content_type}"
        body = json.loads(response.content)
        assert {"type", "title", "status", "detail"} <= body.keys(), body
        assert body["status"] == response.status_code and body["type"].startswith("urn:nudge:problem:")
    return None


@pytest.fixture(scope="module")
def app() -> Iterator[SigningMiddleware]:
    moto = start_moto_stack(VirtualClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC)))
    secret, _ = moto.container.keys.create(KeyKind.SECRET, "schemathesis")
    public, _ = moto.container.keys.create(KeyKind.PUBLISHABLE, "schemathesis", origins=["https://shop.example"])
    moto.call_api("POST", "/v1/contacts", {"id": "c_fuzz", "email": "fuzz@example.com", "email_marketing": True})
    token = make_token(moto.container.unsubscribe_key() or "", "c_fuzz")
    double, _ = moto.container.keys.create(
        KeyKind.PUBLISHABLE, "doi", origins=["https://shop.example"], double_opt_in=True
    )
    signup = json.dumps({"email": "doi@example.com", "phone": "+14155550100", "sms_marketing": True}).encode()
    moto.send("POST", "/v1/subscribe", signup, {"Content-Type": "application/json"}, {"key": double})
    link = re.search(r"confirm\?token=([A-Za-z0-9_.-]+)", moto.sent_emails()[-1].raw_data)
    assert link is not None
    try:
        yield SigningMiddleware(moto, secret, public, token, link.group(1))
    finally:
        moto.stop()
        print(f"\nsigned fuzz run: {sum(SENT.values())} requests, by status class {dict(sorted(SENT.items()))}")
        if os.environ.get("NUDGE_FUZZ_REPORT"):
            print("\n".join(f"{count:6d}  {label}" for label, count in sorted(BY_ROUTE.items())))


@pytest.mark.xdist_group("schemathesis")
@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_route_answers_as_documented(case: schemathesis.Case, app: SigningMiddleware) -> None:
    response = case.call(app=app)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            every_4xx_is_a_problem,
        ],
    )
