"""CDK assertions on what matters: IAM scope, encryption, DLQs, the functions' shape, cdk-nag, the bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nudge import names
from nudge.openapi import document

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

ROOT = Path(__file__).resolve().parents[2]
SKIP_BUNDLING = {"aws:cdk:bundling-stacks": []}
PROD = {
    "stage": "prod",
    "fromAddress": "hello@shop.example",
    "alarmEmail": "ops@shop.example",
    "detailedAlarms": True,
    "dashboard": True,
    "perFlowMetrics": True,
    "adAudiences": True,
    "createSenderIdentity": True,
    "apiThrottleRate": 20,
    "apiThrottleBurst": 40,
    "postalAddress": "Linen & Clay, 12 Harbour Street, Portland, ME 04101, USA",
    "whatsappPhoneNumberId": "phone-number-id-0123456789abcdef0123456789abcdef",
    "connectInstanceArn": "arn:aws:connect:us-east-1:123456789012:instance/c8c0e68d-2200-4265-82c0-000000000001",
}
ALL_ENV = {value for key, value in vars(names).items() if key.startswith("ENV_")}


@dataclass
class Synth:
    """One synthesized stack: its template as a dict, and cdk-nag's verdict on the app."""

    template: dict[str, Any]
    nag_error: str | None

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {key: res for key, res in self.template["Resources"].items() if res["Type"] == kind}

    def one(self, kind: str, **properties: Any) -> tuple[str, dict[str, Any]]:
        found = [
            (key, res)
            for key, res in self.resources(kind).items()
            if all(res["Properties"].get(name) == value for name, value in properties.items())
        ]
        assert len(found) == 1, f"expected one {kind} with {properties}, found {len(found)}"
        return found[0]


def _synth(context: dict[str, Any], outdir: Path) -> Synth:
    from infra.app import build_app

    app, stack = build_app({**SKIP_BUNDLING, **context}, outdir=str(outdir))
    try:
        assembly = app.synth()
        nag_error = None
    except Exception as exc:  # cdk-nag findings make synth raise; keep the template tests running
        nag_error = str(exc)
        app, stack = build_app({**SKIP_BUNDLING, **context}, nag=False, outdir=str(outdir / "no-nag"))
        assembly = app.synth()
    return Synth(template=assembly.get_stack_artifact(stack.artifact_id).template, nag_error=nag_error)


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    # Without the CLI's environment, whatever ran first: `dev` sets it while it lives (module scope), and a
    # prod synth in the same worker after it would otherwise hold a literal account and region.
    with pytest.MonkeyPatch.context() as env:
        env.delenv("CDK_DEFAULT_ACCOUNT", raising=False)
        env.delenv("CDK_DEFAULT_REGION", raising=False)
        return _synth(PROD, tmp_path_factory.mktemp("prod"))


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    # Defaults, with the environment the CLI sets when deploying: ARNs then hold a literal region and account.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CDK_DEFAULT_ACCOUNT", "123456789012")
        env.setenv("CDK_DEFAULT_REGION", "eu-west-1")
        yield _synth({}, tmp_path_factory.mktemp("dev"))


def render(value: Any) -> str:
    """A CloudFormation value as text: Fn::Join flattened, Ref and GetAtt as ${...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(render(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return "${" + value["Ref"] + "}"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    return json.dumps(value, sort_keys=True)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(synth: Synth, role_key: str) -> Iterator[dict[str, Any]]:
    """Every statement of every policy attached to a role (inline or AWS::IAM::Policy)."""
    role = synth.template["Resources"][role_key]
    for policy in role["Properties"].get("Policies", []):
        yield from policy["PolicyDocument"]["Statement"]
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_key} in policy["Properties"]["Roles"]:
            yield from policy["Properties"]["PolicyDocument"]["Statement"]


def function(synth: Synth, handler: str) -> tuple[str, dict[str, Any]]:
    return synth.one("AWS::Lambda::Function", Handler=handler)


def function_role(synth: Synth, handler: str) -> str:
    return function(synth, handler)[1]["Properties"]["Role"]["Fn::GetAtt"][0]


def work_queue(synth: Synth) -> str:
    (key,) = [k for k in synth.resources("AWS::SQS::Queue") if k.startswith("SchedulingWorkQueue")]
    return key


def jobs_queue(synth: Synth) -> str:
    (key,) = [k for k in synth.resources("AWS::SQS::Queue") if k.startswith("SchedulingJobsQueue")]
    return key


def campaigns_queue(synth: Synth) -> str:
    (key,) = [k for k in synth.resources("AWS::SQS::Queue") if k.startswith("SchedulingCampaignsQueue")]
    return key


def senders_to(synth: Synth, queue_key: str) -> set[str]:
    """The roles allowed sqs:SendMessage on the queue."""
    return {
        role
        for role in synth.resources("AWS::IAM::Role")
        for statement in statements(synth, role)
        if "sqs:SendMessage" in as_list(statement["Action"])
        and f"${{{queue_key}.Arn}}" in {render(r) for r in as_list(statement["Resource"])}
    }


def event_source(synth: Synth, queue_key: str) -> dict[str, Any]:
    """The properties of the one event-source mapping that reads this queue."""
    mappings = synth.resources("AWS::Lambda::EventSourceMapping").values()
    (found,) = [
        m["Properties"] for m in mappings if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_key, "Arn"]}
    ]
    return found


def dead_letter_queue(synth: Synth) -> str:
    (key,) = [k for k in synth.resources("AWS::SQS::Queue") if k.startswith("SchedulingDeadLetterQueue")]
    return key


def scheduler_role(synth: Synth) -> str:
    (key,) = [
        key
        for key, role in synth.resources("AWS::IAM::Role").items()
        if any(
            s["Principal"].get("Service") == "scheduler.amazonaws.com"
            for s in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        )
    ]
    return key


# --- data -------------------------------------------------------------------------------------------------


def test_nine_tables_on_demand_with_pitr_and_encryption_and_protected_in_prod(prod: Synth) -> None:
    tables = prod.resources("AWS::DynamoDB::Table")
    assert len(tables) == 9
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert props["DeletionProtectionEnabled"] is True
        assert table["DeletionPolicy"] == "Retain"


def test_table_keys_and_ttl_match_the_store_adapter(prod: Synth) -> None:
    expected = {
        f"{names.CONTACTS_TABLE}-prod": ([("contact_id", "HASH")], None),
        f"{names.EVENTS_TABLE}-prod": ([("event_id", "HASH")], "expires_at"),
        f"{names.RUNS_TABLE}-prod": ([("contact_id", "HASH"), ("sk", "RANGE")], None),
        f"{names.MESSAGES_TABLE}-prod": ([("contact_id", "HASH"), ("message_id", "RANGE")], "expires_at"),
        f"{names.KEYS_TABLE}-prod": ([("pk", "HASH")], "expires_at"),
        f"{names.CONTACT_REFS_TABLE}-prod": ([("ref", "HASH")], None),
        f"{names.PRIVACY_TABLE}-prod": ([("request_id", "HASH")], None),
        f"{names.SUPPRESSIONS_TABLE}-prod": ([("address_key", "HASH"), ("sk", "RANGE")], None),
        f"{names.COUNTERS_TABLE}-prod": ([("pk", "HASH"), ("sk", "RANGE")], "expires_at"),
    }
    found = {}
    for table in prod.resources("AWS::DynamoDB::Table").values():
        props = table["Properties"]
        keys = [(key["AttributeName"], key["KeyType"]) for key in props["KeySchema"]]
        ttl = props.get("TimeToLiveSpecification")
        found[props["TableName"]] = (keys, ttl["AttributeName"] if ttl and ttl["Enabled"] else None)
    assert found == expected
    indexes = {
        props["TableName"]: [
            (i["IndexName"], i["KeySchema"][0]["AttributeName"], i["Projection"]["ProjectionType"])
            for i in props.get("GlobalSecondaryIndexes", [])
        ]
        for props in (t["Properties"] for t in prod.resources("AWS::DynamoDB::Table").values())
    }
    assert indexes[f"{names.MESSAGES_TABLE}-prod"] == [(names.MESSAGES_BY_PROVIDER_ID_INDEX, "provider_id", "ALL")]
    assert indexes[f"{names.EVENTS_TABLE}-prod"] == [(names.EVENTS_BY_CONTACT_INDEX, "contact_id", "KEYS_ONLY")]
    assert indexes[f"{names.RUNS_TABLE}-prod"] == [(names.RUNS_BY_DUE_INDEX, "due_shard", "KEYS_ONLY")]
    refs_indexes = [
        (names.CONTACT_REFS_BY_CONTACT_INDEX, "contact_id", "KEYS_ONLY"),
        (names.CONTACT_REFS_BY_SCOPE_INDEX, "scope", "KEYS_ONLY"),  # a shop's contacts (app/uninstalled)
    ]
    assert indexes[f"{names.CONTACT_REFS_TABLE}-prod"] == refs_indexes


def test_dev_tables_are_disposable(dev: Synth) -> None:
    for table in dev.resources("AWS::DynamoDB::Table").values():
        assert table["DeletionPolicy"] == "Delete"
        assert not table["Properties"].get("DeletionProtectionEnabled")


# --- functions --------------------------------------------------------------------------------------------


ENGINE_HANDLERS = [
    names.INGEST_HANDLER,
    names.STEP_HANDLER,
    names.WEBHOOKS_HANDLER,
    names.API_HANDLER,
    names.SUBSCRIBE_HANDLER,
    names.SWEEP_HANDLER,
    names.FEEDBACK_HANDLER,  # SES opens and clicks are events: they start and advance runs
    names.WHATSAPP_INBOUND_HANDLER,  # customers' WhatsApp messages are events; deployed with a number (PROD)
    names.MISSED_CALL_HANDLER,  # a missed call starts the text-back flow; deployed with a Connect instance (PROD)
]
HANDLERS = [*ENGINE_HANDLERS, names.UNSUBSCRIBE_HANDLER, names.SMS_INBOUND_HANDLER]
# The tables each function may touch beyond the engine's four (contacts, events, runs, messages).
DELIVERABILITY = {"DataSuppressions", "DataCounters"}
EXTRA_TABLES = {
    names.INGEST_HANDLER: {"DataContactRefs"} | DELIVERABILITY,  # erasure forgets the refs
    names.STEP_HANDLER: DELIVERABILITY,
    names.WEBHOOKS_HANDLER: {"DataContactRefs", "DataPrivacy"} | DELIVERABILITY,
    names.API_HANDLER: {"DataKeys", "DataContactRefs"} | DELIVERABILITY,
    names.SUBSCRIBE_HANDLER: {"DataKeys", "DataContactRefs"} | DELIVERABILITY,  # "notify me" waitlists
    names.FEEDBACK_HANDLER: DELIVERABILITY,
    names.WHATSAPP_INBOUND_HANDLER: {"DataContactRefs"} | DELIVERABILITY,  # a status links the number
    names.MISSED_CALL_HANDLER: {"DataContactRefs"} | DELIVERABILITY,  # the caller's number may lead to a contact
    names.UNSUBSCRIBE_HANDLER: DELIVERABILITY,
    names.SMS_INBOUND_HANDLER: DELIVERABILITY,
    names.SWEEP_HANDLER: DELIVERABILITY,
}


@pytest.mark.parametrize(
    ("handler", "timeout"),
    [
        (names.INGEST_HANDLER, 15),
        (names.STEP_HANDLER, 60),
        (names.WEBHOOKS_HANDLER, 15),
        (names.API_HANDLER, 29),
        (names.SUBSCRIBE_HANDLER, 15),
        (names.SWEEP_HANDLER, 900),
    ],
)
def test_functions_are_arm64_python312_traced(prod: Synth, handler: str, timeout: int) -> None:
    props = function(prod, handler)[1]["Properties"]
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["MemorySize"] == 512
    assert props["Timeout"] == timeout


@pytest.mark.parametrize("handler", HANDLERS)
def test_function_environment_names_every_resource(prod: Synth, handler: str) -> None:
    env = function(prod, handler)[1]["Properties"]["Environment"]["Variables"]
    assert set(env) >= ALL_ENV
    assert env[names.ENV_FLOWS_DIR] == names.BUNDLED_FLOWS_DIR
    assert env[names.ENV_TEMPLATES_DIR] == names.BUNDLED_TEMPLATES_DIR
    assert env[names.ENV_FROM_ADDRESS] == "hello@shop.example"
    assert env[names.ENV_SCHEDULE_GROUP] == f"{names.SCHEDULE_GROUP}-prod"
    assert env["POWERTOOLS_SERVICE_NAME"] == env["POWERTOOLS_METRICS_NAMESPACE"] == names.SERVICE
    # Every function that starts runs enqueues on the work queue, and schedules target that same queue.
    work_key = work_queue(prod)
    assert env[names.ENV_WORK_QUEUE_URL] == {"Ref": work_key}
    assert env[names.ENV_WORK_QUEUE_ARN] == {"Fn::GetAtt": [work_key, "Arn"]}


def test_no_environment_variable_holds_a_secret_value(prod: Synth) -> None:
    secrets = prod.resources("AWS::SecretsManager::Secret")
    (secret_key,) = [key for key in secrets if key.startswith("FunctionsSigningSecret")]
    (unsubscribe_key,) = [key for key in secrets if key.startswith("FunctionsUnsubscribeSecret")]
    (shops_key,) = [key for key in secrets if key.startswith("FunctionsWebhookSecrets")]
    assert prod.template["Resources"][unsubscribe_key]["Properties"]["GenerateSecretString"]["PasswordLength"] == 64
    assert prod.template["Resources"][secret_key]["Properties"]["GenerateSecretString"]["PasswordLength"] == 64
    # The shops' webhook secrets start as an empty document the operator fills in.
    assert json.loads(secrets[shops_key]["Properties"]["SecretString"]) == {"shopify": {}, "woocommerce": {}}
    for _, fn in prod.resources("AWS::Lambda::Function").items():
        env = fn["Properties"]["Environment"]["Variables"]
        assert env[names.ENV_SIGNING_SECRET_ARN] == {"Ref": secret_key}  # the secret's Ref is its ARN
        assert env[names.ENV_WEBHOOK_SECRETS_ARN] == {"Ref": shops_key}
        assert env[names.ENV_UNSUBSCRIBE_SECRET_ARN] == {"Ref": unsubscribe_key}
        for name, value in env.items():
            assert "resolve:secretsmanager" not in json.dumps(value), name
            secretish = any(word in name for word in ("SECRET", "KEY", "TOKEN", "PASSWORD"))
            # ARNs point at a secret; *_TABLE (NUDGE_KEYS_TABLE) names a table of hashed keys
            assert not secretish or name.endswith(("_ARN", "_TABLE")), f"{name} looks like it carries a secret"


def test_only_the_worker_may_read_the_ad_platforms_tokens(prod: Synth) -> None:
    # Audience uploads happen in the worker alone (ADR 0024); request paths only record and queue them.
    (key,) = [k for k in prod.resources("AWS::SecretsManager::Secret") if k.startswith("FunctionsAudienceSecrets")]
    assert json.loads(prod.resources("AWS::SecretsManager::Secret")[key]["Properties"]["SecretString"]) == {
        "meta": {},
        "google": {},
        "tiktok": {},
    }
    readers = {
        handler
        for handler in HANDLERS
        for statement in statements(prod, function_role(prod, handler))
        if "secretsmanager:GetSecretValue" in as_list(statement["Action"])
        and f"${{{key}}}" in {render(r) for r in as_list(statement["Resource"])}
    }
    assert readers == {names.STEP_HANDLER}
    for _, fn in prod.resources("AWS::Lambda::Function").items():
        env = fn["Properties"]["Environment"]["Variables"]
        assert env[names.ENV_AUDIENCE_SECRETS_ARN] == {"Ref": key}  # the ARN, never the value
        assert env[names.ENV_AUDIENCES_DIR] == names.BUNDLED_AUDIENCES_DIR


def test_asynchronous_failures_land_in_the_dead_letter_queue(prod: Synth) -> None:
    # SNS invokes feedback and sms_inbound, Scheduler the sweep: asynchronously. The worker is fed by SQS.
    queue_key = dead_letter_queue(prod)
    configs = {
        c["Properties"]["FunctionName"]["Ref"]: c["Properties"]
        for c in prod.resources("AWS::Lambda::EventInvokeConfig").values()
    }
    async_handlers = (
        names.FEEDBACK_HANDLER,
        names.SMS_INBOUND_HANDLER,
        names.SWEEP_HANDLER,
        names.WHATSAPP_INBOUND_HANDLER,
    )
    assert set(configs) == {function(prod, handler)[0] for handler in async_handlers}
    for props in configs.values():
        assert props["MaximumRetryAttempts"] == 2
        assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": [queue_key, "Arn"]}


def test_the_worker_consumes_the_work_queue_in_batches_with_partial_failures_and_bounded_concurrency(
    prod: Synth,
) -> None:
    mappings = prod.resources("AWS::Lambda::EventSourceMapping").values()
    (props,) = [
        m["Properties"] for m in mappings if m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0] == work_queue(prod)
    ]
    assert props["FunctionName"] == {"Ref": function(prod, names.STEP_HANDLER)[0]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == 10 and props["ScalingConfig"] == {"MaximumConcurrency": 10}
    queue = prod.template["Resources"][work_queue(prod)]["Properties"]
    # Six times the worker's timeout (AWS's advice for event sources); about an hour of failures, then the DLQ.
    assert queue["VisibilityTimeout"] == 6 * 60 == names.WORK_VISIBILITY_TIMEOUT
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dead_letter_queue(prod), "Arn"]},
        "maxReceiveCount": names.WORK_MAX_RECEIVES,
    }
    assert queue["SqsManagedSseEnabled"] is True


def test_the_sweep_function_does_the_jobs_pieces_one_at_a_time_and_only_it_and_the_signed_api_queue_them(
    prod: Synth,
) -> None:
    mappings = prod.resources("AWS::Lambda::EventSourceMapping").values()
    (props,) = [
        m["Properties"] for m in mappings if m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0] == jobs_queue(prod)
    ]
    sweep_key, sweep = function(prod, names.SWEEP_HANDLER)
    assert props["FunctionName"] == {"Ref": sweep_key}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == 1 and props["ScalingConfig"] == {"MaximumConcurrency": 2}
    queue = prod.template["Resources"][jobs_queue(prod)]["Properties"]
    assert queue["VisibilityTimeout"] == 6 * sweep["Properties"]["Timeout"] == names.JOBS_VISIBILITY_TIMEOUT
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dead_letter_queue(prod), "Arn"]},
        "maxReceiveCount": names.JOBS_MAX_RECEIVES,
    }
    # The sweep queues continuations; the webhooks function queues the first piece of a shop's disconnect
    # (app/uninstalled, ADR 0017). Campaigns' pieces have their own queue (below).
    assert senders_to(prod, jobs_queue(prod)) == {
        function_role(prod, names.SWEEP_HANDLER),
        function_role(prod, names.WEBHOOKS_HANDLER),
    }


def test_campaign_pieces_have_their_own_queue_retried_within_a_minute_and_only_the_api_and_sweep_queue_them(
    prod: Synth,
) -> None:
    sweep_key, sweep = function(prod, names.SWEEP_HANDLER)
    props = event_source(prod, campaigns_queue(prod))
    assert props["FunctionName"] == {"Ref": sweep_key}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]  # a failed piece alone comes back
    assert props["BatchSize"] == 1
    assert props["ScalingConfig"] == {"MaximumConcurrency": names.CAMPAIGN_PIECES_CONCURRENCY}
    queue = prod.template["Resources"][campaigns_queue(prod)]["Properties"]
    # Lambda refuses a queue whose visibility timeout is below the function's timeout; the handler shortens
    # a failed piece's own (ChangeMessageVisibility, which the event source's consume grant includes).
    assert queue["VisibilityTimeout"] == sweep["Properties"]["Timeout"] == names.CAMPAIGNS_VISIBILITY_TIMEOUT
    assert max(names.CAMPAIGN_RETRY_SECONDS) <= 60
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dead_letter_queue(prod), "Arn"]},
        "maxReceiveCount": names.CAMPAIGNS_MAX_RECEIVES,
    }
    assert queue["SqsManagedSseEnabled"] is True
    sweep_role = function_role(prod, names.SWEEP_HANDLER)
    consumed = {
        action
        for statement in statements(prod, sweep_role)
        for action in as_list(statement["Action"])
        if f"${{{campaigns_queue(prod)}.Arn}}" in {render(r) for r in as_list(statement["Resource"])}
    }
    assert "sqs:ChangeMessageVisibility" in consumed
    assert senders_to(prod, campaigns_queue(prod)) == {sweep_role, function_role(prod, names.INGEST_HANDLER)}


@pytest.mark.parametrize("handler", ENGINE_HANDLERS)
def test_every_function_that_can_run_a_flow_may_enqueue_work_and_read_the_signing_key(
    prod: Synth, handler: str
) -> None:
    # moto evaluates no IAM: a webhook step in any flow signs its POST, so each of these needs the key.
    role = function_role(prod, handler)
    granted = {
        (action, render(resource))
        for statement in statements(prod, role)
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }
    secret_key = next(
        k for k in prod.resources("AWS::SecretsManager::Secret") if k.startswith("FunctionsSigningSecret")
    )
    assert ("secretsmanager:GetSecretValue", f"${{{secret_key}}}") in granted
    assert ("sqs:SendMessage", f"${{{work_queue(prod)}.Arn}}") in granted


# --- scheduling -------------------------------------------------------------------------------------------


def test_scheduler_role_may_only_reach_the_work_queue_the_sweep_function_and_dead_letter(prod: Synth) -> None:
    role_key = scheduler_role(prod)
    trust = prod.template["Resources"][role_key]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Condition"] for s in trust] == [{"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}]
    sweep_key = function(prod, names.SWEEP_HANDLER)[0]
    granted = {
        (action, render(resource))
        for statement in statements(prod, role_key)
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }
    assert granted == {
        ("lambda:InvokeFunction", f"${{{sweep_key}.Arn}}"),
        ("sqs:SendMessage", f"${{{dead_letter_queue(prod)}.Arn}}"),
        ("sqs:SendMessage", f"${{{work_queue(prod)}.Arn}}"),
    }


def test_dead_letter_queue_is_encrypted_tls_only_and_keeps_14_days(prod: Synth) -> None:
    queue = prod.template["Resources"][dead_letter_queue(prod)]
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    policies = prod.resources("AWS::SQS::QueuePolicy").values()
    assert len(policies) == 4  # the dead-letter, work, jobs and campaigns queues: TLS only
    for policy in policies:
        (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert deny["Effect"] == "Deny"
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_schedule_group_exists_with_the_configured_name(prod: Synth) -> None:
    prod.one("AWS::Scheduler::ScheduleGroup", Name=f"{names.SCHEDULE_GROUP}-prod")


@pytest.mark.parametrize("handler", [names.INGEST_HANDLER, names.STEP_HANDLER, names.FEEDBACK_HANDLER])
def test_functions_manage_schedules_only_in_their_group_and_pass_only_the_scheduler_role(
    prod: Synth, handler: str
) -> None:
    this_account = "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}"
    group_schedules = f"{this_account}:schedule/{names.SCHEDULE_GROUP}-prod/*"
    scheduler_statements = pass_role_statements = 0
    for statement in statements(prod, function_role(prod, handler)):
        actions = as_list(statement["Action"])
        if any(action.startswith("scheduler:") for action in actions):
            scheduler_statements += 1
            assert sorted(actions) == ["scheduler:CreateSchedule", "scheduler:DeleteSchedule", "scheduler:GetSchedule"]
            assert [render(r) for r in as_list(statement["Resource"])] == [group_schedules]
        if "iam:PassRole" in actions:
            pass_role_statements += 1
            assert statement["Resource"] == {"Fn::GetAtt": [scheduler_role(prod), "Arn"]}
            assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
    assert (scheduler_statements, pass_role_statements) == (1, 1)


# --- IAM, all policies ------------------------------------------------------------------------------------


def _all_iam_statements(synth: Synth) -> Iterator[dict[str, Any]]:
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy in synth.resources(kind).values():
            yield from policy["Properties"]["PolicyDocument"]["Statement"]
    for role in synth.resources("AWS::IAM::Role").values():
        for policy in role["Properties"].get("Policies", []):
            yield from policy["PolicyDocument"]["Statement"]


def test_no_iam_statement_grants_wildcard_actions(prod: Synth) -> None:
    for statement in _all_iam_statements(prod):
        for action in as_list(statement["Action"]):
            assert "*" not in action, statement


def test_wildcard_resources_are_only_the_acknowledged_ones(prod: Synth) -> None:
    allowed = {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "sns:Publish",  # direct-to-phone SMS; topics are denied below
        "sns:OptInPhoneNumber",  # a number that texted START, off SNS's opt-out list
        "scheduler:CreateSchedule",
        "scheduler:DeleteSchedule",
        "scheduler:GetSchedule",
    }
    for statement in _all_iam_statements(prod):
        if statement["Effect"] != "Allow":
            continue
        if any("*" in render(resource) for resource in as_list(statement["Resource"])):
            assert set(as_list(statement["Action"])) <= allowed, statement


@pytest.mark.parametrize("handler", ENGINE_HANDLERS)
def test_email_only_from_the_sender_and_sms_never_to_topics(prod: Synth, handler: str) -> None:
    own = list(statements(prod, function_role(prod, handler)))
    (ses,) = [s for s in own if "ses:SendEmail" in as_list(s["Action"])]
    assert sorted(render(r).split(":")[-1] for r in ses["Resource"]) == [
        "configuration-set/nudge-prod",
        "identity/hello@shop.example",
        "identity/shop.example",
    ]
    assert ses["Condition"] == {"StringEquals": {"ses:FromAddress": "hello@shop.example"}}
    (deny,) = [s for s in own if s["Effect"] == "Deny"]
    assert (deny["Action"], deny["Resource"]) == ("sns:Publish", "arn:*:sns:*:*:*")


WHATSAPP = "social-messaging:SendWhatsAppMessage"


@pytest.mark.parametrize("handler", ENGINE_HANDLERS)
def test_whatsapp_only_from_the_configured_number(prod: Synth, handler: str) -> None:
    own = list(statements(prod, function_role(prod, handler)))
    (whatsapp,) = [s for s in own if WHATSAPP in as_list(s["Action"])]
    assert (whatsapp["Effect"], whatsapp["Action"]) == ("Allow", WHATSAPP)  # that one action, nothing else
    assert render(whatsapp["Resource"]) == (
        "arn:${AWS::Partition}:social-messaging:${AWS::Region}:${AWS::AccountId}:"
        "phone-number-id/0123456789abcdef0123456789abcdef"
    )
    env = function(prod, handler)[1]["Properties"]["Environment"]["Variables"]
    assert env[names.ENV_WHATSAPP_PHONE_NUMBER_ID] == PROD["whatsappPhoneNumberId"]
    assert env[names.ENV_WHATSAPP_META_API_VERSION] == "v20.0"


def test_only_the_functions_that_run_flows_may_send_whatsapp(prod: Synth) -> None:
    for handler in (names.UNSUBSCRIBE_HANDLER, names.SMS_INBOUND_HANDLER):
        own = statements(prod, function_role(prod, handler))
        assert not [s for s in own if "social-messaging" in json.dumps(s)], handler


def test_no_whatsapp_permission_is_deployed_without_a_number(dev: Synth) -> None:
    assert not [s for s in _all_iam_statements(dev) if "social-messaging" in json.dumps(s)]
    for _, fn in dev.resources("AWS::Lambda::Function").items():
        assert fn["Properties"]["Environment"]["Variables"][names.ENV_WHATSAPP_PHONE_NUMBER_ID] == ""


def _index_of(arn: str) -> str:
    """ "${DataEventsAB12CD34.Arn}/index/by-contact" -> "DataEvents/index/by-contact"."""
    table, _, index = arn.removeprefix("${").partition(".Arn}/index/")
    return f"{table.rstrip('0123456789ABCDEF')}/index/{index}"


@pytest.mark.parametrize("handler", HANDLERS)
def test_functions_read_write_items_only_on_their_tables_without_scans(prod: Synth, handler: str) -> None:
    own = list(statements(prod, function_role(prod, handler)))
    (data,) = [s for s in own if "dynamodb:GetItem" in as_list(s["Action"])]
    assert "dynamodb:Scan" not in data["Action"]
    engine = {"DataContacts", "DataEvents", "DataRuns", "DataMessages"}
    granted = {r["Fn::GetAtt"][0] for r in data["Resource"] if "Fn::GetAtt" in r}
    assert {key.rstrip("0123456789ABCDEF") for key in granted} == engine | EXTRA_TABLES[handler]
    # ... and the named indexes, no wildcard (the refs' only where the refs table is granted)
    indexes = [_index_of(render(r)) for r in data["Resource"] if "Fn::GetAtt" not in r]
    has_refs = "DataContactRefs" in EXTRA_TABLES[handler]
    refs = ["DataContactRefs/index/" + names.CONTACT_REFS_BY_CONTACT_INDEX] if has_refs else []
    assert sorted(indexes) == sorted(
        [
            "DataContacts/index/" + names.CONTACTS_REVIEW_INDEX,
            "DataRuns/index/" + names.RUNS_BY_DUE_INDEX,
            "DataEvents/index/" + names.EVENTS_BY_CONTACT_INDEX,
            "DataMessages/index/" + names.MESSAGES_BY_PROVIDER_ID_INDEX,
            "DataMessages/index/" + names.MESSAGES_SENT_INDEX,
            *refs,
        ]
    )


@pytest.mark.parametrize("handler", HANDLERS)
def test_only_the_sweep_queries_a_shops_contacts_and_only_through_the_by_scope_index(prod: Synth, handler: str) -> None:
    by_scope = f"/index/{names.CONTACT_REFS_BY_SCOPE_INDEX}"
    own = list(statements(prod, function_role(prod, handler)))
    granted = [s for s in own if any(render(r).endswith(by_scope) for r in as_list(s["Resource"]))]
    if handler != names.SWEEP_HANDLER:
        assert granted == []
        return
    (query,) = granted
    assert as_list(query["Action"]) == ["dynamodb:Query"]  # read the index; no item of the refs table
    assert [_index_of(render(r)) for r in as_list(query["Resource"])] == ["DataContactRefs" + by_scope]


@pytest.mark.parametrize("handler", HANDLERS)
def test_only_the_daily_job_scans_and_only_the_contacts_and_events_tables(prod: Synth, handler: str) -> None:
    own = list(statements(prod, function_role(prod, handler)))
    scans = [s for s in own if "dynamodb:Scan" in as_list(s["Action"])]
    if handler != names.SWEEP_HANDLER:
        assert scans == []
        return
    (scan,) = scans
    assert as_list(scan["Action"]) == ["dynamodb:Scan"]
    tables = sorted(r["Fn::GetAtt"][0].rstrip("0123456789ABCDEF") for r in scan["Resource"])
    assert tables == ["DataContacts", "DataEvents"]  # whole tables, never an index, nothing else


# --- api and monitoring -----------------------------------------------------------------------------------


def _path(synth: Synth, resource_key: str) -> str:
    resource = synth.template["Resources"][resource_key]["Properties"]
    parent = resource["ParentId"]
    prefix = "" if "Fn::GetAtt" in parent else _path(synth, parent["Ref"])
    return f"{prefix}/{resource['PathPart']}"


def test_api_routes_proxy_to_their_functions_with_throttling_tracing_and_access_logs(prod: Synth) -> None:
    served = {handler: function(prod, handler)[0] for handler in HANDLERS}
    routes = set()
    for method in prod.resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        assert props["Integration"]["Type"] == "AWS_PROXY"
        (handler,) = [h for h, key in served.items() if f"${{{key}.Arn}}" in render(props["Integration"]["Uri"])]
        routes.add((props["HttpMethod"], _path(prod, props["ResourceId"]["Ref"]), handler))
    assert routes == {
        ("POST", "/v1/events", names.INGEST_HANDLER),
        ("POST", "/v1/contacts", names.INGEST_HANDLER),
        ("POST", "/v1/flows/{flow_id}/enrollments", names.INGEST_HANDLER),
        ("POST", "/webhooks/shopify", names.WEBHOOKS_HANDLER),
        ("POST", "/webhooks/woocommerce", names.WEBHOOKS_HANDLER),
        ("POST", "/webhooks/twilio/calls", names.WEBHOOKS_HANDLER),  # missed calls (signed by Twilio)
        ("POST", "/v1/track", names.API_HANDLER),
        ("POST", "/v1/identify", names.API_HANDLER),
        ("POST", "/v1/alias", names.API_HANDLER),
        ("POST", "/v1/batch", names.API_HANDLER),
        ("GET", "/v1/openapi.json", names.API_HANDLER),
        ("POST", "/v1/subscribe", names.SUBSCRIBE_HANDLER),
        ("OPTIONS", "/v1/subscribe", names.SUBSCRIBE_HANDLER),
        ("GET", "/v1/subscribe/confirm", names.SUBSCRIBE_HANDLER),
        ("POST", "/v1/subscribe/confirm", names.SUBSCRIBE_HANDLER),  # the confirmation page's button
        ("GET", "/v1/contacts/{contact_id}", names.INGEST_HANDLER),
        ("DELETE", "/v1/contacts/{contact_id}", names.INGEST_HANDLER),
        ("GET", "/v1/unsubscribe/{token}", names.UNSUBSCRIBE_HANDLER),
        ("POST", "/v1/unsubscribe/{token}", names.UNSUBSCRIBE_HANDLER),
        ("POST", "/v1/campaigns", names.INGEST_HANDLER),  # signed, like events (ADR 0019)
        ("GET", "/v1/campaigns/{campaign_id}", names.INGEST_HANDLER),
        ("POST", "/v1/campaigns/{campaign_id}/pause", names.INGEST_HANDLER),
        ("POST", "/v1/campaigns/{campaign_id}/resume", names.INGEST_HANDLER),
        ("POST", "/v1/campaigns/{campaign_id}/cancel", names.INGEST_HANDLER),
    }
    (stage,) = prod.resources("AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "prod"
    assert props["TracingEnabled"] is True
    assert "DestinationArn" in props["AccessLogSetting"]
    (settings,) = props["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (20, 40)
    assert "ApiUrl" in prod.template["Outputs"]


def test_alarms_cover_dead_letters_errors_and_throttles_and_notify_an_encrypted_topic(prod: Synth) -> None:
    alarms = prod.resources("AWS::CloudWatch::Alarm").values()
    metrics = sorted(
        (a["Properties"]["Namespace"], a["Properties"]["MetricName"])
        for a in alarms
        if a["Properties"]["Namespace"] != "AWS/ApiGateway"
    )
    assert metrics == [
        *[("AWS/Lambda", "Errors")] * 11,  # nine functions, the WhatsApp and the Connect one (PROD sets both)
        *[("AWS/Lambda", "Throttles")] * 11,
        ("AWS/SES", "Reputation.BounceRate"),
        ("AWS/SES", "Reputation.ComplaintRate"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("nudge", "DailyContactErrors"),  # contacts the daily job's pieces failed on (ADR 0007)
        ("nudge", "MessagesUnknown"),  # the worker's sends whose outcome was never learnt (ADR 0007)
        ("nudge", "RunsRedriven"),  # stranded runs the repair job re-drove (ADR 0007)
    ]
    (topic_key,) = [key for key in prod.resources("AWS::SNS::Topic") if key.startswith("MonitoringAlarmTopic")]
    topic = prod.template["Resources"][topic_key]
    assert "KmsMasterKeyId" in topic["Properties"]
    thresholds = {"Reputation.BounceRate": 0.02, "Reputation.ComplaintRate": 0.001}
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_key}]
        assert alarm["Properties"]["Threshold"] == thresholds.get(alarm["Properties"]["MetricName"], 0)
    prod.one("AWS::SNS::Subscription", Protocol="email", Endpoint="ops@shop.example")
    (_, dashboard) = prod.one("AWS::CloudWatch::Dashboard")
    body = render(dashboard["Properties"]["DashboardBody"])
    from nudge.handlers.flow_metrics import FEEDBACK

    published = ["MessagesSent", "RunsStarted", "Conversions", "MessagesSkipped", "MessagesFailed"]
    graphed = published + [name for kind, name in FEEDBACK.items() if kind.value != "reject"]
    for metric in graphed:
        assert f"SEARCH('{{nudge,flow}} MetricName=\\\"{metric}\\\"', 'Sum', 300)" in body, metric


def test_dev_without_alarm_email_has_alarms_but_no_topic(dev: Synth) -> None:
    assert [key for key in dev.resources("AWS::SNS::Topic") if key.startswith("Monitoring")] == []
    # By default only what says something is lost or at risk: dead letters, API 5xx, nudge's three totals
    # (stranded runs, unknown outcomes, daily errors) and SES reputation; no dashboard, no per-flow metrics.
    assert len(dev.resources("AWS::CloudWatch::Alarm")) == 7
    assert dev.resources("AWS::CloudWatch::Dashboard") == {}
    [(_, worker)] = [f for f in dev.resources("AWS::Lambda::Function").items() if "Step" in f[0]]
    assert worker["Properties"]["Environment"]["Variables"][names.ENV_PER_FLOW_METRICS] == "false"


# Fixed monthly prices, us-east-1 list prices (docs/deploy.md, "Rough monthly cost", says where from).
MONTHLY = {
    "AWS::CloudWatch::Alarm": 0.10,  # standard-resolution alarm, one metric each
    "AWS::CloudWatch::Dashboard": 3.00,  # past an account's first three
    "AWS::KMS::Key": 1.00,  # customer-managed key
    "AWS::SecretsManager::Secret": 0.40,
}


def idle_cost(stack: Synth) -> dict[str, float]:
    """What the stack's resources cost a month with no traffic at all: the ones priced by the month."""
    return {kind: len(stack.resources(kind)) * price for kind, price in MONTHLY.items() if stack.resources(kind)}


def test_an_idle_dev_stage_costs_at_most_three_dollars_a_month(dev: Synth) -> None:
    cost = idle_cost(dev)
    # docs/deploy.md's arithmetic: 7 alarms $0.70 + 1 key $1.00 + 3 secrets $1.20 = $2.90
    assert cost == pytest.approx(
        {"AWS::CloudWatch::Alarm": 0.70, "AWS::KMS::Key": 1.00, "AWS::SecretsManager::Secret": 1.20}
    )
    assert sum(cost.values()) <= 3.00


def test_the_opt_ins_add_what_the_docs_say(prod: Synth) -> None:
    # 11 functions (PROD sets WhatsApp and Connect) x 2 alarms, the dashboard, the ad platforms' secret;
    # the alarm topic shares the topics' key
    cost = idle_cost(prod)
    assert cost == pytest.approx(
        {
            "AWS::CloudWatch::Alarm": 2.90,
            "AWS::CloudWatch::Dashboard": 3.00,
            "AWS::KMS::Key": 1.00,
            "AWS::SecretsManager::Secret": 1.60,
        }
    )


# --- cdk-nag ----------------------------------------------------------------------------------------------


def test_cdk_nag_finds_nothing_unacknowledged_in_prod(prod: Synth) -> None:
    assert prod.nag_error is None, prod.nag_error


def test_cdk_nag_finds_nothing_unacknowledged_in_dev_defaults(dev: Synth) -> None:
    assert dev.nag_error is None, dev.nag_error


# --- configuration ----------------------------------------------------------------------------------------


def test_cdk_json_context_carries_the_app_defaults() -> None:
    from infra.config import DEFAULTS

    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    assert {key: context[key] for key in DEFAULTS} == DEFAULTS


@pytest.mark.parametrize("postal_address", ["", "   "])
def test_prod_refuses_to_synth_marketing_email_without_a_postal_address(postal_address: str) -> None:
    # Given the shipped brand kit (no address) and the library's marketing flows
    from infra.config import ConfigError, NudgeConfig, require_postal_address

    config = NudgeConfig.from_context({**PROD, "postalAddress": postal_address}.get)

    with pytest.raises(ConfigError, match="postalAddress: stage 'prod' sends marketing email"):
        require_postal_address(config, ROOT / "flows", ROOT / "templates")
    # dev synthesizes (a send still fails closed), and so does prod with the address
    require_postal_address(NudgeConfig.from_context({}.get), ROOT / "flows", ROOT / "templates")
    require_postal_address(NudgeConfig.from_context(PROD.get), ROOT / "flows", ROOT / "templates")


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({"stage": "Prod!"}, "stage"),
        ({"fromAddress": "not-an-address"}, "fromAddress"),
        ({"fromAddress": "a@shop.example", "senderDomain": "other.example"}, "senderDomain"),
        ({"defaultTimezone": "Mars/Olympus"}, "defaultTimezone"),
        ({"apiThrottleRate": "-1"}, "apiThrottleRate"),
        ({"whatsappPhoneNumberId": "+14155550100"}, "whatsappPhoneNumberId"),  # the id, not the number
        ({"whatsappMetaApiVersion": "20"}, "whatsappMetaApiVersion"),
        ({"connectInstanceArn": "arn:aws:connect:us-east-1:123456789012:instance/*"}, "connectInstanceArn"),
    ],
)
def test_bad_context_is_refused_naming_the_key(context: dict[str, str], key: str) -> None:
    from infra.config import ConfigError, NudgeConfig

    with pytest.raises(ConfigError, match=key):
        NudgeConfig.from_context(context.get)


# --- bundling ---------------------------------------------------------------------------------------------


def test_bundle_dependencies_are_pyprojects_runtime_dependencies_and_nothing_else() -> None:
    from infra.bundling import runtime_dependencies

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dependencies = runtime_dependencies()
    assert dependencies == pyproject["project"]["dependencies"]
    assert not any(d.split("[")[0].split(">")[0] in {"typer", "rich", "moto"} for d in dependencies)


def test_cli_or_test_packages_in_runtime_dependencies_are_refused(tmp_path: Path) -> None:
    from infra.bundling import runtime_dependencies

    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["boto3", "typer>=0.12"]\n')
    with pytest.raises(ValueError, match="typer"):
        runtime_dependencies(tmp_path / "pyproject.toml")


def test_local_bundler_copies_sources_and_installs_locked_arm64_wheels(tmp_path: Path) -> None:
    from infra.bundling import LocalPythonBundler

    commands: list[list[str]] = []
    constraints: list[str] = []

    def fake_pip(command: list[str]) -> None:
        commands.append(command)
        constraints.extend(Path(command[command.index("--constraint") + 1]).read_text().split())
        # What pip would put there: phonenumbers with its time-zone data and the geocoder data we prune.
        for data in ("tzdata", "geodata", "carrierdata"):
            (tmp_path / "out" / "phonenumbers" / data).mkdir(parents=True)

    bundler = LocalPythonBundler(ROOT, run=fake_pip)
    assert bundler.try_bundle(str(tmp_path / "out"), None) is True

    out = tmp_path / "out"
    phonenumbers = out / "phonenumbers"
    assert (phonenumbers / "tzdata").is_dir() and not (phonenumbers / "geodata").exists()
    assert not (phonenumbers / "carrierdata").exists()
    # Email templates arrive compiled from MJML: HTML with Jinja in it, and no MJML source or compiler needed.
    templates = out / Path(names.BUNDLED_TEMPLATES_DIR).name
    assert not list(templates.rglob("*.mjml"))
    compiled = (templates / "abandoned_cart" / "reminder_1.html.j2").read_text()
    assert "<mj-" not in compiled and "{{ event.recovery_url }}" in compiled and "@media" in compiled
    assert (templates / "brand.yaml").is_file()
    assert (out / "nudge" / "handlers" / "step.py").is_file()
    for cli_only in ("cli", "local", "report_html.py", "flow_tools.py", "flow_layout.py"):
        assert not (out / "nudge" / cli_only).exists(), cli_only
    _handlers_import_from(out)
    assert (out / Path(names.BUNDLED_FLOWS_DIR).name / "welcome.yaml").is_file()
    assert (out / Path(names.BUNDLED_TEMPLATES_DIR).name).is_dir()
    assert list((out / Path(names.BUNDLED_SEGMENTS_DIR).name).glob("*.yaml"))
    assert not list(out.rglob("__pycache__"))
    (command,) = commands
    assert command[-len(bundler.dependencies) :] == bundler.dependencies
    for flag in ("--platform=manylinux2014_aarch64", "--python-version=3.12", "--implementation=cp", "--target="):
        option, value = flag.split("=")
        assert command[command.index(option) + 1].startswith(value or str(out))
    assert "--only-binary=:all:" in command and "--no-compile" in command
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (boto3,) = [p["version"] for p in lock["package"] if p["name"] == "boto3"]
    assert f"boto3=={boto3}" in constraints


def test_the_bundle_ships_the_catalog_compiled_and_its_functions_read_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from infra.bundling import LocalPythonBundler

    out = tmp_path / "out"
    LocalPythonBundler(ROOT, run=lambda command: None).try_bundle(str(out), None)
    flows, segments = out / Path(names.BUNDLED_FLOWS_DIR).name, out / Path(names.BUNDLED_SEGMENTS_DIR).name
    assert (flows / "_catalog.pickle").is_file()
    # Read as a function reads it: the bundle's package, a fresh interpreter; it matches its files, so it is
    # used (no PyYAML, no pydantic: the records are plain dataclasses), and holds what the YAML says.
    probe = (
        f"import sys, json; sys.path.insert(0, {str(out)!r}); from pathlib import Path; "
        "from nudge import compiled_catalog; "
        f"parts = compiled_catalog.read(Path({str(flows)!r}), Path({str(segments)!r})); "
        "print(json.dumps({'flows': sorted(f.id for f in parts[0]), 'segments': sorted(s.id for s in parts[2]), "
        "'yaml': 'yaml' in sys.modules, 'pydantic': 'pydantic' in sys.modules}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    found = json.loads(done.stdout)
    from nudge.flow_files import load_all

    catalog = load_all(ROOT / "flows", ROOT / "segments")
    assert found == {
        "flows": sorted(f.id for f in catalog.flows),
        "segments": sorted(s.id for s in catalog.segments),
        "yaml": False,
        "pydantic": False,
    }
    # What a function unpickles equals what parsing and validating the YAML gives, model for model.
    from nudge import compiled_catalog

    parts = compiled_catalog.read(flows, segments)
    assert parts is not None
    compiled_flows, compiled_guardrails, compiled_segments = parts
    assert [flow.id for flow in compiled_flows] == [flow.id for flow in catalog.flows]
    assert all(compiled_flows.get(flow.id) == flow for flow in catalog.flows)
    assert compiled_guardrails == catalog.guardrails
    assert list(compiled_segments) == list(catalog.segments)
    assert compiled_segments.rules == catalog.segments.rules
    # Its summary, what the preference page reads, says what the flows say, and reading it alone imports no
    # pydantic and no flow model.
    assert compiled_catalog.read_summary(flows, segments) == {"marketing_topics": catalog.flows.marketing_topics()}
    assert ("birthday", "A birthday gift") in catalog.flows.marketing_topics()
    summary_probe = (
        f"import sys, json; sys.path.insert(0, {str(out)!r}); from pathlib import Path; "
        "from nudge import compiled_catalog; "
        f"summary = compiled_catalog.read_summary(Path({str(flows)!r}), Path({str(segments)!r})); "
        "print(json.dumps({'topics': len(summary['marketing_topics']), "
        "'loaded': sorted(m for m in sys.modules if m.startswith(('pydantic', 'nudge.domain')))}))"
    )
    done = subprocess.run([sys.executable, "-c", summary_probe], check=True, capture_output=True, text=True)
    assert json.loads(done.stdout) == {"topics": len(catalog.flows.marketing_topics()), "loaded": []}
    # A flow edited after bundling: the file no longer matches, so the artefact is not used (the YAML is).
    (flows / "welcome.yaml").write_text((flows / "welcome.yaml").read_text().replace("Welcome", "Hello", 1))
    with caplog.at_level("WARNING", logger="nudge.compiled_catalog"):
        assert compiled_catalog.read(flows, segments) is None
    assert "is stale" in caplog.text


def test_the_bundle_is_compiled_to_bytecode_by_lambdas_python_when_one_is_at_hand(tmp_path: Path) -> None:
    from infra.bundling import LocalPythonBundler

    commands: list[list[str]] = []
    bundler = LocalPythonBundler(ROOT, run=commands.append, compiler="/opt/python3.12/bin/python3.12")
    bundler.try_bundle(str(tmp_path / "out"), None)

    pip, compile_all = commands  # after pip, so the wheels' modules are compiled too
    assert "--no-compile" in pip
    assert compile_all[0] == "/opt/python3.12/bin/python3.12" and compile_all[-1] == str(tmp_path / "out")
    assert "UNCHECKED_HASH" in compile_all[2]  # the bundle's mtimes mean nothing: pycs checked by nothing
    # Run by this machine's Python, the script compiles what it is given (here into a scratch copy).
    scratch = tmp_path / "scratch"
    (scratch / "pkg").mkdir(parents=True)
    (scratch / "pkg" / "mod.py").write_text("X = 1\n")
    (scratch / "pkg" / "broken.py").write_text("print 'py2'\n")
    subprocess.run([sys.executable, *compile_all[1:-1], str(scratch)], check=True, capture_output=True)
    assert [p.name.split(".")[0] for p in (scratch / "pkg" / "__pycache__").iterdir()] == ["mod"]


def test_the_handler_import_probe_fails_when_the_bundle_lacks_a_module_they_need(tmp_path: Path) -> None:
    from infra.bundling import CLI_ONLY, LocalPythonBundler

    LocalPythonBundler(ROOT, run=lambda command: None, excluded=(*CLI_ONLY, "templating.py")).try_bundle(
        str(tmp_path / "out"), None
    )
    with pytest.raises(subprocess.CalledProcessError):
        _handlers_import_from(tmp_path / "out")


def _handlers_import_from(out: Path) -> None:
    """Every handler, and every other module of the bundled package (handlers import some of them only when
    first used: ADR 0020), imports from the bundle alone (its dependencies from this venv, as pip would put
    them)."""
    handlers = [
        ".".join(path.relative_to(out).with_suffix("").parts).removesuffix(".__init__")
        for path in (out / "nudge").rglob("*.py")
    ]
    probe = (
        f"import sys; sys.path.insert(0, {str(out)!r}); import importlib, nudge; "
        f"assert nudge.__file__.startswith({str(out)!r}), nudge.__file__; "
        f"[importlib.import_module(m) for m in {sorted(handlers)!r}]"
    )
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    subprocess.run([sys.executable, "-c", probe], check=True, env=env, capture_output=True)


@pytest.mark.parametrize("stage", ["prod", "dev"])
def test_cfn_lint_finds_nothing(stage: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    # W3005 only: CDK lists a function's role in DependsOn although Role's GetAtt already orders them.
    synth: Synth = request.getfixturevalue(stage)
    template = tmp_path / f"{stage}.template.json"
    template.write_text(json.dumps(synth.template))

    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("cfn-lint")),
            str(template),
            "--format",
            "parseable",
            "--ignore-checks",
            "W3005",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_only_the_inbound_sms_function_may_opt_numbers_back_in(prod: Synth) -> None:
    for handler in HANDLERS:
        allowed = [
            s
            for s in statements(prod, function_role(prod, handler))
            if s["Effect"] == "Allow" and "sns:OptInPhoneNumber" in as_list(s["Action"])
        ]
        assert len(allowed) == (1 if handler == names.SMS_INBOUND_HANDLER else 0), handler


def test_ses_feedback_and_inbound_sms_reach_their_functions(prod: Synth) -> None:
    (destination,) = prod.resources("AWS::SES::ConfigurationSetEventDestination").values()
    spec = destination["Properties"]["EventDestination"]
    assert sorted(spec["MatchingEventTypes"]) == ["bounce", "click", "complaint", "delivery", "open", "reject"]
    topics = prod.resources("AWS::SNS::Topic")
    feedback_topic = spec["SnsDestination"]["TopicARN"]["Ref"]
    subscriptions = {
        (sub["Properties"]["TopicArn"]["Ref"], render(sub["Properties"]["Endpoint"]))
        for sub in prod.resources("AWS::SNS::Subscription").values()
        if sub["Properties"]["Protocol"] == "lambda"
    }
    feedback_fn = function(prod, names.FEEDBACK_HANDLER)[0]
    sms_fn = function(prod, names.SMS_INBOUND_HANDLER)[0]
    whatsapp_fn = function(prod, names.WHATSAPP_INBOUND_HANDLER)[0]
    (sms_topic,) = [key for key in topics if key.startswith("MessagingSmsInboundTopic")]
    (whatsapp_topic,) = [key for key in topics if key.startswith("MessagingWhatsAppInboundTopic")]
    assert subscriptions == {
        (feedback_topic, f"${{{feedback_fn}.Arn}}"),
        (sms_topic, f"${{{sms_fn}.Arn}}"),
        (whatsapp_topic, f"${{{whatsapp_fn}.Arn}}"),
    }
    for key in (feedback_topic, sms_topic, whatsapp_topic):
        assert "KmsMasterKeyId" in topics[key]["Properties"]


def _this_account(value: Any) -> bool:
    """The stack's own account: a Ref to it, or the literal one when the CLI's environment named it (the
    `dev` fixture sets CDK_DEFAULT_ACCOUNT while it lives, so a synth in the same process may see it)."""
    return render(value) in ("${AWS::AccountId}", "123456789012")


def _topic_policy(synth: Synth, topic_key: str) -> list[dict[str, Any]]:
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in synth.resources("AWS::SNS::TopicPolicy").values()
        if {"Ref": topic_key} in p["Properties"]["Topics"]
    ]
    return list(policy)


def test_only_end_user_messaging_social_of_this_account_may_publish_to_the_whatsapp_topic(prod: Synth) -> None:
    (topic,) = [key for key in prod.resources("AWS::SNS::Topic") if key.startswith("MessagingWhatsAppInboundTopic")]
    allowed = [s for s in _topic_policy(prod, topic) if s["Effect"] == "Allow"]
    (publish,) = allowed
    assert publish["Principal"] == {"Service": "social-messaging.amazonaws.com"}
    assert publish["Action"] == "sns:Publish"
    assert _this_account(publish["Condition"]["StringEquals"]["aws:SourceAccount"])
    # ... and the topic's key lets it encrypt, for this account only
    (key,) = [k for name, k in prod.resources("AWS::KMS::Key").items() if name.startswith("MessagingTopicKey")]
    (grant,) = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal", {}).get("Service") == "social-messaging.amazonaws.com"
    ]
    assert list(grant["Condition"]) == ["StringEquals"]
    assert _this_account(grant["Condition"]["StringEquals"]["aws:SourceAccount"])


def test_only_the_configured_connect_instance_may_invoke_the_missed_call_function(prod: Synth) -> None:
    key, _ = function(prod, names.MISSED_CALL_HANDLER)
    permissions = [
        p["Properties"]
        for p in prod.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] in ({"Fn::GetAtt": [key, "Arn"]}, {"Ref": key})
    ]
    [permission] = permissions
    assert _this_account(permission.pop("SourceAccount"))
    assert permission == {
        "Action": "lambda:InvokeFunction",
        "FunctionName": {"Fn::GetAtt": [key, "Arn"]},
        "Principal": "connect.amazonaws.com",
        "SourceArn": PROD["connectInstanceArn"],
    }


def test_no_missed_call_function_is_deployed_without_a_connect_instance(dev: Synth) -> None:
    handlers = {fn["Properties"]["Handler"] for fn in dev.resources("AWS::Lambda::Function").values()}
    assert names.MISSED_CALL_HANDLER not in handlers
    assert "connect.amazonaws.com" not in json.dumps(dev.resources("AWS::Lambda::Permission"))


def test_no_whatsapp_topic_or_function_is_deployed_without_a_number(dev: Synth) -> None:
    assert not [k for k in dev.resources("AWS::SNS::Topic") if "WhatsApp" in k]
    handlers = {fn["Properties"]["Handler"] for fn in dev.resources("AWS::Lambda::Function").values()}
    assert names.WHATSAPP_INBOUND_HANDLER not in handlers
    assert "social-messaging" not in json.dumps(dev.resources("AWS::KMS::Key"))


def test_unsubscribe_links_point_at_the_api(prod: Synth) -> None:
    env = function(prod, names.STEP_HANDLER)[1]["Properties"]["Environment"]["Variables"]
    assert render(env[names.ENV_UNSUBSCRIBE_BASE_URL]).endswith("/prod/v1/unsubscribe")
    assert render(env[names.ENV_UNSUBSCRIBE_BASE_URL]).startswith("https://")


def test_a_daily_schedule_runs_the_segment_sweep_and_one_every_15_minutes_the_repair_job(prod: Synth) -> None:
    schedules = {s["Properties"]["Name"]: s["Properties"] for s in prod.resources("AWS::Scheduler::Schedule").values()}
    assert set(schedules) == {names.DAILY_SCHEDULE, names.REPAIR_SCHEDULE}
    repair = schedules[names.REPAIR_SCHEDULE]
    assert (repair["ScheduleExpression"], json.loads(repair["Target"]["Input"])) == (
        "rate(15 minutes)",
        {"job": "repair"},
    )
    props = schedules[names.DAILY_SCHEDULE]
    assert (props["ScheduleExpression"], props["ScheduleExpressionTimezone"]) == ("cron(0 4 * * ? *)", "UTC")
    sweep_key = function(prod, names.SWEEP_HANDLER)[0]
    assert props["Target"]["Arn"] == {"Fn::GetAtt": [sweep_key, "Arn"]}
    assert "DeadLetterConfig" in props["Target"] and "RetryPolicy" in props["Target"]
    contacts = prod.one("AWS::DynamoDB::Table", TableName=f"{names.CONTACTS_TABLE}-prod")[1]["Properties"]
    (index,) = contacts["GlobalSecondaryIndexes"]
    assert index["IndexName"] == names.CONTACTS_REVIEW_INDEX
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["review_bucket", "review_at"]


def test_the_deployed_api_serves_exactly_the_routes_the_openapi_document_describes(prod: Synth) -> None:
    # The REST API's resources as paths: each resource's PathPart under its parent (the root has none).
    resources = prod.resources("AWS::ApiGateway::Resource")

    def path_of(resource_id: Any) -> str:
        if not isinstance(resource_id, dict) or "Ref" not in resource_id:
            return ""  # Fn::GetAtt RootResourceId: the API's root
        props = resources[resource_id["Ref"]]["Properties"]
        return f"{path_of(props['ParentId'])}/{props['PathPart']}"

    deployed = {
        (props["HttpMethod"], path_of(props["ResourceId"]))
        for props in (m["Properties"] for m in prod.resources("AWS::ApiGateway::Method").values())
    }
    documented = {
        (method.upper(), path)
        for path, item in document()["paths"].items()
        for method in item
        if method != "parameters"
    }

    assert deployed == documented
    assert len(deployed) == 24
