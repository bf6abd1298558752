"""nudge.handlers.rest answers every request as Powertools' APIGatewayRestResolver did (ADR 0020): the same
routes and handlers on both, the same events through both, the same proxy responses out."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler import Response as PowertoolsResponse

from nudge.handlers import rest
from nudge.local.lambda_events import FakeLambdaContext, api_gateway_event


class Refused(ValueError):
    """Handled through its base class's handler (the MRO)."""


def _app(resolver: Any, response: Any) -> Any:
    app = resolver()

    @app.post("/v1/events")
    def events() -> Any:
        event = app.current_event
        return response(
            status_code=202,
            content_type="application/json",
            body='{"accepted":true}',
            headers={"X-Seen": event.headers.get("x-shop-domain") or "none", "Vary": ["Origin", "Accept"]},
        )

    @app.get("/v1/contacts/<contact_id>")
    def contact(contact_id: str) -> Any:
        return {"id": contact_id, "m": app.current_event.get_query_string_value("m"), "n": 1.5}

    @app.get("/v1/contacts/me")  # static: wins over the dynamic route above though registered after it
    def me() -> Any:
        return {"id": "me"}, 203

    @app.get("/v1/pages/<page>")
    def page(page: str) -> Any:
        return response(status_code=200, content_type="image/png", body=b"\x89PNG" + page.encode())

    @app.delete("/v1/contacts/<contact_id>")
    def erase(contact_id: str) -> Any:
        raise Refused(f"no {contact_id}")

    @app.route("/v1/subscribe", method="OPTIONS")
    def preflight() -> Any:
        return response(status_code=204, headers={"Access-Control-Allow-Origin": "https://shop.example"})

    @app.get("/v1/boom")
    def boom() -> Any:
        raise KeyError("boom")

    @app.exception_handler(ValueError)
    def refused(exc: ValueError) -> Any:
        return response(status_code=400, content_type="application/problem+json", body=f'{{"detail":"{exc}"}}')

    @app.not_found
    def not_found(exc: Exception) -> Any:
        return response(status_code=404, content_type="application/problem+json", body=app.current_event.path)

    return app


REQUESTS = [
    ("POST", "/v1/events", {"X-Shop-Domain": "linen.myshopify.com"}),
    ("POST", "/v1/events", {}),
    ("GET", "/v1/contacts/em_bob@shop.example?m=msg_1", {}),
    ("GET", "/v1/contacts/a%20b~c", {}),
    ("GET", "/v1/contacts/me", {}),
    ("GET", "/v1/contacts/one/two", {}),
    ("GET", "/v1/contacts/", {}),
    ("GET", "/v1/events", {}),
    ("PUT", "/v1/events", {}),
    ("GET", "/v1/events/", {}),
    ("GET", "/v1/pages/home", {}),
    ("DELETE", "/v1/contacts/em_bob", {}),
    ("OPTIONS", "/v1/subscribe", {"Origin": "https://shop.example"}),
    ("GET", "/nowhere", {}),
]


@pytest.mark.parametrize(("method", "path", "headers"), REQUESTS, ids=[f"{m} {p}" for m, p, _ in REQUESTS])
def test_the_router_answers_as_powertools_did(method: str, path: str, headers: dict[str, str]) -> None:
    event = api_gateway_event(method, path, '{"a":1}' if method == "POST" else None, headers)
    context = FakeLambdaContext.fresh("nudge-api")

    theirs = _app(APIGatewayRestResolver, PowertoolsResponse).resolve(event, context)
    ours = _app(rest.RestResolver, rest.Response).resolve(event, context)

    theirs["multiValueHeaders"] = dict(theirs["multiValueHeaders"])
    assert ours == theirs


def test_an_unhandled_error_propagates_as_with_powertools() -> None:
    event = api_gateway_event("GET", "/v1/boom", None)
    with pytest.raises(KeyError):
        _app(rest.RestResolver, rest.Response).resolve(event, FakeLambdaContext.fresh("nudge-api"))
    with pytest.raises(KeyError):
        _app(APIGatewayRestResolver, PowertoolsResponse).resolve(event, FakeLambdaContext.fresh("nudge-api"))


def test_the_request_reads_what_the_handlers_read() -> None:
    event = api_gateway_event(
        "POST", "/v1/subscribe?key=pk_1", "a=1", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    event["requestContext"] = {
        "resourcePath": "/v1/subscribe",
        "path": "/prod/v1/subscribe",
        "stage": "prod",
        "domainName": "abc.execute-api.us-east-1.amazonaws.com",
        "identity": {"sourceIp": "203.0.113.9"},
    }
    ours = rest.Request(event)
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

    theirs = APIGatewayProxyEvent(event)
    assert ours.headers.get("content-type") == theirs.headers.get("content-type") == "application/x-www-form-urlencoded"
    assert "CONTENT-TYPE" in ours.headers and "CONTENT-TYPE" in theirs.headers
    assert ours.get_query_string_value("key") == theirs.get_query_string_value("key") == "pk_1"
    assert ours.get_query_string_value("nope", "x") == theirs.get_query_string_value("nope", "x") == "x"
    assert (ours.path, ours.http_method, ours.body, ours.is_base64_encoded) == (
        theirs.path,
        theirs.http_method,
        theirs.body,
        theirs.is_base64_encoded,
    )
    mine, its = ours.request_context, theirs.request_context
    assert (mine.resource_path, mine.path, mine.stage, mine.domain_name, mine.identity.source_ip) == (
        its.resource_path,
        its.path,
        its.stage,
        its.domain_name,
        its.identity.source_ip,
    )
    assert ours.path_parameters == theirs.path_parameters
    assert ours.query_string_parameters == theirs.query_string_parameters
    assert ours.raw_event is event
