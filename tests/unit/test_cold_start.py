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

import pytest

from nudge.local.cold_start import FUNCTIONS, lambda_environment
from tests.conftest import ROOT

_PROBE = """
import json, sys, importlib
module = importlib.import_module(sys.argv[1])
module.warm()
from nudge import wiring
print(json.dumps({"modules": sorted(sys.modules), "built": sorted(wiring.current().built())}))
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
    "unsubscribe": {"store", "_catalog", "flows", "preferences"},
    "sms-inbound": {"store", "sms_keywords"},  # SNS at the first START or HELP, the brand kit at the first HELP
    "whatsapp-inbound": {"store", "refs", "whatsapp_inbound"},
    "missed-call": {"refs", "missed_calls"},
    "sweep": ENGINE | {"daily", "jobs"},
}
# Where nothing renders a message, neither the renderer nor its CSS inliner is loaded; and Jinja only where
# flows are read (their branch conditions are Jinja expressions, compiled when a flow is validated).
RENDERS = {"step"}
READS_FLOWS = {label for label, built in BUILDS.items() if "_catalog" in built}
NEVER = {"typer", "rich", "moto", "aws_cdk", "pytest", "nudge.cli", "nudge.local"}
# Libraries no function loads at a cold start: botocore clients on one session instead of boto3 (and its
# s3transfer); nudge.handlers.logs, .rest and flow_metrics instead of Powertools (whose event handler brought
# asyncio). ADR 0020.
NEVER_COLD = {"boto3", "s3transfer", "aws_lambda_powertools", "asyncio"}
# PyYAML only where the catalog or the brand kit is read; phonenumbers only where a number is read at once.
PHONES = {"webhooks", "missed-call"}  # storefront payloads carry phones; a missed call is a number
# Modules loaded by import + warm(), as measured for ADR 0020 (docs/benchmarks.md, "after the lean slice"), with
# ~2 % headroom, plus the store's 12 role modules (ADR 0020 Decision 5: within noise, docs/benchmarks.md): what
# pulls a library into a cold start fails here. Raise one only with its figure in the docs.
MODULE_LIMITS = {
    "ingest": 547,
    "step": 542,
    "webhooks": 612,
    "api": 552,
    "subscribe": 552,
    "feedback": 472,
    "unsubscribe": 532,
    "sms-inbound": 472,
    "whatsapp-inbound": 477,
    "missed-call": 537,
    "sweep": 547,
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


def _probe(handler_module: str) -> dict[str, list[str]]:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT / "functions"), **lambda_environment(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, handler_module], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize(("label", "handler"), FUNCTIONS, ids=[label for label, _ in FUNCTIONS])
def test_each_function_builds_only_what_its_handler_uses(label: str, handler: str) -> None:
    found = _probe(handler.rsplit(".", 1)[0])
    modules = set(found["modules"])

    assert set(found["built"]) == BUILDS[label]
    loaded = {name for name in modules if name in NEVER | _cli_only_modules() or name.split(".")[0] in NEVER}
    assert loaded == set(), f"{label} loads modules only the CLI uses"
    assert {"nudge.cli", "nudge.local"}.isdisjoint({".".join(m.split(".")[:2]) for m in modules})
    if label not in RENDERS:
        assert {"css_inline", "nudge.templating"}.isdisjoint(modules), f"{label} loads the renderer"
    if label not in READS_FLOWS:
        assert {"jinja2", "nudge.domain.flows"}.isdisjoint(modules), f"{label} loads the flows"
    if label not in PHONES:  # e.g. SES events name no phone number: phonenumbers' metadata would be dead weight
        assert "phonenumbers" not in modules, f"{label} loads phonenumbers"
    if label not in READS_FLOWS:  # the brand kit is read at the first message that names it, not at warm()
        assert "yaml" not in modules, f"{label} loads PyYAML"
    assert {name.split(".")[0] for name in modules}.isdisjoint(NEVER_COLD), f"{label} loads boto3 or Powertools"
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
