"""The layering rules, checked on the source: the domain stays pure, handlers stay lean."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "functions" / "nudge"
FORBIDDEN_IN_CORE = {"boto3", "botocore", "pynamodb", "moto", "aws_lambda_powertools", "typer", "rich"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("layer", ["domain", "services", "integrations"])
def test_domain_services_and_integrations_import_no_aws_or_cli_package(layer: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN_IN_CORE)
        for path in (PACKAGE / layer).rglob("*.py")
        if _imports(path) & FORBIDDEN_IN_CORE
    }
    assert offenders == {}


def test_domain_imports_nothing_else_of_nudge() -> None:
    for path in (PACKAGE / "domain").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nudge."):
                assert node.module.startswith("nudge.domain"), f"{path.name} imports {node.module}"


def _modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return {name.split(".")[0] for name in out.split()}


def test_importing_the_engine_loads_no_aws_sdk() -> None:
    loaded = _modules_loaded_by("import nudge.domain.engine, nudge.services.ingest, nudge.services.feedback")
    assert not loaded & {"boto3", "botocore", "pynamodb"}


@pytest.mark.parametrize(
    "handler",
    [
        "nudge.handlers.ingest",
        "nudge.handlers.step",
        "nudge.handlers.webhooks",
        "nudge.handlers.api",
        "nudge.handlers.subscribe",
        "nudge.handlers.feedback",
        "nudge.handlers.unsubscribe",
        "nudge.handlers.sms_inbound",
        "nudge.handlers.whatsapp_inbound",
        "nudge.handlers.calls",
        "nudge.handlers.sweep",
    ],
)
def test_handlers_load_no_cli_or_test_package(handler: str) -> None:
    loaded = _modules_loaded_by(f"import {handler}")
    assert not loaded & {"typer", "rich", "moto", "aws_cdk", "pytest"}
