"""Use case: advance a run — execute its due steps, send what they decide, schedule the next wake-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from email.utils import make_msgid
from typing import Any

from nudge.domain import engine
from nudge.domain.flows import EmailStep, FlowCatalog
from nudge.domain.model import Category, Channel, Contact, Message, MessageStatus, Run
from nudge.ports import (
    Clock,
    ConflictError,
    Mailer,
    OutgoingEmail,
    OutgoingSms,
    PermanentSendError,
    Scheduler,
    StepWakeUp,
    Store,
    Texter,
)
from nudge.templating import TemplateRenderer, TemplateRenderError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AdvanceOutcome:
    """What one advance did, for logs, responses and tests."""

    run_id: str
    status: str  # advanced | completed | inactive | stale | missing | lost_race
    sent: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    next_wake_at: str | None = None


class RunService:
    """Advances runs. Safe to call twice for the same wake-up: a step fired twice sends once."""

    def __init__(
        self,
        *,
        store: Store,
        scheduler: Scheduler,
        mailer: Mailer,
        texter: Texter,
        renderer: TemplateRenderer,
        flows: FlowCatalog,
        clock: Clock,
        from_address: str,
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._mailer = mailer
        self._texter = texter
        self._renderer = renderer
        self._flows = flows
        self._clock = clock
        self._from = from_address

    def wake(self, wake_up: StepWakeUp) -> AdvanceOutcome:
        """Entry point for a fired schedule: ignore stale, duplicate and ended wake-ups."""
        run = self._store.get_run(wake_up.contact_id, wake_up.run_id)
        if run is None:
            log.warning("wake-up for unknown run", extra={"run_id": wake_up.run_id})
            return AdvanceOutcome(run_id=wake_up.run_id, status="missing")
        if not run.is_active:
            return AdvanceOutcome(run_id=run.run_id, status="inactive")
        if run.seq != wake_up.seq:
            return AdvanceOutcome(run_id=run.run_id, status="stale")
        return self.advance(run)

    def advance(self, run: Run) -> AdvanceOutcome:
        """Run the engine for this run now, perform its sends, schedule its next wake-up, save it."""
        now = self._clock.now()
        flow = self._flows.get(run.flow_id)
        if flow is None:
            ended = engine.exit_run(run, "flow_removed", now)
            self._save(ended, run.version)
            return AdvanceOutcome(run_id=run.run_id, status="completed")
        contact = self._store.get_contact(run.contact_id)
        plan = engine.advance(run, flow, contact, now)
        outcome = AdvanceOutcome(run_id=run.run_id, status="completed" if not plan.run.is_active else "advanced")
        for intent in plan.sends:
            self._perform(intent, run, contact, outcome)
        if plan.wake_at is not None:
            wake_up = StepWakeUp(contact_id=run.contact_id, run_id=run.run_id, seq=plan.run.seq)
            self._scheduler.schedule(plan.run.schedule_name, plan.wake_at, wake_up)
            outcome.next_wake_at = plan.wake_at.isoformat()
        if not self._save(plan.run, run.version):
            outcome.status = "lost_race"
        return outcome

    def _save(self, run: Run, expected_version: int) -> bool:
        try:
            self._store.save_run(run, expected_version)
        except ConflictError:
            # Another invocation advanced this run first (a duplicate firing); its writes win.
            log.info("run moved under us; standing down", extra={"run_id": run.run_id})
            return False
        return True

    def _perform(self, intent: engine.SendIntent, run: Run, contact: Contact | None, outcome: AdvanceOutcome) -> None:
        message = intent.message
        if not self._store.claim_message(message):
            log.info("message already claimed; not sending twice", extra={"message_id": message.message_id})
            return
        if intent.skip_reason is not None:
            self._store.settle_message(message, MessageStatus.SKIPPED, reason=intent.skip_reason)
            outcome.skipped.append((intent.step.id, intent.skip_reason))
            return
        assert contact is not None  # no skip reason means the contact and its address exist
        context = _template_context(run, contact, intent)
        try:
            provider_id, sent = self._deliver(intent, message, context)
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

    def _deliver(self, intent: engine.SendIntent, message: Message, context: dict[str, Any]) -> tuple[str, Message]:
        recipient = message.recipient or ""
        if isinstance(intent.step, EmailStep):
            subject, html, text = self._renderer.email(intent.step.template, intent.step.subject, context)
            email = OutgoingEmail(
                to=recipient,
                from_address=self._from,
                subject=subject,
                html=html,
                text=text,
                date=self._clock.now(),
                headers={"Message-ID": make_msgid(domain=self._from.rpartition("@")[2] or None)},
                tags={"flow": message.flow_id, "step": message.step_id, "category": message.category.value},
            )
            provider_id = self._mailer.send(email)
            return provider_id, _with_content(message, subject=subject, preview=text)
        text = self._renderer.sms(intent.step.template, context)
        sms = OutgoingSms(to=recipient, text=text, transactional=message.category is Category.TRANSACTIONAL)
        provider_id = self._texter.send(sms)
        return provider_id, _with_content(message, subject=None, preview=text)


def _with_content(message: Message, *, subject: str | None, preview: str) -> Message:
    return replace(message, subject=subject, body_preview=preview[:160])


def _template_context(run: Run, contact: Contact, intent: engine.SendIntent) -> dict[str, Any]:
    """What a template sees: the contact, the event that started the run, and where it is."""
    return {
        "contact": contact.template_view(),
        "event": dict(run.trigger),
        "flow": {"id": intent.flow.id, "name": intent.flow.name},
        "step": {"id": intent.step.id},
        "run": {"id": run.run_id, "started_at": run.started_at.isoformat()},
        "channel": Channel.EMAIL.value if isinstance(intent.step, EmailStep) else Channel.SMS.value,
    }
