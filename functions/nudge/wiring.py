"""The composition root: the one place that picks adapters — AWS (Lambda and moto) or in-memory."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nudge.flow_files import load_catalog
from nudge.ports import Clock, Mailer, RateLimiter, Scheduler, Sleeper, Store, Texter
from nudge.services.feedback import FeedbackService
from nudge.services.ingest import IngestService
from nudge.services.preferences import PreferenceService
from nudge.services.privacy import PrivacyService
from nudge.services.runs import MailPolicy, RunService
from nudge.services.sms_keywords import SmsKeywordService
from nudge.services.throttle import SendThrottle
from nudge.settings import Settings
from nudge.templating import TemplateRenderer

if TYPE_CHECKING:
    import boto3

    from nudge.domain.flows import FlowCatalog


@dataclass
class Container:
    settings: Settings
    clock: Clock
    store: Store
    scheduler: Scheduler
    mailer: Mailer
    texter: Texter
    flows: FlowCatalog
    runs: RunService
    ingest: IngestService
    feedback: FeedbackService
    preferences: PreferenceService
    sms_keywords: SmsKeywordService
    privacy: PrivacyService
    throttle: SendThrottle
    limiter: RateLimiter
    signing_key: Callable[[], str | None]
    unsubscribe_key: Callable[[], str | None]


def assemble(
    settings: Settings,
    clock: Clock,
    *,
    store: Store,
    scheduler: Scheduler,
    mailer: Mailer,
    texter: Texter,
    limiter: RateLimiter,
    sleeper: Sleeper,
    signing_key: Callable[[], str | None] | None = None,
    unsubscribe_key: Callable[[], str | None] | None = None,
) -> Container:
    """Wire the services over the given adapters."""
    flows = load_catalog(settings.flows_dir)
    renderer = TemplateRenderer(settings.templates_dir)
    unsubscribe_key = unsubscribe_key or (lambda: settings.unsubscribe_key)
    throttle = SendThrottle(limiter, clock, sleeper, per_second=settings.ses_max_send_rate)
    policy = MailPolicy(
        unsubscribe_base_url=settings.unsubscribe_base_url,
        unsubscribe_mailto=settings.unsubscribe_mailto,
        postal_address=settings.postal_address,
        utm=settings.utm_params,
    )
    runs = RunService(
        store=store,
        scheduler=scheduler,
        mailer=mailer,
        texter=texter,
        renderer=renderer,
        flows=flows,
        clock=clock,
        from_address=settings.from_address,
        policy=policy,
        unsubscribe_key=unsubscribe_key,
        throttle=throttle,
    )
    ingest = IngestService(store=store, scheduler=scheduler, runs=runs, flows=flows, clock=clock)
    return Container(
        settings=settings,
        clock=clock,
        store=store,
        scheduler=scheduler,
        mailer=mailer,
        texter=texter,
        flows=flows,
        runs=runs,
        ingest=ingest,
        feedback=FeedbackService(store=store, clock=clock),
        preferences=PreferenceService(store=store, flows=flows, clock=clock, key=unsubscribe_key),
        sms_keywords=SmsKeywordService(store=store, texter=texter, help_text=settings.sms_help_text),
        privacy=PrivacyService(store=store, scheduler=scheduler, clock=clock),
        throttle=throttle,
        limiter=limiter,
        signing_key=signing_key or (lambda: settings.signing_key),
        unsubscribe_key=unsubscribe_key,
    )


def build_aws(
    settings: Settings, clock: Clock, *, session: boto3.Session | None = None, sleeper: Sleeper | None = None
) -> Container:
    """Adapters over real AWS APIs (in Lambda, or against moto in the demo and tests)."""
    import boto3

    from nudge.adapters.dynamodb.rate import DynamoRateLimiter
    from nudge.adapters.dynamodb.store import DynamoStore
    from nudge.adapters.scheduler import EventBridgeScheduler
    from nudge.adapters.secrets import SecretReader
    from nudge.adapters.ses import SesMailer
    from nudge.adapters.sns import SnsTexter

    session = session or boto3.Session()
    region = session.region_name or os.environ.get("AWS_REGION") or "us-east-1"
    store = DynamoStore.for_settings(settings, region=region)
    scheduler = EventBridgeScheduler(
        session.client("scheduler"),
        group=settings.schedule_group,
        target_arn=settings.step_function_arn,
        role_arn=settings.scheduler_role_arn,
        dead_letter_arn=settings.scheduler_dlq_arn,
    )
    mailer = SesMailer(session.client("sesv2"), configuration_set=settings.ses_configuration_set)
    texter = SnsTexter(session.client("sns"))
    secrets = (
        session.client("secretsmanager") if settings.signing_secret_arn or settings.unsubscribe_secret_arn else None
    )
    signing_key: Callable[[], str | None] = lambda: settings.signing_key  # noqa: E731
    if settings.signing_secret_arn:
        signing_key = SecretReader(secrets, settings.signing_secret_arn, clock=clock).value
    unsubscribe_key: Callable[[], str | None] = lambda: settings.unsubscribe_key  # noqa: E731
    if settings.unsubscribe_secret_arn:
        unsubscribe_key = SecretReader(secrets, settings.unsubscribe_secret_arn, clock=clock).value
    return assemble(
        settings,
        clock,
        store=store,
        scheduler=scheduler,
        mailer=mailer,
        texter=texter,
        limiter=DynamoRateLimiter(store.models),
        sleeper=sleeper or _sleeper_for(clock),
        signing_key=signing_key,
        unsubscribe_key=unsubscribe_key,
    )


def _sleeper_for(clock: Clock) -> Sleeper:
    """A virtual clock sleeps by moving itself; the system clock sleeps for real."""
    from nudge.clocks import SystemSleeper, VirtualClock, VirtualSleeper

    return VirtualSleeper(clock) if isinstance(clock, VirtualClock) else SystemSleeper()


def build_memory(settings: Settings, clock: Clock) -> Container:
    """In-memory twins of every adapter: for unit tests and simulations."""
    from nudge.adapters.memory import MemoryMailer, MemoryRateLimiter, MemoryScheduler, MemoryStore, MemoryTexter

    return assemble(
        settings,
        clock,
        store=MemoryStore(),
        scheduler=MemoryScheduler(),
        mailer=MemoryMailer(),
        texter=MemoryTexter(),
        limiter=MemoryRateLimiter(),
        sleeper=_sleeper_for(clock),
    )


_current: Container | None = None


def current() -> Container:
    """The container handlers use: built from the environment at first use (cold start), unless installed."""
    global _current
    if _current is None:
        from nudge.clocks import SystemClock

        _current = build_aws(Settings.from_env(os.environ), SystemClock())
    return _current


def install(container: Container | None) -> None:
    """Make handlers use this container (the local runner and tests); None returns to cold-start building."""
    global _current
    _current = container
