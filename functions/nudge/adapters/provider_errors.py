"""What a failed send call (SES, SNS, End User Messaging Social) means: never sent, maybe sent, or never sendable.

botocore's own retries are off for these clients (wiring.build_aws): a retry after a lost response would
send twice. So the adapter reads each failure once, here, and the worker decides what happens next.
"""

from __future__ import annotations

from datetime import timedelta

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
)

from nudge.ports import PermanentSendError, TransientSendError, UnknownSendOutcome

_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "ThrottledException",
    "ThrottledRequestException",  # End User Messaging Social
}
# Failures on the provider's side: it answered, so nothing was accepted; try again a little later.
_SERVER = {
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "InternalServiceException",  # End User Messaging Social
    "ServiceUnavailable",
    "ServiceUnavailableException",
}
# SES v2: the account's (or configuration set's) sending is paused, or the account suspended, usually for
# its bounce or complaint rate. Nothing is wrong with the message: it waits, every send holds an hour at a
# time, and goes out when the operator has sending resumed (docs/deploy.md). Failing it would lose it.
_PAUSED = {"SendingPausedException", "AccountSuspendedException"}
QUOTA_WAIT = timedelta(hours=1)


def classify(exc: Exception, provider: str, permanent: set[str]) -> Exception:
    """The exception the Mailer and Texter ports promise, for a botocore failure of the send call."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        text = f"{provider} {code}: {message}"
        if "quota" in message.lower() and "exceeded" in message.lower():
            # SES's 24-hour quota: nothing more goes out until it rolls over; look again in an hour.
            return TransientSendError(text, retry_after=QUOTA_WAIT, throttled=True)
        if code in _PAUSED:
            return TransientSendError(text, retry_after=QUOTA_WAIT, throttled=True)
        if code in _THROTTLED or code == "LimitExceededException":
            return TransientSendError(text, throttled=True)
        if code in permanent:
            return PermanentSendError(text)
        if code in _SERVER or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
            return TransientSendError(text)
        return PermanentSendError(text)
    if isinstance(exc, ConnectTimeoutError | EndpointConnectionError):
        return TransientSendError(f"{provider}: the request never left: {exc}")  # no connection, no send
    if isinstance(exc, BotoCoreError):
        return UnknownSendOutcome(f"{provider}: {type(exc).__name__}: {exc}")  # read timeout, reset connection
    return UnknownSendOutcome(f"{provider}: {type(exc).__name__}: {exc}")
