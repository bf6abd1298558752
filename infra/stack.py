"""NudgeStack: one stack per stage, assembled from one construct per concern."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_

from constructs import Construct
from infra.bundling import lambda_code
from infra.config import NudgeConfig
from infra.constructs.api import Api
from infra.constructs.data import Data
from infra.constructs.functions import Functions
from infra.constructs.messaging import Messaging
from infra.constructs.monitoring import Monitoring
from infra.constructs.scheduling import Scheduling
from nudge import names


class NudgeStack(cdk.Stack):
    """Tables, the schedule group, SES/SNS sending and feedback, eight functions, the API and their alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: NudgeConfig,
        code: lambda_.Code | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, termination_protection=config.protected, **kwargs)  # type: ignore[arg-type]
        cdk.Tags.of(self).add("project", names.SERVICE)
        cdk.Tags.of(self).add("stage", config.stage)

        self.data = Data(self, "Data", config=config)
        self.scheduling = Scheduling(self, "Scheduling", config=config)
        self.messaging = Messaging(self, "Messaging", config=config)
        self.api = Api(self, "Api", config=config)
        self.functions = Functions(
            self,
            "Functions",
            config=config,
            code=code or lambda_code(),
            data=self.data,
            scheduling=self.scheduling,
            messaging=self.messaging,
            public_base_url=self.api.public_base_url,
        )
        self.api.route(self.functions.by_handler)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            functions=self.functions.by_label,
            dead_letter_queue=self.scheduling.dead_letter_queue,
            rest_api=self.api.rest_api,
            topic_key=self.messaging.topic_key,
        )

        outputs = {
            "ApiUrl": self.api.url,
            "SigningSecretArn": self.functions.signing_secret.secret_arn,
            "WebhookSecretsArn": self.functions.webhook_secrets.secret_arn,
            "UnsubscribeSecretArn": self.functions.unsubscribe_secret.secret_arn,
            "FeedbackTopicArn": self.messaging.feedback_topic.topic_arn,
            "SmsInboundTopicArn": self.messaging.sms_inbound_topic.topic_arn,
            "ScheduleGroupName": self.scheduling.group.schedule_group_name,
            "DeadLetterQueueUrl": self.scheduling.dead_letter_queue.queue_url,
            "ConfigurationSetName": self.messaging.configuration_set.configuration_set_name,
            **({"DashboardName": config.stack_name} if config.dashboard else {}),
            **(
                {"AudienceSecretsArn": self.functions.audience_secrets.secret_arn}
                if self.functions.audience_secrets
                else {}
            ),
            **{f"{table.node.id}Table": table.table_name for table in self.data.tables.values()},
        }
        for name, value in outputs.items():
            cdk.CfnOutput(self, name, value=value)
