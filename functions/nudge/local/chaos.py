"""`nudge chaos`: a story on moto with faults injected at the boto3 layer, judged against a clean run.

Three stories: the demo's (welcome, cart, post-purchase, the daily job over an imported history), the
library's (browse abandonment, back in stock with SMS, post-purchase and replenishment, the course funnel
and drip, client onboarding, a product launch with SMS, a birthday) and a campaign's (24 contacts in six
zones through POST /v1/contacts, a newsletter through POST /v1/campaigns, and a contact who subscribes
while it goes out: its pieces and sends crash and are retried like any Lambda's, ADR 0019), each played on
the virtual clock.

moto never throttles, never times out and never cancels a transaction for anything but a failed condition.
This harness makes it do all of that, at the one place every AWS call passes (botocore's `before-call`
and `after-call` events on every client nudge uses), and emulates what AWS does next:

- a storefront retries a request that answered 5xx or died (as Shopify does, up to 8 times);
- SQS hands a failed record back after the visibility timeout, then moves it to the dead-letter queue;
- Lambda retries a failed asynchronous invocation (the daily job, the 15-minute repair job) twice;
- a Lambda that dies makes no further call in that invocation.

Fault kinds, each at one call: throttling and 5xx (the request never had an effect), a timeout before the
request left and one after it left (the effect happened, the caller saw an error), a transaction cancelled
for TransactionConflict or ThrottlingError, and the Lambda dying before the call.

Each faulted run is compared with the fault-free one, by the message ids SES (the X-Nudge-Message-Id
header) and SNS (their message ids, joined to nudge's records) actually received:
  lost        a message the clean run sent that this run never did, and does not know it may have
  duplicated  a message the providers received more than once
  after_exit  a message the clean run never sent (a reminder after the order)
  stranded    an active run with nothing pending (no schedule, no queued work) at the end
  unknown     a message nudge records as UNKNOWN: the provider call may or may not have happened
  dlq         work that failed for over an hour and waits in the dead-letter queue
"""

from __future__ import annotations

import email
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import field
from datetime import timedelta
from typing import Any

from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from nudge import names
from nudge.clocks import VirtualClock
from nudge.domain.frozen import dataclass
from nudge.local.demo import DURATION, START, STORY, import_history
from nudge.local.lambda_events import FakeLambdaContext, signed_request
from nudge.local.moto_stack import ACCOUNT, REGION, SWEEP_FUNCTION_ARN, MotoStack, start_moto_stack

KINDS = (
    "throttle",
    "server_error",
    "timeout_before",
    "timeout_after",
    "cancel_conflict",
    "cancel_throttle",
    "death",
)
STOREFRONT_ATTEMPTS = 8  # Shopify retries a failed webhook 8 times
ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: the first try and 2 retries
REPAIR_RATE = "rate(360 minutes)"  # the repair job's schedule in a play (deployed: names.REPAIR_RATE)
SETTLE = timedelta(days=2)  # after the story: time for retries, deferrals and the last reminders


def _who(name: str, **fields: Any) -> dict[str, Any]:
    return {"email": f"{name}@example.com", "first_name": name.capitalize(), "email_marketing": True, **fields}


def _event(at: timedelta, what: str, event_id: str, type_: str, who: dict[str, Any], **properties: Any) -> StoryLine:
    return (at, what, {"id": event_id, "type": type_, "contact": who, "properties": properties})


StoryLine = tuple[timedelta, str, dict[str, Any]]
ApiLine = tuple[timedelta, str, dict[str, Any]]  # (when, the API path posted to, the body)
_APRON = {"product_id": "p_apron", "product_title": "Linen apron", "product_url": "https://shop.example/apron"}
_BEANS_ORDER = {
    "order_id": "lib_o1",
    "order_number": "#2001",
    "currency": "USD",
    "total": 18.0,
    "lines": [{"title": "Coffee beans", "quantity": 1, "price": 18.0, "product_id": "p_beans", "replenish_days": 14}],
}
_APRON_ORDER = {
    "order_id": "lib_o2",
    "order_number": "#2002",
    "currency": "USD",
    "total": 42.0,
    "lines": [{"title": "Linen apron", "quantity": 1, "price": 42.0, "product_id": "p_apron"}],
}
# The library's flows that a few weeks show, through the same signed API as the demo (win-back, sunset and
# VIP need months or an outside webhook receiver; their engine paths are the ones exercised here).
LIBRARY_STORY: list[StoryLine] = [
    _event(
        timedelta(0),
        "Dan views the apron and leaves",
        "lib_dan_view",
        "product_viewed",
        _who("dan"),
        **_APRON,
        price=42,
        currency="USD",
    ),
    _event(
        timedelta(0),
        "Vic joins the Kettle 2 waitlist (SMS too, Paris)",
        "lib_vic_wait",
        "launch_waitlist_joined",
        _who("vic", phone="+33612345678", sms_marketing=True),
        launch_date="2026-11-20",
        product_title="Kettle 2",
    ),
    _event(
        timedelta(hours=12),
        "Mia waits for the apron: back in stock (SMS too, London)",
        "lib_mia_bis",
        "back_in_stock",
        _who("mia", phone="+447911123456", sms_marketing=True),
        **_APRON,
    ),
    _event(timedelta(hours=12), "Ned waits for the apron too", "lib_ned_bis", "back_in_stock", _who("ned"), **_APRON),
    _event(timedelta(hours=14), "Ned buys the apron", "lib_ned_order", "order_placed", _who("ned"), **_APRON_ORDER),
    _event(timedelta(days=1), "Oli buys coffee beans", "lib_oli_order", "order_placed", _who("oli"), **_BEANS_ORDER),
    _event(
        timedelta(days=1, hours=1),
        "Rae signs up and gives her birthday",
        "lib_rae_signup",
        "subscribed",
        _who("rae", timezone="America/Los_Angeles", properties={"birthday": "11-20"}),
    ),
    _event(
        timedelta(days=2),
        "Sam downloads the free lesson",
        "lib_sam_lead",
        "lead_magnet_downloaded",
        _who("sam", timezone="Europe/Berlin"),
        course_title="Sourdough 101",
    ),
    _event(timedelta(days=4), "Tia signs as a client", "lib_tia_client", "client_signed", _who("tia")),
    _event(
        timedelta(days=5),
        "Sam enrolls",
        "lib_sam_enrol",
        "course_enrolled",
        _who("sam", timezone="Europe/Berlin"),
        course_title="Sourdough 101",
    ),
    _event(
        timedelta(days=6),
        "Oli's order ships",
        "lib_oli_shipped",
        "order_fulfilled",
        _who("oli"),
        order_id="lib_o1",
        order_number="#2001",
    ),
]


@dataclass(frozen=True)
class Story:
    lines: list[StoryLine]
    duration: timedelta
    history: bool  # import the demo's order history first
    api: tuple[ApiLine, ...] = ()  # other signed POSTs (contacts, a campaign), in time order with the lines


def _campaign_story() -> Story:
    from nudge.local.campaign_play import sample_contacts

    contacts = [(timedelta(0), "/v1/contacts", body) for body in sample_contacts(24)]
    newsletter = {
        "id": "chaos_news",
        "name": "Chaos newsletter",
        "audience": {"exclude_tags": ["no_newsletter"]},
        "email": {"template": "campaigns/newsletter", "subject": "News for {{ contact.first_name }}"},
    }
    campaign = (timedelta(minutes=10), "/v1/campaigns", newsletter)
    zoe = _event(
        timedelta(minutes=10, seconds=20), "Zoe subscribes mid-campaign", "camp_zoe", "subscribed", _who("zoe")
    )
    return Story([zoe], timedelta(hours=2), history=False, api=(*contacts, campaign))


STORIES = {
    "demo": Story(STORY, DURATION, history=True),
    "library": Story(LIBRARY_STORY, timedelta(days=28), history=False),
    "campaign": _campaign_story(),
}


class LambdaDeath(Exception):
    """The function's process ended (timeout, out of memory, a crash): nothing after this call happens."""


@dataclass
class FaultInjector:
    """Decides, per HTTP attempt of every AWS call, whether it fails and how; counts the attempts it saw.

    It sits where the request leaves botocore (`before-send`, ahead of moto), so botocore's own retry
    policy sees each fault as it would see AWS's: throttling and 5xx are retried where the client retries
    (DynamoDB, SQS, Scheduler) and surface where it does not (SES and SNS sends: nudge turns those off).
    """

    choose: Callable[[int, str], str | None]  # (attempt number, "service.Operation") -> kind or None
    enabled: bool = False
    calls: int = 0
    dead: bool = False
    injected: list[tuple[int, str, str]] = field(default_factory=list)
    # DynamoDB's TransactWriteItems is idempotent on its ClientRequestToken (botocore fills one in and
    # reuses it on retries): a retry of a transaction that went through succeeds without doing it again.
    _done_transactions: set[str] = field(default_factory=set)

    def attach(self, emitter: Any) -> None:
        # botocore calls every before-send handler and takes the first response: moto's stubber would
        # still carry out a request we answer with an error, unless it is switched off around it.
        emitter.register_first("before-send", self._before_send)
        emitter.register_last("before-send", self._after_moto)

    @staticmethod
    def _after_moto(**_: Any) -> None:
        from moto.core.models import botocore_stubber

        botocore_stubber.enabled = True

    @contextmanager
    def invocation(self) -> Iterator[None]:
        """One Lambda invocation: a death ends it; the next invocation starts alive."""
        self.dead = False
        try:
            yield
        finally:
            self.dead = False

    def _before_send(self, event_name: str, request: Any, **_: Any) -> Any:
        if not self.enabled:
            return None
        if self.dead:
            raise LambdaDeath("the function already died")
        self.calls += 1
        service, operation = event_name.split(".", 2)[1:]
        token = _transaction_token(request) if operation == "TransactWriteItems" else None
        if token is not None and token in self._done_transactions:
            return _success_response(request)  # the retry of one whose response was lost: AWS answers OK
        kind = self.choose(self.calls, f"{service}.{operation}")
        if kind is None:
            return None
        if kind.startswith("cancel") and operation != "TransactWriteItems":
            kind = "throttle"
        self.injected.append((self.calls, f"{service}.{operation}", kind))
        if kind == "death":
            self.dead = True
            raise LambdaDeath(f"died before {operation}")
        if kind == "timeout_before":
            raise ConnectTimeoutError(endpoint_url=request.url)
        if kind == "timeout_after":
            from moto.core.models import botocore_stubber

            response = botocore_stubber(event_name=event_name, request=request)  # it reached AWS and took effect
            if token is not None and response is not None and response.status_code == 200:
                self._done_transactions.add(token)
            raise ReadTimeoutError(endpoint_url=request.url)  # but its response never came back
        from moto.core.models import botocore_stubber

        botocore_stubber.enabled = False  # AWS refused the request: it has no effect (re-enabled after moto)
        return _error_response(kind, service, request)


def _transaction_token(request: Any) -> str | None:
    body = request.body or b"{}"
    token = json.loads(body.decode() if isinstance(body, bytes) else body).get("ClientRequestToken")
    return str(token) if token else None


def _success_response(request: Any) -> Any:
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse
    from moto.core.models import botocore_stubber

    botocore_stubber.enabled = False
    headers = {"Content-Type": "application/x-amz-json-1.0"}
    return AWSResponse(request.url, 200, headers, MockRawResponse(b"{}"))  # type: ignore[arg-type]  # a dict serves


def _error_response(kind: str, service: str, request: Any) -> Any:
    """The HTTP answer AWS gives for this kind of failure, in the service's protocol."""
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse

    extra: dict[str, Any] = {}
    if kind == "server_error":
        code = "InternalServerError"
    elif kind in ("cancel_conflict", "cancel_throttle"):
        reason = "TransactionConflict" if kind == "cancel_conflict" else "ThrottlingError"
        body = request.body or b"{}"
        items = json.loads(body.decode() if isinstance(body, bytes) else body).get("TransactItems") or [{}]
        extra["CancellationReasons"] = [{"Code": reason, "Message": "chaos"}] + [{"Code": "None"} for _ in items[1:]]
        code = "TransactionCanceledException"
    else:
        code = {
            "dynamodb": "ProvisionedThroughputExceededException",
            "sesv2": "TooManyRequestsException",
            "sns": "Throttling",
        }.get(service, "ThrottlingException")
    status = 500 if kind == "server_error" else 400
    if service == "sns":  # the query protocol answers in XML
        text = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>chaos</Message></Error>"
            "<RequestId>chaos</RequestId></ErrorResponse>"
        )
        headers = {"Content-Type": "text/xml"}
    else:
        text = json.dumps({"__type": code, "message": "chaos", **extra})
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}
    return AWSResponse(request.url, status, headers, MockRawResponse(text.encode()))  # type: ignore[arg-type]


@dataclass
class Observed:
    """What one play of the story left behind."""

    delivered: Counter[str]  # message id -> times the providers received it
    unknown: set[str]
    stranded: list[str]
    dlq: int
    calls: int
    injected: list[tuple[int, str, str]]


@dataclass
class Verdict:
    lost: set[str] = field(default_factory=set)
    duplicated: int = 0
    after_exit: set[str] = field(default_factory=set)
    stranded: int = 0
    unknown: int = 0
    dlq: int = 0

    @property
    def wrong(self) -> bool:
        return bool(self.lost or self.duplicated or self.after_exit or self.stranded)


def judge(clean: Observed, faulted: Observed) -> Verdict:
    lost = {m for m in clean.delivered if m not in faulted.delivered and m not in faulted.unknown}
    return Verdict(
        lost=lost,
        duplicated=sum(n - 1 for n in faulted.delivered.values() if n > 1),
        after_exit={m for m in faulted.delivered if m not in clean.delivered},
        stranded=len(faulted.stranded),
        unknown=len(faulted.unknown),
        dlq=faulted.dlq,
    )


def play(choose: Callable[[int, str], str | None], *, daily_job: bool = True, story: str = "demo") -> Observed:
    """Play a story with this fault plan, AWS's retries emulated; read back what went out."""
    played = STORIES[story]
    injector = FaultInjector(choose)
    clock = VirtualClock(START)
    _no_retry_sleep()
    # The repair job re-drives a run whose first step was never queued because every attempt of its request
    # died (ADR 0007); `stranded` is what even it leaves behind. Deployed it runs every 15 minutes; here every
    # 6 hours (every 15 minutes made the plays five times slower), so a run it saves is later than deployed.
    stack = start_moto_stack(
        clock, daily_job=daily_job, repair_job=True, repair_rate=REPAIR_RATE, instruments=[injector]
    )
    try:
        if played.history:
            import_history(stack)
        _emulate_retries(stack, injector)
        injector.enabled = True
        steps = [(offset, "/v1/events", body) for offset, _, body in played.lines] + list(played.api)
        for offset, path, body in sorted(steps, key=lambda step: step[0]):
            stack.pump.run_until(START + offset)
            _request(stack, injector, body, path)
        stack.pump.run_until(START + played.duration + SETTLE)
        injector.enabled = False
        return Observed(
            delivered=_delivered(stack),
            unknown=_unknown(stack),
            stranded=_stranded(stack),
            dlq=_dlq_depth(stack),
            calls=injector.calls,
            injected=injector.injected,
        )
    finally:
        stack.stop()


def _no_retry_sleep() -> None:
    """botocore sleeps between its retries; on the virtual clock those pauses cost nothing (and no wall time)."""
    import botocore.endpoint

    botocore.endpoint.time = _NoSleepTime()  # type: ignore[attr-defined]


class _NoSleepTime:
    def __getattr__(self, name: str) -> Any:
        import time

        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        return None


def _emulate_retries(stack: MotoStack, injector: FaultInjector) -> None:
    """The worker and the daily job's pieces run as invocations fed by SQS (a death: the record comes back);
    the daily job's plan is retried as Lambda retries asynchronous invocations."""
    worker = stack.queue._invoke

    def invoke_worker(event: dict[str, Any]) -> dict[str, Any]:
        with injector.invocation():
            return worker(event)  # a LambdaDeath escapes: the whole batch comes back after the visibility timeout

    stack.queue._invoke = invoke_worker
    sweep = stack.jobs._invoke

    def invoke_sweep(event: dict[str, Any]) -> dict[str, Any]:
        with injector.invocation():
            return sweep(event)  # a death: the piece comes back after the visibility timeout

    stack.jobs._invoke = invoke_sweep
    campaign_sweep = stack.campaigns._invoke

    def invoke_campaign_sweep(event: dict[str, Any]) -> dict[str, Any]:
        with injector.invocation():
            return campaign_sweep(event)  # a death: the piece comes back after the visibility timeout

    stack.campaigns._invoke = invoke_campaign_sweep
    fire = stack.fire_target

    def fire_target(arn: str, payload: dict[str, Any]) -> dict[str, Any]:
        if arn != SWEEP_FUNCTION_ARN:
            return fire(arn, payload)
        for _ in range(ASYNC_ATTEMPTS):
            with injector.invocation():
                try:
                    return fire(arn, payload)
                except Exception:  # noqa: S112 - Lambda retries the invocation; nothing to report here
                    continue
        return {}

    stack.pump._invoke = fire_target


def _request(stack: MotoStack, injector: FaultInjector, body: dict[str, Any], path: str = "/v1/events") -> None:
    """POST as a storefront (or an API client) does: again (newly signed) after a 5xx or no answer, up to 8
    times."""
    from nudge.handlers import ingest

    for _ in range(STOREFRONT_ATTEMPTS):
        event = signed_request(stack.signing_key, "POST", path, body, stack.clock.now())
        with injector.invocation():
            try:
                response = ingest.handler(event, FakeLambdaContext.fresh("nudge-ingest"))
            except Exception:
                response = {"statusCode": 502}  # API Gateway's answer when the function dies
        stack.pump.settle()
        if response["statusCode"] < 500:
            return


def _delivered(stack: MotoStack) -> Counter[str]:
    delivered: Counter[str] = Counter()
    for raw in stack.sent_emails():
        delivered[str(email.message_from_string(raw.raw_data)[names.MESSAGE_HEADER])] += 1
    records = list(stack.container.store.all_messages())  # type: ignore[attr-defined]
    by_provider = {m.provider_id: m.message_id for m in records if m.provider_id}
    unknown_sms = {m.recipient: m.message_id for m in records if m.channel.value == "sms" and m.provider_id is None}
    for provider_id, (phone, _) in stack.sent_sms().items():
        delivered[by_provider.get(provider_id) or unknown_sms.get(phone) or f"sms:{provider_id}"] += 1
    return delivered


def _unknown(stack: MotoStack) -> set[str]:
    return {m.message_id for m in stack.container.store.all_messages() if m.status.value == "unknown"}  # type: ignore[attr-defined]


def _stranded(stack: MotoStack) -> list[str]:
    """Active runs with no schedule and no queued work naming them (what nothing would ever move again)."""
    pending = {str(s.payload.get("run_id")) for s in stack.pump.pending()}
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[ACCOUNT][REGION].queues[stack.settings.work_queue_url.rsplit("/", 1)[1]]
    pending |= {str(json.loads(m.body).get("run_id")) for m in queue._messages}
    return [r.run_id for r in stack.container.store.all_runs() if r.is_active and r.run_id not in pending]  # type: ignore[attr-defined]


def _dlq_depth(stack: MotoStack) -> int:
    from moto.sqs.models import sqs_backends

    return len(sqs_backends[ACCOUNT][REGION].queues["nudge-scheduler-dlq"]._messages)


@dataclass
class Sweep:
    runs: int = 0
    wrong: int = 0
    lost: int = 0
    duplicated: int = 0
    after_exit: int = 0
    stranded: int = 0
    unknown: int = 0
    dlq: int = 0
    failures: list[tuple[str, Verdict]] = field(default_factory=list)

    def add(self, label: str, verdict: Verdict) -> None:
        self.runs += 1
        self.lost += len(verdict.lost)
        self.duplicated += verdict.duplicated
        self.after_exit += len(verdict.after_exit)
        self.stranded += verdict.stranded
        self.unknown += verdict.unknown
        self.dlq += verdict.dlq
        if verdict.wrong:
            self.wrong += 1
            self.failures.append((label, verdict))

    def line(self) -> str:
        return (
            f"chaos: runs={self.runs} lost={self.lost} duplicated={self.duplicated} after_exit={self.after_exit} "
            f"stranded={self.stranded} unknown={self.unknown}"
        )


def random_plan(seed: int, rate: float) -> Callable[[int, str], str | None]:
    """Each call fails with probability `rate`, of a kind drawn at random (reproducibly, from `seed`)."""
    rng = random.Random(seed)
    return lambda call, operation: rng.choice(KINDS) if rng.random() < rate else None


def _plan_for(spec: tuple[str, int, float]) -> Callable[[int, str], str | None]:
    mode, number, rate = spec
    if mode == "call":
        kind = KINDS[number % len(KINDS)]
        return lambda call, operation: kind if call == number else None
    return random_plan(number, rate)


def _label(spec: tuple[str, int, float], faulted: Observed) -> str:
    mode, number, _ = spec
    if mode == "call":
        return f"call {number}: {faulted.injected}"
    return f"seed {number}: {len(faulted.injected)} faults"


def _play_spec(spec: tuple[str, int, float], clean: Observed, daily_job: bool, story: str) -> tuple[str, Verdict]:
    """One faulted play, judged (a top-level function: worker processes run it)."""
    _quiet()
    faulted = play(_plan_for(spec), daily_job=daily_job, story=story)
    return _label(spec, faulted), judge(clean, faulted)


def _quiet() -> None:
    import os

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")


def sweep(
    specs: list[tuple[str, int, float]],
    clean: Observed,
    *,
    daily_job: bool = True,
    story: str = "demo",
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Sweep:
    """Play every spec (("call", N, 0) or ("seed", S, rate)), in `workers` processes, and add up the verdicts."""
    result = Sweep()
    if workers <= 1:
        for done, spec in enumerate(specs, start=1):
            result.add(*_play_spec(spec, clean, daily_job, story))
            if progress:
                progress(done, len(specs))
        return result
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # a fresh interpreter each: moto's state is per process
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_play_spec, spec, clean, daily_job, story) for spec in specs]
        for done, future in enumerate(futures, start=1):
            result.add(*future.result())
            if progress:
                progress(done, len(specs))
    return result


def clean_play(*, daily_job: bool = True, story: str = "demo") -> Observed:
    """The fault-free play every faulted one is judged against."""
    _quiet()
    return play(lambda call, operation: None, daily_job=daily_job, story=story)


def every_call_specs(
    clean: Observed, first: int = 1, last: int | None = None, stride: int = 1
) -> list[tuple[str, int, float]]:
    """One fault at attempt N for every N the clean play made (or first..last, every `stride`-th); the kind
    rotates with N (a stride that shares a factor with the seven kinds would always pick the same few)."""
    end = min(last or clean.calls, clean.calls)
    return [("call", n, 0.0) for n in range(first, end + 1, stride)]


def random_specs(rate: float, seeds: int, first_seed: int = 0) -> list[tuple[str, int, float]]:
    return [("seed", seed, rate) for seed in range(first_seed, first_seed + seeds)]
