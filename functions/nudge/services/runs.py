"""Use case: advance a run — execute its due steps, send what they decide, schedule the next wake-up."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, overload

from nudge.domain import engine, sms
from nudge.domain.flows import DateTrigger, EmailStep, FlowCatalog
from nudge.domain.guardrails import WEEK, Guardrails
from nudge.domain.model import Category, Contact, Message, MessageStatus, Run
from nudge.domain.suppression import address_key, block_reason
from nudge.names import SIGNATURE_HEADER
from nudge.ports import (
    Clock,
    ConflictError,
    Mailer,
    OutgoingEmail,
    OutgoingSms,
    PermanentSendError,
    Scheduler,
    Sleeper,
    StepWakeUp,
    Store,
    Texter,
    TransientSendError,
    WebhookSender,
)
from nudge.services.compose import EmailComposer, MailPolicy
from nudge.services.throttle import SendThrottle
from nudge.signing import sign
from nudge.templating import TemplateRenderer, TemplateRenderError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AdvanceOutcome:
    """What one advance did, for logs, responses and tests."""

    run_id: str
    status: str  # advanced | completed | exited | inactive | stale | missing | lost_race
    flow_id: str | None = None
    sent: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    next_wake_at: str | None = None


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


class RunService:
    """Advances runs. Safe to call twice for the same wake-up: a step fired twice sends once."""

    def __init__(
        self,
        *,
        store: Store,
        scheduler: Scheduler,
        mailer: Mailer,
        texter: Texter,
        webhooks: WebhookSender,
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
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._mailer = mailer
        self._texter = texter
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
        self._profile_changed: Callable[[str], object] = lambda contact_id: None

    def on_profile_change(self, listener: Callable[[str], object]) -> None:
        """Call `listener(contact_id)` after a run's update_profile step changed the contact (segments)."""
        self._profile_changed = listener

    def wake(self, wake_up: StepWakeUp) -> AdvanceOutcome:
        """Entry point for a fired schedule: ignore stale, duplicate and ended wake-ups."""
        run = self._store.get_run(wake_up.contact_id, wake_up.run_id)
        if run is None:
            log.warning("wake-up for unknown run", extra={"run_id": wake_up.run_id})
            return AdvanceOutcome(run_id=wake_up.run_id, status="missing")
        if not run.is_active:
            return AdvanceOutcome(run_id=run.run_id, status="inactive", flow_id=run.flow_id)
        if run.seq != wake_up.seq:
            return AdvanceOutcome(run_id=run.run_id, status="stale", flow_id=run.flow_id)
        return self.advance(run)

    def start(self, start: engine.StartRun) -> Run | None:
        """Store a new run; if it is due now, advance it at once, else schedule its first wake-up."""
        run = self._store.start_run(start.run, start.slot)
        if run is None:
            return None
        if run.due_at is not None and run.due_at > self._clock.now():
            wake_up = StepWakeUp(contact_id=run.contact_id, run_id=run.run_id, seq=run.seq)
            self._scheduler.schedule(run.schedule_name, run.due_at, wake_up)
        else:
            self.advance(run)
        return run

    def advance(self, run: Run, contact: Contact | None = None) -> AdvanceOutcome:
        """Run the engine for this run now, perform its decisions, schedule its next wake-up, save it."""
        now = self._clock.now()
        flow = self._flows.get(run.flow_id)
        if flow is None:
            self._save(engine.exit_run(run, "flow_removed", now), run.version)
            return AdvanceOutcome(run_id=run.run_id, status="exited", flow_id=run.flow_id)
        contact = contact or self._store.get_contact(run.contact_id)
        history = self._store.recent_sends(run.contact_id, now - WEEK)
        plan = engine.advance(run, flow, contact, history, self._guardrails, now)
        status = "advanced" if plan.run.is_active else plan.run.status.value
        outcome = AdvanceOutcome(run_id=run.run_id, status=status, flow_id=run.flow_id)
        for update in plan.profile_updates:
            contact = self._store.update_contact(run.contact_id, update, now) or contact
        for intent in plan.sends:
            self._perform(intent, contact, outcome)
        for hook in plan.webhooks:
            self._post(hook, outcome)
        if plan.wake_at is not None:
            wake_up = StepWakeUp(contact_id=run.contact_id, run_id=run.run_id, seq=plan.run.seq)
            self._scheduler.schedule(plan.run.schedule_name, plan.wake_at, wake_up)
            outcome.next_wake_at = plan.wake_at.isoformat()
        if not self._save(plan.run, run.version):
            outcome.status = "lost_race"
            return outcome
        if plan.profile_updates:
            # After the save: a segment move may start flows, or end this very run through an exit rule.
            self._profile_changed(run.contact_id)
        if not plan.run.is_active and isinstance(flow.trigger, DateTrigger) and contact is not None:
            # A yearly date flow lines up next year's run as this one ends.
            for start in engine.date_starts(
                contact, self._store.flow_slots(contact.contact_id), [flow], self._guardrails.default_timezone, now
            ):
                self.start(start)
        return outcome

    def _save(self, run: Run, expected_version: int) -> bool:
        try:
            self._store.save_run(run, expected_version)
        except ConflictError:
            # Another invocation advanced this run first (a duplicate firing); its writes win.
            log.info("run moved under us; standing down", extra={"run_id": run.run_id})
            return False
        return True

    def _perform(self, intent: engine.SendIntent, contact: Contact | None, outcome: AdvanceOutcome) -> None:
        message = intent.message
        if not self._store.claim_message(message):
            log.info("message already claimed; not sending twice", extra={"message_id": message.message_id})
            return
        skip_reason = intent.skip_reason or self._blocked(message)
        if skip_reason is not None:
            self._store.settle_message(message, MessageStatus.SKIPPED, reason=skip_reason)
            outcome.skipped.append((intent.step.id, skip_reason))
            return
        assert contact is not None  # no skip reason means the contact and its address exist
        try:
            provider_id, sent = self._deliver(intent, message, contact)
        except (TemplateRenderError, PermanentSendError) as exc:
            log.error("message failed", extra={"message_id": message.message_id, "error": str(exc)})
            self._store.settle_message(message, MessageStatus.FAILED, reason=str(exc)[:500])
            outcome.failed.append((intent.step.id, str(exc)))
            return
        except Exception:
            # Transient or unknown: free the claim so the scheduler's retry can send it, then fail loudly.
            self._store.settle_message(message, MessageStatus.RETRYABLE, reason="transient send failure")
            raise
        self._store.settle_message(sent, MessageStatus.SENT, provider_id=provider_id, sent_at=self._clock.now())
        outcome.sent.append(intent.step.id)

    def _blocked(self, message: Message) -> str | None:
        """A suppression or topic opt-out on the recipient's address (one read per send)."""
        if not message.recipient:
            return None
        state = self._store.address_state(address_key(message.channel, message.recipient))
        return block_reason(state, message.channel, message.category, message.flow_id)

    def _deliver(self, intent: engine.SendIntent, message: Message, contact: Contact) -> tuple[str, Message]:
        recipient = message.recipient or ""
        context = {
            **intent.context,
            "contact": contact.template_view(),
            "flow": {"id": intent.flow.id, "name": intent.flow.name},
            "step": {"id": intent.step.id},
            "channel": message.channel.value,
            "recommendations": _WhenRead(lambda: self._recommend(contact)),
        }
        if isinstance(intent.step, EmailStep):
            if self._throttle is not None:
                self._throttle.acquire()  # first, so the Date header is the moment of the slot
            email = self._compose(intent.step, message, context)
            provider_id = self._mailer.send(email)
            return provider_id, _with_content(message, subject=email.subject, preview=email.text)
        text = self._renderer.sms(intent.step.template, context)
        if message.category is Category.MARKETING:
            text = sms.with_opt_out_notice(sms.with_sender_name(text, self._renderer.brand.name))
        parts = sms.segments(text)
        outgoing = OutgoingSms(to=recipient, text=text, transactional=message.category is Category.TRANSACTIONAL)
        provider_id = self._texter.send(outgoing)
        sent = replace(_with_content(message, subject=None, preview=text), sms_encoding=parts.encoding)
        return provider_id, replace(sent, sms_segments=parts.count)

    def _post(self, hook: engine.WebhookIntent, outcome: AdvanceOutcome) -> None:
        message = hook.message
        if not self._store.claim_message(message):
            return
        body = json.dumps(hook.body, separators=(",", ":"), default=str).encode()
        attempts = hook.retries + 1
        error = ""
        for attempt in range(attempts):
            try:
                status = self._webhooks.post(
                    hook.url, body, self._signer.headers(body, self._clock), hook.timeout.total_seconds()
                )
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
        self._store.settle_message(message, MessageStatus.FAILED, reason=error[:500])
        outcome.failed.append((message.step_id, error))

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


def _backoff(attempt: int) -> timedelta:
    return timedelta(milliseconds=200 * 2**attempt)


def _with_content(message: Message, *, subject: str | None, preview: str) -> Message:
    return replace(message, subject=subject, body_preview=preview[:160])
