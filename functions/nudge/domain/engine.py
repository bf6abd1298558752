"""The engine: pure functions from (state, input, now) to decisions. No clock reads, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from nudge.domain.flows import EmailStep, EndStep, Flow, SmsStep, WaitStep
from nudge.domain.model import Category, Channel, Contact, Event, Message, MessageStatus, Run, RunStatus


@dataclass(frozen=True, slots=True)
class StartRun:
    run: Run


@dataclass(frozen=True, slots=True)
class ExitRun:
    run: Run  # the run as it should be stored: status EXITED, with its reason
    previous_version: int


@dataclass(frozen=True, slots=True)
class SendIntent:
    """A message the run wants sent now; `skip_reason` set means a guardrail said no."""

    message: Message
    flow: Flow
    step: EmailStep | SmsStep
    skip_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Advance:
    """What executing a run up to its next wait decided: messages, and the run's next state."""

    run: Run
    sends: list[SendIntent] = field(default_factory=list)

    @property
    def wake_at(self) -> datetime | None:
        return self.run.due_at if self.run.is_active else None


def on_event(
    event: Event, active_runs: Iterable[Run], flows: Iterable[Flow], now: datetime
) -> list[StartRun | ExitRun]:
    """Decide which active runs this event ends and which flows it starts."""
    decisions: list[StartRun | ExitRun] = []
    flows_by_id = {flow.id: flow for flow in flows}
    active_flow_ids: set[str] = set()
    for run in active_runs:
        flow = flows_by_id.get(run.flow_id)
        active_flow_ids.add(run.flow_id)
        if flow is None:
            continue
        for rule in flow.exit:
            if rule.matches(event.type, event.properties, run.trigger):
                decisions.append(
                    ExitRun(
                        run=_ended(run, RunStatus.EXITED, f"exit:{event.type}", now),
                        previous_version=run.version,
                    )
                )
                active_flow_ids.discard(run.flow_id)
                break
    for flow in flows_by_id.values():
        if flow.id in active_flow_ids:
            continue  # one active run per contact and flow
        if flow.trigger.matches(event.type, event.properties):
            decisions.append(StartRun(run=new_run(flow, event, now)))
    return decisions


def new_run(flow: Flow, event: Event, now: datetime) -> Run:
    """A fresh run positioned on the flow's first step."""
    return Run(
        run_id=Run.id_for(flow.id, event.contact_id, event.event_id),
        contact_id=event.contact_id,
        flow_id=flow.id,
        status=RunStatus.ACTIVE,
        cursor=flow.first_step_id,
        seq=0,
        trigger_event_id=event.event_id,
        trigger={"type": event.type, **event.properties},
        started_at=now,
        updated_at=now,
    )


def advance(run: Run, flow: Flow, contact: Contact | None, now: datetime) -> Advance:
    """Execute steps from the run's cursor until a wait or the end.

    Waits are counted from when the current wake-up was due (not from when it fired), so a late
    firing does not push the rest of the sequence later.
    """
    if not run.is_active:
        return Advance(run=run)
    anchor = run.due_at if run.due_at is not None and run.due_at <= now else now
    sends: list[SendIntent] = []
    cursor = run.cursor
    while cursor is not None:
        step = flow.step(cursor)
        following = flow.next_step_id(cursor)
        if isinstance(step, WaitStep):
            due = anchor + step.delta
            if due > now:
                moved = replace(run, cursor=following, seq=run.seq + 1, due_at=due, updated_at=now)
                return Advance(run=moved, sends=sends)
            anchor = due  # already due (a very late firing): carry on without scheduling
        elif isinstance(step, EmailStep | SmsStep):
            sends.append(_send_intent(run, flow, step, contact, now))
        elif isinstance(step, EndStep):
            following = None
        cursor = following
    return Advance(run=_ended(run, RunStatus.COMPLETED, None, now), sends=sends)


def _send_intent(run: Run, flow: Flow, step: EmailStep | SmsStep, contact: Contact | None, now: datetime) -> SendIntent:
    channel = Channel.EMAIL if isinstance(step, EmailStep) else Channel.SMS
    category = flow.category_of(step)
    recipient = None
    if contact is not None:
        recipient = contact.email if channel is Channel.EMAIL else contact.phone
    message = Message(
        contact_id=run.contact_id,
        message_id=Message.id_for(run.run_id, step.id),
        run_id=run.run_id,
        flow_id=flow.id,
        step_id=step.id,
        channel=channel,
        category=category,
        status=MessageStatus.CLAIMED,
        created_at=now,
        recipient=recipient,
    )
    return SendIntent(message=message, flow=flow, step=step, skip_reason=consent_problem(contact, channel, category))


def consent_problem(contact: Contact | None, channel: Channel, category: Category) -> str | None:
    """Why this contact may not get this message, or None. Transactional mail skips the consent check."""
    if contact is None:
        return "unknown_contact"
    address = contact.email if channel is Channel.EMAIL else contact.phone
    if not address:
        return f"no_{'email' if channel is Channel.EMAIL else 'phone'}"
    if category is Category.TRANSACTIONAL:
        return None
    consent = contact.email_marketing if channel is Channel.EMAIL else contact.sms_marketing
    if consent is not True:
        return f"no_{channel.value}_marketing_consent"
    return None


def exit_run(run: Run, reason: str, now: datetime) -> Run:
    """The run, ended early for `reason`."""
    return _ended(run, RunStatus.EXITED, reason, now)


def _ended(run: Run, status: RunStatus, reason: str | None, now: datetime) -> Run:
    return replace(run, status=status, cursor=None, due_at=None, ended_at=now, updated_at=now, exit_reason=reason)
