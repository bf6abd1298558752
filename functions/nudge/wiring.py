"""The composition root: the one place that picks adapters — AWS (Lambda and moto) or in-memory."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nudge.flow_files import FlowFileError, load_catalog, load_guardrails, load_segments, segment_problems
from nudge.ports import Clock, Mailer, Scheduler, Store, Texter, WebhookSender
from nudge.services.ingest import IngestService
from nudge.services.runs import RunService, WebhookSigner
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
    mailer: Mailer
    texter: Texter
    webhooks: WebhookSender
    flows: FlowCatalog
    guardrails: Guardrails
    segments: SegmentCatalog
    runs: RunService
    ingest: IngestService
    signing_key: Callable[[], str | None]


def assemble(
    settings: Settings,
    clock: Clock,
    *,
    store: Store,
    scheduler: Scheduler,
    mailer: Mailer,
    texter: Texter,
    webhooks: WebhookSender,
    signing_key: Callable[[], str | None] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Container:
    """Wire the services over the given adapters."""
    flows = load_catalog(settings.flows_dir)
    guardrails = load_guardrails(settings.flows_dir)
    segments = load_segments(settings.segments_path)
    if problems := segment_problems(flows, segments):
        raise FlowFileError("\n".join(problems))
    if settings.default_timezone != "UTC" and guardrails.default_timezone == "UTC":
        guardrails = guardrails.model_copy(update={"default_timezone": settings.default_timezone})
    renderer = TemplateRenderer(settings.templates_dir)
    key = signing_key or (lambda: settings.signing_key)
    runs = RunService(
        store=store,
        scheduler=scheduler,
        mailer=mailer,
        texter=texter,
        webhooks=webhooks,
        renderer=renderer,
        flows=flows,
        guardrails=guardrails,
        clock=clock,
        from_address=settings.from_address,
        webhook_signer=WebhookSigner(key),
        sleep=sleep,
    )
    ingest = IngestService(
        store=store,
        scheduler=scheduler,
        runs=runs,
        flows=flows,
        guardrails=guardrails,
        clock=clock,
        segments=segments,
    )
    return Container(
        settings=settings,
        clock=clock,
        store=store,
        scheduler=scheduler,
        mailer=mailer,
        texter=texter,
        webhooks=webhooks,
        flows=flows,
        guardrails=guardrails,
        segments=segments,
        runs=runs,
        ingest=ingest,
        signing_key=key,
    )


def build_aws(settings: Settings, clock: Clock, *, session: boto3.Session | None = None) -> Container:
    """Adapters over real AWS APIs (in Lambda, or against moto in the demo and tests)."""
    import boto3

    from nudge.adapters.dynamodb.store import DynamoStore
    from nudge.adapters.scheduler import EventBridgeScheduler
    from nudge.adapters.secrets import SecretReader
    from nudge.adapters.ses import SesMailer
    from nudge.adapters.sns import SnsTexter
    from nudge.adapters.webhooks import UrllibWebhooks

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
    signing_key: Callable[[], str | None]
    if settings.signing_secret_arn:
        reader = SecretReader(session.client("secretsmanager"), settings.signing_secret_arn, clock=clock)
        signing_key = reader.value
    else:
        signing_key = lambda: settings.signing_key  # noqa: E731
    return assemble(
        settings,
        clock,
        store=store,
        scheduler=scheduler,
        mailer=mailer,
        texter=texter,
        webhooks=UrllibWebhooks(),
        signing_key=signing_key,
        sleep=time.sleep,
    )


def build_memory(settings: Settings, clock: Clock) -> Container:
    """In-memory twins of every adapter: for unit tests and simulations."""
    from nudge.adapters.memory import MemoryMailer, MemoryScheduler, MemoryStore, MemoryTexter, MemoryWebhooks

    return assemble(
        settings,
        clock,
        store=MemoryStore(),
        scheduler=MemoryScheduler(),
        mailer=MemoryMailer(),
        texter=MemoryTexter(),
        webhooks=MemoryWebhooks(),
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
