"""The Runs role (nudge.ports.Runs) over DynamoDB.

Runs and their flow slots; the wake-up's one read; the advance's commit (the outbox).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from nudge.adapters.dynamodb import send_log
from nudge.adapters.dynamodb.models import (
    RUN_DUE_SHARDS,
    RUN_PREFIX,
    SLOT_PREFIX,
    STATE_SK,
)
from nudge.adapters.dynamodb.tables import (
    BATCH_GET,
    BATCH_GET_ATTEMPTS,
    DynamoTables,
    cancellation_codes,
    condition_failed,
)
from nudge.domain.model import (
    FlowSlot,
    Message,
    Run,
)
from nudge.ports import ConflictError, SendLog, WakeReads


class DynamoRuns(DynamoTables):
    """Implements nudge.ports.Runs."""

    def flow_slots(self, contact_id: str) -> dict[str, FlowSlot]:
        model = self.models.flow_slots
        return {
            item.flow_id: FlowSlot(
                flow_id=item.flow_id,
                active_run_id=item.active_run_id,
                last_started_at=item.last_started_at,
                started_count=int(item.started_count or 0),
            )
            for item in model.query(contact_id, model.sk.startswith(SLOT_PREFIX), consistent_read=True)
        }

    def start_run(self, run: Run, expected: FlowSlot | None) -> Run | None:
        stored = replace(run, version=1)
        model = self.models.flow_slots
        starts = expected.started_count if expected else 0
        slot = model(
            contact_id=run.contact_id,
            sk=SLOT_PREFIX + run.flow_id,
            flow_id=run.flow_id,
            active_run_id=run.run_id,
            last_started_at=run.started_at,
            started_count=starts + 1,
        )
        # The slot must be as we read it: no active run, and no other start since.
        if expected is None:
            slot_condition = model.sk.does_not_exist()
        else:
            slot_condition = model.active_run_id.does_not_exist() & (model.started_count == starts)
        try:
            with TransactWrite(connection=self._connection) as tx:
                tx.save(slot, condition=slot_condition)
                tx.save(self._run_item(stored), condition=self.models.runs.sk.does_not_exist())
        except TransactWriteError as exc:
            if condition_failed(exc):
                return None
            raise
        return stored

    def get_run(self, contact_id: str, run_id: str) -> Run | None:
        try:
            item = self.models.runs.get(contact_id, RUN_PREFIX + run_id, consistent_read=True)
        except self.models.runs.DoesNotExist:
            return None
        return self._run_from(item)

    def run_with_context(
        self,
        contact_id: str,
        run_id: str,
        message_ids: Sequence[str] = (),
        address_keys: Sequence[str] = (),
        sends_since: datetime | None = None,
    ) -> WakeReads:
        """The run, its contact, the named messages and address states, and the contact's send log: one
        strongly consistent BatchGetItem."""
        runs, contacts, messages, addresses = (
            self.models.runs,
            self.models.contacts,
            self.models.messages,
            self.models.addresses,
        )
        keys_wanted = list(dict.fromkeys(address_keys))[:3]
        wanted = list(dict.fromkeys(message_ids))[: BATCH_GET - 3 - len(keys_wanted)]
        run_keys = [{"contact_id": {"S": contact_id}, "sk": {"S": RUN_PREFIX + run_id}}]
        if sends_since is not None:
            run_keys.append({"contact_id": {"S": contact_id}, "sk": {"S": send_log.SENDS_SK}})
        request: dict[str, Any] = {
            runs.Meta.table_name: {"Keys": run_keys, "ConsistentRead": True},
            contacts.Meta.table_name: {"Keys": [{"contact_id": {"S": contact_id}}], "ConsistentRead": True},
        }
        if wanted:
            request[messages.Meta.table_name] = {
                "Keys": [{"contact_id": {"S": contact_id}, "message_id": {"S": m}} for m in wanted],
                "ConsistentRead": True,
            }
        if keys_wanted:
            request[addresses.Meta.table_name] = {
                "Keys": [{"address_key": {"S": key}, "sk": {"S": STATE_SK}} for key in keys_wanted],
                "ConsistentRead": True,
            }
        found: dict[str, list[dict[str, Any]]] = {}
        for _ in range(BATCH_GET_ATTEMPTS):
            answer = self._connection.client.batch_get_item(RequestItems=request)  # type: ignore[attr-defined]
            for table, items in answer.get("Responses", {}).items():
                found.setdefault(table, []).extend(items)
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
        else:  # DynamoDB kept some keys back (throughput) three times: read them one by one
            return WakeReads(
                run=self.get_run(contact_id, run_id),
                contact=self._read_contact(contact_id),
                messages={m: message for m in wanted if (message := self._read_message(contact_id, m)) is not None},
                addresses={key: self._read_address(key) for key in keys_wanted},
            )
        run_items, contact_items = [], found.get(contacts.Meta.table_name)
        sends: SendLog | None = None
        for item in found.get(runs.Meta.table_name, []):
            if item["sk"]["S"] == send_log.SENDS_SK:
                assert sends_since is not None
                sends = send_log.read(item, sends_since)
            else:
                run_items.append(item)
        if sends_since is not None and sends is None:  # no log kept for the contact yet: the index has it
            sends = SendLog(tuple(self._sends_since(contact_id, sends_since)), stored=False)
        states = {
            state.key: state
            for state in (
                self._address_from(addresses.from_raw_data(item)) for item in found.get(addresses.Meta.table_name, [])
            )
        }
        return WakeReads(
            run=self._run_from(runs.from_raw_data(run_items[0])) if run_items else None,
            contact=self._contact_from(contacts.from_raw_data(contact_items[0])) if contact_items else None,
            messages={
                message.message_id: message
                for message in (
                    self._message_from(messages.from_raw_data(item)) for item in found.get(messages.Meta.table_name, [])
                )
            },
            addresses={key: states.get(key) for key in keys_wanted},
            sends=sends,
        )

    def overdue_runs(self, before: datetime) -> Iterator[tuple[str, str]]:
        # One Query per shard of the sparse by-due index (active runs only); eventually consistent, which is
        # fine for a job that looks for wake-ups overdue by minutes and re-reads each run it finds.
        index = self.models.runs.by_due
        for shard in range(RUN_DUE_SHARDS):
            for item in index.query(str(shard), self.models.runs.due_at < before):
                yield item.contact_id, item.sk.removeprefix(RUN_PREFIX)

    def active_runs(self, contact_id: str, slots: Mapping[str, FlowSlot] | None = None) -> list[Run]:
        held = self.flow_slots(contact_id) if slots is None else slots
        keys = [(contact_id, RUN_PREFIX + slot.active_run_id) for slot in held.values() if slot.active_run_id]
        if not keys:
            return []
        return [self._run_from(item) for item in self.models.runs.batch_get(keys, consistent_read=True)]

    def save_run(self, run: Run, expected_version: int) -> Run:
        saved = replace(run, version=expected_version + 1)
        item = self._run_item(saved)
        condition = self.models.runs.version == expected_version
        try:
            if saved.is_active:
                item.save(condition=condition)
            else:
                # Ending a run frees the contact's slot for the flow in the same transaction.
                slots = self.models.flow_slots
                slot = slots(contact_id=run.contact_id, sk=SLOT_PREFIX + run.flow_id)
                with TransactWrite(connection=self._connection) as tx:
                    tx.save(item, condition=condition)
                    tx.update(slot, actions=[slots.active_run_id.remove()], condition=slots.active_run_id == run.run_id)
        except (PutError, TransactWriteError) as exc:
            if condition_failed(exc):
                raise ConflictError(run.run_id) from exc
            raise
        return saved

    def commit_advance(
        self, run: Run, expected_version: int, messages: Sequence[Message], sends: SendLog | None = None
    ) -> Run:
        saved = replace(run, version=expected_version + 1)
        runs, slots, model = self.models.runs, self.models.flow_slots, self.models.messages
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                with TransactWrite(connection=self._connection) as tx:
                    tx.save(self._run_item(saved), condition=runs.version == expected_version)
                    if not saved.is_active:
                        # Ending a run frees the contact's slot for the flow in the same transaction.
                        slot = slots(contact_id=run.contact_id, sk=SLOT_PREFIX + run.flow_id)
                        tx.update(
                            slot, actions=[slots.active_run_id.remove()], condition=slots.active_run_id == run.run_id
                        )
                    for message in messages:
                        item = self._message_item(replace(message, run_version=saved.version))
                        tx.save(item, condition=model.message_id.does_not_exist())
                    if actions := send_log.commit_actions(sends, messages, run.updated_at):
                        tx.update(runs(contact_id=run.contact_id, sk=send_log.SENDS_SK), actions=actions)
                return saved
            except TransactWriteError as exc:
                if condition_failed(exc):
                    raise ConflictError(run.run_id) from exc
                if not (cancellation_codes(exc) == {"TransactionConflict"} and attempt + 1 < COMMIT_ATTEMPTS):
                    raise
                # Another transaction on one of its items (the contact's send log, which two runs' commits
                # share) was in flight: nothing was written, so the same commit is tried again at once,
                # rather than the wake-up after the queue's visibility timeout.
                time.sleep(CONFLICT_PAUSE * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def runs_for(self, contact_id: str) -> list[Run]:
        return self._runs_of(contact_id)


COMMIT_ATTEMPTS = 3  # a commit cancelled for TransactionConflict alone is tried again, twice
CONFLICT_PAUSE = 0.025  # seconds, times the attempt: a conflicting transaction lasts tens of milliseconds
