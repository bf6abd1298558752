"""Builds the Lambda bundle without Docker: the nudge package, flows, templates and pip-installed wheels."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii

from nudge import compiled_catalog, names
from nudge.templating import compile_templates

ROOT = Path(__file__).resolve().parents[1]
PYTHON_VERSION = "3.12"
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34): manylinux2014 and manylinux_2_28 wheels both load.
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
# Packages that belong to the CLI, the tests or the CDK app. None of them may ever reach a Lambda bundle.
NEVER_BUNDLED = frozenset({"typer", "rich", "moto", "aws-cdk-lib", "constructs", "cdk-nag", "pytest"})
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".DS_Store")
# Modules of the nudge package only the CLI and the local runner use: no handler imports them (a test checks
# that every handler imports from a bundle without them), so they stay out of the code Lambda loads.
CLI_ONLY = (
    "cli",
    "local",
    "report_html.py",
    "report.html.j2",
    "report_text.py",
    "flow_layout.py",
    "flow_tools.py",
    "backtest_html.py",
    "backtest.html.j2",
)
# Data of runtime packages nudge never reads: phonenumbers' geocoder (~40 MB) and carrier names (~2.4 MB).
# nudge uses its metadata and time-zone data only (nudge.domain.sms, nudge.domain.timezones).
PRUNED = ("phonenumbers/geodata", "phonenumbers/carrierdata")


def _distribution(requirement: str) -> str:
    """The normalized distribution name of a requirement string: 'aws-lambda-powertools[parser]>=3' -> ..."""
    name = requirement
    for stop in "[<>=!~;@ ":
        name = name.split(stop, 1)[0]
    return name.strip().lower().replace("_", "-").replace(".", "-")


def runtime_dependencies(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """pyproject's [project].dependencies: what the functions need, defined once, there."""
    dependencies = list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"])
    leaked = sorted({_distribution(d) for d in dependencies} & NEVER_BUNDLED)
    if leaked:
        raise ValueError(f"{pyproject}: [project].dependencies must not list {', '.join(leaked)}")
    return dependencies


def locked_constraints(lock: Path = ROOT / "uv.lock") -> list[str]:
    """`name==version` for every package uv.lock pins once, so the bundle matches what the tests ran on."""
    if not lock.is_file():
        return []
    packages = tomllib.loads(lock.read_text(encoding="utf-8")).get("package", [])
    versions: dict[str, set[str]] = {}
    for package in packages:
        source = package.get("source", {})
        if "version" in package and ("registry" in source or not source):
            versions.setdefault(_distribution(package["name"]), set()).add(package["version"])
    # A package locked at two versions (one per Python-version fork) is left to pip's resolver.
    return sorted(f"{name}=={found.pop()}" for name, found in versions.items() if len(found) == 1)


def _pip() -> list[str]:
    """A pip that can install for another platform; uv-made venvs have none, so fall back to PATH."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for candidate in ("pip3", "pip"):
        if found := shutil.which(candidate):
            return [found]
    raise RuntimeError("bundling needs pip (python -m pip, pip3 or pip on PATH)")


def pip_install_command(target: Path, dependencies: Sequence[str], constraints: Path | None) -> list[str]:
    """The pip command that installs Linux/arm64 CPython 3.12 wheels (never sdists) into target."""
    command = [*_pip(), "install", "--target", str(target), "--implementation", "cp"]
    command += ["--python-version", PYTHON_VERSION, "--only-binary=:all:"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    # No .pyc: they would be compiled by this machine's Python (useless on 3.12) and differ on every build.
    command += ["--no-compile", "--disable-pip-version-check", "--quiet"]
    # The installing interpreter's own packages are irrelevant to a --target bundle: skip that conflict report.
    command += ["--no-warn-conflicts", "--root-user-action=ignore"]
    if constraints is not None:
        command += ["--constraint", str(constraints)]
    return [*command, *dependencies]


def compile_command(python: str, target: Path) -> list[str]:
    """Compile every module of the bundle with Lambda's Python version, so a cold start loads bytecode
    instead of compiling ~750 modules (ADR 0020). Hash-checked pycs without the source check: the asset's
    files carry no meaningful mtimes, and the bundle is read-only in Lambda."""
    # compile_dir, not `-m compileall`: a module that does not compile (a vendored test file in another
    # Python's syntax) stays source, as every module is today, instead of failing the bundle.
    script = (
        "import compileall, py_compile, sys; compileall.compile_dir(sys.argv[1], quiet=1, workers=0, "
        "invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)"
    )
    return [python, "-c", script, str(target)]


@jsii.implements(cdk.ILocalBundling)
class LocalPythonBundler:
    """Implements cdk.ILocalBundling: copy sources, pip-install wheels; never needs Docker."""

    def __init__(
        self,
        root: Path = ROOT,
        *,
        dependencies: Sequence[str] | None = None,
        constraints: Sequence[str] | None = None,
        run: Callable[[list[str]], Any] | None = None,
        excluded: Sequence[str] = CLI_ONLY,
        compiler: str | None = None,
    ) -> None:
        """`compiler`: a CPython 3.12 to compile the bundle's bytecode with (None: ship source only)."""
        self.root = root
        self.compiler = compiler
        self.excluded = tuple(excluded)
        self.dependencies = list(
            runtime_dependencies(root / "pyproject.toml") if dependencies is None else dependencies
        )
        self.constraints = list(locked_constraints(root / "uv.lock") if constraints is None else constraints)
        self._run = run or (lambda command: subprocess.run(command, check=True))

    def try_bundle(self, output_dir: str, options: Any = None) -> bool:
        """Fill output_dir with the bundle; return True so CDK never falls back to Docker."""
        out = Path(output_dir)
        package = shutil.ignore_patterns("__pycache__", "*.pyc", ".DS_Store", *self.excluded)
        shutil.copytree(self.root / "functions" / "nudge", out / "nudge", ignore=package, dirs_exist_ok=True)
        # Handlers read these from names.BUNDLED_*_DIR (/var/task/flows, templates, segments, audiences).
        for source, bundled in (
            ("flows", names.BUNDLED_FLOWS_DIR),
            ("templates", names.BUNDLED_TEMPLATES_DIR),
            ("segments", names.BUNDLED_SEGMENTS_DIR),
            ("audiences", names.BUNDLED_AUDIENCES_DIR),
        ):
            # MJML sources are compiled below: the functions get HTML templates and never the compiler.
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".DS_Store", "*.mjml")
            shutil.copytree(self.root / source, out / Path(bundled).name, ignore=ignore, dirs_exist_ok=True)
        compile_templates(self.root / "templates", out / Path(names.BUNDLED_TEMPLATES_DIR).name)
        # The catalog validated now (a bad flow fails the build as `nudge validate` would) and shipped compiled,
        # keyed to the bundle's own files and code: a cold start reads it without PyYAML or pydantic's
        # validation (ADR 0020, Decision 9).
        compiled_catalog.write(
            out / Path(names.BUNDLED_FLOWS_DIR).name, out / Path(names.BUNDLED_SEGMENTS_DIR).name, out / "nudge"
        )
        with tempfile.TemporaryDirectory() as scratch:
            constraints = None
            if self.constraints:
                constraints = Path(scratch) / "constraints.txt"
                constraints.write_text("\n".join(self.constraints) + "\n", encoding="utf-8")
            self._run(pip_install_command(out, self.dependencies, constraints))
        for pruned in PRUNED:
            shutil.rmtree(out / pruned, ignore_errors=True)
        if self.compiler:
            self._run(compile_command(self.compiler, out))
        return True


def lambda_code(root: Path = ROOT) -> cdk.aws_lambda.Code:
    """One asset for every function: the bundle's hash is of its content, so flow or template edits redeploy."""
    from aws_cdk import aws_lambda

    return aws_lambda.Code.from_asset(
        str(root / "functions"),
        asset_hash_type=cdk.AssetHashType.OUTPUT,
        bundling=cdk.BundlingOptions(
            # Required by the API; never used, because the local bundler always succeeds.
            image=cdk.DockerImage.from_registry("public.ecr.aws/sam/build-python3.12"),
            # Bytecode too where Lambda's Python is at hand (else source only, compiled at each cold start).
            # jsii hands try_bundle the options struct as one positional argument, not the keywords its stub
            # declares; the bundler keeps the signature jsii calls.
            local=LocalPythonBundler(root, compiler=shutil.which(f"python{PYTHON_VERSION}")),  # type: ignore[arg-type]
        ),
    )
