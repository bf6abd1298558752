"""How a failed SES or SNS call is read: sent never, maybe, or never sendable (ADR 0007)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

from nudge.adapters.provider_errors import QUOTA_WAIT, classify
from nudge.ports import PermanentSendError, TransientSendError, UnknownSendOutcome

PERMANENT = {"MessageRejected", "BadRequestException"}


def failure(code: str, message: str = "", status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "SendEmail"
    )


@pytest.mark.parametrize(
    ("exc", "kind", "retry_after", "throttled"),
    [
        (failure("TooManyRequestsException", status=429), TransientSendError, None, True),
        (failure("Throttling", "Maximum sending rate exceeded."), TransientSendError, None, True),
        (failure("MessageRejected", "Daily message quota exceeded."), TransientSendError, QUOTA_WAIT, True),
        # A paused or suspended account holds every send an hour at a time; the message is not lost.
        (
            failure("SendingPausedException", "Sending is paused for this account."),
            TransientSendError,
            QUOTA_WAIT,
            True,
        ),
        (failure("AccountSuspendedException"), TransientSendError, QUOTA_WAIT, True),
        (failure("InternalFailure", status=500), TransientSendError, None, False),
        (failure("MessageRejected", "Email address is not verified."), PermanentSendError, None, None),
        (failure("SomethingNew", status=400), PermanentSendError, None, None),
    ],
)
def test_a_provider_answer_is_read_as_wait_or_never(
    exc: Exception, kind: type[Exception], retry_after: timedelta | None, throttled: bool | None
) -> None:
    found = classify(exc, "SES", PERMANENT)
    assert isinstance(found, kind)
    if isinstance(found, TransientSendError):
        assert (found.retry_after, found.throttled) == (retry_after, throttled)


def test_no_answer_is_a_retry_only_when_the_request_never_left() -> None:
    assert isinstance(classify(ConnectTimeoutError(endpoint_url="https://x"), "SES", PERMANENT), TransientSendError)
    assert isinstance(classify(ReadTimeoutError(endpoint_url="https://x"), "SES", PERMANENT), UnknownSendOutcome)
