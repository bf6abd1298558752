"""The OpenAPI 3.1 document of the HTTP API, built from the very models that validate requests.

Served at GET /v1/openapi.json; docs/openapi.json is a rendered copy (a test keeps them equal).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from nudge import names
from nudge.services.inputs import ContactIn, EventIn
from nudge.services.segment import AliasCall, BatchCall, IdentifyCall, TrackCall
from nudge.services.subscribe import SubscribeIn

_REF = "#/components/schemas/{model}"
_MODELS: list[type[BaseModel]] = [EventIn, ContactIn, TrackCall, IdentifyCall, AliasCall, BatchCall, SubscribeIn]

_PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details; `type` is one of the urn:nudge:problem:… types in docs/api.md.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"pointer": {"type": "string"}, "detail": {"type": "string"}},
            },
        },
    },
}
_OUTCOME = {
    "type": "object",
    "description": "What the event did. `duplicate` true means it was seen before and nothing changed.",
    "properties": {
        "event_id": {"type": "string"},
        "contact_id": {"type": "string"},
        "type": {"type": "string"},
        "duplicate": {"type": "boolean"},
        "started": {"type": "array", "items": {"type": "string"}},
        "exited": {"type": "array", "items": {"type": "string"}},
    },
}
_WEBHOOK_RESULT = {
    "type": "object",
    "description": "An event outcome, {'ignored': reason}, a privacy request receipt, or {'ping': true}.",
    "additionalProperties": True,
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _problems(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {
            "description": "A problem (RFC 9457)",
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
        }
        for status in statuses
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _post(
    summary: str, body: dict[str, Any], ok: dict[str, Any], security: list[dict[str, list[str]]], *refusals: int
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": security,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": ok | _problems(*refusals),
        }
    }


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document (built once per process)."""
    _, top = models_json_schema([(m, "validation") for m in _MODELS], ref_template=_REF)
    schemas: dict[str, Any] = dict(top["$defs"])
    schemas |= {"Problem": _PROBLEM, "EventOutcome": _OUTCOME, "WebhookResult": _WEBHOOK_RESULT}
    segment = [{"writeKeyBasic": []}, {"writeKeyBearer": []}]
    signed = [{"nudgeSignature": []}]
    accepted = _json(_ref("EventOutcome"), "Accepted: the event was recorded and acted on") | {}
    outcome = {"202": accepted, "200": _json(_ref("EventOutcome"), "A duplicate: nothing changed")}
    batch_results = {
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "status"],
                    "properties": {
                        "index": {"type": "integer"},
                        "status": {"type": "integer"},
                        "result": {"type": "object"},
                        "problem": _ref("Problem"),
                    },
                },
            }
        },
    }
    alias_result = {
        "type": "object",
        "properties": {"contact_id": {"type": "string"}, "merged_from": {"type": ["string", "null"]}},
    }
    webhook_ok = {
        "200": _json(_ref("WebhookResult"), "Handled: a duplicate, ignored, a privacy request, or a ping"),
        "202": _json(_ref("WebhookResult"), "Accepted and acted on"),
    }
    any_object = {"type": "object", "additionalProperties": True}
    paths: dict[str, Any] = {
        "/v1/events": _post("Record an event (signed)", _ref("EventIn"), outcome, signed, 400, 401, 413, 415, 422),
        "/v1/contacts": _post(
            "Create or update a contact (signed)",
            _ref("ContactIn"),
            {"200": _json({"type": "object"}, "The contact id and its new version")},
            signed,
            400,
            401,
            413,
            415,
            422,
        ),
        "/v1/track": _post("Segment track", _ref("TrackCall"), outcome, segment, 400, 401, 413, 415, 422),
        "/v1/identify": _post("Segment identify", _ref("IdentifyCall"), outcome, segment, 400, 401, 413, 415, 422),
        "/v1/alias": _post(
            "Segment alias: previousId is userId; profiles merge",
            _ref("AliasCall"),
            {"200": _json(alias_result, "Merged")},
            segment,
            400,
            401,
            413,
            415,
            422,
        ),
        "/v1/batch": _post(
            "Up to 500 track/identify/alias calls; a result per item",
            _ref("BatchCall"),
            {"200": _json(batch_results, "One result per item, in order")},
            segment,
            400,
            401,
            413,
            415,
            422,
        ),
        "/v1/subscribe": _post(
            "A signup form (publishable key in ?key=)",
            _ref("SubscribeIn"),
            {"202": _json({"type": "object"}, "Subscribed, or a confirmation email sent")},
            [{"publishableKey": []}],
            400,
            401,
            403,
            413,
            415,
            422,
            429,
        ),
        "/v1/subscribe/confirm": {
            "get": {
                "summary": "The link in the double opt-in email",
                "security": [],
                "parameters": [{"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "An HTML page", "content": {"text/html": {}}}} | _problems(400),
            }
        },
        "/webhooks/shopify": _post(
            "Shopify webhooks (X-Shopify-Topic, -Hmac-Sha256, -Shop-Domain, -Webhook-Id)",
            any_object,
            webhook_ok,
            [{"shopifyHmac": []}],
            400,
            401,
            413,
        ),
        "/webhooks/woocommerce": _post(
            "WooCommerce webhooks (X-WC-Webhook-Topic, -Signature, -Source, -Delivery-ID) and the creation ping",
            any_object,
            webhook_ok,
            [{"wooSignature": []}],
            400,
            401,
            413,
        ),
        "/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "nudge",
            "version": "1",
            "description": "Lifecycle email and SMS flows in your own AWS account. Problem types: docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "writeKeyBasic": {"type": "http", "scheme": "basic", "description": "Segment style: the key as user"},
                "writeKeyBearer": {"type": "http", "scheme": "bearer"},
                "nudgeSignature": {"type": "apiKey", "in": "header", "name": names.SIGNATURE_HEADER},
                "publishableKey": {"type": "apiKey", "in": "query", "name": "key"},
                "shopifyHmac": {"type": "apiKey", "in": "header", "name": names.SHOPIFY_HMAC_HEADER},
                "wooSignature": {"type": "apiKey", "in": "header", "name": names.WC_SIGNATURE_HEADER},
            },
        },
    }
