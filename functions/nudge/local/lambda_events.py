"""Event shapes Lambda receives from API Gateway (REST, proxy integration), built for local invocations."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from nudge import names, signing
from nudge.domain.frozen import dataclass


@dataclass(frozen=True)
class FakeLambdaContext:
    """The attributes of a Lambda context object that Powertools reads."""

    function_name: str = "nudge-local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:nudge-local"
    aws_request_id: str = "local"
    timeout_ms: int = 60_000  # what get_remaining_time_in_millis reports (the clock is virtual: never counts down)

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms

    @classmethod
    def fresh(cls, function_name: str, timeout_ms: int = 60_000) -> FakeLambdaContext:
        return cls(function_name=function_name, aws_request_id=str(uuid.uuid4()), timeout_ms=timeout_ms)


def api_gateway_event(
    method: str, path: str, body: bytes | str | None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A REST API proxy-integration event, as API Gateway sends it (a `?query` on the path becomes parameters)."""
    text = body.decode() if isinstance(body, bytes) else body
    path, _, raw_query = path.partition("?")
    query = dict(parse_qsl(raw_query, keep_blank_values=True))
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/v1{path}" if not path.startswith("/v1") else path,
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "nudge-local"},
            "accountId": "123456789012",
            "apiId": "local",
        },
        "body": text,
        "isBase64Encoded": False,
    }


def proxy_event(
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    query: dict[str, str],
    *,
    source_ip: str = "127.0.0.1",
    resource: str | None = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A REST API proxy-integration event for a request as it came (headers untouched, body base64 if binary).

    `resource` is the matched route's template (`/v1/contacts/{contact_id}`), its values in `path_parameters`.
    """
    try:
        text, encoded = body.decode(), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": dict(query) or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource or path,
            "httpMethod": method,
            "path": path,
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent", "nudge-local")},
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": headers.get("Host", "127.0.0.1"),
        },
        "body": text or None,
        "isBase64Encoded": encoded,
    }


def signed_request(
    key: str, method: str, path: str, payload: Any, at: datetime, *, raw: bytes | None = None
) -> dict[str, Any]:
    """An API Gateway event carrying a valid nudge signature (v2) for `payload` (or for `raw` bytes)."""
    body = raw if raw is not None else json.dumps(payload, separators=(",", ":")).encode()
    route, _, raw_query = path.partition("?")
    query = dict(parse_qsl(raw_query, keep_blank_values=True))
    headers = {names.SIGNATURE_HEADER: signing.sign_request(key, method, route, query, body, at)}
    return api_gateway_event(method, path, body, headers)


def sns_event(messages: list[dict[str, Any]], at: datetime, topic: str = "nudge-feedback") -> dict[str, Any]:
    """An SNS-to-Lambda event: one record per message, each Message a JSON string."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    arn = f"arn:aws:sns:us-east-1:123456789012:{topic}"
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{arn}:{uuid.uuid4()}",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": str(uuid.uuid4()),
                    "TopicArn": arn,
                    "Subject": None,
                    "Message": json.dumps(message),
                    "Timestamp": stamp,
                    "SignatureVersion": "1",
                    "Signature": "EXAMPLE",
                    "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-example.pem",
                    "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
                    "MessageAttributes": {},
                },
            }
            for message in messages
        ]
    }


def sqs_event(records: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """An SQS-to-Lambda event (event-source mapping) for messages as ReceiveMessage returned them."""
    return {
        "Records": [
            {
                "messageId": record["MessageId"],
                "receiptHandle": record["ReceiptHandle"],
                "body": record["Body"],
                "attributes": record.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": record.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": queue_arn.split(":")[3],
            }
            for record in records
        ]
    }
