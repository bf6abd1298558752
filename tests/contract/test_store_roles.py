"""The contract of the store's role ports (nudge.ports: Contacts, EventLog, Runs, Outbox, StepCounters,
AddressBook, Erasure, Census, Documents, JobLog), on both twins. With tests/component/test_adapters.py and
test_durability.py (the outbox), every operation of every role is exercised here: the last test checks it."""

from __future__ import annotations

import ast
import inspect
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from nudge import ports
from nudge.domain.feedback import FeedbackKind
from nudge.domain.model import (
    Category,
    Channel,
    Contact,
    ContactPatch,
    Event,
    Message,
    MessageStatus,
    Run,
    RunStatus,
)
from nudge.domain.suppression import ConsentRecord, Suppression, address_key
from nudge.ports import Store
from tests.conftest import ROOT, START

EMAIL = address_key(Channel.EMAIL, "ann@example.com")


def _run(run_id: str = "r1", contact_id: str = "c1", flow_id: str = "welcome", due: int = 0) -> Run:
    return Run(
        run_id, contact_id, flow_id, RunStatus.ACTIVE, "wait", 0, "e1", {}, START, START,
        due_at=START + timedelta(minutes=due),
    )  # fmt: skip


def _message(message_id: str = "r1#0000#email", contact_id: str = "c1") -> Message:
    return Message(
        contact_id, message_id, "r1", "welcome", "email", Channel.EMAIL, Category.MARKETING,
        MessageStatus.PENDING, START,
    )  # fmt: skip


class _Named:
    """A ContactChange: sets the first name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def apply(self, contact: Contact, now: object) -> Contact:
        return replace(contact, first_name=self.name)


# Contacts --------------------------------------------------------------------------------------------------


def test_update_contact_applies_a_change_at_the_stored_version_and_leaves_strangers_alone(store: Store) -> None:
    store.save_contact(Contact(contact_id="c1", email="ann@example.com"), 0)

    updated = store.update_contact("c1", _Named("Ann"), START)

    assert updated is not None and (updated.first_name, updated.version) == ("Ann", 2)
    stored = store.get_contact("c1")
    assert stored is not None and (stored.first_name, stored.email, stored.version) == ("Ann", "ann@example.com", 2)
    assert store.update_contact("nobody", _Named("Bob"), START) is None
    assert store.get_contact("nobody") is None


# EventLog --------------------------------------------------------------------------------------------------


def test_an_event_is_begun_again_until_it_is_finished_then_never(store: Store) -> None:
    event = Event("e1", "subscribed", ContactPatch(email="ann@example.com"), {"source": "form"}, START)

    assert store.begin_event(event, START) is True
    assert store.begin_event(event, START) is True  # a retry of an attempt that died before finishing
    store.finish_event("e1", {"started": ["welcome"]})

    assert store.begin_event(event, START) is False
    [recorded] = store.events_for(event.contact_id)
    assert (recorded["event_id"], recorded["type"], recorded["status"]) == ("e1", "subscribed", "processed")
    assert (recorded["occurred_at"], recorded["received_at"]) == (START.isoformat(), START.isoformat())
    assert recorded["body"]["contact"]["email"] == "ann@example.com"
    assert recorded["body"]["properties"] == {"source": "form"}
    assert store.events_for("someone-else") == []


# Runs ------------------------------------------------------------------------------------------------------


def test_overdue_runs_are_the_active_runs_due_before_a_moment(store: Store) -> None:
    for run in (_run("r1", "c1", "welcome", 0), _run("r2", "c2", "welcome", 30), _run("r3", "c3", "welcome", -5)):
        assert store.start_run(run, None) is not None
    late = store.get_run("c3", "r3")
    assert late is not None
    store.save_run(replace(late, status=RunStatus.EXITED, cursor=None), late.version)  # ended: not overdue

    assert sorted(store.overdue_runs(START + timedelta(minutes=10))) == [("c1", "r1")]
    assert sorted(store.overdue_runs(START + timedelta(hours=1))) == [("c1", "r1"), ("c2", "r2")]


# Outbox ----------------------------------------------------------------------------------------------------


def test_a_message_is_read_back_by_its_ids_and_feedback_is_noted_once_per_kind(store: Store) -> None:
    sent = store.settle_message(_message(), MessageStatus.SENT, provider_id="p-1", sent_at=START)
    assert sent is not None

    stored = store.get_message("c1", "r1#0000#email")
    assert stored is not None and (stored.status, stored.provider_id) == (MessageStatus.SENT, "p-1")
    assert store.get_message("c1", "no-such-message") is None
    assert store.get_message("c2", "r1#0000#email") is None

    assert store.record_feedback(stored, FeedbackKind.OPEN, START + timedelta(hours=1)) is True
    assert store.record_feedback(stored, FeedbackKind.OPEN, START + timedelta(hours=2)) is False  # a redelivery
    assert store.record_feedback(stored, FeedbackKind.CLICK, START + timedelta(hours=2)) is True
    opened = store.get_message("c1", "r1#0000#email")
    assert opened is not None
    assert opened.feedback == {"open": START + timedelta(hours=1), "click": START + timedelta(hours=2)}
    assert store.record_feedback(_message("never-stored"), FeedbackKind.OPEN, START) is False


def test_the_send_log_read_with_the_run_counts_what_commits_decide_until_it_is_skipped_or_failed(
    store: Store,
) -> None:
    # Given a contact sent one email before the log existed (only the messages' index has it)
    earlier = replace(_message("r0#0000#email"), run_id="r0")
    assert store.settle_message(earlier, MessageStatus.SENT, provider_id="p-0", sent_at=START) is not None
    run = _run()
    assert store.start_run(run, None) is not None
    week_ago = START + timedelta(days=1) - timedelta(days=7)

    # Then the first read falls back to the index, and the commit that decides two messages writes the log
    first = store.run_with_context("c1", "r1", sends_since=week_ago)
    assert first.sends is not None and [r.message_id for r in first.sends.records] == ["r0#0000#email"]
    now = START + timedelta(days=1)
    going = [
        replace(_message("r1#0001#email"), status=MessageStatus.SENDING, sent_at=now),
        replace(_message("r1#0001#sms"), channel=Channel.SMS, sent_at=now),
        replace(_message("r1#0001#skipped"), status=MessageStatus.SKIPPED, reason="quiet_hours"),
    ]
    saved = store.commit_advance(replace(run, updated_at=now), 1, going, first.sends)
    again = store.run_with_context("c1", "r1", sends_since=week_ago)
    assert again.sends is not None and again.sends.stored
    assert [(r.message_id, r.channel, r.sent_at) for r in again.sends.records] == [
        ("r0#0000#email", Channel.EMAIL, START),
        ("r1#0001#email", Channel.EMAIL, now),
        ("r1#0001#sms", Channel.SMS, now),
    ]
    assert store.run_with_context("c1", "r1").sends is None  # not asked for: not read

    # And a message settled SKIPPED leaves it; one SENT stays; a week on, only what is left in the window
    sms = store.get_message("c1", "r1#0001#sms")
    assert sms is not None and store.settle_message(sms, MessageStatus.SKIPPED, reason="run_exited") is not None
    email = store.get_message("c1", "r1#0001#email")
    assert email is not None and store.settle_message(email, MessageStatus.SENT, sent_at=now) is not None
    later = store.run_with_context("c1", "r1", sends_since=now - timedelta(hours=1))
    assert later.sends is not None and [r.message_id for r in later.sends.records] == ["r1#0001#email"]
    next_week = now + timedelta(days=8)
    aged = store.run_with_context("c1", "r1", sends_since=next_week - timedelta(days=7)).sends
    assert aged is not None and aged.records == ()
    store.commit_advance(replace(saved, updated_at=next_week), saved.version, [], aged)  # drops what aged out
    assert store.run_with_context("c1", "r1", sends_since=next_week - timedelta(days=7)).sends == ports.SendLog(())
    # An erased contact's log goes with it
    logged = replace(going[0], message_id="r1#0002#email", sent_at=next_week)
    store.commit_advance(replace(saved, updated_at=next_week), saved.version + 1, [logged])
    store.erase_contact("c1")
    erased = store.run_with_context("c1", "r1", sends_since=START)
    assert erased.sends is not None and erased.sends.records == ()


def test_a_contact_an_event_creates_has_a_whole_send_log_from_its_first_wake_up(store: Store) -> None:
    # Given an event that creates its contact (expected version 0) and a run started for it
    event = Event("e1", "checkout_started", ContactPatch(email="ann@example.com"), {}, START)
    store.record_event(event, START, Contact(contact_id="c1", email="ann@example.com"), 0)
    assert store.start_run(_run(), None) is not None

    # Then the run's first wake-up reads the log with the run, stored and empty: nothing is looked up in the
    # messages' index (on DynamoDB the event's write started it), so that wake-up costs no Query
    log = store.run_with_context("c1", "r1", sends_since=START - timedelta(days=7)).sends
    assert log == ports.SendLog(())


def test_a_message_that_moves_to_its_fallback_channel_counts_on_that_channel(store: Store) -> None:
    run = _run()
    assert store.start_run(run, None) is not None
    since = START - timedelta(days=7)
    chat = replace(_message("r1#0001#chat"), channel=Channel.WHATSAPP, status=MessageStatus.SENDING, sent_at=START)
    store.commit_advance(run, 1, [chat], store.run_with_context("c1", "r1", sends_since=since).sends)

    # WhatsApp refused it for good; it goes out as an SMS instead (RunService's fallback)
    moved = store.settle_message(
        replace(chat, channel=Channel.SMS),
        MessageStatus.PENDING,
        sent_at=START,
        only_from=MessageStatus.SENDING,
        moved_from=Channel.WHATSAPP,
    )

    assert moved is not None
    log = store.run_with_context("c1", "r1", sends_since=since).sends
    assert log is not None and [(r.message_id, r.channel) for r in log.records] == [("r1#0001#chat", Channel.SMS)]
    assert [(r.message_id, r.channel) for r in store.recent_sends("c1", since)] == [("r1#0001#chat", Channel.SMS)]


# StepCounters ----------------------------------------------------------------------------------------------


def test_step_counters_add_one_per_kind_per_step_of_one_flow(store: Store) -> None:
    for step, kind in (("email_1", FeedbackKind.OPEN), ("email_1", FeedbackKind.OPEN), ("email_2", FeedbackKind.CLICK)):
        store.count_step("welcome", step, kind)
    store.count_step("winback", "email_1", FeedbackKind.OPEN)

    assert store.step_counts("welcome") == {"email_1": {"open": 2}, "email_2": {"click": 1}}
    assert store.step_counts("nothing") == {}


# AddressBook -----------------------------------------------------------------------------------------------


def test_an_address_keeps_each_suppression_since_its_first_time_until_lifted(store: Store) -> None:
    assert store.address_state(EMAIL) is None

    store.suppress(EMAIL, Suppression.UNSUBSCRIBED, START)
    store.suppress(EMAIL, Suppression.UNSUBSCRIBED, START + timedelta(days=1))  # kept since the first time
    store.suppress(EMAIL, Suppression.COMPLAINT, START + timedelta(days=2))
    store.lift_suppression(EMAIL, Suppression.UNSUBSCRIBED)
    store.lift_suppression(address_key(Channel.EMAIL, "nobody@example.com"), Suppression.BOUNCE)  # no such address

    state = store.address_state(EMAIL)
    assert state is not None and state.suppressed == {Suppression.COMPLAINT: START + timedelta(days=2)}


def test_topics_switch_off_and_on_per_address(store: Store) -> None:
    store.set_topic(EMAIL, "newsletter", subscribed=False)
    store.set_topic(EMAIL, "winback", subscribed=False)
    store.set_topic(EMAIL, "winback", subscribed=True)

    state = store.address_state(EMAIL)
    assert state is not None and (state.topics_off, state.suppressed) == (frozenset({"newsletter"}), {})


def test_consent_records_are_kept_in_time_order_per_address_and_erased_per_address(store: Store) -> None:
    other = address_key(Channel.SMS, "+14155550101")
    later = ConsentRecord(EMAIL, Channel.EMAIL, False, START + timedelta(days=1), "unsubscribe:one_click", "c1")
    earlier = ConsentRecord(EMAIL, Channel.EMAIL, True, START, "event:subscribed:e1", "c1")
    for record in (later, earlier, ConsentRecord(other, Channel.SMS, True, START, "sms_keyword:START")):
        store.record_consent(record)

    assert store.consent_records(EMAIL) == [earlier, later]
    assert store.erase_consent_records(EMAIL) == 2
    assert store.consent_records(EMAIL) == [] and len(store.consent_records(other)) == 1
    assert store.erase_consent_records(EMAIL) == 0


# Census and Documents --------------------------------------------------------------------------------------


def test_the_census_walks_every_contact_once_over_segments_and_resumes_from_a_cursor(store: Store) -> None:
    ids = [f"c{n:02}" for n in range(12)]
    for contact_id in ids:
        store.save_contact(Contact(contact_id=contact_id), 0)

    assert sorted(c.contact_id for c in store.all_contacts()) == ids
    seen: list[str] = []
    for segment in range(3):
        walked = list(store.contacts_segment(segment, 3))
        seen += [contact.contact_id for contact, _ in walked]
        if len(walked) > 1:  # from the first one's cursor on: the rest of the segment, nothing twice
            _, cursor = walked[0]
            assert [c.contact_id for c, _ in store.contacts_segment(segment, 3, cursor)] == [
                c.contact_id for c, _ in walked[1:]
            ]
        assert walked == [] or walked[-1][1] is None  # the last cursor says the segment is done
    assert sorted(seen) == ids


def test_order_lines_are_those_of_the_order_events_still_held(store: Store) -> None:
    lines = [{"title": "Mug", "quantity": 1, "price": 12.0, "product_id": "mug"}]
    patch = ContactPatch(email="ann@example.com")
    store.begin_event(Event("o1", "order_placed", patch, {"order_id": "1", "lines": lines}, START), START)
    store.begin_event(Event("v1", "product_viewed", patch, {"product_id": "mug"}, START), START)

    assert list(store.order_lines()) == [("o1", lines)]


def test_a_document_is_replaced_whole(store: Store) -> None:
    assert store.get_document("rfm") is None
    store.put_document("rfm", {"cuts": [1, 2, 3], "at": "2026-11-01"}, START)
    store.put_document("rfm", {"cuts": [1, 2, 4]}, START + timedelta(days=1))

    assert store.get_document("rfm") == {"cuts": [1, 2, 4]}


# Every operation of every role has a contract test ---------------------------------------------------------

ROLES = (
    ports.Contacts, ports.EventLog, ports.Runs, ports.Outbox, ports.StepCounters, ports.AddressBook,
    ports.Erasure, ports.Census, ports.Documents, ports.JobLog,
)  # fmt: skip
CONTRACT_MODULES = (
    Path(__file__),
    ROOT / "tests/component/test_adapters.py",
    ROOT / "tests/component/test_durability.py",
)


def _operations(role: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(role, inspect.isfunction) if not name.startswith("_")}


def _called_on_a_store(path: Path) -> set[str]:
    """Methods called on a name `store` in the module's tests (store.x(...))."""
    called = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "store"
        ):
            called.add(node.func.attr)
    return called


def test_every_operation_of_every_role_has_a_contract_test() -> None:
    store_roles = {base for base in Store.__mro__ if base in ROLES}
    assert store_roles == set(ROLES)  # the Store is exactly its roles
    called = set().union(*(_called_on_a_store(path) for path in CONTRACT_MODULES))

    untested = {f"{role.__name__}.{op}" for role in ROLES for op in _operations(role) - called}

    assert untested == set()


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.__name__)
def test_each_role_is_implemented_by_both_twins(role: type) -> None:
    from nudge.adapters.dynamodb.store import DynamoStore
    from nudge.adapters.memory import MemoryStore

    for twin in (MemoryStore, DynamoStore):
        missing = {op for op in _operations(role) if not callable(getattr(twin, op, None))}
        assert missing == set(), f"{twin.__name__} lacks {sorted(missing)} of {role.__name__}"


def test_each_role_has_its_own_dynamodb_adapter_and_the_store_is_their_composition() -> None:
    from nudge.adapters.dynamodb import store as dynamo

    adapters = {role: getattr(dynamo, f"Dynamo{role.__name__}") for role in ROLES}
    for role, adapter in adapters.items():
        missing = {op for op in _operations(role) if not callable(getattr(adapter, op, None))}
        assert missing == set(), f"{adapter.__name__} lacks {sorted(missing)} of {role.__name__}"
        # and holds no operation of another role (what it shares is the tables, in DynamoTables)
        others = set().union(*(_operations(r) for r in ROLES if r is not role)) - _operations(role)
        assert not {op for op in others if op in vars(adapter)}, adapter.__name__
    assert set(dynamo.DynamoStore.__bases__) == set(adapters.values())
