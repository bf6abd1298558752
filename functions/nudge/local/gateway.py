"""API Gateway in miniature: route a local HTTP request to the Lambda handler the stack routes it to.

The same table (nudge.routes) serves `nudge serve`, the schemathesis run and the component tests, so they all exercise
the handlers exactly as the REST API's proxy integrations would.
"""

from __future__ import annotations

import base64
import importlib
import json
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from nudge import routes
from nudge.domain.frozen import dataclass
from nudge.local.lambda_events import FakeLambdaContext, proxy_event


@dataclass
class LocalResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _handler(target: str) -> Any:
    module, _, function = target.rpartition(".")
    return getattr(importlib.import_module(module), function)


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
    found = routes.find(method, path)
    if found is None:
        return _not_found(path)
    route, parameters = found
    handler = _handler(route.handler)
    event = proxy_event(
        method,
        path,
        body,
        headers or {},
        query or {},
        source_ip=source_ip,
        resource=route.path,
        path_parameters=parameters,
    )
    response = handler(event, FakeLambdaContext.fresh(handler.__module__.rsplit(".", 1)[-1]))
    out = {name: values[-1] for name, values in (response.get("multiValueHeaders") or {}).items() if values}
    out.update(response.get("headers") or {})
    raw = response.get("body") or ""
    data = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
    return LocalResponse(int(response["statusCode"]), out, data)


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The gateway as a WSGI application: for `nudge serve` (wsgiref) and for schemathesis in-process."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items() if key.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    query = {key: values[-1] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
    response = invoke(
        environ["REQUEST_METHOD"],
        environ.get("PATH_INFO") or "/",
        body=body,
        headers=headers,
        query=query,
        source_ip=environ.get("REMOTE_ADDR", "127.0.0.1"),
    )
    reason = HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else ""
    start_response(f"{response.status} {reason}", list(response.headers.items()))
    return [response.body]
