"""CDK entry point: `python infra/app.py` synthesizes the nudge stack into cdk.out/, cdk-nag included."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# `python infra/app.py` puts infra/ first on sys.path, where infra/constructs/ would shadow the `constructs`
# library: import this app as the `infra` package from the repository root instead.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "infra"]
sys.path.insert(0, str(ROOT))

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from infra.config import NudgeConfig, require_postal_address  # noqa: E402
from infra.stack import NudgeStack  # noqa: E402


def build_app(
    context: dict[str, Any] | None = None, *, nag: bool = True, **app_props: Any
) -> tuple[cdk.App, NudgeStack]:
    """The app with its one stack; cdk-nag's AwsSolutions checks run at synth unless nag is False."""
    # The CLI passes CDK_OUTDIR; run directly, the app writes to ./cdk.out like `cdk synth` would.
    app_props.setdefault("outdir", os.environ.get("CDK_OUTDIR") or str(ROOT / "cdk.out"))
    app = cdk.App(context=context, **app_props)
    config = NudgeConfig.from_context(app.node.try_get_context)
    require_postal_address(config, ROOT / "flows", ROOT / "templates")
    stack = NudgeStack(
        app,
        config.stack_name,
        config=config,
        description=f"nudge lifecycle messaging ({config.stage})",
        # Account and region from the CLI's credentials when deploying; environment-agnostic when offline.
        env=cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")),
    )
    audiences = sorted(path.stem for path in (ROOT / "audiences").glob("*.yaml"))
    if audiences and not config.ad_audiences:
        cdk.Annotations.of(stack).add_warning_v2(
            "nudge:adAudiences",
            f"audiences/ holds {', '.join(audiences)} but adAudiences is false: the stack has no secret for the "
            "ad platforms' tokens, so their uploads fail (recorded in nudge audiences report) until you deploy "
            "with -c adAudiences=true and fill it in (docs/audiences.md)",
        )
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


if __name__ == "__main__":
    build_app()[0].synth()
