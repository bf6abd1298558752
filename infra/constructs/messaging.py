"""Sending: an SES configuration set (and optionally the sender's domain identity), and SMS over SNS."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_ses as ses
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions

from constructs import Construct
from infra.config import NudgeConfig
from nudge import names

# SESv2 SendEmail is authorized as ses:SendEmail; Raw content may also be checked as ses:SendRawEmail.
EMAIL_ACTIONS = ("ses:SendEmail", "ses:SendRawEmail")


class Messaging(Construct):
    """Email may leave only from the configured address and domain; SMS only to phone numbers."""

    def __init__(self, scope: Construct, construct_id: str, *, config: NudgeConfig) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self._config = config
        self.configuration_set = ses.ConfigurationSet(
            self,
            "ConfigurationSet",
            configuration_set_name=config.ses_configuration_set_name,
            reputation_metrics=True,
            # Account-level suppression also applies to this set: never mail a bounced or complaining address.
            suppression_reasons=ses.SuppressionReasons.BOUNCES_AND_COMPLAINTS,
        )
        if config.create_sender_identity:
            # Easy DKIM: the three CNAME records below must be published in the domain's DNS.
            identity = ses.EmailIdentity(
                self,
                "SenderIdentity",
                identity=ses.Identity.domain(config.sender_domain),
                configuration_set=self.configuration_set,
            )
            for index, record in enumerate(identity.dkim_records, start=1):
                cdk.CfnOutput(stack, f"DkimCname{index}", value=f"{record.name} CNAME {record.value}")
        # The domain identity, and the address itself in case it is verified on its own (SES then uses it).
        self.identity_arns = [
            stack.format_arn(service="ses", resource="identity", resource_name=identity_name)
            for identity_name in (config.sender_domain, config.from_address)
        ]
        self.configuration_set_arn = stack.format_arn(
            service="ses", resource="configuration-set", resource_name=config.ses_configuration_set_name
        )
        # Feedback: SES publishes bounces, complaints, deliveries, opens, clicks and rejects to a topic the
        # feedback function reads; inbound SMS (STOP, START, HELP) arrive on another topic, which the
        # origination number's two-way SMS setting names (docs/deploy.md). The topics are encrypted with a
        # key the two publishing services may use (AWS's own SNS key does not let them).
        self.topic_key = kms.Key(
            self,
            "TopicKey",
            description="nudge feedback and inbound-SMS topics",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.RETAIN if config.protected else cdk.RemovalPolicy.DESTROY,
            pending_window=cdk.Duration.days(7),
        )
        self.topic_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("ses.amazonaws.com"), iam.ServicePrincipal("sms-voice.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        self.feedback_topic = sns.Topic(self, "FeedbackTopic", master_key=self.topic_key, enforce_ssl=True)
        self.configuration_set.add_event_destination(
            "Feedback",
            destination=ses.EventDestination.sns_topic(self.feedback_topic),
            events=[
                ses.EmailSendingEvent.BOUNCE,
                ses.EmailSendingEvent.COMPLAINT,
                ses.EmailSendingEvent.DELIVERY,
                ses.EmailSendingEvent.OPEN,
                ses.EmailSendingEvent.CLICK,
                ses.EmailSendingEvent.REJECT,
            ],
        )
        self.sms_inbound_topic = sns.Topic(self, "SmsInboundTopic", master_key=self.topic_key, enforce_ssl=True)
        self.sms_inbound_topic.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("sms-voice.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.sms_inbound_topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )

        # WhatsApp: End User Messaging Social publishes the WABA's events (customers' messages, statuses) to a
        # topic the WABA's event destination names (docs/whatsapp.md); only when a WhatsApp number is set.
        self.whatsapp_inbound_topic: sns.Topic | None = None
        if config.whatsapp_phone_number_id:
            social = iam.ServicePrincipal("social-messaging.amazonaws.com")
            self.topic_key.add_to_resource_policy(
                iam.PolicyStatement(
                    principals=[social],
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    resources=["*"],
                    conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
                )
            )
            topic = sns.Topic(self, "WhatsAppInboundTopic", master_key=self.topic_key, enforce_ssl=True)
            topic.add_to_resource_policy(
                iam.PolicyStatement(
                    principals=[social],
                    actions=["sns:Publish"],
                    resources=[topic.topic_arn],
                    conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
                )
            )
            cdk.CfnOutput(stack, "WhatsAppInboundTopicArn", value=topic.topic_arn)
            self.whatsapp_inbound_topic = topic

    def subscribe_feedback(self, function: lambda_.IFunction) -> None:
        self.feedback_topic.add_subscription(subscriptions.LambdaSubscription(function))

    def subscribe_sms_inbound(self, function: lambda_.IFunction) -> None:
        self.sms_inbound_topic.add_subscription(subscriptions.LambdaSubscription(function))

    def subscribe_whatsapp_inbound(self, function: lambda_.IFunction) -> None:
        if self.whatsapp_inbound_topic is not None:
            self.whatsapp_inbound_topic.add_subscription(subscriptions.LambdaSubscription(function))

    def grant_send(self, grantee: iam.IGrantable) -> None:
        """Send email as the from address through the configuration set, and SMS to phone numbers."""
        principal = grantee.grant_principal
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=list(EMAIL_ACTIONS),
                resources=[*self.identity_arns, self.configuration_set_arn],
                conditions={"StringEquals": {"ses:FromAddress": self._config.from_address}},
            )
        )
        # Publishing to a phone number has no ARN to name: IAM sees the number itself as the resource.
        principal.add_to_principal_policy(iam.PolicyStatement(actions=["sns:Publish"], resources=["*"]))
        # ... so deny every ARN-named target (topics, mobile endpoints): the functions text people, not topics.
        principal.add_to_principal_policy(
            iam.PolicyStatement(effect=iam.Effect.DENY, actions=["sns:Publish"], resources=["arn:*:sns:*:*:*"])
        )

    @property
    def whatsapp_number_arn(self) -> str | None:
        """The WhatsApp number's ARN, if one is configured: what SendWhatsAppMessage is authorized on.

        The service's id is `phone-number-id-<hex>`; its ARN ends `phone-number-id/<hex>` (the ARN pattern
        of the service model botocore ships). An ARN given as the setting is used as it is.
        """
        number = self._config.whatsapp_phone_number_id
        if not number:
            return None
        if number.startswith("arn:"):
            return number
        return cdk.Stack.of(self).format_arn(
            service="social-messaging",
            resource="phone-number-id",
            resource_name=number.removeprefix("phone-number-id-"),
            arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
        )

    def grant_whatsapp_send(self, grantee: iam.IGrantable) -> None:
        """SendWhatsAppMessage from the configured number only; nothing at all when none is configured."""
        if (arn := self.whatsapp_number_arn) is not None:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(actions=["social-messaging:SendWhatsAppMessage"], resources=[arn])
            )

    def grant_sms_opt_in(self, grantee: iam.IGrantable) -> None:
        """OptInPhoneNumber after a START: like Publish to a number, it names no ARN IAM could scope."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["sns:OptInPhoneNumber"], resources=["*"])
        )

    def environment(self) -> dict[str, str]:
        config = self._config
        return {
            names.ENV_FROM_ADDRESS: config.from_address,
            names.ENV_SES_CONFIGURATION_SET: self.configuration_set.configuration_set_name,
            names.ENV_POSTAL_ADDRESS: config.postal_address,
            names.ENV_UNSUBSCRIBE_MAILTO: config.unsubscribe_mailto,
            names.ENV_UTM_PARAMS: "utm_source=nudge&utm_medium=email",
            names.ENV_SES_MAX_SEND_RATE: str(config.ses_max_send_rate),
            names.ENV_EVENT_RETENTION_DAYS: "90",
            names.ENV_SMS_HELP_TEXT: "Reply STOP to opt out, START to opt back in. Msg&data rates may apply.",
            # Empty when not configured: the functions then refuse WhatsApp sends (and hold no permission).
            names.ENV_WHATSAPP_PHONE_NUMBER_ID: config.whatsapp_phone_number_id,
            names.ENV_WHATSAPP_META_API_VERSION: config.whatsapp_meta_api_version,
        }
