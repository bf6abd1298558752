"""State: DynamoDB tables (key layouts in functions/nudge/adapters/dynamodb/models.py and access.py)."""

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
    """The engine's four tables and the integrations' three: on-demand, PITR, encrypted, protected outside dev."""

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
        # The integrations' tables (issue #4): API keys and rate-limit windows, outside ids, privacy requests.
        self.keys = self._table("Keys", names.KEYS_TABLE, dynamodb.Attribute(name="pk", type=string), ttl=TTL_ATTRIBUTE)
        self.contact_refs = self._table(
            "ContactRefs", names.CONTACT_REFS_TABLE, dynamodb.Attribute(name="ref", type=string)
        )
        self.privacy = self._table("Privacy", names.PRIVACY_TABLE, dynamodb.Attribute(name="request_id", type=string))
        # Deliverability (issue #5): suppressions and consent records per hashed address; counters for
        # feedback per step and for send-rate windows (expiring).
        self.suppressions = self._table(
            "Suppressions",
            names.SUPPRESSIONS_TABLE,
            dynamodb.Attribute(name="address_key", type=string),
            sort_key=dynamodb.Attribute(name="sk", type=string),
        )
        self.counters = self._table(
            "Counters",
            names.COUNTERS_TABLE,
            dynamodb.Attribute(name="pk", type=string),
            sort_key=dynamodb.Attribute(name="sk", type=string),
            ttl=TTL_ATTRIBUTE,
        )
        # Feedback events name only the provider's message id; erasure finds a contact's events.
        self.messages.add_global_secondary_index(
            index_name=names.MESSAGES_BY_PROVIDER_ID_INDEX,
            partition_key=dynamodb.Attribute(name="provider_id", type=string),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        # Sparse, local (strongly consistent): a contact's sent messages by send time, for the guardrails.
        self.messages.add_local_secondary_index(
            index_name=names.MESSAGES_SENT_INDEX,
            sort_key=dynamodb.Attribute(name="sent_at", type=string),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=list(names.SENT_INDEX_ATTRIBUTES),
        )
        # Sparse: only contacts whose segment membership can change with time alone carry review_bucket.
        self.contacts.add_global_secondary_index(
            index_name=names.CONTACTS_REVIEW_INDEX,
            partition_key=dynamodb.Attribute(name="review_bucket", type=string),
            sort_key=dynamodb.Attribute(name="review_at", type=string),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        # The repair job finds active runs whose wake-up is overdue (sparse: active runs only; ADR 0007).
        self.runs.add_global_secondary_index(
            index_name=names.RUNS_BY_DUE_INDEX,
            partition_key=dynamodb.Attribute(name="due_shard", type=string),
            sort_key=dynamodb.Attribute(name="due_at", type=string),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        # Erasure finds every outside id that leads to the contact.
        self.contact_refs.add_global_secondary_index(
            index_name=names.CONTACT_REFS_BY_CONTACT_INDEX,
            partition_key=dynamodb.Attribute(name="contact_id", type=string),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        # A shop that removes the app has its contacts found by its refs (sparse: storefront refs only).
        self.contact_refs.add_global_secondary_index(
            index_name=names.CONTACT_REFS_BY_SCOPE_INDEX,
            partition_key=dynamodb.Attribute(name="scope", type=string),
            sort_key=dynamodb.Attribute(name="contact_id", type=string),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        self.events.add_global_secondary_index(
            index_name=names.EVENTS_BY_CONTACT_INDEX,
            partition_key=dynamodb.Attribute(name="contact_id", type=string),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
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
            names.ENV_KEYS_TABLE: self.keys,
            names.ENV_CONTACT_REFS_TABLE: self.contact_refs,
            names.ENV_PRIVACY_TABLE: self.privacy,
            names.ENV_SUPPRESSIONS_TABLE: self.suppressions,
            names.ENV_COUNTERS_TABLE: self.counters,
        }

    @property
    def engine_tables(self) -> list[dynamodb.Table]:
        """What every function that ingests or advances runs reads and writes."""
        return [self.contacts, self.events, self.runs, self.messages]

    def grant_read_write(self, grantee: iam.IGrantable, extra: list[dynamodb.Table] | None = None) -> None:
        """Item reads and writes on the engine's tables, and on `extra` ones this function needs too."""
        tables = self.engine_tables + (extra or [])
        resources = [table.table_arn for table in tables]
        # The indexes (feedback by provider id, erasure by contact, reviews, recent sends) are queried too.
        resources += [
            f"{self.contacts.table_arn}/index/{names.CONTACTS_REVIEW_INDEX}",
            f"{self.runs.table_arn}/index/{names.RUNS_BY_DUE_INDEX}",
            f"{self.events.table_arn}/index/{names.EVENTS_BY_CONTACT_INDEX}",
            f"{self.messages.table_arn}/index/{names.MESSAGES_BY_PROVIDER_ID_INDEX}",
            f"{self.messages.table_arn}/index/{names.MESSAGES_SENT_INDEX}",
        ]
        if self.contact_refs in tables:
            resources.append(f"{self.contact_refs.table_arn}/index/{names.CONTACT_REFS_BY_CONTACT_INDEX}")
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=list(DATA_ACTIONS), resources=resources)
        )

    def grant_shop_contacts(self, grantee: iam.IGrantable) -> None:
        """Query on the refs table's by-scope index only (no item of it): a disconnected shop's contacts."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"],
                resources=[f"{self.contact_refs.table_arn}/index/{names.CONTACT_REFS_BY_SCOPE_INDEX}"],
            )
        )

    def grant_daily_scans(self, grantee: iam.IGrantable) -> None:
        """Scan on the contacts and events tables only (their indexes not): the daily job's two passes."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["dynamodb:Scan"], resources=[self.contacts.table_arn, self.events.table_arn])
        )

    def environment(self) -> dict[str, str]:
        return {env: table.table_name for env, table in self.tables.items()}
