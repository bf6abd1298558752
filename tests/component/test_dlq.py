"""`nudge dlq redrive` on moto: nudge work goes back to the work queue; other dead letters stay, explained."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from nudge.cli.dlq import classify, redrive
from nudge.local.moto_stack import MotoStack
from tests.conftest import START
from tests.factories import checkout_started


def test_redrive_replays_a_dead_wake_up_once_and_keeps_a_lambda_failure_record(moto_stack: MotoStack) -> None:
    # Given a cart run whose first reminder's wake-up failed for an hour and went to the dead-letter queue
    moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1"))
    [pending] = moto_stack.pump.pending()
    moto_stack.container.scheduler.cancel(pending.name)
    sqs = moto_stack.session.client("sqs")
    dlq = sqs.get_queue_url(QueueName="nudge-scheduler-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(pending.payload))
    failure = {
        "requestContext": {
            "functionArn": "arn:aws:lambda:us-east-1:1:function:nudge-dev-sweep",
            "condition": "RetriesExhausted",
        },
        "requestPayload": {},
    }
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(failure))
    moto_stack.clock.set(START + timedelta(hours=2))

    # When the operator replays it (twice, as a nervous operator might)
    report = redrive(sqs, dlq, moto_stack.settings.work_queue_url)
    again = redrive(sqs, dlq, moto_stack.settings.work_queue_url)
    moto_stack.settle()

    # Then the reminder goes out once, and the sweep's failure record stays in the queue, explained
    assert report.replayed == 1 and again.replayed == 0
    assert [(k.kind, k.detail) for k in report.kept] == [
        ("lambda_failure", "nudge-dev-sweep failed (RetriesExhausted); re-invoke it with requestPayload")
    ]
    assert ["You left something" in m.raw_data for m in moto_stack.sent_emails()] == [True]


def test_redrive_puts_a_dead_daily_piece_back_on_the_jobs_queue(moto_stack: MotoStack) -> None:
    sqs = moto_stack.session.client("sqs")
    dlq = sqs.get_queue_url(QueueName="nudge-scheduler-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"job": "daily", "piece": "base", "day": "2026-11-02"}))
    settings = moto_stack.settings
    assert settings.jobs_queue_url is not None

    report = redrive(sqs, dlq, settings.work_queue_url, settings.jobs_queue_url)
    moto_stack.settle()  # the sweep function does the piece: the base pass, then its eight scoring pieces

    assert report.replayed == 1
    assert moto_stack.container.daily.status("2026-11-02").pieces == 9


def test_redrive_puts_a_dead_campaign_piece_on_the_campaigns_queue(moto_stack: MotoStack) -> None:
    sqs = moto_stack.session.client("sqs")
    dlq = sqs.get_queue_url(QueueName="nudge-scheduler-dlq")["QueueUrl"]
    piece = {"job": "campaign", "campaign": "news", "segment": 4, "of": 8, "epoch": 0}
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(piece))
    settings = moto_stack.settings

    report = redrive(
        sqs, dlq, settings.work_queue_url, settings.jobs_queue_url, campaigns_url=settings.campaigns_queue_url
    )

    assert report.replayed == 1
    assert settings.campaigns_queue_url is not None
    (message,) = sqs.receive_message(QueueUrl=settings.campaigns_queue_url).get("Messages", [])
    assert json.loads(message["Body"]) == piece


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"job": "campaign", "campaign": "black_friday", "segment": 0, "of": 8}, "campaign piece: black_friday"),
        ({"job": "disconnect", "scope": "shopify:a.myshopify.com"}, "disconnect piece: shopify:a.myshopify.com"),
        ({"job": "notice", "change": "back_in_stock:v1:2026-11-02"}, "notice piece: back_in_stock:v1:2026-11-02"),
    ],
)
def test_every_jobs_queue_piece_goes_back_to_the_jobs_queue(body: dict[str, object], detail: str) -> None:
    assert classify(json.dumps(body)) == ("piece", body, detail)
