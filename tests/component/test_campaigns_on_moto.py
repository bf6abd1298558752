"""Campaigns on moto through the real handlers (ADR 0019): the signed API, the jobs queue's pieces in the
sweep function, the worker's sends at the SES rate; bad requests are problems that write nothing."""

from __future__ import annotations

import email
from datetime import timedelta
from typing import Any

import pytest

from nudge.domain.model import MessageStatus
from nudge.local.moto_stack import MotoStack

NEWSLETTER: dict[str, Any] = {
    "id": "news",
    "name": "News",
    "audience": {"exclude_tags": ["no_newsletter"]},
    "email": {"template": "campaigns/newsletter", "subject": "Hello {{ contact.first_name }}"},
}


@pytest.fixture
def stack(moto_stack: MotoStack) -> MotoStack:
    """Six contacts through the signed API: five consenting, one who never said yes."""
    for i in range(6):
        contact = {"email": f"p{i}@example.com", "first_name": f"P{i}", "email_marketing": i < 5}
        assert moto_stack.call_api("POST", "/v1/contacts", contact).status == 200
    moto_stack.requests.counts.clear()
    return moto_stack


def campaign_messages(stack: MotoStack) -> list[Any]:
    store: Any = stack.container.store
    return [m for m in store.all_messages() if m.flow_id == "campaign.news"]


def test_a_campaign_created_through_the_api_is_sent_once_to_each_consenting_contact(stack: MotoStack) -> None:
    created = stack.call_api("POST", "/v1/campaigns", NEWSLETTER)
    again = stack.call_api("POST", "/v1/campaigns", NEWSLETTER)
    stack.pump.run_until(stack.clock.now() + timedelta(minutes=2))  # the pieces (sweep), then the sends (worker)

    assert (created.status, created.body["status"]) == (202, "scheduled")
    assert again.status == 200  # the same definition: nothing queued again
    recipients = sorted(email["destinations"][0] for email in _sent(stack))
    assert recipients == [f"p{i}@example.com" for i in range(5)]
    assert {m.status for m in campaign_messages(stack)} == {MessageStatus.SENT}
    status = stack.call_api("GET", "/v1/campaigns/news")
    assert status.body["status"] == "sent"
    assert status.body["progress"] | {} == {
        "status": "sent",
        "segments_done": 8,
        "segments": 8,
        "contacts": 6,
        "recipients": 5,
        "unreachable": 1,
        "holdout": 0,
    }


def test_pause_through_the_api_holds_every_send_and_cancel_ends_them(stack: MotoStack) -> None:
    stack.call_api("POST", "/v1/campaigns", NEWSLETTER, settle=False)
    stack.campaigns.drain()  # the pieces start the runs; their first steps are on the work queue
    paused = stack.call_api("POST", "/v1/campaigns/news/pause", settle=False)
    stack.pump.run_until(stack.clock.now() + timedelta(minutes=20))

    assert paused.body["status"] == "paused"
    assert _sent(stack) == []

    cancelled = stack.call_api("POST", "/v1/campaigns/news/cancel")
    stack.pump.run_until(stack.clock.now() + timedelta(minutes=20))
    resumed = stack.call_api("POST", "/v1/campaigns/news/resume")

    assert cancelled.body["status"] == "cancelled" and _sent(stack) == []
    assert {(m.status, m.reason) for m in campaign_messages(stack)} == {(MessageStatus.SKIPPED, "flow_removed")}
    assert (resumed.status, resumed.headers.get("Content-Type")) == (409, "application/problem+json")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "problem"),
    [
        ("POST", "/v1/campaigns", {**NEWSLETTER, "email": None}, 422, "validation"),
        (
            "POST",
            "/v1/campaigns",
            {**NEWSLETTER, "email": {"template": "nope/nope", "subject": "x"}},
            422,
            "validation",
        ),
        ("POST", "/v1/campaigns", {**NEWSLETTER, "audience": {"segments": ["ghosts"]}}, 422, "validation"),
        ("POST", "/v1/campaigns", {**NEWSLETTER, "schedule": {"local_time": "09:00"}}, 422, "validation"),
        ("POST", "/v1/campaigns/nobody/pause", None, 404, "not-found"),
        ("GET", "/v1/campaigns/NOT-AN-ID", None, 404, "not-found"),
    ],
)
def test_bad_campaign_requests_are_problems_and_write_nothing(
    stack: MotoStack, method: str, path: str, body: Any, status: int, problem: str
) -> None:
    answer = stack.call_api(method, path, body)

    assert answer.status == status and answer.body["type"] == f"urn:nudge:problem:{problem}"
    assert stack.container.store.get_document("campaign.news") is None
    assert campaign_messages(stack) == []


def test_an_unsigned_campaign_request_is_refused(stack: MotoStack) -> None:
    assert stack.call_api("POST", "/v1/campaigns", NEWSLETTER, sign=False).status == 401
    assert stack.container.store.get_document("campaign.news") is None


def _sent(stack: MotoStack) -> list[dict[str, Any]]:
    return [{"destinations": m.destinations} for m in stack.sent_emails()]


def test_pieces_delivered_again_after_the_campaign_went_out_send_nothing_twice(stack: MotoStack) -> None:
    from nudge.services.campaigns import CampaignPiece

    stack.call_api("POST", "/v1/campaigns", NEWSLETTER)
    stack.pump.run_until(stack.clock.now() + timedelta(minutes=2))
    first = len(stack.sent_emails())

    # Given every piece comes back (SQS at-least-once, a crash before the delete, a DLQ redrive)
    jobs: Any = stack.container.jobs
    jobs.put([CampaignPiece("news", 0, 8, fan_out=True).as_payload()])
    jobs.put([CampaignPiece("news", s, 8).as_payload() for s in range(8)])
    stack.pump.run_until(stack.clock.now() + timedelta(minutes=10))

    assert first == len(stack.sent_emails()) == 5
    assert len(campaign_messages(stack)) == 5


def test_an_ab_campaign_on_moto_decides_on_the_jobs_queue_and_sends_the_winner_to_the_rest(stack: MotoStack) -> None:
    variants = [{"id": "a", "subject": "Subject A"}, {"id": "b", "subject": "Subject B"}]
    ab = {**NEWSLETTER, "ab_test": {"variants": variants, "test_percent": 50, "wait": "1h"}, "holdout": 20}
    assert stack.call_api("POST", "/v1/campaigns", ab).status == 202
    stack.pump.run_until(stack.clock.now() + timedelta(minutes=30))  # the test's share and the holdout
    tested = len(stack.sent_emails())

    stack.pump.run_until(stack.clock.now() + timedelta(hours=2))  # the decision, then the rest
    status = stack.call_api("GET", "/v1/campaigns/news").body
    runs = [r for r in stack.container.store.all_runs() if r.flow_id == "campaign.news"]  # type: ignore[attr-defined]
    groups = {r.contact_id: r.variants["ab"] for r in runs}
    by_subject = [str(email.message_from_string(m.raw_data)["Subject"]) for m in stack.sent_emails()]

    assert status["status"] == "sent" and status["progress"]["ab_test"]["winner"] == "a"  # no clicks: the first
    assert len(runs) == 5 and tested == sum(g in ("a", "b") for g in groups.values())
    assert len(by_subject) == sum(g != "holdout" for g in groups.values())  # once each, none to the holdout
    assert by_subject.count("Subject B") == sum(g == "b" for g in groups.values())
    assert status["progress"]["holdout"] == sum(g == "holdout" for g in groups.values())


def test_a_failed_campaign_piece_comes_back_within_a_minute_on_its_own_queue(
    stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nudge import names

    campaigns = stack.container.campaigns
    work = campaigns.work
    failures: list[str] = []

    def fails_twice(piece: Any, deadline: Any = None) -> Any:
        if not piece.fan_out and piece.segment == 3 and len(failures) < 2:
            failures.append(piece.key)
            raise RuntimeError("DynamoDB answered 500")
        return work(piece, deadline)

    monkeypatch.setattr(campaigns, "work", fails_twice)
    started = stack.clock.now()
    stack.call_api("POST", "/v1/campaigns", NEWSLETTER, settle=False)
    stack.campaigns.drain()  # the fan-out, then the segments' pieces: segment 3 fails once

    assert failures == ["segment-3of8"]
    due = stack.campaigns.next_due()  # 10 s later, not the queue's 900 s visibility timeout
    assert due is not None and due - started <= timedelta(seconds=names.CAMPAIGN_RETRY_SECONDS[0] + 1)
    stack.pump.run_until(started + timedelta(minutes=2))  # its second failure waits 20 s, then it works

    assert len(failures) == 2
    assert sorted(email["destinations"][0] for email in _sent(stack)) == [f"p{i}@example.com" for i in range(5)]
    assert stack.call_api("GET", "/v1/campaigns/news").body["status"] == "sent"
