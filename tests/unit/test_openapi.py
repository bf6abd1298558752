"""The OpenAPI document: valid 3.1, built from the request models, and the copy in docs/ is current."""

from __future__ import annotations

import json

from nudge.openapi import document
from nudge.routes import ROUTES
from tests.conftest import ROOT


def test_the_committed_copy_matches_the_generated_document() -> None:
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())

    # If this fails, regenerate the copy: nudge openapi > docs/openapi.json
    assert committed == json.loads(json.dumps(document()))


def test_every_routed_operation_is_documented() -> None:
    documented = {
        (method.upper(), path)
        for path, item in document()["paths"].items()
        for method in item
        if method != "parameters"
    }
    routed = {(route.method, route.path) for route in ROUTES}

    assert routed == documented


def test_it_is_openapi_3_1_and_every_ref_resolves() -> None:
    doc = document()
    text = json.dumps(doc)
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}

    assert doc["openapi"] == "3.1.0"
    assert refs <= doc["components"]["schemas"].keys()
