"""The Store port over DynamoDB: one adapter per role (nudge.ports), composed over one connection.

Each role's adapter is its own class and module (contacts, events, runs, outbox, step_counters,
address_book, erasure, census, documents, job_log), on the tables and connection of `DynamoTables`; a
function's container holds this composition, and each service sees only the roles its port names.
"""

from __future__ import annotations

from datetime import timedelta

from nudge.adapters.dynamodb.access import AccessModels
from nudge.adapters.dynamodb.address_book import DynamoAddressBook
from nudge.adapters.dynamodb.census import DynamoCensus
from nudge.adapters.dynamodb.contacts import DynamoContacts
from nudge.adapters.dynamodb.documents import DynamoDocuments
from nudge.adapters.dynamodb.erasure import DynamoErasure
from nudge.adapters.dynamodb.events import DynamoEventLog
from nudge.adapters.dynamodb.job_log import DynamoJobLog
from nudge.adapters.dynamodb.models import BoundModels, bind_models
from nudge.adapters.dynamodb.outbox import DynamoOutbox
from nudge.adapters.dynamodb.runs import DynamoRuns
from nudge.adapters.dynamodb.step_counters import DynamoStepCounters
from nudge.settings import Settings


class DynamoStore(
    DynamoContacts,
    DynamoEventLog,
    DynamoRuns,
    DynamoOutbox,
    DynamoStepCounters,
    DynamoAddressBook,
    DynamoErasure,
    DynamoCensus,
    DynamoDocuments,
    DynamoJobLog,
):
    """Implements nudge.ports.Store: every role, over one connection. Each method is one or two DynamoDB
    calls, never a scan (but the Census's passes)."""

    @classmethod
    def for_settings(cls, settings: Settings, *, region: str, host: str | None = None) -> DynamoStore:
        models = bind_models(
            contacts=settings.contacts_table,
            events=settings.events_table,
            runs=settings.runs_table,
            messages=settings.messages_table,
            suppressions=settings.suppressions_table,
            counters=settings.counters_table,
            region=region,
            host=host,
        )
        return cls(models, region, host, event_retention=timedelta(days=settings.event_retention_days))


def ensure_tables(models: BoundModels | AccessModels) -> None:
    """Create the tables if missing (local runs and tests; deployed stacks get them from CDK)."""
    seen: set[str] = set()
    for model in models.all():
        if model.Meta.table_name in seen:
            continue
        seen.add(model.Meta.table_name)
        if not model.exists():
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
