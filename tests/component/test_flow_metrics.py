"""CloudWatch EMF from every handler that moves runs or hears back about messages, on moto: totals always,
per flow when the stage asks for it (`perFlowMetrics`)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from nudge import names
from nudge.handlers import feedback
from nudge.local.lambda_events import FakeLambdaContext
from nudge.local.moto_stack import MotoStack
from tests.component.test_unsubscribe import last_mail, unsubscribe_path
from tests.component.test_webhooks import fixture, shopify
from tests.conftest import START
from tests.events_helpers import ses_event
from tests.factories import checkout_started

TOTAL = "(all flows)"


@pytest.fixture(params=[True], ids=["per-flow"])
def emf(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "nudge")
    monkeypatch.setenv(names.ENV_PER_FLOW_METRICS, "true" if request.param else "false")

    def documents() -> list[tuple[str, dict[str, list[float]]]]:
        found = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
        metrics = [{m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]} for doc in found]
        dimensions = [doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for doc in found]
        assert all(d in ([["flow"]], [["service"]]) for d in dimensions)  # one dimension each, never both
        return [
            (doc.get("flow", TOTAL), {n: doc[n] for n in sorted(ns)}) for doc, ns in zip(found, metrics, strict=True)
        ]

    return documents


def test_a_shopify_checkout_is_counted_like_a_signed_event(moto_stack: MotoStack, emf) -> None:  # type: ignore[no-untyped-def]
    emf()
    shopify(moto_stack, "checkouts/create", fixture("shopify/checkouts_create.json"), "wh-chk-1")

    assert emf() == [("abandoned_cart", {"RunsStarted": [1.0]}), (TOTAL, {"RunsStarted": [1.0]})]


@pytest.mark.parametrize("emf", [False], ids=["totals-only"], indirect=True)
def test_by_default_only_the_totals_are_published(moto_stack: MotoStack, emf) -> None:  # type: ignore[no-untyped-def]
    emf()
    shopify(moto_stack, "checkouts/create", fixture("shopify/checkouts_create.json"), "wh-chk-1")

    assert emf() == [(TOTAL, {"RunsStarted": [1.0]})]  # one custom metric, however many flows (docs/deploy.md)


def test_feedback_and_unsubscribes_are_counted_per_flow_once(moto_stack: MotoStack, emf) -> None:  # type: ignore[no-untyped-def]
    bob = moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1")).body["contact_id"]
    moto_stack.pump.run_until(START + timedelta(hours=1))
    [reminder] = [m for m in moto_stack.container.store.messages_for(bob) if m.provider_id]
    emf()

    for name in ("ses_delivery", "ses_open", "ses_open"):  # SNS redelivers: the second open counts no more
        feedback.handler(ses_event(name, str(reminder.provider_id)), FakeLambdaContext.fresh("nudge-feedback"))
    moto_stack.call_unsubscribe("POST", unsubscribe_path(last_mail(moto_stack)), "List-Unsubscribe=One-Click")

    assert emf() == [
        ("abandoned_cart", {"Delivered": [1.0]}),
        (TOTAL, {"Delivered": [1.0]}),
        ("abandoned_cart", {"Opened": [1.0]}),
        # The open is engagement: an email_opened event for Bob, which (re)starts his sunset clock.
        ("sunset", {"RunsStarted": [1.0]}),
        (TOTAL, {"Opened": [1.0], "RunsStarted": [1.0]}),
        ("abandoned_cart", {"Unsubscribes": [1.0]}),
        (TOTAL, {"Unsubscribes": [1.0]}),
    ]
