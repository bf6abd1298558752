"""`nudge campaign validate|send`: campaigns/*.yaml checked like flows, and a campaign played on moto."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

campaign_app = typer.Typer(help="Campaigns: one send to an audience (docs/campaigns.md).", no_args_is_help=True)


def check_campaigns(console: Console, targets: list[Path], templates: Path, segments_dir: Path) -> tuple[int, int]:
    """Print ✓ or each problem per campaign; (campaigns checked, problems)."""
    from nudge.campaign_files import campaign_problems, load_campaign, load_campaigns
    from nudge.cli.checking import report_checks
    from nudge.domain.campaigns import Campaign
    from nudge.flow_files import load_segments
    from nudge.templating import TemplateRenderer

    renderer = TemplateRenderer(templates)
    segments = load_segments(segments_dir)

    def check(campaign: Campaign) -> tuple[str, list[str], str]:
        channels = " and ".join(c for c in ("email", "sms") if getattr(campaign, c) is not None)
        return f"campaign {campaign.id}", campaign_problems(campaign, renderer, segments), channels

    return report_checks(
        console, targets, lambda target: load_campaigns(target) if target.is_dir() else [load_campaign(target)], check
    )


@campaign_app.command("validate")
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Campaign files or directories (campaigns/).")] = None,
    templates: Annotated[Path, typer.Option(help="The templates directory.")] = Path("templates"),
    segments: Annotated[Path, typer.Option(help="The segments directory.")] = Path("segments"),
) -> None:
    """Check campaign files: schema (file:line), templates, audience segments; exit 1 listing every problem."""
    from nudge.cli.main import console

    targets = paths or [Path("campaigns")]
    checked, problems = check_campaigns(console, targets, templates, segments)
    if not checked and not problems:
        console.print(f"[red]✗[/] no campaign files (*.yaml) found in {', '.join(map(str, targets))}")
        raise typer.Exit(1)
    if problems:
        console.print(f"[red]{problems} problem(s)[/]")
        raise typer.Exit(1)


@campaign_app.command("send")
def send(
    path: Annotated[Path, typer.Argument(help="A campaign file.")],
    local: Annotated[bool, typer.Option("--local", help="On moto, with sample contacts (the only mode yet).")] = False,
    contacts: Annotated[int, typer.Option(help="Sample contacts for --local.")] = 24,
) -> None:
    """Send a campaign: with --local, on moto through the real handlers, on a virtual clock."""
    from nudge.campaign_files import load_campaign
    from nudge.cli.main import _quiet_lambda_logs, console
    from nudge.flow_files import FlowFileError

    if not local:
        console.print("[red]✗[/] only --local for now: on AWS, POST /v1/campaigns (docs/campaigns.md)")
        raise typer.Exit(2)
    _quiet_lambda_logs()
    from nudge.local.campaign_play import play_campaign

    try:
        campaign = load_campaign(path)
    except FlowFileError as exc:
        console.print(f"[red]✗[/] {exc}")
        raise typer.Exit(1) from None
    with console.status("pumping the jobs queue, the work queue and Scheduler on moto…"):
        played = play_campaign(campaign, contacts=contacts, on_progress=console.print)
    if not played.status:
        console.print(f"[red]✗[/] refused: {played.created.get('detail')}")
        raise typer.Exit(1)
    for at, to, subject in played.sends:
        console.print(f" {at:%a %m-%d %H:%M} UTC  {to:<26} {subject}", highlight=False)
    console.print(f"campaign {campaign.id}: {played.status.get('status')}, progress {played.status.get('progress')}")
    console.print(f"messages by status: {played.messages}")
    console.print(
        f"AWS requests from POST /v1/campaigns on: {sum(played.requests.values())} "
        f"({played.calls_per_recipient:.1f} per recipient): {played.requests}",
        highlight=False,
    )
