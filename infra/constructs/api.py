"""The way in: one REST API; each route proxies to the function that serves it."""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from constructs import Construct
from infra.config import NudgeConfig
from nudge.routes import ROUTES


class Api(Construct):
    """Throttled, traced and access-logged; requests are authenticated by their HMAC signature in the function."""

    def __init__(self, scope: Construct, construct_id: str, *, config: NudgeConfig) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        protected = config.protected
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=logs.RetentionDays.THREE_MONTHS if protected else logs.RetentionDays.ONE_WEEK,
            removal_policy=cdk.RemovalPolicy.RETAIN if protected else cdk.RemovalPolicy.DESTROY,
        )
        self.rest_api = apigateway.RestApi(
            self,
            "RestApi",
            rest_api_name=config.stack_name,
            description="nudge: signed events and contacts from storefronts",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # Execution logging needs the account-wide API Gateway CloudWatch role; keep it if the stack goes,
            # other APIs in the account may rely on it.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=cdk.RemovalPolicy.RETAIN,
            deploy_options=apigateway.StageOptions(
                stage_name=config.stage,
                throttling_rate_limit=config.api_throttle_rate,
                throttling_burst_limit=config.api_throttle_burst,
                tracing_enabled=True,
                metrics_enabled=True,
                # Errors only, and never bodies: requests carry personal data.
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                access_log_destination=apigateway.LogGroupLogDestination(self.access_logs),
                access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
            ),
        )
        self._acknowledge()

    def route(self, functions: Mapping[str, lambda_.IFunction]) -> None:
        """Add every route of nudge.routes.ROUTES, each proxied to the function of its handler (by handler)."""
        # No console test-invoke permission: only the deployed stage may call the function.
        integrations = {
            handler: apigateway.LambdaIntegration(function, proxy=True, allow_test_invoke=False)
            for handler, function in functions.items()
        }
        for route in ROUTES:
            self.rest_api.root.resource_for_path(route.path.lstrip("/")).add_method(
                route.method, integrations[route.handler]
            )

    @property
    def url(self) -> str:
        return self.rest_api.url

    @property
    def public_base_url(self) -> str:
        """Where people reach the API (links in email): the custom domain if given, else the stage URL.

        Built from the API's id rather than its stage, so functions can carry it without a dependency cycle
        (the stage depends on the methods, which depend on the functions).
        """
        if self._config.public_base_url:
            return self._config.public_base_url
        stack = cdk.Stack.of(self)
        return f"https://{self.rest_api.rest_api_id}.execute-api.{stack.region}.{stack.url_suffix}/{self._config.stage}"

    def _acknowledge(self) -> None:
        validations = cdk.Validations.of(self.rest_api)
        reasons = {
            "AwsSolutions-APIG2": "Bodies are validated in the function so every refusal is an RFC 9457 problem "
            "(docs/api.md); a gateway validator would answer in its own format",
            "AwsSolutions-APIG3": "No WAF by default (a web ACL costs more than the rest of a small deployment); "
            "requests are HMAC-signed and the stage is throttled. Attach a web ACL to the stage if needed",
            "AwsSolutions-APIG4": "Storefront webhooks cannot carry IAM or Cognito credentials: each request is "
            "authenticated by its HMAC-SHA256 signature before anything is parsed",
            "AwsSolutions-COG4": "No Cognito: callers are servers that sign requests with a shared key",
        }
        for rule, reason in reasons.items():
            validations.acknowledge(cdk.Acknowledgment(id=rule, reason=reason))
        cdk.Validations.of(self.rest_api).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                reason="API Gateway's account-wide logging role; the AWS-managed policy is the documented one",
            )
        )
