"""API Gateway in miniature: route a local HTTP request to the Lambda handler the stack routes it to.

The same table serves `nudge serve`, the schemathesis run and the component tests, so they all exercise
the handlers exactly as the REST API's proxy integrations would.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from typing import Any

from nudge import names
from nudge.local.lambda_events import FakeLambdaContext, proxy_event

# (method, path, handler) in the order API Gateway would match them; None matches any method.
ROUTES: list[tuple[str | None, str, str]] = [
    ("POST", "/v1/events", names.INGEST_HANDLER),
    ("POST", "/v1/contacts", names.INGEST_HANDLER),
    ("POST", "/webhooks/shopify", names.WEBHOOKS_HANDLER),
    ("POST", "/webhooks/woocommerce", names.WEBHOOKS_HANDLER),
    (None, "/v1/subscribe", names.SUBSCRIBE_HANDLER),
    ("GET", "/v1/subscribe/confirm", names.SUBSCRIBE_HANDLER),
    ("POST", "/v1/track", names.API_HANDLER),
    ("POST", "/v1/identify", names.API_HANDLER),
    ("POST", "/v1/alias", names.API_HANDLER),
    ("POST", "/v1/batch", names.API_HANDLER),
    ("GET", "/v1/openapi.json", names.API_HANDLER),
]


@dataclass
class LocalResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _handler(path: str, method: str) -> Any | None:
    for route_method, route_path, target in ROUTES:
        if route_path == path and route_method in (None, method):
            module, _, function = target.rpartition(".")
            return getattr(importlib.import_module(module), function)
    return None


def _not_found(path: str) -> LocalResponse:
    body = {
        "type": "urn:nudge:problem:not-found",
        "title": "No such endpoint",
        "status": 404,
        "detail": f"nothing is served at {path}",
    }
    return LocalResponse(404, {"Content-Type": "application/problem+json"}, json.dumps(body).encode())


def invoke(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    source_ip: str = "127.0.0.1",
) -> LocalResponse:
    """Call the handler for (method, path) with a REST proxy event; unrouted paths get API Gateway's 404."""
    handler = _handler(path, method)
    if handler is None:
        return _not_found(path)
    event = proxy_event(method, path, body, headers or {}, query or {}, source_ip=source_ip)
    response = handler(event, FakeLambdaContext.fresh(handler.__module__.rsplit(".", 1)[-1]))
    out = {name: values[-1] for name, values in (response.get("multiValueHeaders") or {}).items() if values}
    out.update(response.get("headers") or {})
    raw = response.get("body") or ""
    if response.get("isBase64Encoded"):
        import base64

        data = base64.b64decode(raw)
    else:
        data = raw.encode()
    return LocalResponse(int(response["statusCode"]), out, data)
