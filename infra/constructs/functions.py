"""Compute: the Lambda functions, each with its own role, log group and only the grants it needs."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as lambda_event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager

from constructs import Construct
from infra.config import NudgeConfig
from infra.constructs.data import Data
from infra.constructs.messaging import Messaging
from infra.constructs.scheduling import Scheduling
from nudge import names

MEMORY_MB = 512
# (construct id, function name suffix, handler, timeout in seconds, description); Functions.by_label keys.
FUNCTIONS = (
    ("Ingest", "ingest", names.INGEST_HANDLER, 15, "nudge: signed events and contacts from the API"),
    (
        "Step",
        "step",
        names.STEP_HANDLER,
        60,
        "nudge: a run's wait is over; advance it (invoked by EventBridge Scheduler)",
    ),
    (
        "Webhooks",
        "webhooks",
        names.WEBHOOKS_HANDLER,
        15,
        "nudge: Shopify and WooCommerce webhooks, verified on the raw body",
    ),
    # a batch of 500 events; API Gateway's own limit is 29 s
    ("Api", "api", names.API_HANDLER, 29, "nudge: Segment-style track, identify, alias and batch with API keys"),
    (
        "Subscribe",
        "subscribe",
        names.SUBSCRIBE_HANDLER,
        15,
        "nudge: public signup forms (publishable key, CORS, rate limit, double opt-in)",
    ),
    (
        "Feedback",
        "feedback",
        names.FEEDBACK_HANDLER,
        30,
        "nudge: SES bounces, complaints, deliveries, opens and clicks (SNS)",
    ),
    (
        "Unsubscribe",
        "unsubscribe",
        names.UNSUBSCRIBE_HANDLER,
        15,
        "nudge: one-click unsubscribe and the preference page (public, token-authorized)",
    ),
    (
        "SmsInbound",
        "sms-inbound",
        names.SMS_INBOUND_HANDLER,
        15,
        "nudge: inbound SMS keywords STOP, START and HELP (SNS)",
    ),
    # Plans the daily job, then does its pieces one per invocation (ADR 0007); and the repair job.
    (
        "Sweep",
        "sweep",
        names.SWEEP_HANDLER,
        names.SWEEP_TIMEOUT,
        "nudge: the daily job: segment reviews (lapsed, at risk), RFM scores, co-purchase table",
    ),
)

# Deployed only when a WhatsApp number is configured: End User Messaging Social's events (SNS).
WHATSAPP_FUNCTION = (
    "WhatsAppInbound",
    "whatsapp-inbound",
    names.WHATSAPP_INBOUND_HANDLER,
    30,
    "nudge: WhatsApp replies, STOP/START and message statuses (SNS from End User Messaging Social)",
)

# Deployed only when an Amazon Connect instance is configured: its contact flows report missed calls.
CONNECT_FUNCTION = (
    "MissedCall",
    "missed-call",
    names.MISSED_CALL_HANDLER,
    8,  # Connect waits at most 8 s for a Lambda function
    "nudge: missed calls from Amazon Connect contact flows (call_missed)",
)


class Functions(Construct):
    """Eight functions over one asset: ingest, step (Scheduler target), webhooks, api (Segment-style), subscribe,
    feedback (SES events), unsubscribe (public page), sms_inbound (STOP/START/HELP)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: NudgeConfig,
        code: lambda_.Code,
        data: Data,
        scheduling: Scheduling,
        messaging: Messaging,
        public_base_url: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.signing_secret = secretsmanager.Secret(
            self,
            "SigningSecret",
            description="HMAC key storefronts sign nudge API requests with (and nudge signs its webhooks with)",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64, exclude_punctuation=True),
            # Storefronts hold a copy: losing it with a stack deletion would break every integration.
            removal_policy=cdk.RemovalPolicy.RETAIN if config.protected else cdk.RemovalPolicy.DESTROY,
        )
        cdk.Validations.of(self.signing_secret).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="The key is shared with storefronts, so rotating it needs their cooperation: "
                "rotation is a documented manual step (docs/deploy.md), not a rotation Lambda",
            )
        )
        # Shops' webhook secrets, {"shopify": {domain: secret}, "woocommerce": {host: secret}}: the operator
        # fills them in (docs/integrations.md); the stack only creates the empty document.
        self.webhook_secrets = self._operator_secret(
            "WebhookSecrets",
            "Storefront webhook signing secrets per shop (JSON), filled in by the operator",
            '{"shopify": {}, "woocommerce": {}}',
            "The secrets are issued by Shopify and WooCommerce per shop; they rotate there, and the "
            "operator pastes the new value (docs/integrations.md)",
        )
        # The ad platforms' tokens, {"meta": {...}, "google": {...}, "tiktok": {...}} (docs/audiences.md): the
        # operator fills them in; only the worker, which uploads audiences, may read them (ADR 0024). Only
        # with `adAudiences` (a secret is $0.40 a month: ADR 0020, Decision 4).
        self.audience_secrets = (
            None
            if not config.ad_audiences
            else self._operator_secret(
                "AudienceSecrets",
                "Ad platforms' API tokens for audience uploads (JSON), filled in by the operator",
                '{"meta": {}, "google": {}, "tiktok": {}}',
                "The tokens are issued by Meta, Google and TikTok; they rotate there, and the operator "
                "pastes the new value (docs/audiences.md)",
            )
        )
        # Unsubscribe tokens in sent mail stay valid as long as this key does: never rotated automatically.
        self.unsubscribe_secret = secretsmanager.Secret(
            self,
            "UnsubscribeSecret",
            description="HMAC key of the unsubscribe tokens in every marketing email",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64, exclude_punctuation=True),
            removal_policy=cdk.RemovalPolicy.RETAIN if config.protected else cdk.RemovalPolicy.DESTROY,
        )
        cdk.Validations.of(self.unsubscribe_secret).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="Rotating it would break the unsubscribe links in every email already sent (RFC 8058 "
                "links must keep working); see docs/adr/0003-deliverability.md",
            )
        )
        environment = {
            **data.environment(),
            **scheduling.environment(),
            **messaging.environment(),
            names.ENV_FLOWS_DIR: names.BUNDLED_FLOWS_DIR,
            names.ENV_TEMPLATES_DIR: names.BUNDLED_TEMPLATES_DIR,
            names.ENV_SEGMENTS_DIR: names.BUNDLED_SEGMENTS_DIR,
            names.ENV_AUDIENCES_DIR: names.BUNDLED_AUDIENCES_DIR,
            names.ENV_AUDIENCE_SECRETS_ARN: self.audience_secrets.secret_arn if self.audience_secrets else "",
            names.ENV_DEFAULT_TIMEZONE: config.default_timezone,
            # The ARN only: the value is read from Secrets Manager at runtime and cached for minutes.
            names.ENV_SIGNING_SECRET_ARN: self.signing_secret.secret_arn,
            names.ENV_WEBHOOK_SECRETS_ARN: self.webhook_secrets.secret_arn,
            names.ENV_PUBLIC_BASE_URL: config.public_base_url,
            names.ENV_UNSUBSCRIBE_SECRET_ARN: self.unsubscribe_secret.secret_arn,
            names.ENV_UNSUBSCRIBE_BASE_URL: f"{public_base_url}/v1/unsubscribe",
            names.ENV_PER_FLOW_METRICS: "true" if config.per_flow_metrics else "false",
            "POWERTOOLS_SERVICE_NAME": names.SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": names.SERVICE,
            "LOG_LEVEL": "INFO",
        }
        self.by_label = {
            label: self._function(
                label,
                function_name=f"{config.stack_name}-{suffix}",
                handler=handler,
                timeout=cdk.Duration.seconds(timeout),
                code=code,
                environment=environment,
                description=description,
            )
            for label, suffix, handler, timeout, description in (
                *FUNCTIONS,
                *((WHATSAPP_FUNCTION,) if messaging.whatsapp_inbound_topic is not None else ()),
                *((CONNECT_FUNCTION,) if config.connect_instance_arn else ()),
            )
        }
        # What API Gateway routes to (nudge.routes names handlers): the function of each handler.
        self.by_handler = {handler: self.by_label[label] for label, _, handler, _, _ in FUNCTIONS}
        self.whatsapp_inbound = self.by_label.get(WHATSAPP_FUNCTION[0])
        self.missed_call = self.by_label.get(CONNECT_FUNCTION[0])
        if self.missed_call is not None:
            # Only the configured Connect instance, in this account, may invoke it (a resource policy).
            self.missed_call.add_permission(
                "ConnectInvoke",
                principal=iam.ServicePrincipal("connect.amazonaws.com"),
                source_arn=config.connect_instance_arn,
                source_account=cdk.Stack.of(self).account,
            )
        self.ingest, self.step, self.webhooks, self.api, self.subscribe = (
            self.by_label[label] for label in ("Ingest", "Step", "Webhooks", "Api", "Subscribe")
        )
        self.feedback, self.unsubscribe, self.sms_inbound, self.sweep = (
            self.by_label[label] for label in ("Feedback", "Unsubscribe", "SmsInbound", "Sweep")
        )
        # The worker: batches of ten, partial batch responses (a failed record alone comes back), and a
        # ceiling on concurrency so a burst drains at the send rate instead of fanning out (ADR 0007).
        self.step.add_event_source(
            lambda_event_sources.SqsEventSource(
                scheduling.work_queue,
                batch_size=10,
                max_batching_window=cdk.Duration.seconds(1),
                report_batch_item_failures=True,
                max_concurrency=config.worker_concurrency,
            )
        )
        # The daily job's pieces, one per invocation (each runs until shortly before the 900 s timeout, then
        # queues its continuation); two at a time, so a day's job neither hogs the account's concurrency
        # nor the tables.
        self.sweep.add_event_source(
            lambda_event_sources.SqsEventSource(
                scheduling.jobs_queue, batch_size=1, report_batch_item_failures=True, max_concurrency=2
            )
        )
        # Campaigns' pieces, one per invocation, up to a piece per Scan segment at once plus the fan-out or
        # decision piece and one spare: at 500/s a segment's piece starts 3,562 runs a minute (ADR 0019).
        self.sweep.add_event_source(
            lambda_event_sources.SqsEventSource(
                scheduling.campaigns_queue,
                batch_size=1,
                report_batch_item_failures=True,
                max_concurrency=names.CAMPAIGN_PIECES_CONCURRENCY,
            )
        )
        scheduling.grant_jobs(self.sweep)
        scheduling.grant_campaign_jobs(self.sweep)  # a campaign piece queues its continuation
        scheduling.grant_campaign_jobs(self.ingest)  # POST /v1/campaigns and resume queue its pieces (ADR 0019)
        scheduling.grant_jobs(self.webhooks)  # app/uninstalled queues a disconnect; a restock queues its notices
        scheduling.daily(
            "Sweep", self.sweep, cron=names.DAILY_CRON, description="nudge: the daily job (segments, RFM, co-purchases)"
        )
        scheduling.daily(
            "Repair",
            self.sweep,
            cron=names.REPAIR_RATE,
            name=names.REPAIR_SCHEDULE,
            payload='{"job":"repair"}',
            description="nudge: re-drive active runs whose wake-up is overdue (ADR 0007)",
        )
        messaging.subscribe_feedback(self.feedback)
        messaging.subscribe_sms_inbound(self.sms_inbound)
        # Scheduler and SNS invoke asynchronously: a function error is retried by Lambda (not by the
        # schedule's retry policy), then lands in the same dead-letter queue as undeliverable schedules.
        if self.whatsapp_inbound is not None:
            messaging.subscribe_whatsapp_inbound(self.whatsapp_inbound)
        asynchronous = [self.feedback, self.sms_inbound, self.sweep]
        if self.whatsapp_inbound is not None:
            asynchronous.append(self.whatsapp_inbound)
        for function in asynchronous:
            function.configure_async_invoke(
                retry_attempts=2,
                max_event_age=cdk.Duration.hours(6),
                on_failure=destinations.SqsDestination(scheduling.dead_letter_queue),
            )
        deliverability = [data.suppressions, data.counters]
        # Functions that start or advance runs get the engine's tables, schedules and sending; beyond that
        # each gets only its own tables and secrets.
        engine_functions = {
            self.ingest: [data.contact_refs, *deliverability],  # DELETE /v1/contacts/{id} forgets their refs
            self.step: deliverability,
            self.webhooks: [data.contact_refs, data.privacy, *deliverability],
            self.api: [data.keys, data.contact_refs, *deliverability],
            self.subscribe: [data.keys, data.contact_refs, *deliverability],  # a "notify me" form joins a waitlist
            self.sweep: deliverability,
            # SES opens and clicks arrive as email_opened/email_clicked events: they start and end runs.
            self.feedback: deliverability,
        }
        if self.whatsapp_inbound is not None:
            # Customers' messages are events (they open the window, start and end runs); a status or a
            # reply links the number to its contact in the refs table.
            engine_functions[self.whatsapp_inbound] = [data.contact_refs, *deliverability]
        if self.missed_call is not None:
            # A missed call is an event (it starts the text-back flow); the caller's number may lead to a contact.
            engine_functions[self.missed_call] = [data.contact_refs, *deliverability]
        for function, tables in engine_functions.items():
            data.grant_read_write(function, tables)
            scheduling.grant_manage_schedules(function)
            scheduling.grant_enqueue(function)  # runs started or deferred sends go on the work queue
            messaging.grant_send(function)
            messaging.grant_whatsapp_send(function)  # only when a WhatsApp number is configured
            self.unsubscribe_secret.grant_read(function)  # every marketing email carries a signed link
            self._acknowledge_wildcards(function, scheduling)
        # Unsubscribe and inbound SMS change contacts and suppressions; only the last one sends (HELP), and
        # it takes a number that texts START off SNS's own opt-out list.
        # RFM needs the whole customer base and co-purchases every retained order: the daily job scans.
        data.grant_daily_scans(self.sweep)
        data.grant_shop_contacts(self.sweep)  # a disconnect piece walks a shop's contacts (ADR 0017)
        for function in (self.unsubscribe, self.sms_inbound):
            data.grant_read_write(function, deliverability)
        self.unsubscribe_secret.grant_read(self.unsubscribe)  # the page checks tokens
        cdk.Validations.of(self.unsubscribe.role).acknowledge(  # type: ignore[arg-type]
            cdk.Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="X-Ray PutTraceSegments/PutTelemetryRecords support no resource",
            )
        )
        messaging.grant_send(self.sms_inbound)
        messaging.grant_sms_opt_in(self.sms_inbound)
        self._acknowledge_sms_wildcard(self.sms_inbound)
        # Every function that can run a flow may need the key: it signs webhook steps (and verifies requests).
        for function in engine_functions:
            self.signing_secret.grant_read(function)
        self.webhook_secrets.grant_read(self.webhooks)
        # The ledger is in the counters table every flow function already writes; uploads are the worker's.
        if self.audience_secrets is not None:
            self.audience_secrets.grant_read(self.step)

    def _operator_secret(self, construct_id: str, description: str, initial: str, reason: str) -> secretsmanager.Secret:
        """A JSON secret the stack creates empty and the operator fills in; it rotates at its issuer."""
        secret = secretsmanager.Secret(
            self,
            construct_id,
            description=description,
            secret_string_value=cdk.SecretValue.unsafe_plain_text(initial),
            removal_policy=cdk.RemovalPolicy.RETAIN if self._config.protected else cdk.RemovalPolicy.DESTROY,
        )
        cdk.Validations.of(secret).acknowledge(cdk.Acknowledgment(id="AwsSolutions-SMG4", reason=reason))
        return secret

    @property
    def all(self) -> list[lambda_.Function]:
        return list(self.by_label.values())

    def _function(
        self,
        construct_id: str,
        *,
        function_name: str,
        handler: str,
        timeout: cdk.Duration,
        code: lambda_.Code,
        environment: dict[str, str],
        description: str,
    ) -> lambda_.Function:
        protected = self._config.protected
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=logs.RetentionDays.THREE_MONTHS if protected else logs.RetentionDays.ONE_WEEK,
            removal_policy=cdk.RemovalPolicy.RETAIN if protected else cdk.RemovalPolicy.DESTROY,
        )
        # An own role instead of AWSLambdaBasicExecutionRole: logs may go to this function's group only.
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of {function_name}",
        )
        log_group.grant_write(role)
        function = lambda_.Function(
            self,
            construct_id,
            function_name=function_name,
            description=description,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=code,
            memory_size=MEMORY_MB,
            timeout=timeout,
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
            role=role,
            log_group=log_group,
        )
        cdk.Validations.of(function).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-L1",
                reason="Python 3.12 is pinned on purpose: the bundle's wheels are built for cp312 (infra/bundling.py)",
            )
        )
        return function

    @staticmethod
    def _acknowledge_sms_wildcard(function: lambda_.Function) -> None:
        cdk.Validations.of(function.role).acknowledge(  # type: ignore[arg-type]
            cdk.Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="X-Ray PutTraceSegments/PutTelemetryRecords support no resource; the HELP reply is an SMS "
                "Publish to a phone number, which has no ARN (topics and endpoints are explicitly denied), and "
                "OptInPhoneNumber names a number, not a resource",
            )
        )

    @staticmethod
    def _acknowledge_wildcards(function: lambda_.Function, scheduling: Scheduling) -> None:
        """Each wildcard the functions' policies hold, and why AWS leaves no narrower choice."""
        validations = cdk.Validations.of(function.role)  # type: ignore[arg-type]
        validations.acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="X-Ray PutTraceSegments/PutTelemetryRecords support no resource; SMS Publish to a phone "
                "number has no ARN (topics and endpoints are explicitly denied)",
            )
        )
        validations.acknowledge(
            cdk.Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{scheduling.schedules_arn_for_nag}]",
                reason="Schedules are named per wake-up at runtime; the wildcard is confined to this stack's group",
            )
        )
