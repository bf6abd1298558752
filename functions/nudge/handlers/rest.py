"""The HTTP functions' router: API Gateway REST API proxy events (payload 1.0) in, proxy responses out.

What the handlers used of Powertools' `RestResolver`, and only that, with the same behaviour:
routes by method and path (`<name>` matches one path segment, static routes before dynamic ones, the whole
path or nothing), the route's path parameters as keyword arguments, `exception_handler` looked up along the
exception's MRO, `not_found`, `current_event` (headers read case-insensitively) and `lambda_context`, and the
response as `statusCode`, `body`, `isBase64Encoded` and `multiValueHeaders` (bytes bodies base64-encoded, a
dict body JSON). Importing Powertools' event handler cost ~80 ms CPU at every cold start of the five HTTP
functions (its package imports AppSync's resolver and asyncio, every event data class, Logger, Metrics and
Tracer): ADR 0020. `tests/unit/test_rest_router.py` resolves the same events through both and compares.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

_PARAMETER = re.compile(r"<(\w+)>")
# Powertools' segment pattern: RFC 3986's safe characters, the unsafe ones API Gateway passes, and word characters.
_SEGMENT = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"
_JSON = "application/json"

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)  # a decorated handler keeps its own signature


class NotFoundError(Exception):
    """No route matches the request's method and path (what a `not_found` handler receives)."""


class CaseInsensitiveDict(dict[str, Any]):
    """Headers: keys kept lower-cased, looked up in any case."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        super().__init__((key.lower(), value) for key, value in (data or {}).items())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> Any:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class _Identity:
    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.source_ip: str | None = raw.get("sourceIp")
        self.user_agent: str | None = raw.get("userAgent")


class _RequestContext:
    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.resource_path: str | None = raw.get("resourcePath")
        self.path: str | None = raw.get("path")
        self.request_id: str | None = raw.get("requestId")
        self.stage: str | None = raw.get("stage")
        self.domain_name: str | None = raw.get("domainName")
        self.identity = _Identity(raw.get("identity") or {})


class Request:
    """The proxy event, read the way the handlers read Powertools' APIGatewayProxyEvent."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.raw_event = event
        self.headers = CaseInsensitiveDict(event.get("headers"))
        self.path: str = event.get("path") or "/"
        self.http_method: str = (event.get("httpMethod") or "").upper()
        self.body: str | None = event.get("body")
        self.is_base64_encoded: bool | None = event.get("isBase64Encoded")
        self.path_parameters: dict[str, str] = event.get("pathParameters") or {}
        self.query_string_parameters: dict[str, str] = event.get("queryStringParameters") or {}
        self.request_context = _RequestContext(event.get("requestContext") or {})

    def get_query_string_value(self, name: str, default_value: str | None = None) -> str | None:
        return self.query_string_parameters.get(name, default_value)


class Response:
    """A response: `content_type` becomes the Content-Type header unless `headers` names one."""

    def __init__(
        self,
        status_code: int,
        content_type: str | None = None,
        body: Any = None,
        headers: Mapping[str, str | list[str]] | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.headers: dict[str, str | list[str]] = dict(headers) if headers else {}
        if content_type:
            self.headers.setdefault("Content-Type", content_type)

    def build(self) -> dict[str, Any]:
        content_type = self.headers.get("Content-Type", "")
        if isinstance(content_type, list):
            content_type = content_type[0]
        body = self.body
        if content_type.startswith(_JSON) and body is not None and not isinstance(body, str | bytes):
            body = json.dumps(body, separators=(",", ":"), default=str)
        encoded = isinstance(body, bytes)
        if isinstance(body, bytes):
            body = base64.b64encode(body).decode()
        headers: dict[str, list[str]] = {}
        for key, values in self.headers.items():
            if values is not None:
                headers.setdefault(key, []).extend([values] if isinstance(values, str) else values)
        return {"statusCode": self.status_code, "body": body, "isBase64Encoded": encoded, "multiValueHeaders": headers}


class _Route:
    def __init__(self, method: str, rule: str, func: Handler) -> None:
        self.method = method
        self.rule = rule
        self.regex = re.compile("^" + _PARAMETER.sub(lambda m: f"(?P<{m[1]}>{_SEGMENT})", rule) + "$")
        self.func = func
        self.dynamic = _PARAMETER.search(rule) is not None


class RestResolver:
    """`@app.get(rule)`, `@app.post(rule)`, … then `app.resolve(event, context)`."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []
        self._handlers: dict[type[BaseException], Handler] = {}
        self.current_event: Request = Request({})
        self.lambda_context: Any = None

    def route(self, rule: str, method: str | Iterable[str]) -> Callable[[H], H]:
        methods = [method] if isinstance(method, str) else list(method)

        def register(func: H) -> H:
            self._routes.extend(_Route(one.upper(), rule, func) for one in methods)
            return func

        return register

    def get(self, rule: str) -> Callable[[H], H]:
        return self.route(rule, "GET")

    def post(self, rule: str) -> Callable[[H], H]:
        return self.route(rule, "POST")

    def put(self, rule: str) -> Callable[[H], H]:
        return self.route(rule, "PUT")

    def delete(self, rule: str) -> Callable[[H], H]:
        return self.route(rule, "DELETE")

    def exception_handler(self, exc_class: type[BaseException] | list[type[BaseException]]) -> Callable[[H], H]:
        classes = exc_class if isinstance(exc_class, list) else [exc_class]

        def register(func: H) -> H:
            for one in classes:
                self._handlers[one] = func
            return func

        return register

    def not_found(self, func: H) -> H:
        self._handlers[NotFoundError] = func
        return func

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        self.current_event = request = Request(event)
        self.lambda_context = context
        return self._respond(request).build()

    def _respond(self, request: Request) -> Response:
        try:
            for route in sorted(self._routes, key=lambda r: r.dynamic):  # stable: static first, then in order
                if route.method != request.http_method:
                    continue
                match = route.regex.match(request.path)
                if match:
                    return _response(route.func(**match.groupdict()))
            return self._not_found()
        except Exception as exc:
            handler = self._lookup(type(exc))
            if handler is None:
                raise
            return _response(handler(exc))

    def _not_found(self) -> Response:
        handler = self._lookup(NotFoundError)
        if handler is not None:
            return _response(handler(NotFoundError()))
        return Response(404, _JSON, {"statusCode": 404, "message": "Not found"})

    def _lookup(self, exc_type: type[BaseException]) -> Handler | None:
        for cls in exc_type.__mro__:
            if cls in self._handlers:
                return self._handlers[cls]
        return None


def _response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple) and len(result) == 2:
        return Response(result[1], _JSON, result[0])
    return Response(200, _JSON, result)
