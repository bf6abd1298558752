"""Use case: advance a run — execute its due steps, send what they decide, schedule the next wake-up."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, assert_never, overload

from nudge.brand_file import TemplateRenderError
from nudge.domain import engine, send_time, sms, whatsapp
from nudge.domain.campaigns import campaign_id_of, rate_verdict
from nudge.domain.flows import (
    AudienceStep,
    DateTrigger,
    EmailStep,
    Flow,
    FlowCatalog,
    SmsStep,
    SplitStep,
    WebhookStep,
    WhatsAppStep,
)
from nudge.domain.frozen import dataclass
from nudge.domain.guardrails import WEEK, Guardrails
from nudge.domain.model import Category, Channel, Contact, Message, MessageStatus, Run, RunStatus, evolve
from nudge.domain.suppression import AddressState, address_key, block_reason
from nudge.names import SIGNATURE_HEADER
from nudge.ports import (
    AddressBook,
    Clock,
    ConflictError,
    Contacts,
    Documents,
    Mailer,
    Outbox,
    OutgoingEmail,
    OutgoingSms,
    PermanentSendError,
    Runs,
    Scheduler,
    SendClaim,
    SendLog,
    Sleeper,
    StepCounters,
    StepWakeUp,
    Texter,
    TransientSendError,
    UnconfiguredWhatsApp,
    UnknownSendOutcome,
    WebhookSender,
    WhatsAppSender,
    WorkQueue,
)
from nudge.services import consent
from nudge.services.compose import EmailComposer, MailPolicy
from nudge.services.throttle import SPARE_WITHIN, SendThrottle, spare_retry
from nudge.signing import sign

if TYPE_CHECKING:  # handed in; the request paths that start runs never render (ADR 0020)
    from nudge.services.audiences import AudienceService
    from nudge.templating import TemplateRenderer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AdvanceOutcome:
    """What one piece of work did, for logs, responses and tests."""

    run_id: str
    # advanced | completed | exited | inactive | stale | early | missing | lost_race | delivered
    status: str
    flow_id: str | None = None
    sent: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    deferred: list[tuple[str, str]] = field(default_factory=list)  # (step, until): waiting for a send slot
    unknown: list[str] = field(default_factory=list)  # steps whose provider call may or may not have happened
    next_wake_at: str | None = None


class NotCommittedYet(RuntimeError):
    """A wake-up armed for an advance whose commit has not landed (in flight, or to be retried): retry later."""


@dataclass(frozen=True, slots=True)
class _Cleared:
    """A message cleared to go now: the provider call and the record it settles as once sent."""

    step: EmailStep | SmsStep | WhatsAppStep
    send: Callable[[], str]
    sent: Message


@dataclass(frozen=True, slots=True)
class _Skip:
    reason: str


@dataclass(frozen=True, slots=True)
class _Fail:
    reason: str


@dataclass(frozen=True, slots=True)
class _Defer:
    until: datetime
    slot: datetime | None = None  # the send slot it holds, kept for its delivery


_Verdict = _Cleared | _Skip | _Fail | _Defer


@dataclass(frozen=True, slots=True)
class WebhookSigner:
    """Signs webhook bodies with the account's key, like inbound requests (see nudge.signing).

    The key is read when a body is signed, not at cold start: it may come from Secrets Manager.
    """

    key: Callable[[], str | None]

    def headers(self, body: bytes, clock: Clock) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "nudge-webhook/1"}
        if (key := self.key()) is not None:
            headers[SIGNATURE_HEADER] = sign(key, body, clock.now())
        return headers


# Work due within this is put on the queue with a delay (SQS allows 15 minutes); later work is a one-time
# schedule, which is then always far enough ahead for at() (Scheduler refuses a time already past).
MAX_QUEUE_DELAY = timedelta(minutes=15)
# Scheduler fires within the minute an at() names, possibly before the second: a wake-up that early waits.
EARLY_TOLERANCE = timedelta(seconds=1)
# A message SENDING for longer than this was abandoned mid-call (the worker's timeout is a minute).
SENDING_GRACE = timedelta(minutes=5)
# How long a provider that throttles us, without saying how long, is left alone.
THROTTLE_PAUSE = timedelta(seconds=30)
SEND_BACKOFF = timedelta(minutes=1)
# When the worker looks again at an audience whose change it just recorded (and uploaded, normally).
AUDIENCE_SAFETY_NET = timedelta(minutes=1)
# A flow split's automatic winner (`auto_winner`): its document (the test's start, then the verdict), and how
# long a worker trusts what it read of it before it reads again (and, once due, runs the z-test again).
SPLIT_DOCUMENT_PREFIX = "split_winner."
SPLIT_TTL = timedelta(minutes=5)
# How long a worker keeps the shop's send-time curve it read (the daily job rewrites it once a day).
CURVE_TTL = timedelta(hours=1)
# An active run whose wake-up is this overdue has nothing pending (its arm was lost): the repair job re-drives it.
REPAIR_AFTER = timedelta(minutes=15)


@dataclass(slots=True)
class RepairOutcome:
    """What one pass of the repair job found: overdue runs, and those it re-drove (per flow)."""

    overdue: int = 0
    redriven: list[str] = field(default_factory=list)  # flow ids, one per run re-driven


class RunStore(Contacts, Runs, Outbox, AddressBook, StepCounters, Documents, Protocol):
    """What advancing runs reads and writes: the contact, its runs and slots, their messages, the addresses'
    state (and the consent records a step's profile change makes); a split's step counters and its decided
    winner, and the shop's send-time curve (documents)."""


class RunService:
    """Advances runs and delivers their messages. Every entry point is safe to repeat, in any order.

    See docs/adr/0007-durable-execution.md: an advance commits the run and its messages in one transaction
    (the outbox) after arming its next wake-up; messages are delivered after the commit by whoever gets
    there first, each taken PENDING -> SENDING exactly once, only while its run has not exited.
    """

    def __init__(
        self,
        *,
        store: RunStore,
        scheduler: Scheduler,
        queue: WorkQueue,
        mailer: Mailer,
        texter: Texter,
        webhooks: WebhookSender,
        whatsapp: WhatsAppSender | None = None,
        renderer: TemplateRenderer,
        flows: FlowCatalog,
        guardrails: Guardrails,
        clock: Clock,
        from_address: str,
        webhook_signer: WebhookSigner | None = None,
        policy: MailPolicy | None = None,
        unsubscribe_key: Callable[[], str | None] = lambda: None,
        throttle: SendThrottle | None = None,
        sleeper: Sleeper | None = None,
        recommend: Callable[[Contact], list[dict[str, Any]]] | None = None,
        profile_changed: Callable[[str], object] | None = None,
        held: Callable[[str], datetime | None] | None = None,
        audiences: Callable[[], AudienceService | None] | None = None,
    ) -> None:
        """`profile_changed(contact_id)` is called after a run's update_profile step changed the contact (its
        segments move); while `held(flow_id)` names a moment, that flow's sends wait until then and look
        again (a paused campaign, ADR 0019)."""
        self._store = store
        self._scheduler = scheduler
        self._queue = queue
        self._mailer = mailer
        self._texter = texter
        self._whatsapp = whatsapp or UnconfiguredWhatsApp()
        self._webhooks = webhooks
        self._renderer = renderer
        self._flows = flows
        self._guardrails = guardrails
        self._clock = clock
        self._from = from_address
        self._signer = webhook_signer or WebhookSigner(lambda: None)
        self._policy = policy or MailPolicy()
        self._unsubscribe_key = unsubscribe_key
        self._throttle = throttle
        self._sleeper = sleeper or _NoSleep()
        self._recommend = recommend or (lambda contact: [])
        self._profile_changed: Callable[[str], object] = profile_changed or (lambda contact_id: None)
        self._held: Callable[[str], datetime | None] = held or (lambda flow_id: None)
        self._audiences = audiences or (lambda: None)  # built at the first audience step or upload (ADR 0024)
        self._curve: tuple[datetime, list[float]] | None = None  # (read at, prior): best_time waits
        self._splits: dict[str, tuple[datetime, str | None]] = {}  # auto_winner splits: (read at, winner)

    def _send_time_prior(self) -> list[float]:
        """The shop's send-time curve (the daily job's document) as best_time waits shrink toward it: read
        at the first such wait, then kept CURVE_TTL, so a flow without one never reads it."""
        now = self._clock.now()
        if self._curve is None or now - self._curve[0] >= CURVE_TTL:
            record = self._store.get_document(send_time.CURVE_DOCUMENT)
            self._curve = (now, send_time.ShopCurve.from_record(record).prior())
        return self._curve[1]

    def _split_winner(self, flow_id: str, split: SplitStep) -> str | None:
        """The winner of an `auto_winner` split, or None while it tests (docs/flows.md).

        Its document (`split_winner.<flow>.<split>`) holds when its first entrant came (created by that
        entrant, conditionally: one start however many workers race) and, once chosen, the verdict: the
        `campaigns.rate_verdict` of the variants' emails from the step counters, written only when
        significant and never changed after. A worker reads it at most every SPLIT_TTL per split, and runs
        the test (one Query of the counters) only when the wait is over and no winner is written.
        """
        assert split.auto_winner is not None
        name = f"{SPLIT_DOCUMENT_PREFIX}{flow_id}.{split.id}"
        now = self._clock.now()
        cached = self._splits.get(name)
        if cached is not None and (cached[1] is not None or now - cached[0] < SPLIT_TTL):
            return cached[1]
        winner: str | None = None
        found = self._store.get_versioned_document(name)
        if found is None:
            with contextlib.suppress(ConflictError):  # another entrant started it at the same moment
                self._store.put_versioned_document(name, {"started_at": now.isoformat()}, now, 0)
        elif found[0].get("winner") is not None:
            winner = str(found[0]["winner"])
        elif now >= datetime.fromisoformat(found[0]["started_at"]) + split.auto_winner.waits:
            emails = [(v.name, v.next or "") for v in split.variants]
            test = split.auto_winner
            verdict = rate_verdict(emails, self._store.step_counts(flow_id), test.metric, test.confidence)
            if verdict["significant"]:
                document = {**found[0], "winner": verdict["winner"], "verdict": verdict, "decided_at": now.isoformat()}
                try:
                    self._store.put_versioned_document(name, document, now, found[1])
                    winner = str(verdict["winner"])
                    log.info("split winner", extra={"flow_id": flow_id, "split": split.id, "verdict": verdict})
                except ConflictError:
                    again = self._store.get_document(name) or {}
                    winner = str(again["winner"]) if again.get("winner") is not None else None
        self._splits[name] = (now, winner)
        return winner

    # entry points -------------------------------------------------------------------------------------

    def wake(self, work: StepWakeUp, deadline: datetime | None = None) -> AdvanceOutcome:
        """The worker's entry point: a wake-up (advance the run) or a message due (deliver it).

        `deadline` is when the invocation must be done (webhook retries stop short of it).
        """
        if work.audience is not None:
            return self._upload_audience(work.audience)
        # The run, its contact and the outbox it had when this was armed, in one call: the contact is read
        # once per invocation, the previous advance's messages with the run (issue #20).
        # So are the suppressions of the contact's addresses (their hashed keys ride in the wake-up).
        # And the contact's send log, which the guardrails read when the run advances.
        since = None if work.message_id is not None else self._clock.now() - WEEK
        reads = self._store.run_with_context(work.contact_id, work.run_id, work.outbox, work.addresses, since)
        run, contact, prefetched, addresses = reads.run, reads.contact, reads.messages, reads.addresses
        if run is None:
            log.warning("work for an unknown run", extra={"run_id": work.run_id})
            return AdvanceOutcome(run_id=work.run_id, status="missing")
        outcome = AdvanceOutcome(run_id=run.run_id, status="delivered", flow_id=run.flow_id)
        if work.message_id is not None:
            message = self._store.get_message(run.contact_id, work.message_id)
            if message is not None:
                self._deliver(run, message, contact, outcome, slot=work.slot, deadline=deadline, addresses=addresses)
            return outcome
        if run.is_active and work.seq > run.seq:
            # Armed before its advance committed: that commit is in flight or its work will be retried.
            raise NotCommittedYet(f"run {run.run_id} is at wake-up {run.seq}, not yet {work.seq}")
        # What an earlier attempt committed but did not deliver (it died, or was throttled) goes first.
        self._drain(run, outcome, deadline, contact, prefetched, addresses)
        if not run.is_active:
            outcome.status = "inactive"
            flow = self._flows.get(run.flow_id)
            if flow is not None and isinstance(flow.trigger, DateTrigger):
                # A retry of the wake-up that ended it: the attempt may have died before next year's run was armed.
                self._line_up_next_date_run(flow, run.contact_id, contact)
            return outcome
        if work.seq < run.seq:
            outcome.status = "stale"
            return outcome
        if run.due_at is not None and run.due_at > self._clock.now() + EARLY_TOLERANCE:
            self.redrive(run, contact)  # Scheduler fired early within its minute (or a repair re-drove it): wait
            outcome.status = "early"
            return outcome
        return self.advance(run, contact, outcome=outcome, deadline=deadline, addresses=addresses, sends=reads.sends)

    def start(
        self,
        start: engine.StartRun,
        *,
        redrive_existing: bool = False,
        later: list[Run] | None = None,
        contact: Contact | None = None,
    ) -> Run | None:
        """Store a new run and line up its first wake-up: now (through the queue) or at its due time.

        With `redrive_existing`, a run that already exists (a campaign's piece done again after a crash
        between storing a run and queueing it) has its wake-up lined up again: idempotent. With `later`,
        the run to line up is appended to it instead, for `redrive_all` (a campaign's piece: ten a call).

        A date flow's run (`start.armed_first`), whose first wake-up is a schedule (due after MAX_QUEUE_DELAY,
        days away), is armed before it is stored, as an advance arms before it commits: an attempt that dies
        between the two leaves a schedule that finds no run (ignored) or the run a retry stores, never a
        stored run with nothing armed, which the retry would not arm again (it finds the flow's slot taken and
        starts nothing). Every attempt works out the same day, so the schedule is the retry's own.

        A run started past its flow's opening wait (`engine.new_run`, due when the wait ends) is stored first
        and armed after, as a run due now is queued after: its due time counts from this attempt's clock, so
        a schedule armed by an attempt that died would fire early for the run a retry stores. A retry of its
        event finds the stored run and re-drives it at the stored time (`engine.Redrive`), and the repair job
        re-drives one that nothing retried."""
        due = start.run.due_at
        armed_first = (
            start.armed_first and later is None and due is not None and due - self._clock.now() > MAX_QUEUE_DELAY
        )
        if armed_first:
            self.redrive(start.run, contact)
        run = self._store.start_run(start.run, start.slot)
        if run is None:
            if redrive_existing and (found := self._store.get_run(start.run.contact_id, start.run.run_id)):
                if later is None:
                    self.redrive(found)
                else:
                    later.append(found)
            return None
        if later is not None:
            later.append(run)
        elif not armed_first:
            self.redrive(run, contact)
        return run

    def redrive_all(self, runs: Sequence[Run]) -> None:
        """`redrive` each: those due within MAX_QUEUE_DELAY in SendMessageBatch calls of ten, later ones
        as one-time schedules (one each)."""
        now, queued = self._clock.now(), []
        for run in runs:
            if not run.is_active:
                continue
            at = run.due_at or now
            if at - now <= MAX_QUEUE_DELAY:
                wake_up = StepWakeUp(contact_id=run.contact_id, run_id=run.run_id, seq=run.seq)
                queued.append((wake_up, max(at - now, timedelta(0))))
            else:
                self.redrive(run)
        if queued:
            self._queue.enqueue_many(queued)

    def repair(self) -> RepairOutcome:
        """Re-drive every active run whose wake-up is overdue by more than REPAIR_AFTER (the repair job).

        A run is stranded when nothing is pending for it: its first step's enqueue failed and the caller never
        retried, or an arm was lost some other way. Re-driving is idempotent, so a run that was only late
        (its wake-up stuck behind a backlog) gets a duplicate the worker ignores.
        """
        now = self._clock.now()
        outcome = RepairOutcome()
        for contact_id, run_id in self._store.overdue_runs(now - REPAIR_AFTER):
            outcome.overdue += 1
            run = self._store.get_run(contact_id, run_id)  # the index is eventually consistent: read again
            if run is None or not run.is_active or run.due_at is None or run.due_at >= now - REPAIR_AFTER:
                continue
            log.warning("re-driving a stranded run", extra={"run_id": run.run_id, "due_at": run.due_at.isoformat()})
            self.redrive(run)
            outcome.redriven.append(run.flow_id)
        return outcome

    def redrive(self, run: Run, contact: Contact | None = None) -> None:
        """Make sure the run's current wake-up is pending (idempotent: the worker ignores duplicates).

        With the contact, the wake-up names its address keys, read then with the run (one call)."""
        if not run.is_active:
            return
        wake_up = StepWakeUp(
            contact_id=run.contact_id,
            run_id=run.run_id,
            seq=run.seq,
            outbox=run.outbox,
            addresses=_address_keys(contact),
        )
        self._arm(wake_up, run.due_at or self._clock.now(), run.schedule_name)

    def advance(
        self,
        run: Run,
        contact: Contact | None = None,
        *,
        outcome: AdvanceOutcome | None = None,
        deadline: datetime | None = None,
        addresses: Mapping[str, AddressState | None] | None = None,
        sends: SendLog | None = None,
    ) -> AdvanceOutcome:
        """Run the engine for this run now; arm its next wake-up, commit it with its messages, deliver them.

        `addresses`: address states read with the run (others are read when a send needs them); `sends`: the
        contact's send log read with it since a week ago (else the guardrails' history is queried)."""
        now = self._clock.now()
        outcome = outcome or AdvanceOutcome(run_id=run.run_id, status="advanced", flow_id=run.flow_id)
        flow = self._flows.get(run.flow_id)
        if flow is None:
            self._commit(engine.exit_run(run, "flow_removed", now), run.version, [], outcome)
            outcome.status = "exited"
            return outcome
        contact = contact or self._store.get_contact(run.contact_id)
        if sends is None:
            history = self._store.recent_sends(run.contact_id, now - WEEK)
        else:
            history = [record for record in sends.records if record.sent_at >= now - WEEK]
        plan = engine.advance(
            run, flow, contact, history, self._guardrails, now, self._send_time_prior, self._split_winner
        )
        outcome.status = "advanced" if plan.run.is_active else plan.run.status.value
        for update in plan.profile_updates:
            consents = (update.email_marketing, update.sms_marketing, update.whatsapp_marketing)
            if contact is not None and consents != (None, None, None):  # one that sets no consent records none
                # A consent change is recorded (when, and which flow) before it is made: a retry after a crash
                # between the two writes records it again, a repeated line in the trail, rather than never.
                consent.record_changes(self._store, contact, update.apply(contact, now), f"flow:{run.flow_id}", now)
            # Idempotent (set, unset, tags): a retry of this advance applies it again to the same effect.
            contact = self._store.update_contact(run.contact_id, update, now) or contact
        messages: list[Message] = []
        for intent in plan.sends:
            # As the commit stores it (engine._record): skipped with its reason, or decided now, counted by the
            # guardrails from this moment (sent_at is the index's sort key), so a burst spread over send slots
            # cannot slip past a frequency cap or smart sending; at the run version its commit gives it.
            messages.append(intent.message)
            if intent.skip_reason is not None:
                outcome.skipped.append((intent.step.id, intent.skip_reason))
        messages += [hook.message for hook in plan.webhooks]
        for change in plan.audiences:
            messages.append(change.message)
            if change.message.reason is not None:
                outcome.skipped.append((change.step.id, change.message.reason))
        cleared, later = self._clear_before_commit(
            plan.run, flow, messages, contact, outcome, addresses, plan.contact_view
        )
        outbox = tuple(m.message_id for m in messages if not m.status.settled)
        # With the version its commit gives it (a store stores that version whatever it is handed): one copy.
        state = evolve(plan.run, outbox=outbox, version=run.version + 1)
        if plan.wake_at is not None:
            # Armed before the commit: once the advance is stored, its next wake-up already exists.
            self.redrive(state, contact)
            outcome.next_wake_at = plan.wake_at.isoformat()
        saved = self._commit(state, run.version, messages, outcome, sends)
        if saved is None:
            return outcome
        for message in messages:
            if (going := cleared.get(message.message_id)) is not None:
                assert contact is not None
                self._send(saved, going, message, contact, outcome, deadline=deadline, addresses=addresses)
            elif (wait := later.get(message.message_id)) is not None:
                # Cleared but not this second (a later send slot, kept; or no spare one for a campaign).
                self._defer(message.at_run_version(saved.version), wait.until, outcome, slot=wait.slot)
            elif message.status is MessageStatus.PENDING:
                self._deliver(
                    saved,
                    message.at_run_version(saved.version),
                    contact,
                    outcome,
                    deadline=deadline,
                    addresses=addresses,
                )
        if plan.profile_updates:
            # After the commit: a segment move may start flows, or end this very run through an exit rule.
            self._profile_changed(run.contact_id)
        if not saved.is_active and isinstance(flow.trigger, DateTrigger) and contact is not None:
            self._line_up_next_date_run(flow, contact.contact_id, contact)
        return outcome

    def _clear_before_commit(
        self,
        run: Run,
        flow: Flow,
        messages: list[Message],
        contact: Contact | None,
        outcome: AdvanceOutcome,
        addresses: Mapping[str, AddressState | None] | None,
        view: dict[str, Any] | None = None,
    ) -> tuple[dict[str, _Cleared], dict[str, _Defer]]:
        """Clear the advance's messages for sending before its commit, so the commit is the send decision.

        A message cleared to go now (its contact, address, window, send slot and rendering all say yes) is
        committed `SENDING`, its attempt begun, and sent right after the commit: no separate claim (ADR
        0020, Decision 8). The commit is conditioned on the run's version, so an exit that lands before it
        (an order) still stops the message; after it, nothing stands between the commit and the provider
        call, as nothing stood between the claim and the call before. A message its address blocks is
        committed `SKIPPED`, and one that cannot be made (a rendering error, a message refused before any
        call) `FAILED`. A message whose send slot is in a later second (or, a campaign's, finds no spare
        one) is committed `PENDING` and deferred after the commit, with its slot. Anything else (a paused
        campaign's hold) is committed `PENDING` and delivered after the commit as before, which decides it
        again and acts. `messages` is updated in place. `view`: the contact's template view, as the engine
        built it for this advance (else built here).
        """
        cleared: dict[str, _Cleared] = {}
        later: dict[str, _Defer] = {}
        if contact is None:
            return cleared, later
        now = self._clock.now()
        context: dict[str, Any] | None = None
        for index, message in enumerate(messages):
            if message.status is not MessageStatus.PENDING or self._held(message.flow_id) is not None:
                continue
            step = flow.step(message.step_id)
            if not isinstance(step, EmailStep | SmsStep | WhatsAppStep):
                continue  # webhooks and audience changes keep their own claim
            message = message.at_run_version(run.version + 1)
            context = context or engine.template_context(run, contact, run.variants, now, view)
            match self._clear(flow, step, message, contact, context, now, slot=None, addresses=addresses):
                case _Cleared() as going:
                    messages[index] = evolve(going.sent, status=MessageStatus.SENDING, attempt_at=now)
                    cleared[message.message_id] = going
                case _Skip(reason):
                    messages[index] = evolve(message, status=MessageStatus.SKIPPED, reason=reason)
                    outcome.skipped.append((message.step_id, reason))
                case _Defer() as wait:
                    later[message.message_id] = wait
                case _Fail(reason):  # settled by the commit: rendered once, its send slot not asked twice
                    messages[index] = evolve(message, status=MessageStatus.FAILED, reason=reason)
                    outcome.failed.append((message.step_id, reason))
                    log.error("message failed", extra={"message_id": message.message_id, "error": reason})
                case unreachable:
                    assert_never(unreachable)
        return cleared, later

    def _line_up_next_date_run(self, flow: Flow, contact_id: str, contact: Contact | None) -> None:
        """A yearly date flow's next run, as this one ends: started, or re-driven if an earlier attempt started it.

        Starting and arming are two writes: an attempt that died between them left the next run stored with
        nothing pending, and only the retry of this wake-up knows to look (the slot names the run).
        """
        slots = self._store.flow_slots(contact_id)
        slot = slots.get(flow.id)
        if slot is not None and slot.active_run_id is not None:
            if (holder := self._store.get_run(contact_id, slot.active_run_id)) is not None:
                self.redrive(holder)
            return
        contact = contact or self._store.get_contact(contact_id)
        if contact is None:
            return
        for start in engine.date_starts(contact, slots, [flow], self._guardrails.default_timezone, self._clock.now()):
            self.start(start)

    # the outbox ---------------------------------------------------------------------------------------

    def _commit(
        self,
        run: Run,
        expected_version: int,
        messages: list[Message],
        outcome: AdvanceOutcome,
        sends: SendLog | None = None,
    ) -> Run | None:
        try:
            return self._store.commit_advance(run, expected_version, messages, sends)
        except ConflictError:
            # Another invocation advanced or ended this run first (a duplicate firing, an exit): its writes win.
            log.info("run moved under us; standing down", extra={"run_id": run.run_id})
            outcome.status = "lost_race"
            outcome.skipped = []
            return None

    def _drain(
        self,
        run: Run,
        outcome: AdvanceOutcome,
        deadline: datetime | None,
        contact: Contact | None = None,
        prefetched: dict[str, Message] | None = None,
        addresses: Mapping[str, AddressState | None] | None = None,
    ) -> None:
        """Deliver what the run's outbox holds that is not settled; `prefetched`: messages read with the run."""
        for message_id in run.outbox:
            if prefetched is not None and message_id in prefetched:
                message: Message | None = prefetched[message_id]
            else:
                message = self._store.get_message(run.contact_id, message_id)
            if message is None or message.status.settled:
                continue
            contact = contact or self._store.get_contact(run.contact_id)
            self._deliver(run, message, contact, outcome, deadline=deadline, addresses=addresses)

    def _deliver(
        self,
        run: Run,
        message: Message,
        contact: Contact | None,
        outcome: AdvanceOutcome,
        *,
        slot: datetime | None = None,
        deadline: datetime | None = None,
        addresses: Mapping[str, AddressState | None] | None = None,
    ) -> None:
        """Send one committed message at most once; defer it while the rate or the provider says wait.

        `addresses`: address states this invocation already read (the suppressions), by key."""
        now = self._clock.now()
        step_id = message.step_id
        if message.status is MessageStatus.SENDING:
            if message.channel is Channel.AUDIENCE and self._abandoned_change(run, message, contact, outcome):
                return
            self._abandoned(message, outcome)
            return
        if message.status is not MessageStatus.PENDING:
            return
        if run.status is RunStatus.EXITED and run.version != message.run_version:
            self._settle(message, MessageStatus.SKIPPED, outcome, reason="run_exited")
            return
        flow = self._flows.get(message.flow_id)
        if flow is None:
            self._settle(message, MessageStatus.SKIPPED, outcome, reason="flow_removed")
            return
        if (held_until := self._held(message.flow_id)) is not None:
            self._defer(message, held_until, outcome)
            return
        step = flow.step(step_id)
        contact = contact or self._store.get_contact(run.contact_id)
        context = engine.template_context(run, contact, run.variants, now)
        if isinstance(step, WebhookStep):
            self._post(run, flow, step, message, context, outcome, deadline)
            return
        if isinstance(step, AudienceStep):
            self._change_audience(run, step, message, contact, outcome)
            return
        assert isinstance(step, EmailStep | SmsStep | WhatsAppStep)
        match self._clear(flow, step, message, contact, context, now, slot=slot, addresses=addresses):
            case _Skip(reason):
                self._settle(message, MessageStatus.SKIPPED, outcome, reason=reason)
                return
            case _Fail(reason):
                log.error("message failed", extra={"message_id": message.message_id, "error": reason})
                self._settle(message, MessageStatus.FAILED, outcome, reason=reason)
                return
            case _Defer(until, held_slot):
                self._defer(message, until, outcome, slot=held_slot)
                return
            case _Cleared() as going:
                pass
            case unreachable:
                assert_never(unreachable)
        claim = self._store.begin_send(message, now)
        if claim is SendClaim.RUN_EXITED:
            self._settle(message, MessageStatus.SKIPPED, outcome, reason="run_exited")
            return
        if claim is SendClaim.GONE:
            return  # another invocation has it
        assert contact is not None  # cleared
        self._send(run, going, message, contact, outcome, deadline=deadline, addresses=addresses)

    def _clear(
        self,
        flow: Flow,
        step: EmailStep | SmsStep | WhatsAppStep,
        message: Message,
        contact: Contact | None,
        context: dict[str, Any],
        now: datetime,
        *,
        slot: datetime | None,
        addresses: Mapping[str, AddressState | None] | None,
    ) -> _Verdict:
        """What stands between a message and its provider call, decided without writing (a send slot, the
        one write, is reserved here): the contact, its address, WhatsApp's window, the send rate, rendering."""
        if isinstance(step, WhatsAppStep) and message.channel is not Channel.WHATSAPP:
            step = step.fallback_step() or step  # the advance chose the fallback (no WhatsApp consent)
        if contact is None:
            return _Skip("no_contact")
        if (blocked := self._blocked(message, addresses)) is not None:
            return _Skip(blocked)
        # Free text decided inside the window may come due after it closed (deferred by quiet hours, a throttle).
        is_text = isinstance(step, WhatsAppStep) and step.text is not None
        if is_text and not whatsapp.window_open(contact.whatsapp_inbound_at, now):
            return _Skip(whatsapp.WINDOW_CLOSED)
        if isinstance(step, EmailStep) and self._throttle is not None:
            if slot is None or slot < now - SENDING_GRACE:
                slot = self._slot(message, now)
            if slot is None:  # a campaign's send, and flows hold the rate for now: look again, backing off
                return _Defer(now + spare_retry(message.message_id, now - message.created_at))
            if int(slot.timestamp()) > int(now.timestamp()):  # the rate is per one-second window
                return _Defer(slot, slot)
        try:
            send, sent = self._prepare(flow, step, message, contact, context)
        except (TemplateRenderError, PermanentSendError) as exc:
            return _Fail(str(exc)[:500])
        return _Cleared(step, send, sent)

    def _send(
        self,
        run: Run,
        going: _Cleared,
        message: Message,
        contact: Contact,
        outcome: AdvanceOutcome,
        *,
        deadline: datetime | None,
        addresses: Mapping[str, AddressState | None] | None,
    ) -> None:
        """The provider call of a message this invocation holds `SENDING`, and its settle."""
        step, send, sent, step_id, now = going.step, going.send, going.sent, message.step_id, self._clock.now()
        try:
            provider_id = send()
        except PermanentSendError as exc:
            log.error("message refused", extra={"message_id": message.message_id, "error": str(exc)})
            fallback = self._fallback_after(step, message, contact, exc)
            if fallback is not None:
                # The same message, now on the fallback's channel: PENDING again only over its SENDING record,
                # so a crash after this write leaves it in the outbox for the next drain (ADR 0007).
                moved = self._store.settle_message(
                    fallback,
                    MessageStatus.PENDING,
                    reason=fallback.reason,
                    sent_at=message.sent_at,
                    only_from=MessageStatus.SENDING,
                    moved_from=message.channel,
                )
                if moved is not None:
                    self._deliver(run, moved, contact, outcome, deadline=deadline, addresses=addresses)
                return
            self._settle(message, MessageStatus.FAILED, outcome, reason=str(exc)[:500], only_from=MessageStatus.SENDING)
            return
        except TransientSendError as exc:
            # The provider answered "not now": nothing went out, so the message may be sent again later.
            self._store.settle_message(
                message, MessageStatus.PENDING, sent_at=message.sent_at, only_from=MessageStatus.SENDING
            )
            wait = exc.retry_after or (THROTTLE_PAUSE if exc.throttled else SEND_BACKOFF)
            if exc.throttled and self._throttle is not None and message.channel is Channel.EMAIL:
                self._throttle.hold(now + wait)
            log.warning("provider asked us to wait", extra={"message_id": message.message_id, "error": str(exc)})
            self._defer(message, now + wait, outcome)
            return
        except UnknownSendOutcome as exc:
            # The request may have reached the provider: never resend blindly (ADR 0007, README Guarantees).
            self._settle(
                message, MessageStatus.UNKNOWN, outcome, reason=str(exc)[:500], only_from=MessageStatus.SENDING
            )
            return
        except BaseException:
            self._settle(
                message, MessageStatus.UNKNOWN, outcome, reason="send crashed", only_from=MessageStatus.SENDING
            )
            raise
        # Only over its SENDING record: a contact erased meanwhile must not get the record back (ADR 0016).
        self._store.settle_message(
            sent,
            MessageStatus.SENT,
            # a fallback keeps why WhatsApp did not carry it
            reason=message.reason if (message.reason or "").startswith(whatsapp.FELL_BACK) else None,
            provider_id=provider_id,
            sent_at=self._clock.now(),
            only_from=MessageStatus.SENDING,
        )
        outcome.sent.append(step_id)

    def _fallback_after(
        self, step: EmailStep | SmsStep | WhatsAppStep, message: Message, contact: Contact, error: Exception
    ) -> Message | None:
        """The message on its step's fallback channel, after WhatsApp refused it for good; None if the step
        has no fallback or the contact cannot get it (no address, no consent: the failure stands).

        Not judged again by quiet hours, caps or smart sending: the WhatsApp message was, a moment ago, and
        this is the same message going out another way."""
        if not isinstance(step, WhatsAppStep) or message.channel is not Channel.WHATSAPP:
            return None
        fallback = step.fallback_step()
        if fallback is None:
            return None
        channel = engine.channel_of(fallback)
        if engine.consent_problem(contact, channel, message.category) is not None:
            return None
        recipient = contact.email if channel is Channel.EMAIL else contact.phone
        reason = f"{whatsapp.FELL_BACK}: {error}"[:500]
        log.warning("WhatsApp refused the message; sending the fallback", extra={"message_id": message.message_id})
        return evolve(message, channel=channel, recipient=recipient, reason=reason, body_preview=None)

    def _prepare(
        self,
        flow: Flow,
        step: EmailStep | SmsStep | WhatsAppStep,
        message: Message,
        contact: Contact,
        context: dict[str, Any],
    ) -> tuple[Callable[[], str], Message]:
        """Render the message: everything that can fail before the provider call fails here, not after."""
        context = {
            **context,
            "contact": context.get("contact") or contact.template_view(),  # _deliver's view of this same contact
            "flow": {"id": flow.id, "name": flow.name},
            "step": {"id": step.id},
            "channel": message.channel.value,
            "recommendations": _WhenRead(lambda: self._recommend(contact)),
        }
        recipient = message.recipient or ""
        if isinstance(step, EmailStep):
            email = self._compose(step, message, context)
            return (lambda: self._mailer.send(email)), _with_content(message, subject=email.subject, preview=email.text)
        if isinstance(step, WhatsAppStep):
            chat = self._renderer.whatsapp(step, recipient, context)
            return (lambda: self._whatsapp.send(chat)), _with_content(message, subject=None, preview=chat.preview)
        text = self._renderer.sms(step.template, context)
        if message.category is Category.MARKETING:
            text = sms.with_opt_out_notice(sms.with_sender_name(text, self._renderer.brand.name))
        parts = sms.segments(text)
        if parts.count > sms.MAX_SEGMENTS:
            raise PermanentSendError(f"the SMS runs to {parts.count} segments; at most {sms.MAX_SEGMENTS} are sent")
        outgoing = OutgoingSms(to=recipient, text=text, transactional=message.category is Category.TRANSACTIONAL)
        sent = _with_content(message, subject=None, preview=text, sms_encoding=parts.encoding, sms_segments=parts.count)
        return (lambda: self._texter.send(outgoing)), sent

    def _abandoned(self, message: Message, outcome: AdvanceOutcome) -> None:
        """A message left SENDING: in flight elsewhere (look again later), or abandoned mid-call (unknown)."""
        now = self._clock.now()
        if message.attempt_at is not None and now - message.attempt_at < SENDING_GRACE:
            self._defer(message, message.attempt_at + SENDING_GRACE, outcome)
            return
        self._settle(
            message, MessageStatus.UNKNOWN, outcome, reason="abandoned mid-send", only_from=MessageStatus.SENDING
        )

    def _settle(
        self,
        message: Message,
        status: MessageStatus,
        outcome: AdvanceOutcome,
        *,
        reason: str,
        only_from: MessageStatus = MessageStatus.PENDING,
    ) -> None:
        # An unknown send keeps its time: it may have gone out, so smart sending and caps still count it.
        sent_at = message.sent_at if status is MessageStatus.UNKNOWN else None
        if self._store.settle_message(message, status, reason=reason, sent_at=sent_at, only_from=only_from) is None:
            return  # it moved on meanwhile (another invocation settled it)
        if status is MessageStatus.SKIPPED:
            outcome.skipped.append((message.step_id, reason))
        elif status is MessageStatus.FAILED:
            outcome.failed.append((message.step_id, reason))
        elif status is MessageStatus.UNKNOWN:
            outcome.unknown.append(message.step_id)
            log.error("send outcome unknown; not resent", extra={"message_id": message.message_id})

    def _slot(self, message: Message, now: datetime) -> datetime | None:
        """A flow's send reserves the next slot however far out; a campaign's takes only a spare one, close
        to now (ADR 0019): flows keep priority, and campaigns use every slot they leave."""
        assert self._throttle is not None
        if campaign_id_of(message.flow_id) is None:
            return self._throttle.slot(now)
        return self._throttle.spare(now, SPARE_WITHIN)

    def _defer(
        self, message: Message, until: datetime, outcome: AdvanceOutcome, *, slot: datetime | None = None
    ) -> None:
        work = StepWakeUp(
            message.contact_id,
            message.run_id,
            seq=-1,
            message_id=message.message_id,
            slot=slot,
            addresses=(address_key(message.channel, message.recipient),) if message.recipient else (),
        )
        digest = hashlib.sha256(message.message_id.encode()).hexdigest()[:20]
        self._arm(work, until, f"m{digest}-{int(until.timestamp())}")
        outcome.deferred.append((message.step_id, until.isoformat()))

    def _arm(self, work: StepWakeUp, at: datetime, name: str) -> None:
        """Due within MAX_QUEUE_DELAY: the queue, with a delay; later: a one-time schedule."""
        delay = max(at - self._clock.now(), timedelta(0))
        if delay <= MAX_QUEUE_DELAY:
            self._queue.enqueue(work, delay)
        else:
            self._scheduler.schedule(name, at, work)

    def _post(
        self,
        run: Run,
        flow: Flow,
        step: WebhookStep,
        message: Message,
        context: dict[str, Any],
        outcome: AdvanceOutcome,
        deadline: datetime | None,
    ) -> None:
        hook = engine.webhook_intent(run, flow, step, context, message)
        body = json.dumps(hook.body, separators=(",", ":"), default=str).encode()
        if self._store.begin_send(message, self._clock.now()) is not SendClaim.TAKEN:
            return
        attempts = hook.retries + 1
        timeout = hook.timeout.total_seconds()
        error = ""
        try:
            for attempt in range(attempts):
                if deadline is not None and self._clock.now() + hook.timeout > deadline:
                    # Not enough of the invocation left for another attempt: hand the rest to a later one.
                    self._store.settle_message(message, MessageStatus.PENDING, only_from=MessageStatus.SENDING)
                    self._defer(message, self._clock.now() + SEND_BACKOFF, outcome)
                    return
                headers = {**self._signer.headers(body, self._clock), "X-Nudge-Delivery": message.message_id}
                try:
                    status = self._webhooks.post(hook.url, body, headers, timeout)
                except TransientSendError as exc:
                    error = str(exc)
                else:
                    if 200 <= status < 300:
                        self._store.settle_message(
                            message, MessageStatus.SENT, provider_id=f"http-{status}", sent_at=self._clock.now()
                        )
                        outcome.sent.append(message.step_id)
                        return
                    error = f"HTTP {status}"
                    if 400 <= status < 500 and status not in (408, 429):
                        break  # the receiver refuses this body; retrying will not change its mind
                if attempt + 1 < attempts:
                    self._sleeper.sleep(_backoff(attempt).total_seconds())
        except BaseException:
            # Settled before the error goes up: a message never stays SENDING because its invocation failed.
            self._store.settle_message(
                message, MessageStatus.FAILED, reason="webhook step crashed", only_from=MessageStatus.SENDING
            )
            raise
        self._store.settle_message(message, MessageStatus.FAILED, reason=error[:500], only_from=MessageStatus.SENDING)
        outcome.failed.append((message.step_id, error))

    def _abandoned_change(self, run: Run, message: Message, contact: Contact | None, outcome: AdvanceOutcome) -> bool:
        """An audience change left SENDING past the grace (its worker died): done again, as it is idempotent."""
        if message.attempt_at is not None and self._clock.now() - message.attempt_at < SENDING_GRACE:
            return False
        flow = self._flows.get(message.flow_id)
        step = flow.step(message.step_id) if flow is not None else None
        if not isinstance(step, AudienceStep):
            return False
        self._change_audience(run, step, message, contact, outcome, claimed=True)
        return True

    def _change_audience(
        self,
        run: Run,
        step: AudienceStep,
        message: Message,
        contact: Contact | None,
        outcome: AdvanceOutcome,
        *,
        claimed: bool = False,
    ) -> None:
        """Record the membership change in the audience ledger, queue the audience's upload, then upload it in
        this same pass (ADR 0024). Claimed like a message, so an exit that commits first cancels it; every part
        is safe to repeat, so a change left SENDING by a dead worker is simply done again."""
        audiences = self._audiences()
        if audiences is None:
            self._settle(message, MessageStatus.FAILED, outcome, reason="audiences are not configured")
            return
        claim = SendClaim.TAKEN if claimed else self._store.begin_send(message, self._clock.now())
        if claim is SendClaim.RUN_EXITED:
            self._settle(message, MessageStatus.SKIPPED, outcome, reason="run_exited")
            return
        if claim is SendClaim.GONE:
            return
        contact = contact or self._store.get_contact(run.contact_id)
        problem = audiences.change(step.audience, step.action, run.contact_id, contact)
        if problem is not None:
            self._settle(message, MessageStatus.SKIPPED, outcome, reason=problem, only_from=MessageStatus.SENDING)
            return
        # The upload's own piece of work, a minute out: done even if this pass dies now (it then finds nothing
        # pending when this pass's own upload, just below, succeeded; a rate limit is not hit again at once).
        audiences.queue_sync(step.audience, AUDIENCE_SAFETY_NET)
        now = self._clock.now()
        self._store.settle_message(
            message, MessageStatus.SENT, provider_id="ledger", sent_at=now, only_from=MessageStatus.SENDING
        )
        outcome.sent.append(step.id)
        audiences.sync(step.audience)  # at once; the queued piece then finds nothing pending

    def _upload_audience(self, audience_id: str) -> AdvanceOutcome:
        outcome = AdvanceOutcome(run_id=f"audience:{audience_id}", status="delivered")
        audiences = self._audiences()
        if audiences is None:
            outcome.status = "missing"
            return outcome
        synced = audiences.sync(audience_id)
        if synced.error is not None:
            outcome.failed.append((audience_id, synced.error))
        return outcome

    def _blocked(self, message: Message, known: Mapping[str, AddressState | None] | None = None) -> str | None:
        """A suppression or topic opt-out on the recipient's address: read with the run, or now (one read)."""
        if not message.recipient:
            return None
        key = address_key(message.channel, message.recipient)
        state = known[key] if known is not None and key in known else self._store.address_state(key)
        return block_reason(state, message.channel, message.category, message.flow_id)

    def _compose(self, step: EmailStep, message: Message, context: dict[str, Any]) -> OutgoingEmail:
        """Render the email as services.compose does for every email (previews too)."""
        composer = EmailComposer(
            renderer=self._renderer, from_address=self._from, policy=self._policy, unsubscribe_key=self._unsubscribe_key
        )
        return composer.compose(step, message, context, self._clock.now())


class _WhenRead(Sequence[dict[str, Any]]):
    """The `recommendations` variable: computed the first time a template reads it, so the messages whose
    templates never do (most of them) cost no table read and no scoring."""

    def __init__(self, compute: Callable[[], list[dict[str, Any]]]) -> None:
        self._compute = compute
        self._items: list[dict[str, Any]] | None = None

    def _all(self) -> list[dict[str, Any]]:
        if self._items is None:
            self._items = self._compute()
        return self._items

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())


class _NoSleep:
    def sleep(self, seconds: float) -> None:
        return None


def _address_keys(contact: Contact | None) -> tuple[str, ...]:
    """The hashed keys of the contact's email and phone (SMS): a wake-up reads their suppressions with its run."""
    if contact is None:
        return ()
    keys = []
    if contact.email:
        keys.append(address_key(Channel.EMAIL, contact.email))
    if contact.phone:
        keys.append(address_key(Channel.SMS, contact.phone))
    return tuple(keys)


def _backoff(attempt: int) -> timedelta:
    return timedelta(milliseconds=200 * 2**attempt)


def _with_content(message: Message, *, subject: str | None, preview: str, **more: Any) -> Message:
    """The message with what it says (its preview cut to 160 characters) and `more` fields, in one copy."""
    return evolve(message, subject=subject, body_preview=preview[:160], **more)
