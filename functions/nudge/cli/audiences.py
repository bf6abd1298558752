"""`nudge audiences sync [--dry-run]` and `nudge audiences report` (ADR 0024, docs/audiences.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()
audiences_app = typer.Typer(
    help="Ad audiences on Meta, Google Ads and TikTok (docs/audiences.md).", no_args_is_help=True
)


def _service(local: bool) -> tuple[Any, Any]:
    from nudge.cli.main import _import_target

    stack, container = _import_target(local)
    if container.audiences is None:
        console.print("[red]✗[/] no audience ledger is configured")
        raise typer.Exit(1)
    return stack, container


@audiences_app.command("sync")
def sync(
    audience: Annotated[list[str] | None, typer.Argument(help="Audience ids (default: every audience).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; upload nothing.")] = False,
    local: Annotated[
        bool, typer.Option("--local/--settings-from-env", help="moto (a local try), or the NUDGE_* tables and secret.")
    ] = True,
) -> None:
    """Segment audiences: the segment's consenting members now against what was last synced, uploaded as the
    difference; flows audiences: what their steps left pending. Per audience: added, removed, requests."""
    stack, container = _service(local)
    try:
        service = container.audiences
        wanted = audience or [a.id for a in service.catalog]
        unknown = [a for a in wanted if service.catalog.get(a) is None]
        if unknown:
            console.print(f"[red]✗[/] no audience {', '.join(unknown)} in audiences/")
            raise typer.Exit(1)
        contacts = list(container.store.all_contacts()) if any(service.catalog.get(a).segment for a in wanted) else []
        failed = False
        for audience_id in wanted:
            found = service.catalog.get(audience_id)
            if found.segment is not None:
                outcome = service.sync_segment(audience_id, contacts, dry_run=dry_run)
            else:
                outcome = service.sync(audience_id, dry_run=dry_run)
            verb = "would add" if dry_run else "added"
            line = f"{audience_id} ({found.platform}): {verb} {outcome.added:,}, removed {outcome.removed:,}"
            if not dry_run:
                line += f", {outcome.requests} request(s)"
            if outcome.skipped:
                line += ", not uploaded: " + ", ".join(f"{n:,} {why}" for why, n in sorted(outcome.skipped.items()))
            if outcome.error:
                failed = True
                line += f" [red]failed: {outcome.error}[/]"
            console.print(line, highlight=False, soft_wrap=True)
        if failed:
            raise typer.Exit(1)
    finally:
        if stack is not None:
            stack.stop()


@audiences_app.command("report")
def report(
    local: Annotated[
        bool, typer.Option("--local/--settings-from-env", help="moto (a local try), or the NUDGE_* tables.")
    ] = True,
) -> None:
    """Per audience: members added and removed, requests, invalid identifiers, failures, the last sync."""
    stack, container = _service(local)
    try:
        for found in container.audiences.catalog:
            s = container.audiences.stats(found.id)
            last = s.last_sync_at.isoformat(timespec="seconds") if s.last_sync_at else "never"
            console.print(
                f"{found.id} ({found.platform}, {found.segment or 'flows'}): added {s.added:,}, removed {s.removed:,}, "
                f"{s.requests} request(s), {s.invalid} invalid, {s.failures} failure(s), last sync {last}"
                + (f", last error: {s.last_error}" if s.last_error else ""),
                highlight=False,
                soft_wrap=True,
            )
    finally:
        if stack is not None:
            stack.stop()
