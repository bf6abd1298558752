"""Use case: advance a run — execute its due steps, send what they decide, schedule the next wake-up."""

from __future__ import annotations

import html as html_lib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import make_msgid
from typing import Any
from urllib.parse import quote

from nudge.domain import engine, links, sms
from nudge.domain.flows import EmailStep, FlowCatalog
from nudge.domain.model import Category, Channel, Contact, Message, MessageStatus, Run
from nudge.domain.suppression import address_key, block_reason
from nudge.domain.unsubscribe import make_token
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
from nudge.services.throttle import SendThrottle
from nudge.templating import FOOTER_HTML, FOOTER_TEXT, TemplateRenderer, TemplateRenderError, inline_css

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MailPolicy:
    """What every email carries besides its template: unsubscribe links, the postal address, UTM tags."""

    unsubscribe_base_url: str | None = None  # https://<api>/v1/unsubscribe; the token is appended
    unsubscribe_mailto: str | None = None  # unsubscribe@shop.example, offered as the mailto alternative
    postal_address: str | None = None  # the sender's postal address, in every footer (CAN-SPAM)
    utm: Mapping[str, str] = field(default_factory=dict)  # e.g. utm_source=nudge; campaign/content added


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
        policy: MailPolicy | None = None,
        unsubscribe_key: Callable[[], str | None] = lambda: None,
        throttle: SendThrottle | None = None,
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._mailer = mailer
        self._texter = texter
        self._renderer = renderer
        self._flows = flows
        self._clock = clock
        self._from = from_address
        self._policy = policy or MailPolicy()
        self._unsubscribe_key = unsubscribe_key
        self._throttle = throttle

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
        skip_reason = intent.skip_reason or self._blocked(message)
        if skip_reason is not None:
            self._store.settle_message(message, MessageStatus.SKIPPED, reason=skip_reason)
            outcome.skipped.append((intent.step.id, skip_reason))
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

    def _blocked(self, message: Message) -> str | None:
        """A suppression or topic opt-out on the recipient's address (one read per send)."""
        if not message.recipient:
            return None
        state = self._store.address_state(address_key(message.channel, message.recipient))
        return block_reason(state, message.channel, message.category, message.flow_id)

    def _deliver(self, intent: engine.SendIntent, message: Message, context: dict[str, Any]) -> tuple[str, Message]:
        recipient = message.recipient or ""
        if isinstance(intent.step, EmailStep):
            if self._throttle is not None:
                self._throttle.acquire()  # first, so the Date header is the moment of the slot
            email = self._compose(intent.step, message, context)
            provider_id = self._mailer.send(email)
            return provider_id, _with_content(message, subject=email.subject, preview=email.text)
        text = self._renderer.sms(intent.step.template, context)
        if message.category is Category.MARKETING:
            text = sms.with_opt_out_notice(text)
        parts = sms.segments(text)
        outgoing = OutgoingSms(to=recipient, text=text, transactional=message.category is Category.TRANSACTIONAL)
        provider_id = self._texter.send(outgoing)
        sent = replace(_with_content(message, subject=None, preview=text), sms_encoding=parts.encoding)
        return provider_id, replace(sent, sms_segments=parts.count)

    def _compose(self, step: EmailStep, message: Message, context: dict[str, Any]) -> OutgoingEmail:
        """Render, add footer, preheader and UTM tags, inline the CSS; marketing mail gets RFC 8058 headers."""
        policy = self._policy
        headers = {"Message-ID": make_msgid(domain=self._from.rpartition("@")[2] or None)}
        unsubscribe_url = None
        if message.category is Category.MARKETING:
            key = self._unsubscribe_key()
            if not key or not policy.unsubscribe_base_url:
                raise PermanentSendError("marketing email needs an unsubscribe link: no unsubscribe key or base URL")
            token = make_token(key, message.contact_id)
            unsubscribe_url = f"{policy.unsubscribe_base_url.rstrip('/')}/{token}"
            targets = [f"<{unsubscribe_url}>"]
            if policy.unsubscribe_mailto:
                targets.append(f"<mailto:{policy.unsubscribe_mailto}?subject={quote('unsubscribe ' + token)}>")
            headers["List-Unsubscribe"] = ", ".join(targets)
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        context = {**context, "unsubscribe_url": unsubscribe_url, "postal_address": policy.postal_address}
        subject, html, text = self._renderer.email(step.template, step.subject, context)
        html = _before_body_end(html, self._renderer.render_file(FOOTER_HTML, context))
        text = f"{text}\n\n{self._renderer.render_file(FOOTER_TEXT, context)}".rstrip()
        if step.preheader:
            preheader = self._renderer.render_string(step.preheader, context, label=f"{step.template} preheader")
            html = _after_body_start(html, _PREHEADER.format(html_lib.escape(preheader)))
        if policy.utm:
            params = {**policy.utm, "utm_campaign": message.flow_id, "utm_content": message.step_id}
            keep = _is_unsubscribe_link(policy.unsubscribe_base_url)
            html = links.tag_html(html, params, keep=keep)
            text = links.tag_text(text, params, keep=keep)
        return OutgoingEmail(
            to=message.recipient or "",
            from_address=self._from,
            subject=subject,
            html=inline_css(html),
            text=text,
            date=self._clock.now(),
            headers=headers,
            tags={"flow": message.flow_id, "step": message.step_id, "category": message.category.value},
        )


# Shown as the inbox preview line, never in the body: hidden in every client that honours CSS.
_PREHEADER = (
    '<div style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;'
    'overflow:hidden;mso-hide:all;">{}</div>'
)


def _is_unsubscribe_link(base_url: str | None) -> Callable[[str], bool]:
    # Unsubscribe links stay untagged: their token is the whole authorization, and analytics needs none.
    return lambda url: bool(base_url) and url.startswith(str(base_url))


def _before_body_end(markup: str, fragment: str) -> str:
    at = markup.lower().rfind("</body>")
    return markup + fragment if at < 0 else markup[:at] + fragment + markup[at:]


def _after_body_start(markup: str, fragment: str) -> str:
    start = markup.lower().find("<body")
    end = markup.find(">", start) if start >= 0 else -1
    return fragment + markup if end < 0 else markup[: end + 1] + fragment + markup[end + 1 :]


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
