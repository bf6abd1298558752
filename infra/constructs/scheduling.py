"""Work and waits: the worker's SQS queue, a Scheduler group for later wake-ups, their role and dead-letter queue.

ADR 0007: work due within 15 minutes goes on the queue with a delay; later wake-ups are one-time schedules
whose target is the same queue. The worker consumes it through an event-source mapping.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from infra.config import NudgeConfig
from nudge import names

SCHEDULER_SERVICE = "scheduler.amazonaws.com"
# What the functions do with schedules: create one per wake-up, delete on exit, read one back.
SCHEDULE_ACTIONS = ("scheduler:CreateSchedule", "scheduler:DeleteSchedule", "scheduler:GetSchedule")


class Scheduling(Construct):
    """The functions create schedules at runtime; this gives them a group, a role to pass and a DLQ."""

    def __init__(self, scope: Construct, construct_id: str, *, config: NudgeConfig) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.group_name = f"{names.SCHEDULE_GROUP}-{config.stage}"
        # Deleting a group deletes its schedules: pending wake-ups go with the stack, the tables stay.
        self.group = scheduler.ScheduleGroup(
            self, "Group", schedule_group_name=self.group_name, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        # Receives what could not be delivered: from Scheduler (after its retry policy) and from the step
        # function's asynchronous invocations that failed after Lambda's own retries.
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=f"{config.stack_name}-step-dlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        # The worker's queue: retries come from SQS (visibility timeout, then the DLQ after maxReceiveCount).
        self.work_queue = self._queue(
            "WorkQueue", f"{config.stack_name}-work", names.WORK_VISIBILITY_TIMEOUT, names.WORK_MAX_RECEIVES
        )
        # The daily job's pieces (ADR 0007): one per sweep invocation; a failed piece retried, then the DLQ.
        self.jobs_queue = self._queue(
            "JobsQueue", f"{config.stack_name}-jobs", names.JOBS_VISIBILITY_TIMEOUT, names.JOBS_MAX_RECEIVES
        )
        # Campaigns' pieces (ADR 0019): a failed piece shortens its own wait (ChangeMessageVisibility) to
        # come back within a minute; more receives than the daily job's; the same dead-letter queue, whose
        # alarm covers it (no alarm of its own: an idle queue costs nothing, an alarm $0.10 a month).
        self.campaigns_queue = self._queue(
            "CampaignsQueue",
            f"{config.stack_name}-campaigns",
            names.CAMPAIGNS_VISIBILITY_TIMEOUT,
            names.CAMPAIGNS_MAX_RECEIVES,
        )
        self.role = iam.Role(
            self,
            "SchedulerRole",
            description="Assumed by EventBridge Scheduler to deliver wake-ups to the nudge work queue, nothing else",
            # Only schedules of this account may use the role (confused-deputy guard).
            assumed_by=iam.ServicePrincipal(
                SCHEDULER_SERVICE, conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
        )
        # sqs:SendMessage only (grant_send_messages would add GetQueueAttributes and GetQueueUrl).
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["sqs:SendMessage"],
                resources=[self.dead_letter_queue.queue_arn, self.work_queue.queue_arn],
            )
        )
        cdk.Validations.of(self.dead_letter_queue).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is the dead-letter queue (of the work queue, Scheduler and async invocations)",
            )
        )
        # Every schedule the functions may touch lives in this group; names are made at runtime per wake-up.
        self.schedules_arn = stack.format_arn(
            service="scheduler",
            resource="schedule",
            resource_name=f"{self.group_name}/*",
            arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
        )
        # The same ARN as cdk-nag spells it in a finding id (unresolved pseudo parameters as <AWS::...>);
        # region and account are literals when the stack has an explicit environment.
        partition, region, account = (
            f"<AWS::{pseudo}>" if cdk.Token.is_unresolved(value) else value
            for pseudo, value in (
                ("Partition", stack.partition),
                ("Region", stack.region),
                ("AccountId", stack.account),
            )
        )
        self.schedules_arn_for_nag = f"arn:{partition}:scheduler:{region}:{account}:schedule/{self.group_name}/*"

    def _queue(self, construct_id: str, name: str, visibility: int, max_receives: int) -> sqs.Queue:
        """An encrypted, TLS-only queue whose records go to the dead-letter queue after `max_receives`."""
        return sqs.Queue(
            self,
            construct_id,
            queue_name=name,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(4),
            visibility_timeout=cdk.Duration.seconds(visibility),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letter_queue, max_receive_count=max_receives),
        )

    def allow_invoke(self, function: lambda_.IFunction) -> None:
        """Let the role invoke this function (the sweep function's daily schedule; wake-ups go to the queue)."""
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function.function_arn])
        )

    def daily(
        self,
        construct_id: str,
        function: lambda_.IFunction,
        *,
        cron: str,
        description: str,
        name: str | None = None,
        payload: str = "{}",
    ) -> None:
        """A recurring schedule in this group (a fixed name the runtime never computes, so never deletes)."""
        self.allow_invoke(function)
        scheduler.CfnSchedule(
            self,
            construct_id,
            name=name or f"daily-{construct_id.lower()}",
            group_name=self.group.schedule_group_name,
            description=description,
            schedule_expression=cron,
            schedule_expression_timezone="UTC",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=function.function_arn,
                role_arn=self.role.role_arn,
                input=payload,
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_retry_attempts=3, maximum_event_age_in_seconds=6 * 3600
                ),
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(arn=self.dead_letter_queue.queue_arn),
            ),
        )

    def grant_manage_schedules(self, grantee: iam.IGrantable) -> None:
        """Create, delete and read schedules in this group only, and pass exactly this role to Scheduler."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=list(SCHEDULE_ACTIONS), resources=[self.schedules_arn])
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": SCHEDULER_SERVICE}},
            )
        )

    def grant_enqueue(self, grantee: iam.IGrantable) -> None:
        """sqs:SendMessage on the work queue only (grant_send_messages would add GetQueueAttributes/Url)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.work_queue.queue_arn])
        )

    def grant_jobs(self, grantee: iam.IGrantable) -> None:
        """sqs:SendMessage on the jobs queue only: pieces of the daily job, a campaign, a disconnect, notices."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.jobs_queue.queue_arn])
        )

    def grant_campaign_jobs(self, grantee: iam.IGrantable) -> None:
        """sqs:SendMessage on the campaigns' queue only: a new or resumed campaign's pieces, continuations."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.campaigns_queue.queue_arn])
        )

    def environment(self) -> dict[str, str]:
        return {
            names.ENV_JOBS_QUEUE_URL: self.jobs_queue.queue_url,
            names.ENV_CAMPAIGNS_QUEUE_URL: self.campaigns_queue.queue_url,
            names.ENV_WORK_QUEUE_URL: self.work_queue.queue_url,
            names.ENV_WORK_QUEUE_ARN: self.work_queue.queue_arn,
            names.ENV_SCHEDULE_GROUP: self.group.schedule_group_name,
            names.ENV_SCHEDULER_ROLE_ARN: self.role.role_arn,
            names.ENV_SCHEDULER_DLQ_ARN: self.dead_letter_queue.queue_arn,
        }
