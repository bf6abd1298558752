"""The WhatsApp sender: the real End User Messaging Social adapter and its in-memory twin under one contract,
and the real adapter's requests and failures checked with botocore's Stubber against the service model.

moto does not emulate `socialmessaging`, so the Stubber stands in for the service: it validates every
request against the model botocore ships (required members, types, lengths) and answers with what the model
allows. What it cannot show (Meta's own checks of the message JSON) is listed in docs/whatsapp.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError
from botocore.stub import ANY, Stubber

from nudge.adapters.memory import MemoryWhatsApp
from nudge.adapters.whatsapp import DEFAULT_META_API_VERSION, SocialMessagingWhatsApp
from nudge.domain.validation import validate
from nudge.domain.whatsapp import OutgoingWhatsApp
from nudge.ports import (
    PermanentSendError,
    TransientSendError,
    UnconfiguredWhatsApp,
    UnknownSendOutcome,
    WhatsAppSender,
)

PHONE_NUMBER_ID = "phone-number-id-0123456789abcdef0123456789abcdef"
CART = OutgoingWhatsApp(
    to="+14155550101",
    template="cart_reminder",
    language="en_US",
    parameters=(("first_name", "Bob"), ("cart_url", "https://shop.example/cart/c1")),
)
TEXT = OutgoingWhatsApp(to="+14155550101", text="Thanks, Bob! Your order ships tomorrow.")


def _client() -> Any:
    # As wiring.build_aws makes it: botocore's retries off, so a lost response is never resent by the SDK.
    return boto3.client("socialmessaging", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1}))


@dataclass
class Harness:
    sender: WhatsAppSender
    accept: Callable[[str], None]  # the next send is accepted under this id
    sent: Callable[[], list[dict[str, Any]]]  # the Cloud API message objects handed over, oldest first


@pytest.fixture(params=["socialmessaging", "memory"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "memory":
        twin = MemoryWhatsApp()
        ids: list[str] = []
        original = twin.send

        def send(message: OutgoingWhatsApp) -> str:
            original(message)
            return ids.pop(0)

        twin.send = send  # type: ignore[method-assign]
        yield Harness(twin, ids.append, lambda: [m.cloud_api_message() for _, m in twin.sent])
        return
    client = _client()
    seen: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.socialmessaging.SendWhatsAppMessage",
        lambda params, **_: seen.append(json.loads(params["message"])),
    )
    with Stubber(client) as stubber:

        def accept(message_id: str) -> None:
            stubber.add_response(
                "send_whatsapp_message",
                {"messageId": message_id},
                {"originationPhoneNumberId": PHONE_NUMBER_ID, "message": ANY, "metaApiVersion": "v20.0"},
            )

        yield Harness(SocialMessagingWhatsApp(client, phone_number_id=PHONE_NUMBER_ID), accept, lambda: seen)
        stubber.assert_no_pending_responses()


def test_a_template_message_goes_out_with_its_named_body_parameters(harness: Harness) -> None:
    harness.accept("wamid.1")

    assert harness.sender.send(CART) == "wamid.1"

    assert harness.sent() == [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+14155550101",
            "type": "template",
            "template": {
                "name": "cart_reminder",
                "language": {"code": "en_US"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "parameter_name": "first_name", "text": "Bob"},
                            {"type": "text", "parameter_name": "cart_url", "text": "https://shop.example/cart/c1"},
                        ],
                    }
                ],
            },
        }
    ]


def test_positional_parameters_and_free_text_each_take_their_own_shape(harness: Harness) -> None:
    harness.accept("wamid.1")
    harness.accept("wamid.2")
    positional = OutgoingWhatsApp(to="+4915112345678", template="statement", language="de", parameters=(("1", "42"),))

    ids = [harness.sender.send(positional), harness.sender.send(TEXT)]

    assert ids == ["wamid.1", "wamid.2"]
    template, text = harness.sent()
    assert template["template"]["components"] == [{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]
    assert text["type"] == "text"
    assert text["text"] == {"preview_url": False, "body": "Thanks, Bob! Your order ships tomorrow."}


def test_a_template_without_parameters_has_no_components(harness: Harness) -> None:
    harness.accept("wamid.9")

    harness.sender.send(OutgoingWhatsApp(to="+14155550101", template="hello_world", language="en_US"))

    assert "components" not in harness.sent()[0]["template"]


# The real adapter's failures, as the service model declares them ----------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "kind", "throttled"),
    [
        ("ThrottledRequestException", 429, TransientSendError, True),  # not now: the worker holds and retries
        ("InternalServiceException", 500, TransientSendError, False),  # the service failed before sending
        ("ValidationException", 400, PermanentSendError, None),  # this request will never be accepted
        ("InvalidParametersException", 400, PermanentSendError, None),
        ("AccessDeniedException", 403, PermanentSendError, None),  # no permission on the phone number id
        ("ResourceNotFoundException", 404, PermanentSendError, None),  # no such phone number id
        ("DependencyException", 502, UnknownSendOutcome, None),  # Meta's side failed mid-relay: maybe sent
    ],
)
def test_each_declared_error_is_read_as_wait_never_or_maybe_sent(
    code: str, status: int, kind: type[Exception], throttled: bool | None
) -> None:
    client = _client()
    declared = {shape.name for shape in client.meta.service_model.operation_model("SendWhatsAppMessage").error_shapes}
    assert code in declared  # the model botocore ships names it for this operation
    with Stubber(client) as stubber:
        stubber.add_client_error("send_whatsapp_message", service_error_code=code, http_status_code=status)
        with pytest.raises(kind) as raised:
            SocialMessagingWhatsApp(client, phone_number_id=PHONE_NUMBER_ID).send(CART)
    if isinstance(raised.value, TransientSendError):
        assert raised.value.throttled is throttled


def _failing_transport(error: Exception) -> Any:
    """A client whose request is built, validated and signed, then lost on the wire with `error`."""
    client = _client()

    def lose(**_: Any) -> None:
        raise error

    client.meta.events.register("before-send.socialmessaging.SendWhatsAppMessage", lose)
    return client


def test_a_lost_response_is_unknown_never_a_retry() -> None:
    client = _failing_transport(ReadTimeoutError(endpoint_url="https://social-messaging.us-east-1.amazonaws.com"))

    with pytest.raises(UnknownSendOutcome):
        SocialMessagingWhatsApp(client, phone_number_id=PHONE_NUMBER_ID).send(CART)


def test_a_request_that_never_left_is_a_retry() -> None:
    client = _failing_transport(ConnectTimeoutError(endpoint_url="https://social-messaging.us-east-1.amazonaws.com"))

    with pytest.raises(TransientSendError):
        SocialMessagingWhatsApp(client, phone_number_id=PHONE_NUMBER_ID).send(CART)


def test_the_request_names_the_phone_number_id_and_the_meta_api_version() -> None:
    client = _client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "send_whatsapp_message",
            {"messageId": "wamid.7"},
            {"originationPhoneNumberId": PHONE_NUMBER_ID, "message": TEXT.encoded(), "metaApiVersion": "v21.0"},
        )
        SocialMessagingWhatsApp(client, phone_number_id=PHONE_NUMBER_ID, meta_api_version="v21.0").send(TEXT)
    assert DEFAULT_META_API_VERSION == "v20.0"  # the version AWS's own send examples name


def test_without_a_configured_number_every_send_is_refused_for_good() -> None:
    with pytest.raises(PermanentSendError, match="not configured"):
        UnconfiguredWhatsApp().send(CART)


def test_a_message_is_a_template_or_a_text() -> None:
    with pytest.raises(ValueError, match="template or a text"):
        OutgoingWhatsApp(to="+14155550101")
    with pytest.raises(ValueError, match="language"):
        OutgoingWhatsApp(to="+14155550101", template="cart_reminder")


# --- the declarations against the account (nudge whatsapp check-templates) --------------------------------


def _listed(name: str, language: str, status: str = "APPROVED", category: str = "MARKETING") -> dict[str, str]:
    return {
        "templateName": name,
        "metaTemplateId": "1234567890",
        "templateStatus": status,
        "templateLanguage": language,
        "templateCategory": category,
    }


def test_the_accounts_templates_are_listed_page_by_page_and_compared_with_the_declarations() -> None:
    from nudge.adapters.whatsapp import list_templates
    from nudge.domain.whatsapp import account_problems
    from nudge.domain.whatsapp_templates import WhatsAppTemplates

    client = _client()
    waba = "waba-0123456789abcdef0123456789abcdef"
    with Stubber(client) as stub:  # requests and answers validated against the service model
        stub.add_response(
            "list_whatsapp_message_templates",
            {
                "templates": [_listed("cart_reminder", "en_US"), _listed("cart_reminder", "de", "PENDING")],
                "nextToken": "p2",
            },
            {"id": waba, "maxResults": 100},
        )
        stub.add_response(
            "list_whatsapp_message_templates",
            {"templates": [_listed("order_update", "en_US", category="MARKETING")]},
            {"id": waba, "maxResults": 100, "nextToken": "p2"},
        )
        account = list_templates(client, waba)
        stub.assert_no_pending_responses()
    declared = validate(
        WhatsAppTemplates,
        {
            "templates": {
                "cart_reminder": {"languages": ["en_US", "de"], "category": "marketing", "parameters": ["first_name"]},
                "order_update": {"languages": ["en_US"], "category": "utility", "parameters": ["1"]},
                "missed_call": {"languages": ["en_US"], "category": "utility"},
            }
        },
    )

    assert [(t.name, t.language, t.status) for t in account] == [
        ("cart_reminder", "en_US", "APPROVED"),
        ("cart_reminder", "de", "PENDING"),
        ("order_update", "en_US", "APPROVED"),
    ]
    assert account_problems(declared, account) == [
        "cart_reminder/de: declared, but its status is PENDING",
        "missed_call/en_US: declared, but the account has no such template",
        "order_update/en_US: declared utility, but the account has it as marketing",
    ]
