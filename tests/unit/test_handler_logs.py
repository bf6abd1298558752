"""The handlers' own JSON logger and EMF documents write what Powertools wrote (ADR 0020: no Powertools import in
the functions that do not route HTTP), so log queries, metric filters and alarms read them alike."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools import Logger as PowertoolsLogger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from nudge.handlers import flow_metrics, logs
from nudge.local.lambda_events import FakeLambdaContext


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _invoke(logger: Any, context: FakeLambdaContext) -> None:
    @logger.inject_lambda_context(clear_state=True)
    def handler(event: Any, context: Any) -> None:
        logger.info("work done", extra={"run_id": "r1", "seq": 2, "skipped": None})
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            logger.exception("unhandled error", extra={"index": 3})
        logger.warning("skipped an SNS record")

    handler({}, context)


def test_a_line_has_the_fields_powertools_wrote(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
    context = FakeLambdaContext.fresh("nudge-step")
    capsys.readouterr()
    _invoke(PowertoolsLogger(service="compare-powertools"), context)
    theirs = _lines(capsys)
    _invoke(logs.Logger(service="compare-ours"), context)
    ours = _lines(capsys)

    assert len(ours) == len(theirs) == 3
    for mine, powertools in zip(ours, theirs, strict=True):
        powertools.pop("stack_trace", None)  # the one field left out: `exception` has the same frames
        assert list(mine) == list(powertools)
        differ = {"timestamp", "location", "exception", "service", "cold_start"}
        assert {k: v for k, v in mine.items() if k not in differ} == {
            k: v for k, v in powertools.items() if k not in differ
        }
        assert mine["location"].startswith("handler:") and powertools["location"].startswith("handler:")
        assert len(mine["timestamp"]) == len(powertools["timestamp"])  # 2026-12-03 21:22:59,131+0000
    assert ours[0]["run_id"] == "r1" and "skipped" not in ours[0]  # None values are left out, as Powertools does
    assert ours[1]["exception_name"] == "ZeroDivisionError"
    assert ours[1]["exception"].startswith("Traceback") and ours[1]["exception"].endswith("division by zero")
    assert ours[0]["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert ours[0]["function_memory_size"] == 512


def test_cold_start_is_true_once_and_the_context_is_the_invocations(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    monkeypatch.setattr(logs, "_cold_start", True)
    logger = logs.Logger(service="cold-start-check")
    first, second = FakeLambdaContext.fresh("nudge-step"), FakeLambdaContext.fresh("nudge-step")
    capsys.readouterr()
    _invoke(logger, first)
    _invoke(logger, second)
    lines = [line for line in _lines(capsys) if line["message"] == "work done"]

    assert [line["cold_start"] for line in lines] == [True, False]
    assert [line["function_request_id"] for line in lines] == [first.aws_request_id, second.aws_request_id]


def test_child_loggers_write_through_the_same_json_handler(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    logs.Logger(service="parent-check")
    capsys.readouterr()
    logging.getLogger("parent-check.sqs_batch").warning("record failed", extra={"message_id": "m1"})
    [line] = _lines(capsys)
    assert line["message"] == "record failed" and line["message_id"] == "m1" and line["level"] == "WARNING"


def test_the_emf_document_is_the_one_powertools_printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    counts = {"RunsStarted": 2, "Sent": 1, "Failed": 0}
    capsys.readouterr()
    metrics = EphemeralMetrics(namespace="nudge")
    metrics.add_dimension(name="flow", value="abandoned_cart")
    for name, count in sorted(counts.items()):
        if count:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    metrics.flush_metrics()
    [theirs] = _lines(capsys)
    flow_metrics._flush("nudge", "flow", "abandoned_cart", counts)
    [ours] = _lines(capsys)

    assert isinstance(ours["_aws"].pop("Timestamp"), int)
    theirs["_aws"].pop("Timestamp")
    assert json.dumps(ours) == json.dumps(theirs)  # the same keys, in the same order


@pytest.mark.parametrize(
    ("disabled", "dev", "printed"),
    [("true", None, False), ("false", None, True), (None, None, True), (None, "true", False), ("false", "true", True)],
)
def test_metrics_are_silenced_as_powertools_silences_them(
    disabled: str | None,
    dev: str | None,
    printed: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in (("POWERTOOLS_METRICS_DISABLED", disabled), ("POWERTOOLS_DEV", dev)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    capsys.readouterr()
    flow_metrics._flush("nudge", "service", "nudge", {"Sent": 1})
    assert bool(capsys.readouterr().out) is printed


def test_in_lambda_the_collector_is_paused_for_the_cold_start_and_resumes_before_the_first_request(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import gc

    from nudge.handlers import collector

    def fresh_process() -> None:
        monkeypatch.setattr(logs, "_cold_start", True)
        monkeypatch.setattr(collector, "_paused", False)
        monkeypatch.setattr(collector, "_resumed", False)

    built: list[bool] = []  # whether the collector ran while the function's warm() built

    def warm() -> None:
        built.append(gc.isenabled())

    def broken_warm() -> None:
        raise RuntimeError("the catalog does not load")

    logger = logs.Logger(service="collector-check")

    def function(build: Any) -> Any:
        @logger.inject_lambda_context(clear_state=True, cold_start=build)
        def handler(event: Any, context: Any) -> bool:
            return gc.isenabled()  # what the request runs with

        return handler

    try:
        fresh_process()
        monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
        collector.pause_for_cold_start()  # not Lambda (tests, the CLI): nothing changes, warm() is not called
        assert gc.isenabled() and not collector.paused()
        assert function(warm)(None, FakeLambdaContext.fresh("nudge-step")) is True and built == []

        fresh_process()
        monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.12")
        collector.pause_for_cold_start()
        assert not gc.isenabled() and collector.paused()
        frozen = gc.get_freeze_count()
        handler = function(warm)
        # The first invocation builds with the collector paused, freezes what the cold start made, and runs
        # its request with the collector on; later ones only run.
        assert handler(None, FakeLambdaContext.fresh("nudge-step")) is True
        assert built == [False] and not collector.paused() and gc.get_freeze_count() > frozen
        assert handler(None, FakeLambdaContext.fresh("nudge-step")) is True and built == [False]
        collector.pause_for_cold_start()  # a warm process never pauses again: its cold start is over
        assert gc.isenabled()

        # A build that fails is logged; the collector resumes and the request runs (and builds again).
        fresh_process()
        collector.pause_for_cold_start()
        with caplog.at_level("ERROR", logger="nudge.handlers.collector"):
            assert function(broken_warm)(None, FakeLambdaContext.fresh("nudge-step")) is True
        assert not collector.paused()
        (record,) = [r for r in caplog.records if r.name == "nudge.handlers.collector"]
        assert record.getMessage().startswith("cold start:") and record.exc_info is not None
        assert "the catalog does not load" in str(record.exc_info[1])
    finally:
        gc.unfreeze()
        gc.enable()
