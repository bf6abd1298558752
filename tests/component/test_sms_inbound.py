"""Inbound SMS keywords on moto: STOP skips marketing SMS with its reason, START undoes it, HELP answers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nudge.domain.model import Channel, MessageStatus
from nudge.domain.suppression import address_key
from nudge.handlers import sms_inbound
from nudge.local.lambda_events import FakeLambdaContext
from nudge.local.moto_stack import ACCOUNT, REGION, MotoStack
from tests.conftest import START
from tests.events_helpers import inbound_sms, recorded
from tests.factories import checkout_started, contact

BOB = contact("bob", phone="+1 (415) 555-0101", sms_marketing=True)


def text_in(event: dict[str, object]) -> dict[str, int]:
    result: dict[str, int] = sms_inbound.handler(event, FakeLambdaContext.fresh("nudge-sms-inbound"))
    return result


def sms_step(stack: MotoStack, contact_id: str) -> tuple[MessageStatus, str | None, int | None]:
    [message] = [m for m in stack.container.store.messages_for(contact_id) if m.channel is Channel.SMS]
    return message.status, message.reason, message.sms_segments


def test_after_stop_a_marketing_sms_step_is_skipped_with_its_reason(moto_stack: MotoStack) -> None:
    # Given Bob, whose number the storefront sent in a local format, is in the cart flow
    bob = moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1", BOB)).body["contact_id"]

    # When he texts STOP (the recorded two-way SMS event) before the SMS step is due
    outcome = text_in(recorded("sns_inbound_sms_stop"))
    moto_stack.pump.run_until(START + timedelta(days=2))

    # Then the SMS step is skipped, the emails still go out, and the opt-out is on record
    assert outcome == {"opted_out": 1}
    assert sms_step(moto_stack, bob)[:2] == (MessageStatus.SKIPPED, "sms_opted_out")
    assert moto_stack.sent_sms() == {}
    assert len(moto_stack.sent_emails()) == 2
    [record] = moto_stack.container.store.consent_records(address_key(Channel.SMS, "+14155550101"))[-1:]
    assert (record.granted, record.source) == (False, "sms_keyword:STOP")


def test_stop_blocks_transactional_sms_too_and_start_lifts_it(moto_stack: MotoStack) -> None:
    text_in(inbound_sms("stopall"))
    assert moto_stack.container.store.address_state(address_key(Channel.SMS, "+14155550101")) is not None

    outcome = text_in(inbound_sms("Start"))
    bob = moto_stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1", BOB)).body["contact_id"]
    moto_stack.pump.run_until(START + timedelta(days=2))

    assert outcome == {"opted_in": 1}
    status, reason, segments = sms_step(moto_stack, bob)
    assert (status, reason, segments) == (MessageStatus.SENT, None, 1)
    [(phone, text)] = moto_stack.sent_sms().values()
    assert phone == "+14155550101" and text.endswith("Reply STOP to opt out")


def test_help_is_answered_and_other_texts_are_ignored(moto_stack: MotoStack) -> None:
    outcome = text_in(inbound_sms("HELP"))
    other = text_in(inbound_sms("where is my order?"))

    assert (outcome, other) == ({"helped": 1}, {"ignored": 1})
    [(phone, text)] = moto_stack.sent_sms().values()
    assert phone == "+14155550101" and "STOP" in text


def test_help_names_the_shop_and_its_support_contact(moto_stack: MotoStack) -> None:
    text_in(inbound_sms("help"))

    [(_, text)] = moto_stack.sent_sms().values()
    assert text.startswith("Linen & Clay: ") and "help@shop.example" in text and "STOP" in text


@pytest.mark.parametrize("word", ["REVOKE", "opt out", "OPT-OUT", "Remove", "ARRET", "td"])
def test_every_opt_out_word_suppresses_the_number(moto_stack: MotoStack, word: str) -> None:
    assert text_in(inbound_sms(word)) == {"opted_out": 1}
    assert moto_stack.container.store.address_state(address_key(Channel.SMS, "+14155550101")) is not None


def test_start_also_takes_the_number_off_snss_own_opt_out_list(moto_stack: MotoStack) -> None:
    # Given SNS has the number on its account-level opt-out list (AWS-managed opt-outs saw the STOP too)
    from moto.sns.models import sns_backends

    backend = sns_backends[ACCOUNT][REGION]
    backend.opt_out_numbers.append("+14155550101")
    text_in(inbound_sms("STOP"))

    # When the contact texts START
    text_in(inbound_sms("START"))

    # Then nudge lifts its own suppression and SNS's list no longer holds the number
    state = moto_stack.container.store.address_state(address_key(Channel.SMS, "+14155550101"))
    assert state is None or not state.suppressed
    assert "+14155550101" not in backend.opt_out_numbers
