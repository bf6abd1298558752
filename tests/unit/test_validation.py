"""The bundle's compiled checks (pydantic_core over a pickled core schema) decide as pydantic does: the same
records from the same bodies, the same errors from bad ones (ADR 0020, Decision 13)."""

from __future__ import annotations

import importlib
import pickle
from typing import Any

import pytest
import yaml
from pydantic_core import SchemaSerializer, SchemaValidator, ValidationError

from nudge import compiled_catalog
from nudge.domain import validation
from tests.conftest import ROOT


def _kind(name: str) -> type:
    module, _, qualname = name.partition(":")
    kind: type = getattr(importlib.import_module(module), qualname)
    return kind


def _files(directory: str) -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted((ROOT / directory).glob("*.yaml"))]


BODIES: dict[str, list[Any]] = {
    "ContactIn": [
        {"email": " Jo@Example.COM ", "phone": "+1 (415) 555-0123", "timezone": "Europe/Paris", "properties": {"a": 1}},
        {"id": "c_1", "first_name": "Jo\n", "ads_marketing": True},
        {"timezone": "Mars/Base", "zz": 1},
        {},
        [],
    ],
    "EventIn": [
        {
            "id": "e1",
            "type": "checkout_started",
            "contact": {"email": "jo@example.com"},
            "occurred_at": "2026-11-02T08:59:00Z",
        },
        {"id": "e1", "type": "Checkout", "contact": {"phone": "4155550123"}, "occurred_at": "2026-11-02T08:59:00"},
        {"id": "", "type": "x", "contact": {}, "properties": {"n": float("inf")}},
        "not an object",
    ],
    "EnrollmentIn": [
        {"id": "n1", "contact": {"id": "c1"}, "properties": {"course": "pottery"}},
        {"id": "n1", "contact": {"id": "c 1"}, "occurred_at": "yesterday"},
    ],
    "SubscribeIn": [
        {"email": "jo@example.com", "first_name": "Jo", "source": "footer", "notify_me": "gid:1"},
        {"email": 3, "source": "no spaces allowed", "sms_marketing": "maybe"},
        {"email": "jo@example.com", "website": "http://spam.example"},
    ],
    "TrackCall": [
        {
            "userId": " u_42 ",
            "event": "Order Completed",
            "timestamp": "2026-11-02T08:59:00+01:00",
            "context": {"traits": {"email": "Gus@Example.com", "firstName": "Gus", "plan": "pro"}, "ip": "1.2.3.4"},
            "properties": {"revenue": 24.0, "gift": None},
            "integrations": {"All": True},
            "channel": None,
        },
        {"event": "x", "context": {"traits": {"email": "nope", "lastName": "A\nB"}}},
        {"userId": "u 1", "event": "", "timestamp": "2026-11-02T08:59:00", "type": "identify"},
        [],
    ],
    "IdentifyCall": [
        {"anonymousId": "anon-7", "traits": {"last_name": "Lee", "phone": "+1 415 555 0123", "company": {"n": 1}}},
        {"userId": "u_1", "traits": {"pad": "x" * 70_000}},
    ],
    "AliasCall": [
        {"previousId": "anon-7", "userId": "u_9", "extra": {"k": 1}},
        {"previousId": "", "type": "track"},
    ],
    "BatchCall": [
        {"batch": [{"type": "track", "userId": "u", "event": "x"}], "sentAt": "2026-11-02T08:59:01Z"},
        {"batch": []},
        {"batch": [1]},
    ],
    "Campaign": [
        *_files("campaigns"),
        {"id": "X", "name": "", "email": {"template": "t", "subject": "s"}, "schedule": {"at": "2026-12-01T09:00:00"}},
        {"id": "x", "name": "X", "ab_test": {"variants": [{"id": "rest"}, {"id": "rest"}]}},
    ],
    "Flow": [
        *_files("flows"),
        {"id": "f", "name": "F", "trigger": {"event": "x"}, "steps": [{"id": "s", "type": "teleport"}]},
        {"id": "f", "name": "F", "trigger": {"segment": "vip"}, "steps": [{"id": "e", "type": "end", "next": "e"}]},
    ],
}


def _outcome(check: Any, body: Any) -> Any:
    try:
        return ("ok", check(body))
    except ValidationError as exc:
        return ("refused", [(e["loc"], e["type"], e["msg"]) for e in exc.errors(include_url=False)])


@pytest.mark.parametrize("name", compiled_catalog.CHECKED)
def test_a_compiled_check_decides_as_pydantic_does(name: str) -> None:
    kind = _kind(name)
    schema = pickle.loads(validation.compiled(kind))  # what the bundle stores, read back as a function does
    compiled, serializer = SchemaValidator(schema), SchemaSerializer(schema)
    bodies = BODIES[kind.__name__]
    assert bodies
    outcomes = []
    pydantic = validation.adapter(kind)
    for body in bodies:
        ours, theirs = _outcome(compiled.validate_python, body), _outcome(pydantic.validate_python, body)
        assert ours == theirs, body
        outcomes.append(ours[0])
        if ours[0] == "ok":
            dumped = pydantic.dump_python(ours[1], mode="json", exclude_none=True)
            assert serializer.to_python(ours[1], mode="json", exclude_none=True) == dumped
    assert "ok" in outcomes and "refused" in outcomes  # both ways of each record were compared


def test_every_request_body_the_api_validates_has_a_compiled_check() -> None:
    from nudge.handlers import api, ingest, subscribe

    checked = set(compiled_catalog.CHECKED)
    for module in (ingest, subscribe, api):
        for kind in (
            getattr(module, name)
            for name in (
                *("EventIn", "ContactIn", "EnrollmentIn", "SubscribeIn", "Campaign"),
                *("TrackCall", "IdentifyCall", "AliasCall", "BatchCall"),
            )
            if hasattr(module, name)
        ):
            assert validation.key(kind) in checked
