"""The composition root: the one place that picks adapters — AWS (Lambda and moto) or in-memory."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nudge.campaign_files import campaign_problems
from nudge.domain import sms
from nudge.flow_files import FlowFileError, load_catalog, load_guardrails, load_segments, segment_problems
from nudge.ports import (
    ApiKeys,
    Clock,
    ContactRefs,
    JobQueue,
    Mailer,
    PendingSignups,
    PrivacyRequests,
    RateLimiter,
    Scheduler,
    SendRateLimiter,
    Sleeper,
    Store,
    Texter,
    WebhookSender,
    WorkQueue,
)
from nudge.services.campaigns import RATE_SHARE, CampaignCatalog, CampaignService
from nudge.services.compose import MailPolicy
from nudge.services.daily import DailyJob
from nudge.services.feedback import FeedbackService
from nudge.services.ingest import IngestService
from nudge.services.keys import KeyService
from nudge.services.order_import import BulkImporter
from nudge.services.preferences import PreferenceService
from nudge.services.privacy import PrivacyService
from nudge.services.recommendations import CoPurchaseBook, Recommender
from nudge.services.runs import RunService, WebhookSigner
from nudge.services.segment import SegmentService
from nudge.services.sms_keywords import SmsKeywordService
from nudge.services.subscribe import SubscribeService
from nudge.services.throttle import SendThrottle
from nudge.services.webhooks import WebhookService
from nudge.settings import Settings
from nudge.templating import TemplateRenderer

if TYPE_CHECKING:
    import boto3

    from nudge.domain.flows import FlowCatalog
    from nudge.domain.guardrails import Guardrails
    from nudge.domain.segments import SegmentCatalog


@dataclass
class Container:
    settings: Settings
    clock: Clock
    store: Store
    scheduler: Scheduler
    queue: WorkQueue
    mailer: Mailer
    texter: Texter
    webhook_sender: WebhookSender  # outbound webhook steps
    flows: FlowCatalog
    guardrails: Guardrails
    segments: SegmentCatalog
    runs: RunService
    ingest: IngestService
    feedback: FeedbackService
    preferences: PreferenceService
    sms_keywords: SmsKeywordService
    privacy: PrivacyService
    throttle: SendThrottle
    limiter: SendRateLimiter
    signing_key: Callable[[], str | None]
    refs: ContactRefs
    privacy_requests: PrivacyRequests
    rate_limiter: RateLimiter
    keys: KeyService
    webhooks: WebhookService  # inbound storefront webhooks
    segment: SegmentService
    subscribe: SubscribeService
    daily: DailyJob  # the sweep function's work: reviews, RFM, co-purchases
    campaigns: CampaignService  # campaigns: create, pause, resume, cancel; their audience pieces (ADR 0019)
    jobs: JobQueue | None  # the daily job's pieces; None where no jobs queue is configured
    # {"shopify": {shop domain: secret}, "woocommerce": {site host: secret}}
    webhook_secrets: Callable[[], Mapping[str, Any]]
    unsubscribe_key: Callable[[], str | None]


def assemble(
    settings: Settings,
    clock: Clock,
    *,
    store: Store,
    scheduler: Scheduler,
    queue: WorkQueue,
    mailer: Mailer,
    texter: Texter,
    webhooks: WebhookSender,
    api_keys: ApiKeys,
    refs: ContactRefs,
    privacy_requests: PrivacyRequests,
    rate_limiter: RateLimiter,
    pending_signups: PendingSignups,
    limiter: SendRateLimiter,
    sleeper: Sleeper,
    signing_key: Callable[[], str | None] | None = None,
    webhook_secrets: Callable[[], Mapping[str, Any]] | None = None,
    unsubscribe_key: Callable[[], str | None] | None = None,
    renderer: TemplateRenderer | None = None,
    jobs: JobQueue | None = None,
) -> Container:
    """Wire the services over the given adapters (and the templates directory's renderer, unless given)."""
    # Each campaign's one-off flow too, while it is not cancelled (ADR 0019).
    flows = CampaignCatalog(load_catalog(settings.flows_dir), store, clock)
    guardrails = load_guardrails(settings.flows_dir)
    segments = load_segments(settings.segments_path)
    if problems := segment_problems(flows, segments):
        raise FlowFileError("\n".join(problems))
    if settings.default_timezone != "UTC" and guardrails.default_timezone == "UTC":
        guardrails = guardrails.model_copy(update={"default_timezone": settings.default_timezone})
    renderer = renderer or TemplateRenderer(settings.templates_dir)
    key = signing_key or (lambda: settings.signing_key)
    unsubscribe_key = unsubscribe_key or (lambda: settings.unsubscribe_key)
    throttle = SendThrottle(limiter, per_second=settings.ses_max_send_rate)
    policy = MailPolicy(
        unsubscribe_base_url=settings.unsubscribe_base_url,
        unsubscribe_mailto=settings.unsubscribe_mailto,
        postal_address=settings.postal_address,
        utm=settings.utm_params,
    )
    runs = RunService(
        store=store,
        scheduler=scheduler,
        queue=queue,
        mailer=mailer,
        texter=texter,
        webhooks=webhooks,
        renderer=renderer,
        flows=flows,
        guardrails=guardrails,
        clock=clock,
        from_address=settings.from_address,
        webhook_signer=WebhookSigner(key),
        policy=policy,
        unsubscribe_key=unsubscribe_key,
        throttle=throttle,
        sleeper=sleeper,
        recommend=Recommender(documents=store, clock=clock).for_contact,
    )
    privacy = PrivacyService(store=store, scheduler=scheduler, clock=clock, refs=refs)
    ingest = IngestService(
        store=store,
        scheduler=scheduler,
        runs=runs,
        flows=flows,
        guardrails=guardrails,
        clock=clock,
        segments=segments,
    )
    runs.on_profile_change(ingest.review)  # a flow's update_profile step moves segments like an event does
    runs.hold_sends(flows.held)  # a paused campaign's sends wait
    campaigns = CampaignService(
        documents=store,
        census=store,
        job_log=store,
        runs=runs,
        clock=clock,
        jobs=jobs,
        per_minute=int(settings.ses_max_send_rate * 60 * RATE_SHARE),
        default_timezone=guardrails.default_timezone,
        catalog=flows,
        check=lambda campaign: campaign_problems(campaign, renderer, segments),
        step_counts=store.step_counts,
    )
    return Container(
        settings=settings,
        clock=clock,
        store=store,
        scheduler=scheduler,
        queue=queue,
        mailer=mailer,
        texter=texter,
        webhook_sender=webhooks,
        flows=flows,
        guardrails=guardrails,
        segments=segments,
        runs=runs,
        ingest=ingest,
        signing_key=key,
        refs=refs,
        privacy_requests=privacy_requests,
        rate_limiter=rate_limiter,
        keys=KeyService(api_keys, clock),
        webhooks=WebhookService(
            ingest=ingest,
            refs=refs,
            privacy=privacy_requests,
            clock=clock,
            eraser=privacy.erase,
            erased=privacy.erased,
        ),
        segment=SegmentService(ingest=ingest, refs=refs, clock=clock),
        subscribe=SubscribeService(ingest=ingest, pending=pending_signups, clock=clock),
        daily=DailyJob(
            ingest=ingest,
            census=store,
            documents=store,
            job_log=store,
            clock=clock,
            copurchases=CoPurchaseBook(census=store, documents=store, clock=clock),
            default_timezone=guardrails.default_timezone,
        ),
        jobs=jobs,
        campaigns=campaigns,
        webhook_secrets=webhook_secrets or (lambda: settings.webhook_secrets or {}),
        feedback=FeedbackService(store=store, clock=clock, engagement=ingest.ingest),
        preferences=PreferenceService(store=store, flows=flows, clock=clock, key=unsubscribe_key),
        sms_keywords=SmsKeywordService(
            store=store,
            texter=texter,
            help_text=sms.help_reply(renderer.brand.name, renderer.brand.support, settings.sms_help_text),
        ),
        privacy=privacy,
        throttle=throttle,
        limiter=limiter,
        unsubscribe_key=unsubscribe_key,
    )


def build_aws(
    settings: Settings, clock: Clock, *, session: boto3.Session | None = None, sleeper: Sleeper | None = None
) -> Container:
    """Adapters over real AWS APIs (in Lambda, or against moto in the demo and tests)."""
    import boto3
    from botocore.config import Config

    from nudge.adapters.dynamodb import access
    from nudge.adapters.dynamodb.rate import DynamoSendRateLimiter
    from nudge.adapters.dynamodb.store import DynamoStore
    from nudge.adapters.scheduler import EventBridgeScheduler
    from nudge.adapters.secrets import JsonSecretReader, SecretReader
    from nudge.adapters.ses import SesMailer
    from nudge.adapters.sns import SnsTexter
    from nudge.adapters.sqs import SqsJobQueue, SqsWorkQueue
    from nudge.adapters.webhooks import UrllibWebhooks

    session = session or boto3.Session()
    region = session.region_name or os.environ.get("AWS_REGION") or "us-east-1"
    store = DynamoStore.for_settings(settings, region=region)
    tables = access.bind_access_models(settings, region=region, connection=store.connection)
    scheduler = EventBridgeScheduler(
        session.client("scheduler"),
        group=settings.schedule_group,
        target_arn=settings.work_queue_arn,
        role_arn=settings.scheduler_role_arn,
        dead_letter_arn=settings.scheduler_dlq_arn,
    )
    # No blind retries of a send: a lost response would send it twice (ADR 0007). The worker retries.
    once = Config(retries={"total_max_attempts": 1, "mode": "standard"})
    sqs = session.client("sqs")
    mailer = SesMailer(session.client("sesv2", config=once), configuration_set=settings.ses_configuration_set)
    texter = SnsTexter(session.client("sns", config=once))
    signing_key: Callable[[], str | None] = lambda: settings.signing_key  # noqa: E731
    unsubscribe_key: Callable[[], str | None] = lambda: settings.unsubscribe_key  # noqa: E731
    webhook_secrets: Callable[[], Mapping[str, Any]] | None = None
    if settings.signing_secret_arn or settings.webhook_secrets_arn or settings.unsubscribe_secret_arn:
        secrets = session.client("secretsmanager")
        if settings.signing_secret_arn:
            signing_key = SecretReader(secrets, settings.signing_secret_arn).value
        if settings.unsubscribe_secret_arn:
            unsubscribe_key = SecretReader(secrets, settings.unsubscribe_secret_arn).value
        if settings.webhook_secrets_arn:
            webhook_secrets = JsonSecretReader(SecretReader(secrets, settings.webhook_secrets_arn)).value
    return assemble(
        settings,
        clock,
        store=store,
        scheduler=scheduler,
        queue=SqsWorkQueue(sqs, settings.work_queue_url),
        jobs=SqsJobQueue(sqs, settings.jobs_queue_url) if settings.jobs_queue_url else None,
        mailer=mailer,
        texter=texter,
        webhooks=UrllibWebhooks(),
        api_keys=access.DynamoApiKeys(tables),
        refs=access.DynamoContactRefs(tables),
        privacy_requests=access.DynamoPrivacyRequests(tables),
        rate_limiter=access.DynamoRateLimiter(tables),
        pending_signups=access.DynamoPendingSignups(tables),
        limiter=DynamoSendRateLimiter(store.models),
        sleeper=sleeper or _sleeper_for(clock),
        signing_key=signing_key,
        webhook_secrets=webhook_secrets,
        unsubscribe_key=unsubscribe_key,
    )


def _sleeper_for(clock: Clock) -> Sleeper:
    """A virtual clock sleeps by moving itself; the system clock sleeps for real."""
    from nudge.clocks import SystemSleeper, VirtualClock, VirtualSleeper

    return VirtualSleeper(clock) if isinstance(clock, VirtualClock) else SystemSleeper()


def build_memory(settings: Settings, clock: Clock, *, renderer: TemplateRenderer | None = None) -> Container:
    """In-memory twins of every adapter: for unit tests, simulations and backtests (which render nothing)."""
    from nudge.adapters import memory

    return assemble(
        settings,
        clock,
        store=memory.MemoryStore(),
        scheduler=memory.MemoryScheduler(),
        queue=memory.MemoryQueue(clock),
        mailer=memory.MemoryMailer(),
        texter=memory.MemoryTexter(),
        webhooks=memory.MemoryWebhooks(),
        api_keys=memory.MemoryApiKeys(),
        refs=memory.MemoryContactRefs(),
        privacy_requests=memory.MemoryPrivacyRequests(),
        rate_limiter=memory.MemoryRateLimiter(),
        pending_signups=memory.MemoryPendingSignups(),
        limiter=memory.MemorySendRateLimiter(),
        sleeper=_sleeper_for(clock),
        renderer=renderer,
        jobs=memory.MemoryJobQueue(),
    )


_current: Container | None = None


_on_build: list[Callable[[Container], object]] = []


def on_build(hook: Callable[[Container], object]) -> None:
    """Run `hook` on the handlers' container when it is built or installed (and now, if it already is).

    How handler-level concerns (the per-invocation metrics) attach to services without the services or
    this module importing them.
    """
    _on_build.append(hook)
    if _current is not None:
        hook(_current)


def current() -> Container:
    """The container handlers use: built from the environment at first use (cold start), unless installed."""
    global _current
    if _current is None:
        from nudge.clocks import SystemClock

        install(build_aws(Settings.from_env(os.environ), SystemClock()))
    assert _current is not None
    return _current


def install(container: Container | None) -> None:
    """Make handlers use this container (the local runner and tests); None returns to cold-start building."""
    global _current
    _current = container
    if container is not None:
        for hook in _on_build:
            hook(container)


def bulk_importer(container: Container, *, workers: int = 8) -> BulkImporter:
    """`nudge import orders`'s importer over this container's store (which reads and writes in batches)."""
    return BulkImporter(
        ingest=container.ingest,
        store=container.store,
        batches=container.store,  # type: ignore[arg-type]  # DynamoStore and MemoryStore both are ContactBatches
        copurchases=container.daily.copurchases,
        clock=container.clock,
        workers=workers,
    )


def build_dry_run(clock: Clock) -> Container:
    """In memory, with the project's flows, templates and segments: a dry run that calls nothing."""
    from nudge.local.backtest import backtest_settings
    from nudge.local.moto_stack import PROJECT_ROOT as root

    return build_memory(backtest_settings(root / "flows", root / "templates", root / "segments"), clock)
