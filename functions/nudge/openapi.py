"""The OpenAPI 3.1 document of the HTTP API, built from the very models that validate requests.

Served at GET /v1/openapi.json; docs/openapi.json is a rendered copy (a test keeps them equal).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import TypeAdapter

from nudge import names, routes
from nudge.domain.campaigns import CAMPAIGN_ID, Campaign, CampaignStatus
from nudge.domain.validation import adapter
from nudge.integrations.segment_api import AliasCall, BatchCall, IdentifyCall, TrackCall
from nudge.services.inputs import CONTACT_ID_MAX, CONTACT_ID_PATTERN, ContactIn, EnrollmentIn, EventIn
from nudge.services.subscribe import SubscribeIn

_REF = "#/components/schemas/{model}"
_MODELS: list[type[Any]] = [
    Campaign,
    EventIn,
    ContactIn,
    EnrollmentIn,
    TrackCall,
    IdentifyCall,
    AliasCall,
    BatchCall,
    SubscribeIn,
]

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
    _, top = TypeAdapter.json_schemas([(m.__name__, "validation", adapter(m)) for m in _MODELS], ref_template=_REF)
    schemas: dict[str, Any] = dict(top["$defs"])
    schemas |= {"Problem": _PROBLEM, "EventOutcome": _OUTCOME, "WebhookResult": _WEBHOOK_RESULT}
    segment: list[dict[str, list[str]]] = [{"writeKeyBasic": []}, {"writeKeyBearer": []}]
    signed: list[dict[str, list[str]]] = [{"nudgeSignature": []}]
    campaign_view = {
        "type": "object",
        "required": ["id", "flow_id", "status"],
        "properties": {
            "id": {"type": "string"},
            "flow_id": {"type": "string"},
            "status": {"enum": [s.value for s in CampaignStatus]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "progress": {"type": "object"},
        },
    }
    campaign_id = {
        "name": "campaign_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": CAMPAIGN_ID},
    }
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
    html_page = {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
    token_query = {"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}
    token_form = {"type": "object", "properties": {"token": {"type": "string"}}, "required": ["token"]}
    preference_form = {
        "type": "object",
        "properties": {
            "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]},
            "action": {"type": "string", "enum": ["unsubscribe", "resubscribe", "save_topics"]},
            "csrf": {"type": "string"},
            "consent": {"type": "string", "enum": ["yes"]},
            "topic": {"type": "array", "items": {"type": "string"}},
        },
    }
    erased = {"type": "object", "properties": {"contact_id": {"type": "string"}, "erased": {"type": "object"}}}
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
        )
        | {
            "options": {
                "summary": "CORS preflight for the signup form (publishable key in ?key=)",
                "security": [{"publishableKey": []}],
                "responses": {"204": {"description": "Allowed: CORS headers for the key's origins"}}
                | _problems(401, 403),
            }
        },
        "/v1/subscribe/confirm": {
            "get": {
                "summary": "The link in the confirmation email: a page with a button; changes nothing",
                "security": [],
                "parameters": [token_query],
                "responses": {"200": html_page} | _problems(400),
            },
            "post": {
                "summary": "The confirmation page's button: subscribes the address (once)",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {"application/x-www-form-urlencoded": {"schema": token_form}},
                },
                "responses": {"200": html_page} | _problems(400, 413),
            },
        },
        "/webhooks/shopify": _post(
            "Shopify webhooks (X-Shopify-Topic, -Hmac-Sha256, -Shop-Domain, -Webhook-Id)",
            any_object,
            webhook_ok,
            [{"shopifyHmac": []}],
            400,
            401,
            413,
            422,
        ),
        "/webhooks/woocommerce": _post(
            "WooCommerce webhooks (X-WC-Webhook-Topic, -Signature, -Source, -Delivery-ID) and the creation ping",
            any_object,
            webhook_ok,
            [{"wooSignature": []}],
            400,
            401,
            413,
            422,
        ),
        "/webhooks/twilio/calls": {
            "post": {
                "summary": "Twilio call status callback (X-Twilio-Signature): a missed inbound call is call_missed",
                "security": [{"twilioSignature": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["AccountSid", "CallSid", "From", "CallStatus"],
                                "properties": {
                                    name: {"type": "string"}
                                    for name in (
                                        "AccountSid",
                                        "CallSid",
                                        "From",
                                        "To",
                                        "Direction",
                                        "CallStatus",
                                        "DialCallStatus",
                                    )
                                },
                                "additionalProperties": {"type": "string"},
                            }
                        }
                    },
                },
                "responses": webhook_ok | _problems(400, 401, 413),
            }
        },
        "/v1/flows/{flow_id}/enrollments": {
            "parameters": [{"name": "flow_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            **_post(
                "Start a flow for a contact (signed)",
                _ref("EnrollmentIn"),
                outcome,
                signed,
                400,
                401,
                404,
                413,
                415,
                422,
            ),
        },
        "/v1/campaigns": _post(
            "Create a campaign and schedule it (signed); the same definition again is a 200 that changes nothing",
            _ref("Campaign"),
            {
                "202": _json(campaign_view, "Created: its audience pieces are queued"),
                "200": _json(campaign_view, "The same campaign exists: nothing changed"),
            },
            signed,
            400,
            401,
            409,
            413,
            415,
            422,
        ),
        "/v1/campaigns/{campaign_id}": {
            "parameters": [campaign_id],
            "get": {
                "summary": "The campaign's status and how far its audience is resolved (signed)",
                "security": signed,
                "responses": {"200": _json(campaign_view, "The campaign, with `progress`")} | _problems(401, 404),
            },
        },
        **{
            f"/v1/campaigns/{{campaign_id}}/{action}": {
                "parameters": [campaign_id],
                "post": {
                    "summary": summary,
                    "security": signed,
                    "responses": {"200": _json(campaign_view, "The campaign's new status")} | _problems(401, 404, 409),
                },
            }
            for action, summary in (
                ("pause", "Pause a campaign (signed): its sends are held within a minute"),
                ("resume", "Resume a paused campaign (signed): resolution goes on from where it stopped"),
                ("cancel", "Cancel a campaign for good (signed): nothing more of it goes out"),
            )
        },
        "/v1/contacts/{contact_id}": {
            "parameters": [
                {
                    "name": "contact_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "maxLength": CONTACT_ID_MAX, "pattern": CONTACT_ID_PATTERN},
                }
            ],
            "get": {
                "summary": "Export everything held about the contact (signed; GDPR art. 15/20)",
                "security": signed,
                "responses": {"200": _json({"type": "object"}, "The contact, events, runs, messages, addresses")}
                | _problems(401, 404),
            },
            "delete": {
                "summary": "Erase the contact (signed; GDPR art. 17): hashed suppressions and a tombstone remain",
                "security": signed,
                "responses": {"200": _json(erased, "What was deleted, per table")} | _problems(401, 404),
            },
        },
        "/v1/unsubscribe/{token}": {
            "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "summary": "The preference page (the token in every marketing email); changes nothing",
                "security": [],
                "responses": {"200": html_page} | _problems(403, 404),
            },
            "post": {
                "summary": "RFC 8058 one-click unsubscribe, or the preference page's forms (with its CSRF token)",
                "security": [],
                "parameters": [{"name": "m", "in": "query", "required": False, "schema": {"type": "string"}}],
                "requestBody": {
                    "required": False,
                    "content": {"application/x-www-form-urlencoded": {"schema": preference_form}},
                },
                "responses": {"200": html_page} | _problems(400, 403, 404, 413, 422),
            },
        },
        "/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
    }
    documented = {(method.upper(), path) for path, item in paths.items() for method in item if method != "parameters"}
    served = {(route.method, route.path) for route in routes.ROUTES}
    if documented != served:  # one route table: a route added there must be described here
        raise RuntimeError(f"OpenAPI and nudge.routes differ: {sorted(documented ^ served)}")
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
                "twilioSignature": {"type": "apiKey", "in": "header", "name": names.TWILIO_SIGNATURE_HEADER},
            },
        },
    }
