"""The feedback handler on moto: SES events via SNS block addresses and are recorded once per message."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from nudge.domain.model import Channel, Message, MessageStatus
from nudge.domain.suppression import address_key
from nudge.handlers import feedback
from nudge.handlers.sns import parse_timestamp
from nudge.local.lambda_events import FakeLambdaContext
from nudge.local.moto_stack import MotoStack
from nudge.services.feedback import FEEDBACK_PATIENCE, MessageNotFoundYet
from tests.conftest import START
from tests.events_helpers import ses_event
from tests.factories import checkout_started, contact, order_placed, subscribed


def deliver(stack: MotoStack, name: str, provider_id: str) -> dict[str, int]:
    result: dict[str, int] = feedback.handler(ses_event(name, provider_id), FakeLambdaContext.fresh("nudge-feedback"))
    return result


def messages(stack: MotoStack, contact_id: str) -> dict[str, Message]:
    return {m.step_id: m for m in stack.container.store.messages_for(contact_id)}


def start_cart_and_send_first_reminder(stack: MotoStack) -> tuple[str, Message]:
    result = stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1"))
    stack.pump.run_until(START + timedelta(hours=1))
    contact_id = result.body["contact_id"]
    first = messages(stack, contact_id)["reminder_1"]
    assert first.status is MessageStatus.SENT and first.provider_id
    return contact_id, first


def test_a_permanent_bounce_stops_the_next_step_for_that_address(moto_stack: MotoStack) -> None:
    contact_id, first = start_cart_and_send_first_reminder(moto_stack)

    outcome = deliver(moto_stack, "ses_bounce_permanent", str(first.provider_id))
    moto_stack.pump.run_until(START + timedelta(days=4))

    assert outcome == {"recorded": 1}
    after = messages(moto_stack, contact_id)
    assert (after["reminder_2"].status, after["reminder_2"].reason) == (MessageStatus.SKIPPED, "suppressed:bounce")
    assert (after["reminder_3"].status, after["reminder_3"].reason) == (MessageStatus.SKIPPED, "suppressed:bounce")
    assert len(moto_stack.sent_emails()) == 1
    # a bounced address gets no transactional mail either: the mailbox does not exist
    moto_stack.call_api("POST", "/v1/events", order_placed("evt_2", "chk_2"))
    thanks = messages(moto_stack, contact_id)["thank_you"]
    assert (thanks.status, thanks.reason) == (MessageStatus.SKIPPED, "suppressed:bounce")


def test_a_transient_bounce_is_recorded_but_blocks_nothing(moto_stack: MotoStack) -> None:
    contact_id, first = start_cart_and_send_first_reminder(moto_stack)

    deliver(moto_stack, "ses_bounce_transient", str(first.provider_id))
    moto_stack.pump.run_until(START + timedelta(days=1, hours=1))

    after = messages(moto_stack, contact_id)
    assert "bounce" in after["reminder_1"].feedback
    assert after["reminder_2"].status is MessageStatus.SENT


def test_a_complaint_stops_all_marketing_to_the_contact(moto_stack: MotoStack) -> None:
    # Given Bob got the first cart reminder and marks it as spam
    contact_id, first = start_cart_and_send_first_reminder(moto_stack)
    deliver(moto_stack, "ses_complaint", str(first.provider_id))
    withdrawn = moto_stack.container.store.get_contact(contact_id)
    assert withdrawn is not None and withdrawn.email_marketing is False
    records = moto_stack.container.store.consent_records(address_key(Channel.EMAIL, "bob@example.com"))
    assert [(r.granted, r.source) for r in records] == [(True, "event:checkout_started:evt_1"), (False, "complaint")]

    # When the cart flow goes on, and Bob then signs up for the newsletter (a new marketing flow)
    moto_stack.pump.run_until(START + timedelta(days=4))
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_2", contact("bob")))

    # Then no marketing email reaches him: the complaint withdrew his consent, and when the storefront
    # claims consent again (email_marketing: true on the signup) the suppression still holds
    after = messages(moto_stack, contact_id)
    assert {step: m.reason for step, m in after.items() if m.channel == "email" and m.status == "skipped"} == {
        "reminder_2": "no_email_marketing_consent",
        "reminder_3": "no_email_marketing_consent",
        "welcome_email": "suppressed:complaint",
    }
    assert len(moto_stack.sent_emails()) == 1
    # and an order confirmation (transactional) still goes out
    moto_stack.call_api("POST", "/v1/events", order_placed("evt_3", "chk_3"))
    assert messages(moto_stack, contact_id)["thank_you"].status is MessageStatus.SENT


@pytest.mark.parametrize("name", ["ses_delivery", "ses_open", "ses_click", "ses_reject"])
def test_engagement_is_recorded_on_the_message_and_counted_per_step_once(moto_stack: MotoStack, name: str) -> None:
    contact_id, first = start_cart_and_send_first_reminder(moto_stack)
    kind = name.removeprefix("ses_")

    once = deliver(moto_stack, name, str(first.provider_id))
    again = deliver(moto_stack, name, str(first.provider_id))  # SNS delivers at least once

    assert (once, again) == ({"recorded": 1}, {"duplicate": 1})
    assert kind in messages(moto_stack, contact_id)["reminder_1"].feedback
    assert moto_stack.container.store.step_counts("abandoned_cart") == {"reminder_1": {kind: 1}}


def test_a_bounce_or_complaint_for_a_message_not_found_still_suppresses_the_address(moto_stack: MotoStack) -> None:
    # The by-provider-id index is eventually consistent, and a record may be gone: the address is in the event.
    event = ses_event("ses_complaint", "0100017e-not-found")
    recipients = json.loads(event["Records"][0]["Sns"]["Message"])["complaint"]["complainedRecipients"]

    outcome = feedback.handler(event, FakeLambdaContext.fresh("nudge-feedback"))

    assert outcome == {"unknown_message": 1}
    for recipient in recipients:
        state = moto_stack.container.store.address_state(address_key(Channel.EMAIL, recipient["emailAddress"]))
        assert state is not None and "complaint" in state.suppressed


def test_other_feedback_for_a_message_not_found_yet_is_retried_then_dropped(moto_stack: MotoStack) -> None:
    event = ses_event("ses_delivery", "0100017e-not-yet")
    at = parse_timestamp(json.loads(event["Records"][0]["Sns"]["Message"])["delivery"]["timestamp"])
    assert at is not None

    moto_stack.clock.set(at + timedelta(minutes=1))
    with pytest.raises(MessageNotFoundYet):  # Lambda retries the invocation a minute and two minutes later
        feedback.handler(event, FakeLambdaContext.fresh("nudge-feedback"))

    moto_stack.clock.set(at + FEEDBACK_PATIENCE)
    assert feedback.handler(event, FakeLambdaContext.fresh("nudge-feedback")) == {"unknown_message": 1}
    assert moto_stack.scan_all_tables()["nudge-suppressions"] == []


def test_a_send_of_unknown_outcome_that_ses_reports_delivered_is_reconciled_as_sent(moto_stack: MotoStack) -> None:
    # Given a reminder whose SendEmail response was lost: recorded UNKNOWN, no provider id (ADR 0007)
    contact_id, first = start_cart_and_send_first_reminder(moto_stack)
    store = moto_stack.container.store
    store.settle_message(first, MessageStatus.UNKNOWN, reason="lost response", sent_at=first.sent_at)
    raw = moto_stack.sent_emails()[0].raw_data
    assert f"X-Nudge-Contact-Id: {contact_id}" in raw and f"X-Nudge-Message-Id: {first.message_id}" in raw
    headers = {"X-Nudge-Message-Id": first.message_id, "X-Nudge-Contact-Id": contact_id}

    # When SES's Delivery event for it arrives (its headers name our record; the provider id is new to us)
    outcome = feedback.handler(
        ses_event("ses_delivery", "0100017e-lost-response", headers), FakeLambdaContext.fresh("nudge-feedback")
    )

    # Then it went out after all: SENT, with SES's id, and its delivery counted
    assert outcome == {"recorded": 1}
    reconciled = messages(moto_stack, contact_id)["reminder_1"]
    assert (reconciled.status, reconciled.provider_id) == (MessageStatus.SENT, "0100017e-lost-response")
    assert reconciled.sent_at == first.sent_at and "delivery" in reconciled.feedback


def test_a_record_that_is_not_an_ses_event_is_skipped(moto_stack: MotoStack) -> None:
    event = ses_event("ses_delivery", "x")
    event["Records"][0]["Sns"]["Message"] = '{"eventType": "Subscription"}'
    event["Records"].append({"Sns": {"Message": "not json"}})

    outcome = feedback.handler(event, FakeLambdaContext.fresh("nudge-feedback"))

    assert outcome == {"skipped": 2}


def _with_user_agent(event: dict[str, object], user_agent: str) -> dict[str, object]:
    record = event["Records"][0]  # type: ignore[index]
    body = json.loads(record["Sns"]["Message"])
    body["open"]["userAgent"] = user_agent
    record["Sns"]["Message"] = json.dumps(body)
    return event


@pytest.mark.parametrize(
    ("user_agent", "machine"),
    [("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", False), ("Mozilla/5.0", True)],
)
def test_an_open_through_the_handler_becomes_engagement_on_the_contact(
    moto_stack: MotoStack, user_agent: str, machine: bool
) -> None:
    # Given Bob's first cart reminder went out
    contact_id, first = start_cart_and_send_first_reminder(moto_stack)

    # When SES reports it opened, by a person's mail app or by Apple Mail's privacy prefetch
    event = _with_user_agent(ses_event("ses_open", str(first.provider_id)), user_agent)
    feedback.handler(event, FakeLambdaContext.fresh("nudge-feedback"))

    # Then the contact has an email_opened event, marked as a machine open or not; only a person's moves
    # last_open_at (what segments read)
    [opened] = [
        item
        for item in moto_stack.scan_all_tables()["nudge-events"]
        if item["event_id"]["S"] == f"email_opened:{first.message_id}"
    ]
    assert (opened["type"]["S"], opened["contact_id"]["S"], opened["status"]["S"]) == (
        "email_opened",
        contact_id,
        "processed",
    )
    assert json.loads(opened["body"]["S"])["properties"]["machine_open"] is machine
    stored = moto_stack.container.store.get_contact(contact_id)
    assert stored is not None
    assert (stored.aggregates.last_open_at is None) is machine
