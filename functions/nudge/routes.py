"""Every HTTP route nudge serves, once: the CDK API, the local gateway (`nudge serve`, tests), the OpenAPI
document, the infra test and the fuzzer all read this table.

A path is written as API Gateway writes resources, with `{name}` for a path parameter.
"""

from __future__ import annotations

import re

from nudge import names
from nudge.domain.frozen import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: str  # a names.*_HANDLER entry point
    auth: str  # how a caller is authenticated: "signed", "write-key", "publishable-key", "webhook", "token", "public"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters if (method, path) is this route; else None."""
        if method != self.method:
            return None
        found = _pattern(self.path).fullmatch(path)
        return found.groupdict() if found else None


def _pattern(template: str) -> re.Pattern[str]:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(regex)


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/events", names.INGEST_HANDLER, "signed"),
    Route("POST", "/v1/contacts", names.INGEST_HANDLER, "signed"),
    Route("POST", "/v1/flows/{flow_id}/enrollments", names.INGEST_HANDLER, "signed"),
    Route("GET", "/v1/contacts/{contact_id}", names.INGEST_HANDLER, "signed"),  # export
    Route("DELETE", "/v1/contacts/{contact_id}", names.INGEST_HANDLER, "signed"),  # erase
    Route("POST", "/v1/campaigns", names.INGEST_HANDLER, "signed"),  # create (and schedule) a campaign
    Route("GET", "/v1/campaigns/{campaign_id}", names.INGEST_HANDLER, "signed"),
    Route("POST", "/v1/campaigns/{campaign_id}/pause", names.INGEST_HANDLER, "signed"),
    Route("POST", "/v1/campaigns/{campaign_id}/resume", names.INGEST_HANDLER, "signed"),
    Route("POST", "/v1/campaigns/{campaign_id}/cancel", names.INGEST_HANDLER, "signed"),
    Route("POST", "/webhooks/shopify", names.WEBHOOKS_HANDLER, "webhook"),
    Route("POST", "/webhooks/woocommerce", names.WEBHOOKS_HANDLER, "webhook"),
    Route("POST", "/webhooks/twilio/calls", names.WEBHOOKS_HANDLER, "webhook"),  # missed calls (signed)
    Route("POST", "/v1/track", names.API_HANDLER, "write-key"),
    Route("POST", "/v1/identify", names.API_HANDLER, "write-key"),
    Route("POST", "/v1/alias", names.API_HANDLER, "write-key"),
    Route("POST", "/v1/batch", names.API_HANDLER, "write-key"),
    Route("GET", "/v1/openapi.json", names.API_HANDLER, "public"),
    # The function answers CORS itself (per publishable key's origins), preflight included.
    Route("POST", "/v1/subscribe", names.SUBSCRIBE_HANDLER, "publishable-key"),
    Route("OPTIONS", "/v1/subscribe", names.SUBSCRIBE_HANDLER, "publishable-key"),
    Route("GET", "/v1/subscribe/confirm", names.SUBSCRIBE_HANDLER, "token"),  # shows the page
    Route("POST", "/v1/subscribe/confirm", names.SUBSCRIBE_HANDLER, "token"),  # its button confirms
    # Public: the signed token in the path is the whole authorization.
    Route("GET", "/v1/unsubscribe/{token}", names.UNSUBSCRIBE_HANDLER, "token"),
    Route("POST", "/v1/unsubscribe/{token}", names.UNSUBSCRIBE_HANDLER, "token"),
)


def find(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route serving (method, path) and its path parameters, as API Gateway would match them."""
    for route in ROUTES:
        if (params := route.match(method, path)) is not None:
            return route, params
    return None
