"""Durable execution on moto (ADR 0007): what each AWS failure and each interleaving does to runs and sends.

The chaos harness sweeps the whole story (`make chaos`); these are the cases a reader can follow one by one.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pynamodb.exceptions import TransactWriteError

from nudge.domain.model import Category, Channel, Message, MessageStatus, Run, RunStatus
from nudge.domain.validation import validate
from nudge.local import gateway
from nudge.local.chaos import FaultInjector, judge, play, random_plan
from nudge.local.moto_stack import MotoStack, start_moto_stack
from nudge.ports import ConflictError, KeyKind, SendClaim, Store
from nudge.services.inputs import EventIn
from nudge.services.throttle import SendThrottle
from tests.conftest import ROOT, START
from tests.factories import checkout_started, order_placed

# --- one contract for both stores: the outbox ----------------------------------------------------------------


def _run(store: Store) -> Run:
    run = Run("r1", "c1", "abandoned_cart", RunStatus.ACTIVE, "reminder_1", 0, "e1", {}, START, START)
    started = store.start_run(run, None)
    assert started is not None
    return started


def _message(step: str = "reminder_1") -> Message:
    return Message(
        "c1", f"r1#0000#{step}", "r1", "abandoned_cart", step, Channel.EMAIL, Category.MARKETING,
        MessageStatus.PENDING, START, recipient="bob@example.com", sent_at=START,
    )  # fmt: skip


def test_an_advance_commits_the_run_and_its_messages_together_or_not_at_all(store: Store) -> None:
    run = _run(store)
    saved = store.commit_advance(_moved(run), run.version, [_message()])
    assert saved.version == run.version + 1 and saved.outbox == ("r1#0000#reminder_1",)
    [stored] = store.messages_for("c1")
    assert (stored.status, stored.run_version) == (MessageStatus.PENDING, saved.version)

    # A second commit from the same snapshot (a duplicate wake-up) writes nothing at all.
    with pytest.raises(ConflictError):
        store.commit_advance(_moved(run), run.version, [_message("reminder_2")])
    assert [m.step_id for m in store.messages_for("c1")] == ["reminder_1"]


def test_a_message_is_taken_for_sending_once_and_never_after_its_run_exited(store: Store) -> None:
    run = _run(store)
    saved = store.commit_advance(_moved(run), run.version, [_message(), _message("sms")])
    first, second = (m for m in store.messages_for("c1"))

    assert store.begin_send(first, START) is SendClaim.TAKEN
    assert store.begin_send(first, START) is SendClaim.GONE  # a duplicate delivery stands down
    # the run exits after the commit: what it decided but did not hand over must not go out
    store.save_run(_exited(saved), saved.version)
    assert store.begin_send(second, START) is SendClaim.RUN_EXITED


def test_settling_only_from_a_state_does_not_overwrite_what_moved_on(store: Store) -> None:
    run = _run(store)
    store.commit_advance(_moved(run), run.version, [_message()])
    [message] = store.messages_for("c1")
    assert store.begin_send(message, START) is SendClaim.TAKEN
    sent = store.settle_message(message, MessageStatus.SENT, provider_id="p1", sent_at=START)
    assert sent is not None

    # a late "abandoned mid-send" verdict must not turn a SENT message into UNKNOWN
    assert store.settle_message(message, MessageStatus.UNKNOWN, only_from=MessageStatus.SENDING) is None
    [stored] = store.messages_for("c1")
    assert (stored.status, stored.provider_id) == (MessageStatus.SENT, "p1")


def _moved(run: Run) -> Run:
    return replace(run, seq=run.seq + 1, cursor="reminder_2", outbox=("r1#0000#reminder_1",))


def _exited(run: Run) -> Run:
    return replace(run, status=RunStatus.EXITED, exit_reason="exit:order_placed", outbox=())


# --- cancellation reasons -------------------------------------------------------------------------------------


def _fail_next_transaction(stack: MotoStack, kind: str) -> FaultInjector:
    injector = FaultInjector(lambda call, operation: kind if operation.endswith("TransactWriteItems") else None)
    for client in stack.container.store.botocore_clients():  # type: ignore[attr-defined]
        injector.attach(client.meta.events)
    injector.enabled = True
    return injector


@pytest.mark.parametrize("kind", ["cancel_conflict", "cancel_throttle"])
def test_a_transaction_cancelled_for_conflict_or_throttling_is_an_error_to_retry_not_a_lost_race(
    moto_stack: MotoStack, kind: str
) -> None:
    store = moto_stack.container.store
    run = Run("r1", "c1", "abandoned_cart", RunStatus.ACTIVE, "reminder_1", 0, "e1", {}, START, START)
    injector = _fail_next_transaction(moto_stack, kind)

    # The start is not read as "someone else started it" (which would drop it): it raises, to be retried.
    with pytest.raises(TransactWriteError) as raised:
        store.start_run(run, None)
    assert raised.value.cancellation_reasons[0].code in ("TransactionConflict", "ThrottlingError")
    injector.enabled = False
    assert store.start_run(run, None) is not None  # the retry goes through
    assert store.start_run(run, None) is None  # and only a failed condition means: already started

    injector.enabled = True
    with pytest.raises(TransactWriteError):
        store.commit_advance(_moved(run), 1, [_message()])
    injector.enabled = False
    with pytest.raises(ConflictError):  # a real lost race still is one
        store.commit_advance(_moved(run), 7, [_message()])


def test_a_skip_whose_send_log_update_is_throttled_still_settles_and_over_counts_never_under(
    moto_stack: MotoStack,
) -> None:
    # Given a contact whose log holds a committed message
    store = moto_stack.container.store
    run = Run("r1", "c1", "abandoned_cart", RunStatus.ACTIVE, "reminder_1", 0, "e1", {}, START, START)
    assert store.start_run(run, None) is not None
    log = store.run_with_context("c1", "r1", sends_since=START - timedelta(days=7)).sends
    message = replace(_message(), sent_at=START)
    store.commit_advance(_moved(run), 1, [message], log)

    # When its skip lands but the log's UpdateItem is throttled (botocore's retries used up)
    injector = FaultInjector(lambda call, operation: "throttle" if operation.endswith("UpdateItem") else None)
    for client in store.botocore_clients():  # type: ignore[attr-defined]
        injector.attach(client.meta.events)
    injector.enabled = True
    skipped = store.settle_message(message, MessageStatus.SKIPPED, reason="run_exited")
    injector.enabled = False

    # Then the skip stands (no error for a retry that would find nothing to settle), and the log still
    # counts the message (over-counting until it ages out), never the other way round
    assert skipped is not None and injector.injected
    [stored] = [m for m in store.messages_for("c1") if m.message_id == message.message_id]
    assert stored.status is MessageStatus.SKIPPED
    after = store.run_with_context("c1", "r1", sends_since=START - timedelta(days=7)).sends
    assert after is not None and [r.message_id for r in after.records] == [message.message_id]


def test_a_commit_cancelled_only_for_a_conflicting_transaction_is_tried_again_at_once(moto_stack: MotoStack) -> None:
    store = moto_stack.container.store
    run = Run("r1", "c1", "abandoned_cart", RunStatus.ACTIVE, "reminder_1", 0, "e1", {}, START, START)
    assert store.start_run(run, None) is not None
    first = [True]

    def once(call: int, operation: str) -> str | None:
        if operation.endswith("TransactWriteItems") and first:
            first.clear()
            return "cancel_conflict"
        return None

    injector = FaultInjector(once)
    for client in store.botocore_clients():  # type: ignore[attr-defined]
        injector.attach(client.meta.events)
    injector.enabled = True

    saved = store.commit_advance(_moved(run), 1, [_message()])

    # One TransactionConflict (another commit of the contact on its send log): the same commit again, landed
    assert saved.version == 2 and [kind for _, _, kind in injector.injected] == ["cancel_conflict"]
    assert injector.calls == 2
    assert store.get_message("c1", _message().message_id) is not None


# --- an order racing a wake-up ---------------------------------------------------------------------------------


def _cart_at_first_reminder(stack: MotoStack) -> str:
    contact_id = str(stack.call_api("POST", "/v1/events", checkout_started("evt_1", "chk_1")).body["contact_id"])
    stack.pump.run_until(START + timedelta(minutes=59))
    return contact_id


def _order_now(stack: MotoStack) -> None:
    """The order webhook lands (ingest only: the worker is busy with the wake-up)."""
    event = validate(EventIn, order_placed("evt_2", "chk_1")).to_event(stack.clock.now())
    stack.container.ingest.ingest(event)


def _reminders(stack: MotoStack) -> list[str]:
    return [m.raw_data for m in stack.sent_emails() if "Subject: You left something" in m.raw_data]


def _hook(monkeypatch: pytest.MonkeyPatch, target: Any, name: str, before: Callable[..., None]) -> None:
    original = getattr(target, name)
    fired: list[bool] = []

    def hooked(*args: Any, **kwargs: Any) -> Any:
        if not fired:
            fired.append(True)
            before(*args)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, hooked)


def test_an_order_between_the_wake_ups_read_and_its_commit_stops_the_reminder(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cart_at_first_reminder(moto_stack)
    _hook(monkeypatch, moto_stack.container.store, "commit_advance", lambda *_: _order_now(moto_stack))

    moto_stack.pump.run_until(START + timedelta(days=7))

    assert _reminders(moto_stack) == []


def test_an_order_between_the_send_slot_and_the_commit_stops_the_reminder(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wake-up has decided, cleared and rendered the reminder and holds its send slot; the order lands
    # before its commit, which is the send decision (ADR 0020, Decision 8): the commit loses, nothing goes.
    contact_id = _cart_at_first_reminder(moto_stack)
    _hook(monkeypatch, moto_stack.container.limiter, "reserve", lambda *_: _order_now(moto_stack))

    moto_stack.pump.run_until(START + timedelta(days=7))

    assert _reminders(moto_stack) == []
    assert not [m for m in moto_stack.container.store.messages_for(contact_id) if m.step_id == "reminder_1"]


def test_an_order_between_a_deferred_sends_wake_up_and_its_claim_stops_the_reminder(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rate is held (SES throttled us), so the reminder is committed PENDING and deferred to its slot;
    # the order lands when the deferred delivery wakes, before its claim: the claim sees the exit.
    contact_id = _cart_at_first_reminder(moto_stack)
    SendThrottle(moto_stack.container.limiter, per_second=14).hold(START + timedelta(hours=1, seconds=30))
    _hook(monkeypatch, moto_stack.container.store, "begin_send", lambda *_: _order_now(moto_stack))

    moto_stack.pump.run_until(START + timedelta(days=7))

    assert _reminders(moto_stack) == []
    reminder = next(m for m in moto_stack.container.store.messages_for(contact_id) if m.step_id == "reminder_1")
    assert (reminder.status, reminder.reason) == (MessageStatus.SKIPPED, "run_exited")


def test_an_exit_that_loses_the_race_with_an_advance_is_decided_again_never_dropped(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    contact_id = _cart_at_first_reminder(moto_stack)
    moto_stack.clock.set(START + timedelta(hours=1))  # the first reminder is due
    [run] = moto_stack.container.store.active_runs(contact_id)
    store = moto_stack.container.store

    def advance_first(*_: Any) -> None:
        # the wake-up's advance lands first: it commits (and sends reminder 1, before any order existed)
        [current] = [r for r in store.active_runs(contact_id) if r.flow_id == "abandoned_cart"]
        moto_stack.container.runs.advance(current)

    _hook(monkeypatch, store, "save_run", advance_first)
    _order_now(moto_stack)
    moto_stack.pump.run_until(START + timedelta(days=7))

    stored = store.get_run(contact_id, run.run_id)
    assert stored is not None and stored.status is RunStatus.EXITED and stored.exit_reason is not None
    assert len(_reminders(moto_stack)) == 1  # the one sent before the order; never the second or third


# --- requests decide, the worker acts ----------------------------------------------------------------------


@pytest.fixture
def welcome_stack(clock: Any, tmp_path: Path) -> Iterator[MotoStack]:
    """The stack with the welcome series alone: one run per signup (half the moto work of the whole library)."""
    flows = tmp_path / "flows"
    flows.mkdir()
    for name in ("welcome.yaml", "_guardrails.yaml"):
        shutil.copy(ROOT / "flows" / name, flows / name)
    stack = start_moto_stack(clock, flows_dir=flows)
    yield stack
    stack.stop()


def test_a_batch_of_500_run_starting_events_sends_nothing_inline_and_every_run_then_advances(
    welcome_stack: MotoStack,
) -> None:
    moto_stack = welcome_stack
    key, _ = moto_stack.container.keys.create(KeyKind.SECRET, "tests")
    batch = [
        {
            "type": "track",
            "messageId": f"m-{i}",
            "userId": f"u_{i}",
            "event": "Subscribed",
            "timestamp": "2026-11-02T08:59:00Z",
            "context": {"traits": {"email": f"s{i}@example.com", "email_marketing": True}},
        }
        for i in range(500)
    ]
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    moto_stack.requests.counts.clear()

    response = gateway.invoke(
        "POST", "/v1/batch", body=json.dumps({"batch": batch}).encode(),
        headers={"Content-Type": "application/json", "Authorization": auth},
    )  # fmt: skip

    # The request only decided and recorded: no send, no wait for a send slot, no clock moved
    assert response.status == 200 and {r["status"] for r in response.json()["results"]} == {202}
    calls = moto_stack.requests.counts
    assert calls[("sesv2", "SendEmail")] == 0 and moto_stack.clock.now() == START
    assert calls[("sqs", "SendMessage")] == 500  # the welcome starts for each: its first step, queued
    assert moto_stack.requests.total / 500 < 16  # AWS calls per run-starting event (docs/benchmarks.md)

    # And the worker then sends every welcome at the SES rate (14/s: 36 s for 500)
    moto_stack.pump.run_until(START + timedelta(minutes=2))
    assert len(moto_stack.sent_emails()) == 500
    assert not [r for r in moto_stack.container.store.all_runs() if r.is_active and r.seq == 0]  # type: ignore[attr-defined]


# --- the harness itself ------------------------------------------------------------------------------------


def test_the_chaos_harness_sees_a_lost_response_and_a_death_and_nudge_loses_nothing() -> None:
    clean = play(lambda call, operation: None, daily_job=False)
    timeouts = play(
        lambda call, operation: "timeout_after" if operation == "sesv2.SendEmail" else None, daily_job=False
    )
    verdict = judge(clean, timeouts)
    # every send's response lost: each went out once and is recorded UNKNOWN, never resent
    assert (verdict.lost, verdict.duplicated, verdict.after_exit, verdict.stranded) == (set(), 0, set(), 0)
    assert verdict.unknown == 9  # the story's nine emails (its one SMS goes through SNS, unharmed here)
    deaths = play(lambda call, operation: "death" if call % 17 == 0 else None, daily_job=False)
    assert not judge(clean, deaths).wrong


# --- the repair job ------------------------------------------------------------------------------------------


def test_the_library_story_under_a_fifth_of_its_calls_failing_loses_and_doubles_nothing() -> None:
    clean = play(lambda call, operation: None, daily_job=False, story="library")
    faulted = play(random_plan(seed=3, rate=0.2), daily_job=False, story="library")

    verdict = judge(clean, faulted)
    assert sum(clean.delivered.values()) == 30  # twelve flows' emails and texts (nudge chaos --story library)
    # Over a hundred faults of every kind (a fifth of the story's calls; fewer calls since issue #20's cuts).
    assert len(faulted.injected) > 100 and {kind for _, _, kind in faulted.injected} >= {"death", "timeout_after"}
    assert (verdict.lost, verdict.duplicated, verdict.after_exit, verdict.stranded) == (set(), 0, set(), 0)


def test_the_repair_job_re_drives_a_run_left_with_nothing_pending(moto_stack: MotoStack) -> None:
    from nudge.domain import engine
    from nudge.handlers import sweep
    from nudge.local.lambda_events import FakeLambdaContext

    # Given a welcome run stored, but its first step never queued (the enqueue failed; nobody retried)
    event = validate(
        EventIn, {"id": "evt_1", "type": "subscribed", "contact": {"email": "ann@example.com", "email_marketing": True}}
    )
    ingest = moto_stack.container.ingest
    flow = moto_stack.container.flows.get("welcome")
    assert flow is not None
    started = engine.new_run(flow, event.to_event(START), START)
    assert moto_stack.container.store.start_run(started, None) is not None
    ingest.identify(event.to_event(START).contact)

    # When the repair job runs, first within its bound, then after it
    moto_stack.clock.set(START + timedelta(minutes=10))
    early = sweep.handler({"job": "repair"}, FakeLambdaContext.fresh("nudge-sweep"))
    moto_stack.clock.set(START + timedelta(minutes=16))
    late = sweep.handler({"job": "repair"}, FakeLambdaContext.fresh("nudge-sweep"))
    moto_stack.settle()

    # Then it leaves the run alone until it is overdue, then re-drives it, and the welcome goes out once
    assert (early, late) == ({"overdue": 0, "redriven": 0}, {"overdue": 1, "redriven": 1})
    assert ["Welcome" in m.raw_data for m in moto_stack.sent_emails()] == [True]
    again = sweep.handler({"job": "repair"}, FakeLambdaContext.fresh("nudge-sweep"))
    assert again["redriven"] == 0  # moving again: its next wake-up is days away


def test_the_local_pump_fires_the_repair_schedule_every_15_minutes(clock: Any) -> None:
    from nudge.local.moto_stack import start_moto_stack

    stack = start_moto_stack(clock, repair_job=True)
    try:
        fired: list[str] = []
        stack.pump.run_until(START + timedelta(hours=1), on_fire=lambda due, result: fired.append(due.name))
    finally:
        stack.stop()
    assert fired == ["repair-overdue"] * 4


def test_a_campaign_crashed_and_restarted_mid_resolution_and_under_random_faults_sends_each_recipient_once() -> None:
    # nudge chaos --story campaign (a sweep: --random 0.1 --seeds 20, or --every-call --stride 3)
    clean_ops: list[str] = []
    clean = play(lambda call, operation: clean_ops.append(operation) or None, daily_job=False, story="campaign")
    assert sum(clean.delivered.values()) == 23  # the newsletter to 21 consenting sample contacts, 2 welcome emails
    # The sweep function dies after a piece stored two recipients' runs, before queueing their first steps
    # (ten a SendMessageBatch): SQS hands the piece back, it finds the runs it started and queues their steps
    # again (redrive_existing)
    piece = ["dynamodb.Scan", "dynamodb.TransactWriteItems", "dynamodb.TransactWriteItems"]
    stored = next(n for n in range(len(clean_ops)) if clean_ops[n - 3 : n] == piece)
    at = clean_ops.index("sqs.SendMessageBatch", stored) + 1  # calls count from 1
    assert "dynamodb.Scan" not in clean_ops[stored : at - 1]  # the same piece's batch of first steps
    crashed = play(lambda call, operation: "death" if call == at else None, daily_job=False, story="campaign")
    assert crashed.injected == [(at, "sqs.SendMessageBatch", "death")]
    for faulted in (crashed, *(play(random_plan(seed, 0.1), daily_job=False, story="campaign") for seed in (1, 3))):
        verdict = judge(clean, faulted)
        assert (verdict.lost, verdict.duplicated, verdict.after_exit, verdict.stranded) == (set(), 0, set(), 0)
