"""A contact's counted sends kept beside its runs, so a wake-up reads them with the run (ADR 0020, Decision 8).

One item in the runs table (`<contact>`, `SENDS`), read in the wake-up's `BatchGetItem`. Each counted send
is one string in a string set per UTC day of its `sent_at` (`d20261203`): the commit that decides a
message `ADD`s it to its day in the same transaction, a settle `SKIPPED` or `FAILED` `DELETE`s it, and a
commit `REMOVE`s the days that fell out of the window. Every action names its own attribute, so none is a
read-modify-write: two commits for one contact need no version and never overwrite each other.

`TRACKED` marks an item whose log is whole: a contact seen before the log existed has none, and its first
commit writes what the messages' `by-sent-at` index holds (`SendLog.stored` False) with the marker. A
contact an event creates gets the marker in that event's write (`started`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pynamodb.attributes import UnicodeAttribute, UnicodeSetAttribute
from pynamodb.expressions.update import Action

from nudge.domain.model import Category, Channel, Message, SentRecord
from nudge.ports import SendLog

SENDS_SK = "SENDS"
TRACKED = "tracked"
_DAY = "d"


def day_of(at: datetime) -> str:
    return f"{_DAY}{at.astimezone(UTC):%Y%m%d}"


def entry(record: SentRecord) -> str:
    fields = (record.sent_at.isoformat(), record.channel.value, record.category.value, str(record.priority))
    return "|".join((*fields, record.flow_id, record.message_id))


def record_of(text: str) -> SentRecord:
    sent_at, channel, category, priority, flow_id, message_id = text.split("|", 5)
    at = datetime.fromisoformat(sent_at)
    return SentRecord(Channel(channel), Category(category), int(priority), at, flow_id, message_id)


def counted(message: Message) -> SentRecord | None:
    """The record a message counts as while it goes out, or None (skipped, failed, or never decided)."""
    if message.sent_at is None or not message.status.counts:
        return None
    return _record(message)


def read(item: Mapping[str, Any] | None, since: datetime) -> SendLog | None:
    """The log in a raw item (as BatchGetItem answers it); None when the contact has none yet."""
    if item is None or TRACKED not in item:
        return None
    oldest = day_of(since)
    records: list[SentRecord] = []
    stale: list[str] = []
    for name, value in item.items():
        if not (name.startswith(_DAY) and name[1:].isdigit()):
            continue
        if name < oldest:
            stale.append(name)
            continue
        records.extend(r for r in map(record_of, value.get("SS", ())) if r.sent_at >= since)
    records.sort(key=lambda r: (r.sent_at, r.message_id))  # as the index and the in-memory twin order them
    return SendLog(tuple(records), stored=True, stale=tuple(sorted(stale)))


def commit_actions(log: SendLog | None, messages: Iterable[Message], now: datetime) -> list[Action]:
    """What a commit does to the log: nothing when it has nothing to add, write or drop."""
    adding = [r for r in map(counted, messages) if r is not None]
    if log is not None and not log.stored:
        adding += log.records  # the first commit since the log existed writes what the index held
    by_day: dict[str, set[str]] = {}
    for record in adding:
        by_day.setdefault(day_of(record.sent_at), set()).add(entry(record))
    actions: list[Action] = [_days(name).add(entries) for name, entries in sorted(by_day.items())]
    if log is None:
        return actions  # not read: add what it decided, and leave the rest (whole or not) as it is
    if log.stored:
        actions += [_days(name).remove() for name in log.stale if name not in by_day]
    else:
        actions.append(UnicodeAttribute(attr_name=TRACKED).set(now.astimezone(UTC).isoformat()))
    return actions


def started(now: datetime) -> list[Action]:
    """A new contact's log, whole from the start: it has sent nothing, so there is nothing to read from the
    index. Written with the contact's first write, so its first wake-up needs no query (ADR 0020, Decision 15)."""
    return [UnicodeAttribute(attr_name=TRACKED).set(now.astimezone(UTC).isoformat())]


def join_actions(message: Message) -> list[Action]:
    """A message that counts (again, or on another channel) joins the log."""
    if message.sent_at is None:
        return []
    return [_days(day_of(message.sent_at)).add({entry(_record(message))})]


def leave_actions(message: Message) -> list[Action]:
    """A message settled `SKIPPED` or `FAILED` no longer counts: its entry leaves the log."""
    if message.sent_at is None:
        return []
    return [_days(day_of(message.sent_at)).delete({entry(_record(message))})]


def _record(message: Message) -> SentRecord:
    assert message.sent_at is not None
    return SentRecord(
        message.channel, message.category, message.priority, message.sent_at, message.flow_id, message.message_id
    )


def kept() -> Any:
    """The condition of a write that must not create a log: the contact has one."""
    return UnicodeAttribute(attr_name=TRACKED).exists()


def _days(name: str) -> UnicodeSetAttribute:
    return UnicodeSetAttribute(attr_name=name)
