"""Each Lambda function builds only what its handler uses, and imports only what that needs (ADR 0020).

Checked the way `nudge bench --cold-start` measures: a fresh interpreter with the stack's environment and
every AWS endpoint on a closed port (a build that called AWS would fail here), `import` the handler, then
its `warm()`: what the first request builds.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from nudge.local.cold_start import FUNCTIONS, bundled_catalog, lambda_environment
from tests.conftest import ROOT

_PROBE = """
import json, sys, importlib
module = importlib.import_module(sys.argv[1])
module.warm()
import gc
paused = not gc.isenabled()  # Lambda's cold start pauses the collector until the first invocation ends
from nudge import wiring
validators = []  # the records whose validator was built (the catalog's should not be: it comes compiled)
checks = []  # the records whose check (compiled, or pydantic's) was built
validation = sys.modules.get("nudge.domain.validation")
if validation is not None:
    validators = [getattr(kind, "__qualname__", repr(kind)) for kind in validation._ADAPTERS]
    checks = [kind.__qualname__ for kind in validation._CHECKS]
print(json.dumps({
    "modules": sorted(sys.modules), "built": sorted(wiring.current().built()), "validators": sorted(set(validators)),
    "checks": sorted(checks), "paused": paused,
}))
"""

# What each function's first request builds: adapters and services, nothing else.
# Request paths start runs but never send (ADR 0007): no SES or SNS client, no renderer.
ENGINE = {"store", "scheduler", "queue", "limiter", "sleeper", "_catalog", "flows", "throttle", "policy", "runs"}
ENGINE |= {"ingest"}
BUILDS = {
    "ingest": ENGINE,
    "step": ENGINE - {"ingest"},  # the renderer and the SES client are made at the first send
    "webhooks": ENGINE | {"refs", "privacy_requests", "privacy", "webhooks"},
    "api": ENGINE | {"api_keys", "keys", "refs", "segment"},
    "subscribe": ENGINE | {"request_limiter", "api_keys", "keys", "pending_signups", "refs", "subscribe"},
    "feedback": {"store", "feedback"},
    "unsubscribe": {"store", "preferences"},  # the topics come from the compiled catalog's summary, at a page
    "sms-inbound": {"store", "sms_keywords"},  # SNS at the first START or HELP, the brand kit at the first HELP
    "whatsapp-inbound": {"store", "refs", "whatsapp_inbound"},
    "missed-call": {"refs", "missed_calls"},
    "sweep": ENGINE | {"daily", "jobs"},
}
# Where nothing renders a message, neither the renderer nor its CSS inliner is loaded.
RENDERS = {"step"}
READS_FLOWS = {label for label, built in BUILDS.items() if "_catalog" in built}
NEVER = {"typer", "rich", "moto", "aws_cdk", "pytest", "nudge.cli", "nudge.local"}
# Libraries no function loads at a cold start: botocore clients on one session instead of boto3 (and its
# s3transfer); nudge.handlers.logs, .rest and flow_metrics instead of Powertools (whose event handler brought
# asyncio). ADR 0020. Since Decision 9 neither PyYAML nor Jinja: the catalog comes compiled from the bundle
# (no YAML parsed, no validator built: "validators" below), the flows' expressions compile at their first
# evaluation, and the brand kit is read at the first message that needs it.
NEVER_COLD = {"boto3", "s3transfer", "aws_lambda_powertools", "asyncio", "yaml", "jinja2"}
# pydantic only where a request body is validated: the flows, segments and guardrails are plain records,
# unpickled from the compiled catalog (ADR 0020, Decisions 9 and 11).
NO_PYDANTIC = {"feedback", "unsubscribe", "sms-inbound", "whatsapp-inbound", "missed-call", "step", "sweep"}
# Since Decision 13 the request records are checked by the bundle's compiled checks, with pydantic_core alone.
NO_PYDANTIC |= {"ingest", "subscribe", "webhooks"}
# And since the Segment-style calls are records too (Open: other members kept in `extra`), the api.
NO_PYDANTIC |= {"api"}
# The bodies a function's first request checks: their checks are built at its cold start (warm()); a function
# that checks no body does not even load pydantic_core (the storefront webhooks read their payloads as dicts).
CHECKS = {
    "ingest": ["EventIn"],
    "api": ["AliasCall", "IdentifyCall", "TrackCall"],
    "subscribe": ["SubscribeIn"],
}
# phonenumbers only where a number is read at once.
PHONES = {"webhooks", "missed-call"}  # storefront payloads carry phones; a missed call is a number
# Modules loaded by import + warm(), as measured for ADR 0020 Decision 9 (docs/benchmarks.md, "the catalog
# compiled"), with ~2 % headroom, plus the store's 12 role modules (ADR 0020 Decision 5, within noise): what
# pulls a library into a cold start fails here. Raise one only with its figure in the docs.
MODULE_LIMITS = {
    "ingest": 502,
    "step": 447,  # 438 since Decision 11: the catalog's records are plain dataclasses, no pydantic
    "webhooks": 519,  # 509 since Decision 14: no pydantic_core where no body is checked
    "api": 462,  # 453 since Decision 14: the Segment calls are records, no pydantic
    "subscribe": 507,
    "feedback": 417,
    "unsubscribe": 420,  # 411 since the preference page reads the catalog's summary, not the catalog
    "sms-inbound": 417,
    "whatsapp-inbound": 422,
    "missed-call": 482,
    "sweep": 453,  # 444 since Decision 11
}


def _cli_only_modules() -> set[str]:
    """infra/bundling.py's CLI_ONLY (the modules the bundle leaves out), read without importing the CDK."""
    tree = ast.parse((ROOT / "infra" / "bundling.py").read_text(encoding="utf-8"))
    (value,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "CLI_ONLY" for t in node.targets)
    ]
    names = ast.literal_eval(value)
    return {f"nudge.{name.removesuffix('.py')}" for name in names if not name.endswith(".j2")}


@pytest.fixture(scope="module")
def bundled() -> Iterator[dict[str, str]]:
    """The stack's environment over flows/ and segments/ laid out as in the bundle, compiled catalog included."""
    with bundled_catalog(ROOT, lambda_environment(ROOT)) as environment:
        yield environment


def _probe(handler_module: str, environment: dict[str, str]) -> dict[str, list[str]]:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT / "functions"), **environment}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, handler_module], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize(("label", "handler"), FUNCTIONS, ids=[label for label, _ in FUNCTIONS])
def test_each_function_builds_only_what_its_handler_uses(label: str, handler: str, bundled: dict[str, str]) -> None:
    found = _probe(handler.rsplit(".", 1)[0], bundled)
    modules = set(found["modules"])

    assert set(found["built"]) == BUILDS[label]
    assert found["paused"] is True  # ADR 0020 Decision 10: until the first invocation's end
    loaded = {name for name in modules if name in NEVER | _cli_only_modules() or name.split(".")[0] in NEVER}
    assert loaded == set(), f"{label} loads modules only the CLI uses"
    assert {"nudge.cli", "nudge.local"}.isdisjoint({".".join(m.split(".")[:2]) for m in modules})
    if label not in RENDERS:
        assert {"css_inline", "nudge.templating"}.isdisjoint(modules), f"{label} loads the renderer"
    if label not in READS_FLOWS:
        assert "nudge.domain.flows" not in modules, f"{label} loads the flows"
    if label not in PHONES:  # e.g. SES events name no phone number: phonenumbers' metadata would be dead weight
        assert "phonenumbers" not in modules, f"{label} loads phonenumbers"
    assert {name.split(".")[0] for name in modules}.isdisjoint(NEVER_COLD), f"{label} loads {NEVER_COLD & modules}"
    if label in NO_PYDANTIC:
        assert "pydantic" not in modules, f"{label} loads pydantic"
    assert found["checks"] == CHECKS.get(label, [])
    if label not in CHECKS:
        assert "pydantic_core" not in modules, f"{label} loads pydantic_core"
    # The catalog's records (flows, guardrails, segments, campaigns, the brand kit) are validated only when
    # something reads a file or a campaign: the compiled catalog is unpickled, so a cold start builds none.
    assert found["validators"] == [], f"{label} builds pydantic validators at cold start"
    assert len(modules) <= MODULE_LIMITS[label], f"{label} loads {len(modules)} modules"


def test_the_bench_covers_every_function_the_stack_deploys() -> None:
    tree = ast.parse((ROOT / "infra" / "constructs" / "functions.py").read_text(encoding="utf-8"))
    (value, *optional) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) in ("FUNCTIONS", "WHATSAPP_FUNCTION", "CONNECT_FUNCTION") for t in node.targets)
    ]
    assert isinstance(value, ast.Tuple) and len(optional) == 2
    # names.<X>_HANDLER of each, and of the ones deployed only when configured (WhatsApp, Connect)
    deployed = {element.elts[2].attr for element in value.elts}  # type: ignore[attr-defined]
    deployed |= {one.elts[2].attr for one in optional}  # type: ignore[attr-defined]
    from nudge import names

    assert {getattr(names, name) for name in deployed} == {handler for _, handler in FUNCTIONS}


def test_the_bench_environment_names_every_variable_the_stack_sets() -> None:
    from nudge import names

    stack_sets = {value for key, value in vars(names).items() if key.startswith("ENV_")}
    assert stack_sets <= set(lambda_environment(ROOT))


@pytest.mark.parametrize(("label", "handler"), FUNCTIONS, ids=[label for label, _ in FUNCTIONS])
def test_each_handler_ends_the_cold_start_through_the_loggers_wrapper(label: str, handler: str) -> None:
    """The logger's wrapper is the outermost of every handler and is given the handler's own warm(): it builds
    and resumes the collector the cold start paused (ADR 0020 Decision 10). A handler without it would run
    its whole life with the collector paused."""
    import importlib

    from nudge.handlers import logs

    module_name, attribute = handler.rsplit(".", 1)
    module = importlib.import_module(module_name)
    entry = getattr(module, attribute)
    assert entry.__code__.co_filename == logs.__file__, f"{label}: {handler} is not wrapped by the logger first"
    closure = dict(
        zip(entry.__code__.co_freevars, [cell.cell_contents for cell in entry.__closure__ or ()], strict=True)
    )
    assert closure.get("cold_start") is module.warm, f"{label}: the logger's wrapper is not given {module_name}.warm"


_CHECK_PROBE = """
import json, sys
from nudge import compiled_catalog
from nudge.handlers import ingest
opened = []  # the artefact read and its digest checked, each time
_open = compiled_catalog._open
compiled_catalog._open = lambda *args: opened.append(1) or _open(*args)
ingest.warm()
from nudge.domain.validation import ValidationError, validate
from nudge.services.inputs import EventIn
from nudge.services.subscribe import SubscribeIn
event = validate(EventIn, {"id": "e1", "type": "checkout_started", "contact": {"email": " Jo@Example.com "}})
refused = []
for kind, body in ((EventIn, {"id": "", "type": "Bad", "contact": {}, "zz": 1}), (SubscribeIn, {"email": 3})):
    try:
        validate(kind, body)
    except ValidationError as exc:
        refused.append([[list(e["loc"]), e["type"]] for e in exc.errors()])
# pydantic_core imports pydantic's package (its lazy __init__, ~5 ms) to name the version in an error's URL;
# what must not load is pydantic's schema machinery (what a validator is built with).
heavy = ("pydantic.main", "pydantic.type_adapter", "pydantic.fields", "pydantic._internal._generate_schema")
machinery = sorted(m for m in sys.modules if m.startswith(heavy))
found = {"email": event.contact.email, "refused": refused, "pydantic": machinery, "opened": len(opened)}
print(json.dumps(found))
"""


def test_a_function_checks_requests_with_the_bundles_compiled_checks_and_no_pydantic(
    bundled: dict[str, str],
) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT / "functions"), **bundled}
    done = subprocess.run([sys.executable, "-c", _CHECK_PROBE], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["pydantic"] == []  # pydantic_core checked them, from the compiled catalog's schemas
    assert found["email"] == "jo@example.com"  # stripped and normalized, as pydantic's own check does
    assert found["opened"] == 1  # the checks came with the catalog: the artefact is read and hashed once
    # The same refusals as pydantic's (tests/unit/test_validation.py compares the two ways member by member).
    assert found["refused"] == [
        [
            [["id"], "string_too_short"],
            [["type"], "value_error"],
            [["contact"], "value_error"],
            [["zz"], "unexpected_keyword_argument"],
        ],
        [[["email"], "string_type"]],
    ]


_CAMPAIGN_PROBE = """
import json, sys
import yaml
from nudge.handlers import step
step.warm()
from nudge.domain.campaigns import Campaign
from nudge.domain.validation import dump, validate
campaign = validate(Campaign, yaml.safe_load(open(sys.argv[1])))
flow = campaign.as_flow()
document = dump(campaign, mode="json", exclude_none=True)
found = {"flow": flow.id, "steps": len(flow.steps), "id": document["id"], "pydantic": "pydantic" in sys.modules}
print(json.dumps(found))
"""


def test_a_campaigns_wake_up_in_step_reads_its_document_and_flow_without_pydantic(bundled: dict[str, str]) -> None:
    """A campaign's document and its one-off flow are checked by the compiled checks (Campaign and Flow are in
    compiled_catalog.CHECKED): the step function loads no pydantic for a campaign either."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT / "functions"), **bundled}
    sample = ROOT / "campaigns" / "november_newsletter.yaml"
    command = [sys.executable, "-c", _CAMPAIGN_PROBE, str(sample)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"flow": "campaign.november_newsletter", "steps": 1, "id": "november_newsletter", "pydantic": False}
