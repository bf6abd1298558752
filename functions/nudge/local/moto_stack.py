"""A whole nudge deployment inside moto, in this process: what `make demo` and the component tests run on.

Creates the same resources the CDK stack does (tables, schedule group, dead-letter queue, SES identity,
signing secret), wires the real AWS adapters to them, and installs that container for the handlers.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from nudge import names, wiring
from nudge.clocks import MovableClock
from nudge.domain.frozen import dataclass
from nudge.local import gateway
from nudge.local.gateway import LocalResponse
from nudge.local.lambda_events import FakeLambdaContext, signed_request
from nudge.local.pump import QueuePump, SchedulePump
from nudge.local.requests import RequestCounter
from nudge.settings import Settings

ACCOUNT = "123456789012"
REGION = "us-east-1"
FROM_ADDRESS = "hello@shop.example"
UNSUBSCRIBE_BASE_URL = "https://api.shop.example/v1/unsubscribe"
POSTAL_ADDRESS = "Linen & Clay, 12 Harbour Street, Portland, ME 04101, USA"
PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEV_SHOPIFY_SHOP = "dev-shop.myshopify.com"
DEV_WOOCOMMERCE_SITE = "woo.example"
DEV_TWILIO_ACCOUNT = "AC00000000000000000000000000000001"  # a Twilio account's SID: its auth token signs callbacks

_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "MOTO_ACCOUNT_ID": ACCOUNT,
}


@dataclass
class ApiResult:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class MotoStack:
    """A running local deployment. Use `start_moto_stack()`; call `stop()` when done."""

    clock: MovableClock
    settings: Settings
    container: wiring.Container
    session: Any
    signing_key: str
    requests: RequestCounter
    pump: SchedulePump
    queue: QueuePump  # the work queue, drained by the worker
    jobs: QueuePump  # the daily job's pieces, drained by the sweep function
    campaigns: QueuePump  # campaigns' pieces, drained by the sweep function too (ADR 0019)
    _mock: Any
    webhook_secrets: dict[str, dict[str, str]] = field(default_factory=dict)

    def send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> LocalResponse:
        """An HTTP request through the local gateway to whichever handler the stack routes it to.

        Then the worker does what the request queued (on AWS it would start within milliseconds).
        """
        response = gateway.invoke(method, path, body=body, headers=headers, query=query)
        self.settle()
        return response

    def call_api(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        sign: bool = True,
        settle: bool = True,
    ) -> ApiResult:
        """Invoke the ingest handler with an API Gateway event, signed like a storefront would."""
        from nudge.handlers import ingest
        from nudge.local.lambda_events import api_gateway_event

        if sign:
            event = signed_request(self.signing_key, method, path, payload, self.clock.now(), raw=raw)
            event["headers"].update(headers or {})
        else:
            body = raw if raw is not None else json.dumps(payload).encode()
            event = api_gateway_event(method, path, body, headers)
        response = ingest.handler(event, FakeLambdaContext.fresh("nudge-ingest"))
        if settle:
            self.settle()  # the worker does what the request queued, as it would within milliseconds on AWS
        body = json.loads(response["body"]) if response.get("body") else {}
        headers = {name: values[-1] for name, values in (response.get("multiValueHeaders") or {}).items()}
        headers.update(response.get("headers") or {})
        return ApiResult(status=response["statusCode"], body=body, headers=headers)

    def fire_target(self, arn: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Deliver a schedule's Input to its target: the work queue (wake-ups), or the sweep function (daily)."""
        if arn == SWEEP_FUNCTION_ARN:
            from nudge.handlers import sweep

            result: dict[str, Any] = sweep.handler(payload, _sweep_context())
            return result
        if arn != self.settings.work_queue_arn:
            raise ValueError(f"no local target behind {arn}")
        self.queue.send(json.dumps(payload, separators=(",", ":")))
        return {}

    def fire_step(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Invoke the worker with one record carrying this payload, as the SQS event-source mapping would.

        Returns what the worker did with it (its outcome, or {"status": "error", "error": ...}).
        """
        from nudge.handlers import step
        from nudge.local.lambda_events import sqs_event

        record = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": "local", "Body": json.dumps(payload)}
        response = step.handler(
            sqs_event([record], self.settings.work_queue_arn), FakeLambdaContext.fresh("nudge-step")
        )
        result: dict[str, Any] = response["outcomes"][0]
        return result

    def settle(self) -> None:
        """Let the worker do what is due now, as it would within milliseconds of a request on AWS."""
        self.pump.settle()

    def call_unsubscribe(self, method: str, path: str, form: str | None = None) -> ApiResult:
        """Invoke the public unsubscribe handler as API Gateway would (a form body, no signature)."""
        from nudge.handlers import unsubscribe
        from nudge.local.lambda_events import api_gateway_event

        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        event = api_gateway_event(method, path, form, headers)
        response = unsubscribe.handler(event, FakeLambdaContext.fresh("nudge-unsubscribe"))
        content_type = (response.get("multiValueHeaders") or {}).get("Content-Type", [""])[-1]
        text = response.get("body") or ""
        body = json.loads(text) if "json" in content_type else {"html": text}
        return ApiResult(status=response["statusCode"], body=body, headers={"Content-Type": content_type})

    def deliver_sns(self, handler_name: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Invoke an SNS-subscribed handler (feedback, sms_inbound) with these messages as records."""
        import importlib

        from nudge.local.lambda_events import sns_event

        module = importlib.import_module(f"nudge.handlers.{handler_name}")
        result: dict[str, Any] = module.handler(
            sns_event(messages, self.clock.now()), FakeLambdaContext.fresh(f"nudge-{handler_name}")
        )
        return result

    def scan_all_tables(self) -> dict[str, list[dict[str, Any]]]:
        """Every item of every nudge table, raw, through the DynamoDB API (for privacy assertions)."""
        client = self.session.client("dynamodb")
        found: dict[str, list[dict[str, Any]]] = {}
        for table in client.list_tables()["TableNames"]:
            items: list[dict[str, Any]] = []
            for page in client.get_paginator("scan").paginate(TableName=table):
                items += page["Items"]
            found[table] = items
        return found

    def sent_emails(self) -> list[Any]:
        from moto.ses.models import ses_backends

        return list(ses_backends[ACCOUNT][REGION].sent_messages)

    def sent_sms(self) -> dict[str, tuple[str, str]]:
        from moto.sns.models import sns_backends

        return dict(sns_backends[ACCOUNT][REGION].sms_messages)

    def stop(self) -> None:
        wiring.install(None)
        _unpatch_sqs_clock()
        self._mock.stop()


_shared_loader: Any = None


def _botocore_session() -> Any:
    """A fresh botocore session (its own event hooks) sharing one loader: service models load once per process.

    Starting a stack creates a dozen clients; without this each one re-reads its service model (~70 ms).
    """
    import botocore.loaders
    import botocore.session

    global _shared_loader
    session = botocore.session.Session()
    if _shared_loader is None:
        _shared_loader = botocore.loaders.create_loader()
    session.register_component("data_loader", _shared_loader)
    return session


SWEEP_FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:nudge-sweep"
WORK_QUEUE = "nudge-work"
JOBS_QUEUE = "nudge-jobs"
CAMPAIGNS_QUEUE = "nudge-campaigns"


def _sweep_context() -> FakeLambdaContext:
    return FakeLambdaContext.fresh("nudge-sweep", timeout_ms=names.SWEEP_TIMEOUT * 1000)


def _invoke_sweep(event: dict[str, Any]) -> dict[str, Any]:
    from nudge.handlers import sweep

    result: dict[str, Any] = sweep.handler(event, _sweep_context())
    return result


def _invoke_worker(event: dict[str, Any]) -> dict[str, Any]:
    from nudge.handlers import step

    result: dict[str, Any] = step.handler(event, FakeLambdaContext.fresh("nudge-step"))
    return result


_sqs_clock_saved: dict[str, Any] = {}
_transactions_patched: list[bool] = []


def _cheap_transactions() -> None:
    """moto rolls a failed TransactWriteItems back from a deep copy of every table it names, taken before
    each transaction: quadratic in the data (a 500-contact batch spent minutes copying). Same semantics,
    cheaper: copy only the items the transaction names, and put exactly those back if it fails."""
    if _transactions_patched:
        return
    import copy

    import moto.dynamodb.models as dynamodb_models
    from moto.dynamodb.models.dynamo_type import DynamoType

    original = dynamodb_models.DynamoDBBackend.transact_write_items

    def keys_of(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
        keys = []
        for item in transact_items:
            _, op = next(iter(item.items()))
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op.get("Key") or op.get("Item") or {}
            if table.hash_key_attr not in key:
                continue
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
            keys.append((table, hash_value, range_value))
        return keys

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = [(t, h, r, copy.deepcopy(t.get_item(h, r))) for t, h, r in keys_of(self, transact_items)]
        try:
            original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(saved):
                bucket = table.items[hash_value] if range_value is not None else table.items
                slot = range_value if range_value is not None else hash_value
                if item is None:
                    bucket.pop(slot, None)
                else:
                    bucket[slot] = item
            raise

    class _TablesNotCopied:
        """moto's `copy` for its DynamoDB module: whole tables are not copied (the items above are)."""

        @staticmethod
        def deepcopy(value: Any, *args: Any) -> Any:
            return value if isinstance(value, dynamodb_models.Table) else copy.deepcopy(value, *args)  # type: ignore[attr-defined]

    dynamodb_models.copy = _TablesNotCopied  # type: ignore[assignment,attr-defined]
    dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    _transactions_patched.append(True)


def _patch_sqs_clock(clock: MovableClock) -> None:
    """moto's SQS reads the wall clock for delays and visibility timeouts; here it reads the stack's clock."""
    import moto.sqs.models as sqs_models

    if not _sqs_clock_saved:
        _sqs_clock_saved.update(unix_time=sqs_models.unix_time, unix_time_millis=sqs_models.unix_time_millis)  # type: ignore[attr-defined]
    sqs_models.unix_time = lambda *args: clock.now().timestamp()  # type: ignore[attr-defined]
    sqs_models.unix_time_millis = lambda *args: clock.now().timestamp() * 1000  # type: ignore[attr-defined]


def _unpatch_sqs_clock() -> None:
    import moto.sqs.models as sqs_models

    for name, original in _sqs_clock_saved.items():
        setattr(sqs_models, name, original)


def start_moto_stack(
    clock: MovableClock,
    *,
    flows_dir: Path | None = None,
    templates_dir: Path | None = None,
    public_base_url: str | None = None,
    settings_overrides: dict[str, Any] | None = None,
    daily_job: bool = False,
    repair_job: bool = False,
    repair_rate: str = names.REPAIR_RATE,
    instruments: Sequence[Any] = (),
) -> MotoStack:
    """Start moto, create the resources, wire the real adapters to them and install the container.

    With `daily_job`, the stack's recurring schedule exists too and the pump fires the sweep function at
    04:00 UTC every day, as in a deployment (the demo and `nudge serve`; tests call it when they mean to).
    With `repair_job`, the repair schedule fires it every 15 minutes too (`nudge serve`), or at `repair_rate`
    (`nudge chaos` plays: every 6 hours, since every 15 minutes is 2,200 more index queries a play).
    """
    import boto3
    from moto import mock_aws

    from nudge.adapters.dynamodb.access import bind_access_models
    from nudge.adapters.dynamodb.store import DynamoStore, ensure_tables

    os.environ.update(_FAKE_CREDENTIALS)
    _cheap_transactions()
    mock = mock_aws()
    mock.start()
    session = boto3.Session(region_name=REGION, botocore_session=_botocore_session())

    _patch_sqs_clock(clock)
    sqs = session.client("sqs")
    dlq_url = sqs.create_queue(QueueName="nudge-scheduler-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def queue(name: str, visibility: int, max_receives: int) -> tuple[str, str]:
        """(URL, ARN) of a queue as infra/constructs/scheduling.py makes it: redrive to the same DLQ."""
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}
        url = sqs.create_queue(
            QueueName=name, Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": json.dumps(redrive)}
        )["QueueUrl"]
        return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    work_url, work_arn = queue(WORK_QUEUE, names.WORK_VISIBILITY_TIMEOUT, names.WORK_MAX_RECEIVES)
    jobs_url, jobs_arn = queue(JOBS_QUEUE, names.JOBS_VISIBILITY_TIMEOUT, names.JOBS_MAX_RECEIVES)
    campaigns_url, campaigns_arn = queue(
        CAMPAIGNS_QUEUE, names.CAMPAIGNS_VISIBILITY_TIMEOUT, names.CAMPAIGNS_MAX_RECEIVES
    )
    scheduler_client = session.client("scheduler")
    scheduler_client.create_schedule_group(Name=names.SCHEDULE_GROUP)
    session.client("sesv2").create_email_identity(EmailIdentity=FROM_ADDRESS.partition("@")[2])
    key = secrets.token_hex(32)
    secrets_client = session.client("secretsmanager")
    secret_arn = secrets_client.create_secret(Name=names.SIGNING_SECRET_NAME, SecretString=key)["ARN"]
    # One development shop per storefront platform, each with its own secret, as the stack's JSON secret holds.
    webhook_secrets = {
        "shopify": {DEV_SHOPIFY_SHOP: secrets.token_hex(16)},
        "woocommerce": {DEV_WOOCOMMERCE_SITE: secrets.token_hex(16)},
        "twilio": {DEV_TWILIO_ACCOUNT: secrets.token_hex(16)},
    }
    webhook_secrets_arn = secrets_client.create_secret(
        Name=names.WEBHOOK_SECRETS_NAME, SecretString=json.dumps(webhook_secrets)
    )["ARN"]
    unsubscribe_secret_arn = secrets_client.create_secret(
        Name="nudge/unsubscribe-key", SecretString=secrets.token_hex(32)
    )["ARN"]

    settings = Settings(
        work_queue_url=work_url,
        work_queue_arn=work_arn,
        jobs_queue_url=jobs_url,
        campaigns_queue_url=campaigns_url,
        scheduler_role_arn=f"arn:aws:iam::{ACCOUNT}:role/nudge-scheduler",
        scheduler_dlq_arn=dlq_arn,
        from_address=FROM_ADDRESS,
        flows_dir=flows_dir or PROJECT_ROOT / "flows",
        templates_dir=templates_dir or PROJECT_ROOT / "templates",
        signing_secret_arn=secret_arn,
        webhook_secrets_arn=webhook_secrets_arn,
        public_base_url=public_base_url,
        unsubscribe_secret_arn=unsubscribe_secret_arn,
        unsubscribe_base_url=UNSUBSCRIBE_BASE_URL,
        unsubscribe_mailto=f"unsubscribe@{FROM_ADDRESS.partition('@')[2]}",
        postal_address=POSTAL_ADDRESS,
        **(settings_overrides or {}),
    )
    counter = RequestCounter()
    counter.attach(session.events)  # clients created from this session from now on are counted
    for instrument in instruments:  # e.g. the chaos harness's fault injector: on every client nudge uses
        instrument.attach(session.events)
    container = wiring.build_aws(settings, clock, session=session)
    store = container.store
    assert isinstance(store, DynamoStore)
    ensure_tables(store.models)
    ensure_tables(bind_access_models(settings, region=REGION, connection=store.connection))
    for client in store.botocore_clients():
        counter.attach(client.meta.events)
        for instrument in instruments:
            instrument.attach(client.meta.events)
    counter.counts.clear()  # count the story, not the set-up
    wiring.install(container)

    stack = MotoStack(
        clock=clock,
        settings=settings,
        container=container,
        session=session,
        signing_key=key,
        requests=counter,
        pump=None,  # type: ignore[arg-type]
        queue=None,  # type: ignore[arg-type]
        jobs=None,  # type: ignore[arg-type]
        campaigns=None,  # type: ignore[arg-type]
        _mock=mock,
        webhook_secrets=webhook_secrets,
    )
    # The pump's own reads are the local emulation of Scheduler, not nudge's traffic: a separate client.
    pump_client = boto3.Session(region_name=REGION, botocore_session=_botocore_session()).client("scheduler")
    from moto.sqs.models import sqs_backends

    def consumer(url: str, arn: str, name: str, invoke: Any, visibility: int, batch_size: int) -> QueuePump:
        """Lambda's event-source mapping on one queue, with its own client (not counted as nudge's calls)."""
        client = boto3.Session(region_name=REGION, botocore_session=_botocore_session()).client("sqs")
        backend = lambda: sqs_backends[ACCOUNT][REGION].queues[name]  # noqa: E731
        return QueuePump(client, url, arn, backend, invoke, visibility_timeout=visibility, batch_size=batch_size)

    stack.queue = consumer(work_url, work_arn, WORK_QUEUE, _invoke_worker, names.WORK_VISIBILITY_TIMEOUT, 10)
    stack.jobs = consumer(jobs_url, jobs_arn, JOBS_QUEUE, _invoke_sweep, names.JOBS_VISIBILITY_TIMEOUT, 1)
    stack.campaigns = consumer(
        campaigns_url, campaigns_arn, CAMPAIGNS_QUEUE, _invoke_sweep, names.CAMPAIGNS_VISIBILITY_TIMEOUT, 1
    )
    stack.pump = SchedulePump(
        pump_client,
        settings.schedule_group,
        clock,
        stack.fire_target,
        stack.queue,
        jobs=stack.jobs,
        campaigns=stack.campaigns,
    )
    if daily_job:
        pump_client.create_schedule(
            Name=names.DAILY_SCHEDULE,
            GroupName=settings.schedule_group,
            ScheduleExpression=names.DAILY_CRON,
            ScheduleExpressionTimezone="UTC",
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": SWEEP_FUNCTION_ARN, "RoleArn": settings.scheduler_role_arn, "Input": "{}"},
        )
    if repair_job:
        pump_client.create_schedule(
            Name=names.REPAIR_SCHEDULE,
            GroupName=settings.schedule_group,
            ScheduleExpression=repair_rate,
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": SWEEP_FUNCTION_ARN, "RoleArn": settings.scheduler_role_arn, "Input": '{"job":"repair"}'},
        )
    return stack
