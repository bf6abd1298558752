"""schemathesis against the OpenAPI document, through the local gateway and the real handlers on moto.

Bounded and deterministic: a few derandomized examples per operation. The only check is the one the
issue asks for — no 5xx, whatever the input; 4xx answers must still be problems (the document says so).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from nudge.clocks import VirtualClock
from nudge.local.gateway import wsgi_app
from nudge.local.moto_stack import MotoStack, start_moto_stack
from nudge.openapi import document
from nudge.ports import KeyKind

schema = schemathesis.openapi.from_dict(document())


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[MotoStack, str, str]]:
    moto = start_moto_stack(VirtualClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC)))
    secret, _ = moto.container.keys.create(KeyKind.SECRET, "schemathesis")
    public, _ = moto.container.keys.create(KeyKind.PUBLISHABLE, "schemathesis", origins=["https://shop.example"])
    try:
        yield moto, secret, public
    finally:
        moto.stop()


@pytest.mark.xdist_group("schemathesis")
@schema.parametrize()
@settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_the_api_fail(case: schemathesis.Case, stack: tuple[MotoStack, str, str]) -> None:
    _, secret, public = stack
    headers = {}
    if case.path in ("/v1/track", "/v1/identify", "/v1/alias", "/v1/batch"):
        headers["Authorization"] = f"Bearer {secret}"  # a live key, so the bodies get past authentication
    if case.path == "/v1/subscribe":
        case.query = {**(case.query or {}), "key": public}
    response = case.call(app=wsgi_app, headers=headers)
    case.validate_response(response, checks=[not_a_server_error])
