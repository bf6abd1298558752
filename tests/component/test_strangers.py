"""Regression tests for issue 13's attacks: what a stranger with a captured request or a crafted address can do.

Each test failed on the main branch before the fix it names.
"""

from __future__ import annotations

from nudge import names, signing
from nudge.domain.model import Channel
from nudge.domain.suppression import Suppression, address_key
from nudge.handlers import ingest
from nudge.local.lambda_events import FakeLambdaContext, api_gateway_event
from nudge.local.moto_stack import MotoStack
from tests.factories import contact, subscribed


def test_a_captured_signed_get_cannot_be_replayed_as_a_delete(moto_stack: MotoStack) -> None:
    # Given two contacts, and a signed GET of one of them captured in flight (v1 and v2 alike)
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_1", contact("ann", id="c_ann")))
    moto_stack.call_api("POST", "/v1/events", subscribed("evt_2", contact("bo", id="c_bo")))
    now = moto_stack.clock.now()
    captured = [
        signing.sign(moto_stack.signing_key, b"", now),
        signing.sign_request(moto_stack.signing_key, "GET", "/v1/contacts/c_ann", {}, b"", now),
    ]
    for header in captured:
        # When it is replayed as a DELETE of either contact
        for target in ("/v1/contacts/c_ann", "/v1/contacts/c_bo"):
            event = api_gateway_event("DELETE", target, b"", {names.SIGNATURE_HEADER: header})
            response = ingest.handler(event, FakeLambdaContext.fresh("nudge-ingest"))
            # Then it is refused and nobody is erased
            assert response["statusCode"] == 401
    assert moto_stack.container.store.get_contact("c_ann") is not None
    assert moto_stack.container.store.get_contact("c_bo") is not None


def test_a_display_name_cannot_dodge_an_unsubscribe(moto_stack: MotoStack) -> None:
    # Given an unsubscribed address
    moto_stack.container.store.suppress(
        address_key(Channel.EMAIL, "victim@example.com"), Suppression.UNSUBSCRIBED, moto_stack.clock.now()
    )
    # When an event names it with a display name, a comment or in another case
    crafted = ['"x"<victim@example.com>', "Victim <victim@example.com>", "victim(c)@example.com"]
    results = [
        moto_stack.call_api("POST", "/v1/events", subscribed(f"evt_{i}", {"email": address, "email_marketing": True}))
        for i, address in enumerate(crafted)
    ]
    same = moto_stack.call_api("POST", "/v1/events", subscribed("evt_9", {"email": "VICTIM@Example.COM"}))

    # Then the crafted ones are refused by name, and the other spelling is still suppressed: nothing is sent
    assert [(r.status, r.body["errors"][0]["pointer"]) for r in results] == [(422, "/contact/email")] * 3
    assert same.status == 202
    assert moto_stack.sent_emails() == []
