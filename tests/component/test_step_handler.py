"""The step handler on moto, invoked with the Input Scheduler would deliver."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from nudge.domain.predictions import Predictions
from nudge.handlers.step import BadWakeUp
from nudge.local.moto_stack import MotoStack
from nudge.services.daily import Piece
from tests.conftest import ROOT, START
from tests.factories import checkout_started, contact, order_placed


def only_pending_payload(stack: MotoStack) -> dict[str, object]:
    [pending] = stack.pump.pending()
    return pending.payload


def test_the_scheduled_input_has_the_recorded_shape(moto_stack: MotoStack) -> None:
    moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1"))

    payload = only_pending_payload(moto_stack)

    recorded = json.loads((ROOT / "tests" / "events" / "scheduler_wake_up.json").read_text())
    assert payload.keys() == recorded.keys()
    assert payload["seq"] == 1


def test_a_step_fired_twice_sends_one_message(moto_stack: MotoStack) -> None:
    moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1"))
    payload = only_pending_payload(moto_stack)
    moto_stack.clock.set(START + timedelta(hours=1))

    first = moto_stack.fire_step(payload)
    second = moto_stack.fire_step(payload)  # Scheduler delivers at least once

    assert first["sent"] == ["reminder_1"]
    assert second["status"] == "stale"
    assert len(moto_stack.sent_emails()) == 1


def test_two_concurrent_firings_of_one_step_send_once(moto_stack: MotoStack) -> None:
    # Both invocations read the run before either writes: the message claim decides.
    moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1"))
    payload = only_pending_payload(moto_stack)
    moto_stack.clock.set(START + timedelta(hours=1))
    runs = moto_stack.container.runs
    run = moto_stack.container.store.get_run(str(payload["contact_id"]), str(payload["run_id"]))
    assert run is not None

    first = runs.advance(run)
    second = runs.advance(run)  # the same stale snapshot, as a concurrent invocation would hold

    assert first.sent == ["reminder_1"]
    assert second.sent == [] and second.status == "lost_race"
    assert len(moto_stack.sent_emails()) == 1
    # the fired wake-up (seq 1, not deleted here as no pump ran) and ONE next wake-up: the second
    # CreateSchedule for seq 2 hit ConflictException
    assert [p.payload["seq"] for p in moto_stack.pump.pending()] == [1, 2]


def test_an_exited_run_sends_nothing_though_its_schedule_fires(moto_stack: MotoStack) -> None:
    moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1"))
    payload = only_pending_payload(moto_stack)
    no_marketing = contact("bob", email_marketing=False)
    exit_result = moto_stack.call_api("POST", "/v1/events", order_placed("evt_2", "chk_1", no_marketing))
    moto_stack.clock.set(START + timedelta(hours=1))

    outcome = moto_stack.fire_step(payload)

    assert exit_result.body["exited"] == ["abandoned_cart"]
    assert outcome["status"] == "inactive"
    subjects = ["Subject: You left something" in m.raw_data for m in moto_stack.sent_emails()]
    assert subjects == [False]  # only the order's thank-you went out
    # the exit also deleted the pending wake-up from Scheduler
    assert all(p.payload["run_id"] != payload["run_id"] for p in moto_stack.pump.pending())


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "expected a JSON object"),
        ({"run_id": "r1", "seq": 1}, "lacks contact_id"),
        ({"contact_id": "c", "run_id": "r", "seq": "1"}, "seq an integer"),
    ],
)
def test_a_malformed_wake_up_fails_loudly(moto_stack: MotoStack, event: object, message: str) -> None:
    # A failed record: SQS delivers it again, then moves it to the dead-letter queue.
    outcome = moto_stack.fire_step(event)  # type: ignore[arg-type]
    assert outcome["status"] == "error" and BadWakeUp.__name__ in outcome["error"] and message in outcome["error"]


def test_handlers_publish_their_counts_as_emf_totals(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "nudge")
    moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1"))
    payload = only_pending_payload(moto_stack)
    moto_stack.clock.set(START + timedelta(hours=1))
    moto_stack.fire_step(payload)

    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]

    counted = [{k: v for k, v in doc.items() if k.startswith(("Runs", "Messages", "Conv"))} for doc in documents]
    assert counted == [{"RunsStarted": [1.0]}, {"MessagesSent": [1.0]}]  # the request, then the worker
    for doc in documents:  # per flow only with perFlowMetrics (tests/component/test_flow_metrics.py)
        declared = doc["_aws"]["CloudWatchMetrics"][0]
        assert (declared["Namespace"], declared["Dimensions"], doc["service"]) == ("nudge", [["service"]], "nudge")


def test_the_daily_sweep_moves_contacts_whose_stage_changed_with_time(moto_stack: MotoStack) -> None:
    from nudge.handlers import sweep
    from nudge.local.lambda_events import FakeLambdaContext

    order = order_placed("evt_1", "chk_1")
    contact_id = moto_stack.call_api("POST", "/v1/events", order).body["contact_id"]
    assert moto_stack.container.store.get_contact(contact_id).segments[0] == "first_time_buyer"  # type: ignore[union-attr]
    moto_stack.clock.set(START + timedelta(days=61))

    planned = sweep.handler({}, FakeLambdaContext.fresh("nudge-sweep"))
    moto_stack.settle()  # the pieces, off the jobs queue, each in its own invocation of the sweep function

    result = moto_stack.container.daily.status(planned["day"])
    assert (result.reviewed, result.buyers, result.rescored, result.pieces) == (1, 1, 1, 11)
    stored = moto_stack.container.store.get_contact(contact_id)
    assert stored is not None and stored.segments[0] == "at_risk"
    # the only buyer: every cut is its own value, so it is as recent (5) as anyone, and as small (1, 1)
    assert stored.rfm is not None and stored.rfm.code == "511"
    cuts = moto_stack.container.store.get_document("rfm_cuts")
    assert cuts is not None and (cuts["buyers"], cuts["frequency"]) == (1, [1.0, 1.0, 1.0, 1.0])
    model = moto_stack.container.store.get_document("predictions_model")
    assert model is not None and model["reason"] == "predictions need 500 customers with an order; there are 1"

    moto_stack.clock.set(START + timedelta(days=62))
    again = sweep.handler({}, FakeLambdaContext.fresh("nudge-sweep"))
    moto_stack.settle()
    status = moto_stack.container.daily.status(again["day"])
    assert (status.reviewed, status.rescored) == (0, 0)
    assert moto_stack.container.store.get_contact(contact_id).version == stored.version  # type: ignore[union-attr]
    # Predictions as the daily job stores them on a larger base round-trip through the contacts table.
    predicted = Predictions(0.42, 0.7, 0.1, 0.3, 1.2, START + timedelta(days=70), 35.5, 42.6)
    store = moto_stack.container.store
    store.save_contact(replace(stored, predicted=predicted), expected_version=stored.version)
    assert store.get_contact(contact_id).predicted == predicted  # type: ignore[union-attr]


def test_a_jobs_queue_record_that_is_not_a_piece_fails_alone_and_goes_back_to_sqs(moto_stack: MotoStack) -> None:
    from nudge.handlers import sweep
    from nudge.local.lambda_events import FakeLambdaContext, sqs_event

    records = [
        {"MessageId": "m1", "ReceiptHandle": "r1", "Body": "not json"},
        {"MessageId": "m2", "ReceiptHandle": "r2", "Body": json.dumps({"job": "daily", "piece": "x", "day": "d"})},
        {"MessageId": "m3", "ReceiptHandle": "r3", "Body": json.dumps(Piece("copurchases", "2026-11-02").as_payload())},
    ]

    jobs_arn = "arn:aws:sqs:us-east-1:123456789012:nudge-jobs"
    result = sweep.handler(sqs_event(records, jobs_arn), FakeLambdaContext.fresh("nudge-sweep"))

    assert result["batchItemFailures"] == [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]
    assert [o.get("key") for o in result["outcomes"]] == [None, None, "copurchases-0of1-0"]
    assert "piece must be one of" in str(result["outcomes"][1]["error"])


def test_sends_of_unknown_outcome_are_published_per_flow_and_as_one_total_an_alarm_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from collections import Counter, defaultdict

    from nudge.handlers import flow_metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    counts: flow_metrics.FlowCounts = defaultdict(Counter)
    counts["welcome"][flow_metrics.UNKNOWN] = 2
    counts["abandoned_cart"][flow_metrics.UNKNOWN] = 1

    flow_metrics.publish(counts)

    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    totals = [d for d in documents if "flow" not in d]
    assert [(t["service"], t["MessagesUnknown"]) for t in totals] == [("nudge", [3.0])]
    # the alarm in infra/constructs/monitoring.py names exactly this metric and dimension
    assert totals[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]


def test_an_audience_upload_is_work_the_step_handler_takes(moto_stack: MotoStack) -> None:
    from nudge.domain.model import Contact
    from nudge.ports import StepWakeUp

    audiences = moto_stack.container.audiences
    assert audiences is not None
    who = Contact("c1", email="bo@example.com", ads_marketing=True)
    assert audiences.change("cart_retargeting_meta", "add", "c1", who) is None

    outcome = moto_stack.fire_step(StepWakeUp.for_audience("cart_retargeting_meta").as_payload())

    # No Meta token on moto: the upload is refused before any request, recorded, and stays pending.
    assert outcome["run_id"] == "audience:cart_retargeting_meta"
    [(audience, error)] = outcome["failed"]
    assert (audience, error) == (
        "cart_retargeting_meta",
        "meta: no access_token in the audience secret (docs/audiences.md)",
    )
    assert audiences.sync("cart_retargeting_meta", dry_run=True).added == 1
    refused = moto_stack.fire_step({**StepWakeUp.for_audience("x").as_payload(), "audience": 7})
    assert refused["status"] == "error" and "audience must be an audience id" in str(refused["error"])
