"""Watching: alarms on the dead-letter queue, API 5xx, nudge's own totals and SES reputation; optionally
each function's errors and throttles, and a dashboard.

What a stage costs at rest is mostly this construct's (docs/deploy.md, "Rough monthly cost"): each alarm
is $0.10 a month and a dashboard $3 past an account's first three, so the defaults keep the alarms that
say something is lost or at risk and leave the rest opt-in (ADR 0020, "Cost at rest").
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from infra.config import NudgeConfig
from nudge import names

PERIOD = cdk.Duration.minutes(5)
REPUTATION_PERIOD = cdk.Duration.hours(1)
FLOW_METRICS = {  # metric names published by functions/nudge/handlers/flow_metrics.py, per flow
    "Messages sent per flow": ["MessagesSent"],
    "Runs started and conversions per flow": ["RunsStarted", "Conversions"],
    "Messages skipped and failed per flow": ["MessagesSkipped", "MessagesFailed"],
    "Delivered, opened and clicked per flow": ["Delivered", "Opened", "Clicked"],
    "Bounces, complaints and unsubscribes per flow": ["Bounced", "Complaints", "Unsubscribes"],
    "WhatsApp read, replies and failures after sending per flow": ["Read", "Replies", "FailedAfterSend"],
}
SERVICE_ALARMS = {  # totals over all flows (dimension service=nudge), each alarmed on its first occurrence
    "RunsRedriven": "The repair job found stranded runs (active, nothing pending) and re-drove them (ADR 0007)",
    "MessagesUnknown": "A send's outcome was never learnt (lost response, or the worker died mid-call): not "
    "resent, maybe not delivered (ADR 0007, docs/deploy.md)",
    "DailyContactErrors": "The daily job could not review or score some contacts (logged with their ids); "
    "they are tried again tomorrow (ADR 0007, docs/deploy.md)",
}


class Monitoring(Construct):
    """Every alarm fires on the first occurrence: in a messaging engine, one lost step is one lost message."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: NudgeConfig,
        functions: dict[str, lambda_.Function],
        dead_letter_queue: sqs.IQueue,
        rest_api: apigateway.RestApi,
        topic_key: kms.Key,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarms: list[cloudwatch.Alarm] = []
        self.topic = self._alarm_topic(config.alarm_email, topic_key) if config.alarm_email else None

        self._alarm(
            "DeadLetters",
            dead_letter_queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
            "A step could not be delivered or failed after retries: a run is stuck (see docs/deploy.md)",
        )
        if config.detailed_alarms:
            # Without them nothing goes unnoticed: work that keeps failing reaches the dead-letter queue (queue
            # and asynchronous invocations alike) and a failing request answers 5xx; an error a retry cured
            # is what at-least-once delivery expects (ADR 0007).
            for label, function in functions.items():
                self._alarm(f"{label}Errors", function.metric_errors(period=PERIOD), f"{label} function errors")
                self._alarm(
                    f"{label}Throttles", function.metric_throttles(period=PERIOD), f"{label} function throttles"
                )
        self._alarm("Api5xx", rest_api.metric_server_error(period=PERIOD), "The API answered 5xx")
        # Totals over all flows that the handlers publish with the "service" dimension (flow_metrics.py).
        for name, why in SERVICE_ALARMS.items():
            self._alarm(name, self._total(names.SERVICE, name), why)
        # SES publishes the account's reputation rates itself; above these, Gmail and Yahoo start refusing
        # (complaints under 0.3 %) and SES reviews the account (bounces over 5 %, complaints over 0.1 %).
        for name, threshold, why in (
            ("BounceRate", 0.02, "Bounce rate above 2 %: clean the list before SES reviews the account"),
            ("ComplaintRate", 0.001, "Complaint rate above 0.1 %: mailbox providers will start filtering"),
        ):
            metric = cloudwatch.Metric(
                namespace="AWS/SES", metric_name=f"Reputation.{name}", statistic="Maximum", period=REPUTATION_PERIOD
            )
            self._alarm(f"Ses{name}", metric, why, threshold=threshold)

        self.dashboard = self._dashboard(config, functions, rest_api) if config.dashboard else None

    def _dashboard(
        self, config: NudgeConfig, functions: dict[str, lambda_.Function], rest_api: apigateway.RestApi
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=config.stack_name, default_interval=cdk.Duration.days(1)
        )
        for label, function in functions.items():
            dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title=f"{label}: invocations and errors",
                    left=[function.metric_invocations(period=PERIOD), function.metric_errors(period=PERIOD)],
                    right=[function.metric_throttles(period=PERIOD)],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title=f"{label}: duration",
                    left=[function.metric_duration(period=PERIOD, statistic=stat) for stat in ("p50", "p99")],
                    width=12,
                ),
            )
        graph = self._per_flow if config.per_flow_metrics else self._total
        scope = "per flow" if config.per_flow_metrics else "all flows"
        dashboard.add_widgets(
            *[
                cloudwatch.GraphWidget(
                    title=f"{title} ({scope})", left=[graph(names.SERVICE, name) for name in metric_names], width=8
                )
                for title, metric_names in FLOW_METRICS.items()
            ]
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API: requests, 4xx, 5xx",
                left=[rest_api.metric_count(period=PERIOD)],
                right=[rest_api.metric_client_error(period=PERIOD), rest_api.metric_server_error(period=PERIOD)],
                width=12,
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=12),
        )
        return dashboard

    @staticmethod
    def _total(namespace: str, metric_name: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=metric_name,
            dimensions_map={"service": names.SERVICE},
            statistic="Sum",
            period=PERIOD,
        )

    @staticmethod
    def _per_flow(namespace: str, metric_name: str) -> cloudwatch.MathExpression:
        # SEARCH finds every flow's series, so adding a flow needs no redeploy of the dashboard.
        return cloudwatch.MathExpression(
            expression=f"SEARCH('{{{namespace},flow}} MetricName=\"{metric_name}\"', 'Sum', 300)",
            label=metric_name,
            period=PERIOD,
        )

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, description: str, *, threshold: float = 0) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        if self.topic is not None:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
            alarm.add_ok_action(cloudwatch_actions.SnsAction(self.topic))
        self.alarms.append(alarm)

    def _alarm_topic(self, email: str, key: kms.Key) -> sns.Topic:
        # CloudWatch cannot publish to a topic encrypted with the AWS-managed SNS key: it needs a key that
        # lets cloudwatch.amazonaws.com use it. The feedback topics' key serves (a key is $1 a month).
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": cdk.Stack.of(self).account}},
            )
        )
        topic = sns.Topic(self, "AlarmTopic", master_key=key, enforce_ssl=True)
        topic.add_subscription(subscriptions.EmailSubscription(email))
        return topic
