"""`nudge bench --cold-start`: each Lambda function's import + build time against `import boto3` + one client.

Every measurement is a fresh interpreter (`python -c PROBE`), as a Lambda cold start is, with the
environment the CDK stack gives the functions (`lambda_environment`: the same NUDGE_* variables, with
placeholder names and ARNs), fake credentials, and every AWS endpoint pointed at a closed local port: a
build that called AWS would fail, so what is timed is CPU and disk, never the network. The probe times
`import <handler module>` and then the build of what the handler's first request uses
(`nudge.handlers.<name>.warm()`, or the whole container where a handler has none), and the baseline is
`import boto3; boto3.client("sqs")` in the same kind of process. Figures are medians of `runs` runs; the
interpreter's own start-up is in neither side.

Figures, not assertions: this machine's bytecode cache is warm (Lambda's bundle ships no .pyc), so an
absolute figure here is below Lambda's; the ratio is what compares.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from nudge import names
from nudge.domain.frozen import dataclass

# Every function the CDK app deploys (infra/constructs/functions.py FUNCTIONS; an infra test keeps them equal).
FUNCTIONS: tuple[tuple[str, str], ...] = (
    ("ingest", names.INGEST_HANDLER),
    ("step", names.STEP_HANDLER),
    ("webhooks", names.WEBHOOKS_HANDLER),
    ("api", names.API_HANDLER),
    ("subscribe", names.SUBSCRIBE_HANDLER),
    ("feedback", names.FEEDBACK_HANDLER),
    ("unsubscribe", names.UNSUBSCRIBE_HANDLER),
    ("sms-inbound", names.SMS_INBOUND_HANDLER),
    ("whatsapp-inbound", names.WHATSAPP_INBOUND_HANDLER),  # only with a WhatsApp number (WHATSAPP_FUNCTION)
    ("missed-call", names.MISSED_CALL_HANDLER),  # only with a Connect instance (CONNECT_FUNCTION)
    ("sweep", names.SWEEP_HANDLER),
)

_ACCOUNT, _REGION = "123456789012", "us-east-1"
_CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, so a stray AWS call fails at once

# CPU time of the process (user + system), which the other work on a shared machine disturbs far less
# than wall time; wall time is reported beside it.
PROBE = """
import json, sys, time
started, wall = time.process_time(), time.perf_counter()
if sys.argv[1] == "boto3":
    import boto3
    imported = time.process_time()
    boto3.client("sqs")
else:
    import importlib
    module = importlib.import_module(sys.argv[1])
    imported = time.process_time()
    warm = getattr(module, "warm", None)
    if warm is not None:
        warm()
    else:
        from nudge import wiring
        wiring.current()
    # As the first invocation does before its request in Lambda: the collector, paused for the cold start,
    # resumes once warm() has built (ADR 0020, Decision 10); the request, and its client, run with it on.
    collector = sys.modules.get("nudge.handlers.collector")
    if collector is not None:
        collector.resume()
built = time.process_time()
if sys.argv[1] != "boto3":
    # The DynamoDB client every function's first request calls (pynamodb makes it at the first call, so
    # warm() does not): made here, timed apart, as the baseline's one client is.
    from nudge import wiring
    aws = getattr(wiring.current()._adapters.store, "__self__", None)  # build_aws's adapters
    if aws is not None:
        aws._dynamo.connection.client
client = time.process_time()
print(json.dumps({
    "import": imported - started, "build": built - imported, "client": client - built,
    "wall": time.perf_counter() - wall, "modules": len(sys.modules),
}))
"""


def lambda_environment(root: Path) -> dict[str, str]:
    """What the CDK stack sets on every function (names only: the values are placeholders), plus Lambda's own."""
    arn = f"arn:aws:{{}}:{_REGION}:{_ACCOUNT}:{{}}"
    return {
        names.ENV_CONTACTS_TABLE: f"{names.CONTACTS_TABLE}-dev",
        names.ENV_EVENTS_TABLE: f"{names.EVENTS_TABLE}-dev",
        names.ENV_RUNS_TABLE: f"{names.RUNS_TABLE}-dev",
        names.ENV_MESSAGES_TABLE: f"{names.MESSAGES_TABLE}-dev",
        names.ENV_KEYS_TABLE: f"{names.KEYS_TABLE}-dev",
        names.ENV_CONTACT_REFS_TABLE: f"{names.CONTACT_REFS_TABLE}-dev",
        names.ENV_PRIVACY_TABLE: f"{names.PRIVACY_TABLE}-dev",
        names.ENV_SUPPRESSIONS_TABLE: f"{names.SUPPRESSIONS_TABLE}-dev",
        names.ENV_COUNTERS_TABLE: f"{names.COUNTERS_TABLE}-dev",
        names.ENV_SCHEDULE_GROUP: f"{names.SCHEDULE_GROUP}-dev",
        names.ENV_WORK_QUEUE_URL: f"https://sqs.{_REGION}.amazonaws.com/{_ACCOUNT}/nudge-work",
        names.ENV_WORK_QUEUE_ARN: arn.format("sqs", "nudge-work"),
        names.ENV_JOBS_QUEUE_URL: f"https://sqs.{_REGION}.amazonaws.com/{_ACCOUNT}/nudge-jobs",
        names.ENV_CAMPAIGNS_QUEUE_URL: f"https://sqs.{_REGION}.amazonaws.com/{_ACCOUNT}/nudge-campaigns",
        names.ENV_SCHEDULER_ROLE_ARN: f"arn:aws:iam::{_ACCOUNT}:role/nudge-scheduler",
        names.ENV_SCHEDULER_DLQ_ARN: arn.format("sqs", "nudge-dlq"),
        names.ENV_FROM_ADDRESS: "Linen & Clay <hello@shop.example>",
        names.ENV_SES_CONFIGURATION_SET: "nudge-dev",
        names.ENV_POSTAL_ADDRESS: "12 Harbour Street, Portland, ME 04101, USA",
        names.ENV_UNSUBSCRIBE_MAILTO: "unsubscribe@shop.example",
        names.ENV_UTM_PARAMS: "utm_source=nudge&utm_medium=email",
        names.ENV_SES_MAX_SEND_RATE: "14",
        names.ENV_EVENT_RETENTION_DAYS: "90",
        names.ENV_SMS_HELP_TEXT: "Reply STOP to opt out, START to opt back in. Msg&data rates may apply.",
        # As a stack deployed with WhatsApp configured (the sender's client is made at the first send only).
        names.ENV_WHATSAPP_PHONE_NUMBER_ID: "phone-number-id-0123456789abcdef0123456789abcdef",
        names.ENV_WHATSAPP_META_API_VERSION: "v20.0",
        # The bundle's copies are /var/task/…; the sources are the same files.
        names.ENV_FLOWS_DIR: str(root / "flows"),
        names.ENV_TEMPLATES_DIR: str(root / "templates"),
        names.ENV_SEGMENTS_DIR: str(root / "segments"),
        names.ENV_AUDIENCES_DIR: str(root / "audiences"),
        names.ENV_AUDIENCE_SECRETS_ARN: arn.format("secretsmanager", "secret:nudge-audiences-AbCdEf"),
        names.ENV_DEFAULT_TIMEZONE: "UTC",
        names.ENV_SIGNING_SECRET_ARN: arn.format("secretsmanager", "secret:nudge-signing-AbCdEf"),
        names.ENV_WEBHOOK_SECRETS_ARN: arn.format("secretsmanager", "secret:nudge-webhooks-AbCdEf"),
        names.ENV_PUBLIC_BASE_URL: "https://api.shop.example",
        names.ENV_UNSUBSCRIBE_SECRET_ARN: arn.format("secretsmanager", "secret:nudge-unsubscribe-AbCdEf"),
        names.ENV_UNSUBSCRIBE_BASE_URL: "https://api.shop.example/v1/unsubscribe",
        names.ENV_PER_FLOW_METRICS: "false",
        "POWERTOOLS_SERVICE_NAME": names.SERVICE,
        "POWERTOOLS_METRICS_NAMESPACE": names.SERVICE,
        "LOG_LEVEL": "INFO",
        # Lambda's own
        "AWS_REGION": _REGION,
        "AWS_DEFAULT_REGION": _REGION,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_ACCESS_KEY_ID": "ASIABENCHCOLDSTART00",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "AWS_ENDPOINT_URL": _CLOSED,
        "AWS_EC2_METADATA_DISABLED": "true",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
    }


_WRITE_CATALOG = (
    "import sys; from pathlib import Path; from nudge import compiled_catalog; "
    "compiled_catalog.write(Path(sys.argv[1]), Path(sys.argv[2]))"
)


@contextmanager
def bundled_catalog(
    root: Path, environment: Mapping[str, str], functions_dir: Path | None = None
) -> Iterator[dict[str, str]]:
    """The environment with flows/ and segments/ laid out as in the bundle: copies, with the compiled catalog the
    bundler writes beside them (ADR 0020, Decision 9), made by the measured package's own code (none when
    that package has no `nudge.compiled_catalog`, as before it existed)."""
    package_root = functions_dir or Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="nudge-bundle-") as scratch:
        flows = Path(scratch) / Path(names.BUNDLED_FLOWS_DIR).name
        segments = Path(scratch) / Path(names.BUNDLED_SEGMENTS_DIR).name
        shutil.copytree(root / "flows", flows)
        shutil.copytree(root / "segments", segments)
        if (package_root / "nudge" / "compiled_catalog.py").is_file():
            env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(package_root)}
            command = [sys.executable, "-c", _WRITE_CATALOG, str(flows), str(segments)]
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=120)
        yield {**environment, names.ENV_FLOWS_DIR: str(flows), names.ENV_SEGMENTS_DIR: str(segments)}


@dataclass(frozen=True)
class Probe:
    import_s: float  # CPU seconds
    build_s: float
    wall_s: float  # import + build (+ client), wall clock
    modules: int
    client_s: float = 0.0  # the DynamoDB client its first request makes (the baseline's client is in build_s)

    @property
    def total_s(self) -> float:
        return self.import_s + self.build_s


def probe(
    target: str,
    environment: Mapping[str, str],
    *,
    python: str = sys.executable,
    bytecode: bool = True,
    functions_dir: Path | None = None,
) -> Probe:
    """One fresh interpreter: import `target` (a handler module, or "boto3") and build what it builds.

    Without `bytecode`, every module is compiled from source, as in Lambda when the bundle holds no .pyc:
    the bytecode cache is looked for in an empty directory, and nothing is written. `functions_dir`: the
    `functions/` directory whose `nudge` package is measured (default: this one; another checkout's, to
    compare before and after a change).
    """
    package_root = functions_dir or Path(__file__).resolve().parents[2]
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(package_root)}
    env.update(environment)
    if not bytecode:
        env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=tempfile.mkdtemp(prefix="nudge-no-pyc-"))
    done = subprocess.run(
        [python, "-c", PROBE, target], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"{target}: the cold-start probe failed:\n{done.stderr.strip()[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return Probe(figures["import"], figures["build"], figures["wall"], figures["modules"], figures.get("client", 0.0))


def _median(probes: list[Probe]) -> Probe:
    return Probe(
        statistics.median(p.import_s for p in probes),
        statistics.median(p.build_s for p in probes),
        statistics.median(p.wall_s for p in probes),
        int(statistics.median(p.modules for p in probes)),
        statistics.median(p.client_s for p in probes),
    )


def cold_starts(
    root: Path,
    *,
    runs: int = 5,
    only: str | None = None,
    bytecode: bool = True,
    functions_dir: Path | None = None,
    progress: Callable[[str], object] | None = None,
) -> Iterator[str]:
    """Lines of figures: the boto3 baseline, then each function's import, build, total and ratio."""
    environment = lambda_environment(root)
    functions = [(label, handler) for label, handler in FUNCTIONS if only in (None, label)]
    if not functions:
        raise ValueError(f"no function {only!r}; one of {', '.join(label for label, _ in FUNCTIONS)}")
    # Each function's probe right after a probe of the baseline, and its ratios the median of those pairs'
    # ratios: on a shared machine the speed drifts over a run, and a pair taken back to back sees the same
    # machine (the medians of two separate series swung ±20 % from one run to the next; ADR 0020, Decision 12).
    targets = [handler.rsplit(".", 1)[0] for _, handler in functions]
    found: dict[str, list[Probe]] = {"boto3": [], **{target: [] for target in targets}}
    paired: dict[str, list[Probe]] = {target: [] for target in targets}  # the baseline probe before each
    with bundled_catalog(root, environment, functions_dir) as bundled:
        for run in range(runs):
            for target in targets:
                if progress is not None:
                    progress(f"cold start {run + 1}/{runs}: {target}")
                before = probe("boto3", bundled, bytecode=bytecode)
                found["boto3"].append(before)
                paired[target].append(before)
                found[target].append(probe(target, bundled, bytecode=bytecode, functions_dir=functions_dir))
    cache = "a warm bytecode cache" if bytecode else "no bytecode cache (every module compiled, as in Lambda)"
    yield f"cold start: {runs} fresh interpreters each, Lambda-like environment, no network, {cache}"
    yield "  CPU seconds, medians (import, build, total), then wall seconds; each function's probe follows one of"
    yield "  boto3 + a client, and its ratios (× boto3, of the total) are the medians of those pairs' ratios"
    yield "  + ddb: the DynamoDB client the function's first request makes (pynamodb makes it at the first call,"
    yield "  so build has not), and the ratio with it: boto3's side has its one client in build"
    yield (
        f"  {'function':<16} {'import':>8} {'build':>8} {'total':>8} {'× boto3':>8} {'+ ddb':>8} {'× w/ ddb':>9} "
        f"{'wall':>8} {'modules':>8}"
    )
    for label, target in [("boto3+client", "boto3"), *zip((label for label, _ in functions), targets, strict=True)]:
        median = _median(found[target])
        bases = paired.get(target, found[target])
        ratio = statistics.median(p.total_s / b.total_s for p, b in zip(found[target], bases, strict=True))
        with_client = statistics.median(
            (p.total_s + p.client_s) / b.total_s for p, b in zip(found[target], bases, strict=True)
        )
        yield (
            f"  {label:<16} {median.import_s:>7.3f}s {median.build_s:>7.3f}s {median.total_s:>7.3f}s "
            f"{ratio:>8.2f} {median.client_s:>7.3f}s {with_client:>9.2f} {median.wall_s:>7.3f}s {median.modules:>8}"
        )
