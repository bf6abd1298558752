"""The composition root: the one place that picks adapters — AWS (Lambda and moto) or in-memory.

Lazy by construction (ADR 0020): a `Container` holds a factory per adapter and builds each adapter and
each service the first time something asks for it, so a Lambda function builds only what its handler
uses (the worker never makes an API-key table, the inbound-SMS function never parses a flow). Importing
this module imports no service and no AWS SDK. Observers are passed in when a container is made
(`observer=`), never attached afterwards, and no service is handed to another through a setter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import cached_property
from types import MethodType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from nudge.domain.frozen import dataclass
from nudge.settings import Settings

if TYPE_CHECKING:
    import boto3

    from nudge.domain.audiences import AudienceCatalog
    from nudge.domain.flows import FlowCatalog
    from nudge.domain.guardrails import Guardrails
    from nudge.domain.segments import SegmentCatalog
    from nudge.integrations.segment_api import SegmentService
    from nudge.ports import (
        ApiKeys,
        AudienceLedger,
        AudiencePlatform,
        Clock,
        ContactRefs,
        JobQueue,
        Mailer,
        PendingSignups,
        PrivacyRequests,
        RequestLimiter,
        Scheduler,
        SendRateLimiter,
        Sleeper,
        Store,
        Texter,
        WebhookSender,
        WhatsAppSender,
        WorkQueue,
    )
    from nudge.services.audiences import AudienceService
    from nudge.services.calls import MissedCallService
    from nudge.services.campaigns import CampaignCatalog, CampaignService
    from nudge.services.compose import MailPolicy
    from nudge.services.daily import DailyJob
    from nudge.services.disconnect import DisconnectService
    from nudge.services.feedback import FeedbackService
    from nudge.services.ingest import IngestOutcome, IngestService
    from nudge.services.keys import KeyService
    from nudge.services.order_import import BulkImporter
    from nudge.services.preferences import PreferenceService
    from nudge.services.privacy import PrivacyService
    from nudge.services.runs import RunService
    from nudge.services.sms_keywords import SmsKeywordService
    from nudge.services.storefront_webhooks import WebhookService
    from nudge.services.subscribe import SubscribeService
    from nudge.services.throttle import SendThrottle
    from nudge.services.whatsapp_inbound import WhatsAppInboundService
    from nudge.templating import TemplateRenderer


@dataclass(frozen=True)
class Adapters:
    """How to make each adapter: called at most once, when the first service (or handler) needs it."""

    store: Callable[[], Store]
    scheduler: Callable[[], Scheduler]
    queue: Callable[[], WorkQueue]
    mailer: Callable[[], Mailer]
    texter: Callable[[], Texter]
    whatsapp: Callable[[], WhatsAppSender]
    webhooks: Callable[[], WebhookSender]
    api_keys: Callable[[], ApiKeys]
    refs: Callable[[], ContactRefs]
    privacy_requests: Callable[[], PrivacyRequests]
    request_limiter: Callable[[], RequestLimiter]
    pending_signups: Callable[[], PendingSignups]
    limiter: Callable[[], SendRateLimiter]
    sleeper: Callable[[], Sleeper]
    jobs: Callable[[], JobQueue | None] = lambda: None  # None where no jobs queue is configured
    campaign_jobs: Callable[[], JobQueue | None] = lambda: None  # None: campaigns' pieces go on `jobs`
    # Ad audiences (ADR 0024): the ledger of memberships, and `platform(name)`; None: not configured.
    audience_ledger: Callable[[], AudienceLedger | None] = lambda: None
    audience_platforms: Callable[[], Callable[[str], AudiencePlatform]] = lambda: _no_platforms


class Container:
    """Every adapter and service over one set of adapters, each built on first use and then kept.

    The attributes are what they always were (`container.runs`, `container.store`, …); `built()` names
    those made so far, which is how a test checks that a handler builds only what it uses.
    """

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        adapters: Adapters,
        *,
        signing_key: Callable[[], str | None] | None = None,
        webhook_secrets: Callable[[], Mapping[str, Any]] | None = None,
        unsubscribe_key: Callable[[], str | None] | None = None,
        renderer: TemplateRenderer | None = None,
        observer: Callable[[IngestOutcome], object] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._adapters = adapters
        self._renderer = renderer
        self._observer = observer
        self._counts_aggregates = True  # work_out_only_what_is_read
        # The keys are read when used, not here: they may come from Secrets Manager.
        self.signing_key: Callable[[], str | None] = signing_key or (lambda: settings.signing_key)
        self.unsubscribe_key: Callable[[], str | None] = unsubscribe_key or (lambda: settings.unsubscribe_key)
        # {"shopify": {shop domain: secret}, "woocommerce": {site host: secret}}
        self.webhook_secrets: Callable[[], Mapping[str, Any]] = webhook_secrets or (
            lambda: settings.webhook_secrets or {}
        )

    def built(self) -> set[str]:
        """The adapters and services built so far."""
        return {name for name in vars(self) if isinstance(getattr(type(self), name, None), cached_property)}

    def forget(self) -> None:
        """Drop every adapter and service built (a backtest's group of customers, once summed). Services hold
        callbacks into the container, so what they hold would otherwise wait for a full collection."""
        for name in self.built():
            del self.__dict__[name]

    def warm(self, *names: str) -> None:
        """Build these now (a handler's cold start: what its first request would build anyway)."""
        for name in names:
            getattr(self, name)

    # adapters -------------------------------------------------------------------------------------------

    @cached_property
    def store(self) -> Store:
        return self._adapters.store()

    @cached_property
    def scheduler(self) -> Scheduler:
        return self._adapters.scheduler()

    @cached_property
    def queue(self) -> WorkQueue:
        return self._adapters.queue()

    @cached_property
    def mailer(self) -> Mailer:
        return self._adapters.mailer()

    @cached_property
    def texter(self) -> Texter:
        return self._adapters.texter()

    @cached_property
    def whatsapp(self) -> WhatsAppSender:
        return self._adapters.whatsapp()

    @cached_property
    def webhook_sender(self) -> WebhookSender:
        """Outbound webhook steps."""
        return self._adapters.webhooks()

    @cached_property
    def api_keys(self) -> ApiKeys:
        return self._adapters.api_keys()

    @cached_property
    def refs(self) -> ContactRefs:
        return self._adapters.refs()

    @cached_property
    def privacy_requests(self) -> PrivacyRequests:
        return self._adapters.privacy_requests()

    @cached_property
    def request_limiter(self) -> RequestLimiter:
        return self._adapters.request_limiter()

    @cached_property
    def pending_signups(self) -> PendingSignups:
        return self._adapters.pending_signups()

    @cached_property
    def limiter(self) -> SendRateLimiter:
        return self._adapters.limiter()

    @cached_property
    def sleeper(self) -> Sleeper:
        return self._adapters.sleeper()

    @cached_property
    def jobs(self) -> JobQueue | None:
        """The daily job's pieces (and campaigns' where they have no queue of their own)."""
        return self._adapters.jobs()

    @cached_property
    def campaign_jobs(self) -> JobQueue | None:
        """Campaigns' pieces: their own queue, retried within a minute (ADR 0019), else the jobs queue."""
        return self._adapters.campaign_jobs() or self.jobs

    # the catalog: flows, guardrails, segments -----------------------------------------------------------

    @cached_property
    def _catalog(self) -> tuple[FlowCatalog, Guardrails, SegmentCatalog]:
        from nudge import compiled_catalog
        from nudge.domain import records

        # The bundle's compiled catalog where it matches its files (ADR 0020, Decision 9), else the YAML; the
        # compiled checks read on the way are offered as they are (not read again at the first check).
        parts = compiled_catalog.read(
            self.settings.flows_dir,
            self.settings.segments_path,
            checks=lambda found: records.offer_checks(lambda: found),
        )
        if parts is None:
            from nudge.flow_files import load_all

            loaded = load_all(self.settings.flows_dir, self.settings.segments_path)
            parts = (loaded.flows, loaded.guardrails, loaded.segments)
        flows, guardrails, segments = parts
        if self.settings.default_timezone != "UTC" and guardrails.default_timezone == "UTC":
            from nudge.domain.records import replace

            guardrails = replace(guardrails, default_timezone=self.settings.default_timezone)
        return flows, guardrails, segments

    @cached_property
    def flows(self) -> CampaignCatalog:
        """The flows, and each campaign's one-off flow while it is not cancelled (ADR 0019)."""
        from nudge.services.campaigns import CampaignCatalog

        return CampaignCatalog(self._catalog[0], self.store, self.clock)

    @cached_property
    def marketing_topics(self) -> tuple[tuple[str, str], ...]:
        """The preference page's topics: from the compiled catalog's summary where it has one (no flow model
        is unpickled, so the unsubscribe function imports no pydantic), else from the flows."""
        from nudge import compiled_catalog

        if "_catalog" not in self.__dict__:
            summary = compiled_catalog.read_summary(self.settings.flows_dir, self.settings.segments_path)
            if summary is not None:
                return summary["marketing_topics"]
        return self._catalog[0].marketing_topics()

    @property
    def guardrails(self) -> Guardrails:
        return self._catalog[1]

    @property
    def segments(self) -> SegmentCatalog:
        return self._catalog[2]

    def work_out_only_what_is_read(self, *, segments: bool, aggregates: bool) -> None:
        """From now on leave unworked what nothing reads (a backtest, from its flows: `Flow.reads_segments`,
        `Flow.reads_aggregates`). Without `segments`, no segment and no stage is evaluated: every contact is
        in none, and none is ever due a review. Without `aggregates` (segments read them: only without
        segments too), an event leaves the contact's aggregates as they were. Before the ingest is made."""
        from nudge.domain.segments import SegmentCatalog

        if not aggregates and segments:
            raise ValueError("segments read the aggregates: they cannot be worked out without them")
        if built := {"ingest", "campaigns"} & set(self.__dict__):
            raise RuntimeError(f"{', '.join(sorted(built))} already took the segments")
        if not segments:
            flows, guardrails, _ = self._catalog
            self.__dict__["_catalog"] = (flows, guardrails, SegmentCatalog(evaluated=False))
        self._counts_aggregates = aggregates

    @cached_property
    def renderer(self) -> TemplateRenderer:
        if self._renderer is not None:
            return self._renderer
        from nudge.templating import TemplateRenderer

        return TemplateRenderer(self.settings.templates_dir)

    # services -------------------------------------------------------------------------------------------

    @cached_property
    def throttle(self) -> SendThrottle:
        from nudge.services.throttle import SendThrottle

        return SendThrottle(self.limiter, per_second=self.settings.ses_max_send_rate)

    @cached_property
    def policy(self) -> MailPolicy:
        from nudge.services.compose import MailPolicy

        settings = self.settings
        return MailPolicy(
            unsubscribe_base_url=settings.unsubscribe_base_url,
            unsubscribe_mailto=settings.unsubscribe_mailto,
            postal_address=settings.postal_address,
            utm=settings.utm_params,
        )

    @cached_property
    def runs(self) -> RunService:
        from nudge.services.recommendations import Recommender
        from nudge.services.runs import RunService, WebhookSigner

        flows = self.flows
        # What only sends need (the SES and SNS clients, the renderer) is made at the first send: the
        # request paths that start runs never send (ADR 0007), so they never build them.
        return RunService(
            store=self.store,
            scheduler=self.scheduler,
            queue=self.queue,
            mailer=_on_first_use(lambda: self.mailer),
            texter=_on_first_use(lambda: self.texter),
            whatsapp=_on_first_use(lambda: self.whatsapp),
            webhooks=_on_first_use(lambda: self.webhook_sender),
            renderer=_on_first_use(lambda: self.renderer),
            flows=flows,
            guardrails=self.guardrails,
            clock=self.clock,
            from_address=self.settings.from_address,
            webhook_signer=WebhookSigner(self.signing_key),
            policy=self.policy,
            unsubscribe_key=self.unsubscribe_key,
            throttle=self.throttle,
            sleeper=self.sleeper,
            recommend=Recommender(documents=self.store, clock=self.clock).for_contact,
            # A flow's update_profile step moves segments like an event does: the ingest service, looked
            # up when a profile changes (it is built over this run service, so it cannot be passed in).
            profile_changed=lambda contact_id: self.ingest.review(contact_id),
            held=flows.held,  # a paused campaign's sends wait
            audiences=lambda: self.audiences,
        )

    @cached_property
    def audience_catalog(self) -> AudienceCatalog:
        """audiences/*.yaml (ADR 0024)."""
        from nudge.flow_files import load_audiences

        return load_audiences(self.settings.audiences_path)

    @cached_property
    def audiences(self) -> AudienceService | None:
        """Ad audiences: the ledger, the platforms' adapters; None where no ledger is configured."""
        from nudge.services.audiences import AudienceService

        ledger = self._adapters.audience_ledger()
        if ledger is None:
            return None
        return AudienceService(
            ledger=ledger,
            platform=self._adapters.audience_platforms(),
            audiences=self.audience_catalog,
            queue=self.queue,
            clock=self.clock,
        )

    @cached_property
    def ingest(self) -> IngestService:
        from nudge.services.ingest import IngestService

        return IngestService(
            store=self.store,
            scheduler=self.scheduler,
            runs=self.runs,
            flows=self.flows,
            guardrails=self.guardrails,
            clock=self.clock,
            segments=self.segments,
            observer=self._observer,
            ads_withdrawn=self._forget_ads,
            segment_moved=self._audience_moves,
            counts_aggregates=self._counts_aggregates,
        )

    @cached_property
    def privacy(self) -> PrivacyService:
        from nudge.services.privacy import PrivacyService

        return PrivacyService(
            store=self.store, scheduler=self.scheduler, clock=self.clock, refs=self.refs, forget=self._forget_ads
        )

    def _audience_moves(self, contact: Any, moves: Any) -> None:
        """A consenting contact entered or left segments: the segment audiences that follow them (ADR 0024)."""
        if (audiences := self.audiences) is not None:
            audiences.segment_moved(contact, moves)

    def _forget_ads(self, contact_id: str) -> None:
        """Out of every ad audience (consent withdrawn, erased): ADR 0024."""
        if (audiences := self.audiences) is not None:
            audiences.forget(contact_id)

    @cached_property
    def campaigns(self) -> CampaignService:
        """Campaigns: create, pause, resume, cancel; their audience pieces (ADR 0019)."""
        from nudge.campaign_files import campaign_problems
        from nudge.services.campaigns import CampaignService

        renderer, segments = self.renderer, self.segments
        return CampaignService(
            documents=self.store,
            census=self.store,
            job_log=self.store,
            runs=self.runs,
            clock=self.clock,
            jobs=self.campaign_jobs,
            per_minute=self.settings.ses_max_send_rate * 60,
            flows_used=self.throttle.used,  # campaigns start what flows left of the rate (ADR 0019)
            default_timezone=self.guardrails.default_timezone,
            catalog=self.flows,
            check=lambda campaign: campaign_problems(campaign, renderer, segments),
            step_counts=self.store.step_counts,
        )

    @cached_property
    def keys(self) -> KeyService:
        from nudge.services.keys import KeyService

        return KeyService(self.api_keys, self.clock)

    @cached_property
    def webhooks(self) -> WebhookService:
        """Inbound storefront webhooks."""
        from nudge.services.storefront_webhooks import WebhookService

        privacy = self.privacy
        return WebhookService(
            ingest=self.ingest,
            refs=self.refs,
            privacy=self.privacy_requests,
            clock=self.clock,
            eraser=privacy.erase,
            erased=privacy.erased,
            disconnect=lambda scope, reason, event_id: self.disconnect.disconnect(scope, reason, event_id),
            jobs=lambda: self.jobs,
        )

    @cached_property
    def disconnect(self) -> DisconnectService:
        """A shop removed the app: its runs that wait on its events end, in pieces on the jobs queue."""
        from nudge.services.disconnect import DisconnectService

        return DisconnectService(ingest=self.ingest, refs=self.refs, flows=self.flows, clock=self.clock, jobs=self.jobs)

    @cached_property
    def segment(self) -> SegmentService:
        """The Segment-style API."""
        from nudge.integrations.segment_api import SegmentService

        return SegmentService(ingest=self.ingest, refs=self.refs, clock=self.clock)

    @cached_property
    def subscribe(self) -> SubscribeService:
        from nudge.services.subscribe import SubscribeService

        return SubscribeService(ingest=self.ingest, pending=self.pending_signups, refs=self.refs, clock=self.clock)

    @cached_property
    def daily(self) -> DailyJob:
        """The sweep function's work: reviews, RFM, co-purchases."""
        from nudge.services.daily import DailyJob
        from nudge.services.recommendations import CoPurchaseBook

        store = self.store
        return DailyJob(
            ingest=self.ingest,
            census=store,
            documents=store,
            job_log=store,
            clock=self.clock,
            copurchases=CoPurchaseBook(census=store, documents=store, clock=self.clock),
            default_timezone=self.guardrails.default_timezone,
        )

    @cached_property
    def feedback(self) -> FeedbackService:
        from nudge.services.feedback import FeedbackService

        # Engagement (opens, clicks) arrives as events, through the ingest service, built only then.
        return FeedbackService(store=self.store, clock=self.clock, engagement=lambda event: self.ingest.ingest(event))

    @cached_property
    def preferences(self) -> PreferenceService:
        from nudge.services.preferences import PreferenceService

        return PreferenceService(
            store=self.store, topics=lambda: self.marketing_topics, clock=self.clock, key=self.unsubscribe_key
        )

    @cached_property
    def whatsapp_inbound(self) -> WhatsAppInboundService:
        from nudge import flow_counts
        from nudge.services.whatsapp_inbound import WhatsAppInboundService

        # Customers' messages arrive as events, through the ingest service, built only when one arrives.
        return WhatsAppInboundService(
            store=self.store,
            refs=self.refs,
            clock=self.clock,
            ingest=lambda event: self.ingest.ingest(event),
            counted=flow_counts.record_feedback,
        )

    @cached_property
    def missed_calls(self) -> MissedCallService:
        from nudge.services.calls import MissedCallService

        return MissedCallService(refs=self.refs, ingest=lambda event: self.ingest.ingest(event))

    @cached_property
    def sms_keywords(self) -> SmsKeywordService:
        from nudge.domain import sms
        from nudge.services.sms_keywords import SmsKeywordService

        def help_text() -> str:
            from nudge.brand_file import load_brand

            # The brand kit alone (shop name, support contact): the HELP reply renders no template. Read at
            # the first HELP: a STOP needs neither it (nor PyYAML) nor the SNS client (ADR 0020).
            brand = self._renderer.brand if self._renderer is not None else load_brand(self.settings.templates_dir)
            return sms.help_reply(brand.name, brand.support, self.settings.sms_help_text)

        return SmsKeywordService(store=self.store, texter=_on_first_use(lambda: self.texter), help_text=help_text)


_T = TypeVar("_T")


class _OnFirstUse:
    """Stands in for an object until one of its attributes is used, then makes it (once) and forwards.

    A method of the made object is kept on the stand-in once asked for (`mailer.send` is asked for on every
    send: a backtest's or a busy worker's), so later uses are a plain attribute lookup instead of a failed
    one, an exception and a forward (3 % of a backtest's replay). Anything else (a data attribute, or a
    function set on the object in place of a method) is forwarded afresh at every use."""

    def __init__(self, make: Callable[[], object]) -> None:
        self._make = make
        self._made: object | None = None

    def __getattr__(self, name: str) -> Any:  # only for names this class lacks: the object's own
        if self._made is None:
            self._made = self._make()
        value = getattr(self._made, name)
        if isinstance(value, MethodType) and value.__self__ is self._made:
            self.__dict__[name] = value
        return value


def _on_first_use(make: Callable[[], _T]) -> _T:
    return cast("_T", _OnFirstUse(make))


def assemble(
    settings: Settings,
    clock: Clock,
    adapters: Adapters,
    *,
    signing_key: Callable[[], str | None] | None = None,
    webhook_secrets: Callable[[], Mapping[str, Any]] | None = None,
    unsubscribe_key: Callable[[], str | None] | None = None,
    renderer: TemplateRenderer | None = None,
    observer: Callable[[IngestOutcome], object] | None = None,
    check: bool = True,
) -> Container:
    """A container over these adapters; with `check`, the catalog is loaded and cross-checked now (the
    local runner and the CLI fail at once on a bad flow; a Lambda function loads it on first use)."""
    container = Container(
        settings,
        clock,
        adapters,
        signing_key=signing_key,
        webhook_secrets=webhook_secrets,
        unsubscribe_key=unsubscribe_key,
        renderer=renderer,
        observer=observer,
    )
    if check:
        container.warm("_catalog")
    return container


def build_aws(
    settings: Settings,
    clock: Clock,
    *,
    session: boto3.Session | None = None,
    sleeper: Sleeper | None = None,
    observer: Callable[[IngestOutcome], object] | None = None,
    check: bool = True,
) -> Container:
    """Adapters over real AWS APIs (in Lambda, or against moto in the demo and tests), each made on first use.

    `observer` defaults to the per-invocation flow counts the handlers publish (nudge.flow_counts).
    """
    from nudge import flow_counts

    # No boto3 in Lambda: its import (~10 ms more than botocore's, s3transfer included) buys nothing here.
    # Without a session, every client is made on the store's botocore session (ADR 0020).
    region = (session.region_name if session else _configured_region()) or os.environ.get("AWS_REGION") or "us-east-1"
    aws = _AwsAdapters(settings, session, region)
    secrets = _AwsSecrets(settings, aws)
    adapters = Adapters(
        store=aws.store,
        scheduler=aws.scheduler,
        queue=aws.queue,
        jobs=aws.jobs,
        campaign_jobs=aws.campaign_jobs,
        mailer=aws.mailer,
        texter=aws.texter,
        whatsapp=aws.whatsapp,
        webhooks=aws.webhooks,
        api_keys=lambda: aws.access("DynamoApiKeys"),
        refs=lambda: aws.access("DynamoContactRefs"),
        privacy_requests=lambda: aws.access("DynamoPrivacyRequests"),
        request_limiter=lambda: aws.access("DynamoRequestLimiter"),
        pending_signups=lambda: aws.access("DynamoPendingSignups"),
        limiter=aws.limiter,
        sleeper=lambda: sleeper or _sleeper_for(clock),
        audience_ledger=aws.audience_ledger,
        audience_platforms=lambda: _ad_platforms(secrets.audience_secrets),
    )
    return assemble(
        settings,
        clock,
        adapters,
        signing_key=secrets.signing_key,
        webhook_secrets=secrets.webhook_secrets,
        unsubscribe_key=secrets.unsubscribe_key,
        observer=observer or flow_counts.record_ingest,
        check=check,
    )


def _configured_region() -> str | None:
    """What `boto3.Session().region_name` said: AWS_DEFAULT_REGION, else the profile's region (read only then)."""
    region = os.environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    from botocore.session import get_session

    configured: str | None = get_session().get_config_variable("region")
    return configured


class _AwsAdapters:
    """The AWS adapters, each with its own client, made when first asked for; the store's one pynamodb
    connection is shared by the access tables."""

    def __init__(self, settings: Settings, session: boto3.Session | None, region: str) -> None:
        self._settings = settings
        self._session = session
        self._region = region

    def client(self, service: str, config: Any = None) -> Any:
        """A botocore client: from the given boto3 session (moto), else from the pynamodb connection's botocore
        session, so every client shares one loader (the endpoint rules and service models read once)."""
        if self._session is not None:
            return self._session.client(service, config=config)  # type: ignore[call-overload]
        botocore_session = self._dynamo.connection.session
        return botocore_session.create_client(service, region_name=self._region, config=config)

    @cached_property
    def _dynamo(self) -> Any:
        from nudge.adapters.dynamodb.store import DynamoStore

        return DynamoStore.for_settings(self._settings, region=self._region)

    @cached_property
    def _tables(self) -> Any:
        from nudge.adapters.dynamodb import access

        return access.bind_access_models(self._settings, region=self._region, connection=self._dynamo.connection)

    def _lazy_client(self, service: str) -> Any:
        """A client made at its first call, in Lambda: a function's first request pays for the clients it
        uses (a wake-up that arms none never makes SQS's or the Scheduler's; ADR 0020, Decision 9). With a
        session (the moto stack, tests) at once, as before."""
        if self._session is not None:
            return self.client(service)
        return _on_first_use(lambda: self.client(service))

    @cached_property
    def _sqs(self) -> Any:
        return self._lazy_client("sqs")

    @staticmethod
    def _once() -> Any:
        from botocore.config import Config

        # No blind retries of a send: a lost response would send it twice (ADR 0007). The worker retries.
        return Config(retries={"total_max_attempts": 1, "mode": "standard"})

    def store(self) -> Store:
        store: Store = self._dynamo
        return store

    def access(self, name: str) -> Any:
        from nudge.adapters.dynamodb import access

        return getattr(access, name)(self._tables)

    def scheduler(self) -> Scheduler:
        from nudge.adapters.scheduler import EventBridgeScheduler

        settings = self._settings
        return EventBridgeScheduler(
            self._lazy_client("scheduler"),
            group=settings.schedule_group,
            target_arn=settings.work_queue_arn,
            role_arn=settings.scheduler_role_arn,
            dead_letter_arn=settings.scheduler_dlq_arn,
        )

    def queue(self) -> WorkQueue:
        from nudge.adapters.sqs import SqsWorkQueue

        return SqsWorkQueue(self._sqs, self._settings.work_queue_url)

    def jobs(self) -> JobQueue | None:
        from nudge.adapters.sqs import SqsJobQueue

        url = self._settings.jobs_queue_url
        return SqsJobQueue(self._sqs, url) if url else None

    def campaign_jobs(self) -> JobQueue | None:
        from nudge.adapters.sqs import SqsJobQueue

        url = self._settings.campaigns_queue_url
        return SqsJobQueue(self._sqs, url) if url else None

    def mailer(self) -> Mailer:
        from nudge.adapters.ses import SesMailer

        client = self.client("sesv2", config=self._once())
        return SesMailer(client, configuration_set=self._settings.ses_configuration_set)

    def texter(self) -> Texter:
        from nudge.adapters.sns import SnsTexter

        return SnsTexter(self.client("sns", config=self._once()))

    def whatsapp(self) -> WhatsAppSender:
        from nudge.ports import UnconfiguredWhatsApp

        settings = self._settings
        if not settings.whatsapp_phone_number_id:
            return UnconfiguredWhatsApp()
        from nudge.adapters.whatsapp import SocialMessagingWhatsApp

        return SocialMessagingWhatsApp(
            self.client("socialmessaging", config=self._once()),
            phone_number_id=settings.whatsapp_phone_number_id,
            meta_api_version=settings.whatsapp_meta_api_version,
        )

    def webhooks(self) -> WebhookSender:
        from nudge.adapters.webhook_sender import UrllibWebhooks

        return UrllibWebhooks()

    def limiter(self) -> SendRateLimiter:
        from nudge.adapters.dynamodb.rate import DynamoSendRateLimiter

        return DynamoSendRateLimiter(self._dynamo.models)

    def audience_ledger(self) -> AudienceLedger:
        """In the counters table; a contact's entries are looked up in each audience of audiences/ (ADR 0024)."""
        from nudge.adapters.dynamodb.audiences import DynamoAudienceLedger
        from nudge.flow_files import load_audiences

        path = self._settings.audiences_path
        return DynamoAudienceLedger(
            self._settings.counters_table,
            self._region,
            None,
            self._dynamo.connection,
            lambda: load_audiences(path).ids(),
        )


class _AwsSecrets:
    """The keys: from Secrets Manager where the stack names a secret (read when first used, then cached
    for minutes by the reader), else the settings' own values (local runs and tests)."""

    def __init__(self, settings: Settings, aws: _AwsAdapters) -> None:
        self._settings = settings
        self._aws = aws

    @cached_property
    def _client(self) -> Any:
        return self._aws.client("secretsmanager")

    @cached_property
    def _readers(self) -> dict[str, Any]:
        from nudge.adapters.secrets import JsonSecretReader, SecretReader

        settings = self._settings
        readers: dict[str, Any] = {}
        if settings.signing_secret_arn:
            readers["signing"] = SecretReader(self._client, settings.signing_secret_arn).value
        if settings.unsubscribe_secret_arn:
            readers["unsubscribe"] = SecretReader(self._client, settings.unsubscribe_secret_arn).value
        if settings.webhook_secrets_arn:
            readers["webhooks"] = JsonSecretReader(SecretReader(self._client, settings.webhook_secrets_arn)).value
        if settings.audience_secrets_arn:
            readers["audiences"] = JsonSecretReader(SecretReader(self._client, settings.audience_secrets_arn)).value
        return readers

    def signing_key(self) -> str | None:
        reader = self._readers.get("signing")
        return reader() if reader is not None else self._settings.signing_key

    def unsubscribe_key(self) -> str | None:
        reader = self._readers.get("unsubscribe")
        return reader() if reader is not None else self._settings.unsubscribe_key

    def audience_secrets(self, platform: str) -> Mapping[str, Any]:
        """The ad platform's part of the audience secret (docs/audiences.md), read when an upload needs it."""
        reader = self._readers.get("audiences")
        found: Mapping[str, Any] = reader() if reader is not None else (self._settings.audience_secrets or {})
        part = found.get(platform)
        return part if isinstance(part, Mapping) else {}

    def webhook_secrets(self) -> Mapping[str, Any]:
        reader = self._readers.get("webhooks")
        found: Mapping[str, Any] = reader() if reader is not None else (self._settings.webhook_secrets or {})
        return found


def _ad_platforms(credentials: Callable[[str], Mapping[str, Any]]) -> Callable[[str], AudiencePlatform]:
    from nudge.adapters.ad_audiences import platforms

    made: Callable[[str], AudiencePlatform] = platforms(credentials)
    return made


def _no_platforms(name: str) -> AudiencePlatform:
    raise LookupError(f"no {name} audience adapter is configured")


def _sleeper_for(clock: Clock) -> Sleeper:
    """A virtual clock sleeps by moving itself; the system clock sleeps for real."""
    from nudge.clocks import SystemSleeper, VirtualClock, VirtualSleeper

    return VirtualSleeper(clock) if isinstance(clock, VirtualClock) else SystemSleeper()


def build_memory(
    settings: Settings,
    clock: Clock,
    *,
    renderer: TemplateRenderer | None = None,
    observer: Callable[[IngestOutcome], object] | None = None,
    audience_platforms: Callable[[str], AudiencePlatform] | None = None,
) -> Container:
    """In-memory twins of every adapter: for unit tests, simulations and backtests (which render nothing).

    `audience_platforms` replaces the ad platforms' twins (a test's fake APIs behind the real adapters)."""
    from nudge.adapters import memory

    return assemble(
        settings,
        clock,
        Adapters(
            store=memory.MemoryStore,
            scheduler=memory.MemoryScheduler,
            queue=lambda: memory.MemoryQueue(clock),
            mailer=memory.MemoryMailer,
            texter=memory.MemoryTexter,
            whatsapp=memory.MemoryWhatsApp,
            webhooks=memory.MemoryWebhooks,
            api_keys=memory.MemoryApiKeys,
            refs=memory.MemoryContactRefs,
            privacy_requests=memory.MemoryPrivacyRequests,
            request_limiter=memory.MemoryRequestLimiter,
            pending_signups=memory.MemoryPendingSignups,
            limiter=memory.MemorySendRateLimiter,
            sleeper=lambda: _sleeper_for(clock),
            jobs=memory.MemoryJobQueue,
            audience_ledger=memory.MemoryAudienceLedger,
            audience_platforms=(lambda: audience_platforms) if audience_platforms else memory.MemoryAudiencePlatforms,
        ),
        renderer=renderer,
        observer=observer,
    )


_current: Container | None = None


def current() -> Container:
    """The container handlers use: made from the environment at first use (cold start), unless installed.

    Making it builds nothing: each handler's first request builds what it uses (`Container.warm`).
    """
    global _current
    if _current is None:
        from nudge.clocks import SystemClock

        settings = Settings.from_env(os.environ)
        _current = build_aws(settings, SystemClock(), check=False)
        _offer_compiled_checks(settings)
    return _current


def _offer_compiled_checks(settings: Settings) -> None:
    """The bundle's compiled request checks, read at the first check (ADR 0020, Decision 13): a function that
    checks a request against one loads pydantic_core, not pydantic."""
    from nudge import compiled_catalog
    from nudge.domain import records

    records.offer_checks(lambda: compiled_catalog.read_checks(settings.flows_dir, settings.segments_path))


def install(container: Container | None) -> None:
    """Make handlers use this container (the local runner and tests); None returns to cold-start building."""
    global _current
    _current = container


def bulk_importer(container: Container, *, workers: int = 8) -> BulkImporter:
    """`nudge import orders`'s importer over this container's store (which reads and writes in batches)."""
    from nudge.services.order_import import BulkImporter

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
