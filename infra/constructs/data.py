"""State: four DynamoDB tables (key layouts in functions/nudge/adapters/dynamodb/models.py)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam

from constructs import Construct
from infra.config import NudgeConfig
from nudge import names

# What the store adapter does, and no more: no Scan, no stream reads. TransactWriteItems is authorized
# item by item through PutItem/UpdateItem/DeleteItem/ConditionCheckItem.
DATA_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
)
TTL_ATTRIBUTE = "expires_at"


class Data(Construct):
    """contacts, events, runs and messages: on-demand, PITR, encrypted, protected outside dev."""

    def __init__(self, scope: Construct, construct_id: str, *, config: NudgeConfig) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        string = dynamodb.AttributeType.STRING
        self.contacts = self._table(
            "Contacts", names.CONTACTS_TABLE, dynamodb.Attribute(name="contact_id", type=string)
        )
        self.events = self._table(
            "Events", names.EVENTS_TABLE, dynamodb.Attribute(name="event_id", type=string), ttl=TTL_ATTRIBUTE
        )
        self.runs = self._table(
            "Runs",
            names.RUNS_TABLE,
            dynamodb.Attribute(name="contact_id", type=string),
            sort_key=dynamodb.Attribute(name="sk", type=string),
        )
        self.messages = self._table(
            "Messages",
            names.MESSAGES_TABLE,
            dynamodb.Attribute(name="contact_id", type=string),
            sort_key=dynamodb.Attribute(name="message_id", type=string),
            ttl=TTL_ATTRIBUTE,
        )

    def _table(
        self,
        construct_id: str,
        base_name: str,
        partition_key: dynamodb.Attribute,
        *,
        sort_key: dynamodb.Attribute | None = None,
        ttl: str | None = None,
    ) -> dynamodb.Table:
        protected = self._config.protected
        return dynamodb.Table(
            self,
            construct_id,
            # Physical names (nudge-contacts-prod) so operators and the CLI can find them; one stack per stage.
            table_name=f"{base_name}-{self._config.stage}",
            partition_key=partition_key,
            sort_key=sort_key,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # AWS-managed KMS key: encrypted at rest, no key policy to keep, no $1/month per key.
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=ttl,
            deletion_protection=protected,
            removal_policy=cdk.RemovalPolicy.RETAIN if protected else cdk.RemovalPolicy.DESTROY,
        )

    @property
    def tables(self) -> dict[str, dynamodb.Table]:
        """Tables by the environment variable that carries each name."""
        return {
            names.ENV_CONTACTS_TABLE: self.contacts,
            names.ENV_EVENTS_TABLE: self.events,
            names.ENV_RUNS_TABLE: self.runs,
            names.ENV_MESSAGES_TABLE: self.messages,
        }

    def grant_read_write(self, grantee: iam.IGrantable) -> None:
        """Item reads and writes on all four tables (ingest and step both start and advance runs)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=list(DATA_ACTIONS), resources=[table.table_arn for table in self.tables.values()]
            )
        )

    def environment(self) -> dict[str, str]:
        return {env: table.table_name for env, table in self.tables.items()}
