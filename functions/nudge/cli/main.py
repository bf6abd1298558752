"""The `nudge` command. CLI-only packages (typer, rich) are imported here and never by a handler."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="nudge: lifecycle email and SMS flows in your own AWS account.", no_args_is_help=True)
console = Console()
if not console.is_terminal:
    # CI logs and pipes default to 80 columns, which folds every timeline row in three.
    console = Console(width=190)


def _quiet_lambda_logs() -> None:
    # The handlers log JSON lines for CloudWatch; in a terminal story they drown the timeline.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")


@app.command()
def demo() -> None:
    """Play a storefront story over three weeks of virtual time on moto, through the real handlers."""
    _quiet_lambda_logs()
    from nudge.local.demo import DURATION, HISTORY, START, run_demo

    console.rule("[bold]nudge demo[/]: a shop's three weeks on moto (no AWS account needed)")
    console.print(f"virtual clock starts {START:%a %Y-%m-%d %H:%M} UTC and runs {DURATION.days} days\n")

    def on_import(imported):  # type: ignore[no-untyped-def]
        console.print(
            f"[bold]Order history[/] first, as `nudge import orders` does it "
            f"({HISTORY.relative_to(HISTORY.parents[2])}, a Shopify export): {imported.orders_imported} orders of "
            f"{len(imported.contacts)} customers; contacts, aggregates and stages backfilled, nothing sent\n",
            highlight=False,
        )
        console.print("[bold]Storefront events[/] (signed POST /v1/events through the ingest handler)")

    def on_event(at, description, result):  # type: ignore[no-untyped-def]
        body = result.body
        what = (
            "duplicate, ignored"
            if body.get("duplicate")
            else ", ".join(
                [f"started {f}" for f in body.get("started", [])] + [f"exited {f}" for f in body.get("exited", [])]
            )
            or "no flow"
        )
        console.print(f"  {at:%a %m-%d %H:%M}  {description:<58} → {result.status} ({what})")

    with console.status("pumping EventBridge Scheduler schedules through the step handler…"):
        result = run_demo(on_event=on_event, on_import=on_import)

    table = Table(title="Timeline, read back from moto's SES and SNS", title_justify="left")
    for column in ("virtual time (UTC)", "contact", "flow", "step", "channel"):
        table.add_column(column, no_wrap=True)
    table.add_column("subject / text")
    for row in result.timeline:
        table.add_row(f"{row.at:%a %m-%d %H:%M}", row.contact, row.flow, row.step, row.channel, row.text)
    console.print()
    console.print(table)

    if result.daily_runs:
        runs = [r for _, r in result.daily_runs]
        first_at, first = result.daily_runs[0]
        console.print(
            f"\n[bold]Daily job[/] (the sweep function, invoked at 04:00 UTC as the stack schedules it): "
            f"{len(runs)} runs; segment reviews {sum(r['reviewed'] for r in runs)}, "
            f"RFM scores written {sum(r['rescored'] for r in runs)} (the first run, {first_at:%a %m-%d}, scored "
            f"{first['rescored']} of {first['buyers']} buyers; later runs only the scores that moved); the co-purchase "
            f"table holds {runs[-1]['copurchase_orders']} orders of {runs[-1]['products']} products",
            highlight=False,
        )
    for recipient, products in result.recommended.items():
        console.print(
            f"{recipient}'s review request showed [italic]You may also like[/]: {', '.join(products)} "
            "(what the shop's history bought with what they bought)",
            highlight=False,
        )
    if result.contacts:
        people = Table(title="Contacts at the end (RFM: recency, frequency, monetary, 1-5)", title_justify="left")
        for column in ("contact", "stage", "RFM", "orders", "spent"):
            people.add_column(column, justify="right" if column in ("orders", "spent") else "left")
        for line in result.contacts:
            people.add_row(line.email, line.stage, line.rfm, str(line.orders), line.spent)
        console.print(people)

    summary = Table(title="Messages per flow", title_justify="left")
    summary.add_column("flow")
    summary.add_column("messages", justify="right")
    for flow, count in sorted(result.per_flow.items()):
        summary.add_row(flow, str(count))
    summary.add_row("[bold]total[/]", f"[bold]{sum(result.per_flow.values())}[/]")
    console.print(summary)

    requests = Table(title="AWS requests made by nudge (botocore event hooks)", title_justify="left")
    for column in ("service", "operation", "requests"):
        requests.add_column(column, justify="right" if column == "requests" else "left")
    for (service, operation), count in sorted(result.requests.items()):
        requests.add_row(service, operation, str(count))
    requests.add_row("[bold]total[/]", "", f"[bold]{sum(result.requests.values())}[/]")
    console.print(requests)
    console.print(f"{result.wake_ups} scheduled wake-ups fired by the local Scheduler pump.")


@app.command()
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Flow files or directories (default: flows/).")] = None,
    templates: Annotated[Path, typer.Option(help="The templates directory.")] = Path("templates"),
) -> None:
    """Check flow files against the flow schema and their templates; exit 1 listing every problem."""
    from nudge.flow_files import FlowFileError, load_catalog, load_flow, template_problems
    from nudge.templating import TemplateRenderer, TemplateRenderError

    try:
        renderer = TemplateRenderer(templates)
    except TemplateRenderError as exc:
        console.print(f"[red]✗[/] {exc}")
        raise typer.Exit(1) from None
    targets = paths or [Path("flows")]
    problems = checked = 0
    for target in targets:
        try:
            flows = list(load_catalog(target)) if target.is_dir() else [load_flow(target)]
        except FlowFileError as exc:
            for line in str(exc).splitlines():
                console.print(f"[red]✗[/] {line}")
                problems += 1
            continue
        for flow in flows:
            checked += 1
            found = template_problems(flow, renderer)
            for line in found:
                console.print(f"[red]✗[/] {flow.id}: {line}")
            problems += len(found)
            if not found:
                console.print(f"[green]✓[/] {flow.id}: {len(flow.steps)} steps")
    segments_path = Path("segments")
    if segments_path.is_dir() and paths is None:
        problems += _validate_segments(segments_path, Path("flows"))
    if not checked and not problems:
        console.print(f"[red]✗[/] no flow files (*.yaml) found in {', '.join(map(str, targets))}")
        raise typer.Exit(1)
    if problems:
        console.print(f"[red]{problems} problem(s)[/]")
        raise typer.Exit(1)


def _validate_segments(segments_path: Path, flows_dir: Path) -> int:
    """Check segments/*.yaml and that every segment a flow triggers on exists; the number of problems."""
    from nudge.flow_files import FlowFileError, load_catalog, load_segments, segment_problems

    try:
        segments = load_segments(segments_path)
        found = segment_problems(load_catalog(flows_dir), segments)
    except FlowFileError as exc:
        found = str(exc).splitlines()
    for line in found:
        console.print(f"[red]✗[/] {line}")
    if not found:
        console.print(f"[green]✓[/] {len(segments)} segment(s) in {segments_path}, and the six lifecycle stages")
    return len(found)


def _find_flow(flow: str, flows_dir: Path):  # type: ignore[no-untyped-def]
    from nudge.flow_files import FlowFileError, load_catalog, load_flow

    path = Path(flow)
    try:
        if path.suffix in {".yaml", ".yml"}:
            return load_flow(path)
        found = load_catalog(flows_dir).get(flow)
    except FlowFileError as exc:
        console.print(f"[red]✗[/] {exc}")
        raise typer.Exit(1) from None
    if found is None:
        console.print(f"[red]✗[/] no flow {flow!r} in {flows_dir}")
        raise typer.Exit(1)
    return found


@app.command()
def preview(
    flow: Annotated[
        str | None, typer.Argument(help="A flow id from flows/, or a path to a flow file; none: every flow.")
    ] = None,
    contact: Annotated[Path, typer.Option(help="Sample contact JSON.")] = Path("flows/samples/contact.json"),
    event: Annotated[Path | None, typer.Option(help="Trigger event properties JSON.")] = None,
    flows_dir: Annotated[Path, typer.Option(help="The flows directory.")] = Path("flows"),
    templates: Annotated[Path, typer.Option(help="The templates directory.")] = Path("templates"),
    html_dir: Annotated[
        Path | None,
        typer.Option("--html", "--html-dir", help="Also write every message here, with an index.html to open."),
    ] = None,
    recommendations: Annotated[
        Path, typer.Option(help="Sample `recommendations` (JSON list) for templates that show products.")
    ] = Path("flows/samples/recommendations.json"),
) -> None:
    """Render every message of a flow (or of the whole library) for a sample contact, all branches."""
    import json
    from datetime import UTC, datetime

    from rich.panel import Panel

    from nudge.flow_tools import contact_from_json, write_preview_site
    from nudge.flow_tools import preview as render_preview
    from nudge.templating import TemplateRenderer, TemplateRenderError

    chosen = [_find_flow(flow, flows_dir)] if flow else _all_flows(flows_dir)
    now = datetime.now(UTC)
    person = contact_from_json(json.loads(contact.read_text()), now)
    products = json.loads(recommendations.read_text()) if recommendations.exists() else []
    rendered = []
    try:
        renderer = TemplateRenderer(templates)
        for found in chosen:
            sample = event if (event and flow) else flows_dir / "samples" / f"{found.id}.event.json"
            properties = json.loads(sample.read_text()) if sample.exists() else {}
            rendered.append((found, render_preview(found, renderer, person, properties, now, products)))
    except TemplateRenderError as exc:
        console.print(f"[red]✗[/] {exc}")
        raise typer.Exit(1) from None
    total = 0
    for found, items in rendered:
        for item in items:
            total += 1
            title = f"{found.id} · {item.step_id} · {item.channel}" + (f" · {item.subject}" if item.subject else "")
            console.print(Panel(item.text, title=title, title_align="left"))
    if html_dir is not None:
        index = write_preview_site(html_dir, [(found.id, found.name, items) for found, items in rendered])
        console.print(f"open {index}")
    source = (
        (event or "each flow's sample event") if not flow else (event or f"flows/samples/{chosen[0].id}.event.json")
    )
    console.print(f"{total} message(s) for {person.email or person.phone} from {source}")


def _all_flows(flows_dir: Path):  # type: ignore[no-untyped-def]
    from nudge.flow_files import FlowFileError, load_catalog

    try:
        return sorted(load_catalog(flows_dir), key=lambda f: f.id)
    except FlowFileError as exc:
        console.print(f"[red]✗[/] {exc}")
        raise typer.Exit(1) from None


@app.command()
def graph(
    flow: Annotated[str, typer.Argument(help="A flow id from flows/, or a path to a flow file.")],
    flows_dir: Annotated[Path, typer.Option(help="The flows directory.")] = Path("flows"),
) -> None:
    """Print the flow as a Mermaid diagram (paste into GitHub markdown or mermaid.live)."""
    from nudge.flow_tools import mermaid

    print(mermaid(_find_flow(flow, flows_dir)), end="")


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option(help="Write here instead of printing.")] = None,
) -> None:
    """Print (or write) the JSON Schema of flow files."""
    from nudge.flow_tools import flow_json_schema

    text = flow_json_schema()
    if out is None:
        print(text, end="")
    else:
        out.write_text(text)
        console.print(f"wrote {out}")


@app.command()
def report(
    demo: Annotated[bool, typer.Option(help="Play the demo story on moto first, then report on it.")] = False,
    window: Annotated[str, typer.Option(help="Attribution window after a send, open or click.")] = "5d",
    html: Annotated[
        Path | None, typer.Option(help="Write a self-contained HTML page (diagrams, funnels, charts) here instead.")
    ] = None,
    flows_dir: Annotated[Path, typer.Option(help="The flows directory, for the HTML page's diagrams.")] = Path("flows"),
) -> None:
    """KPIs per flow, step and split variant, with last-touch revenue (terminal tables, or an HTML page)."""
    _quiet_lambda_logs()
    from nudge.domain.durations import parse_duration

    window_length = parse_duration(window)
    if demo:
        from nudge.local.demo import run_demo

        with console.status("playing the demo story on moto…"):
            found = run_demo(window=window_length).report
        assert found is not None
    else:
        from nudge.clocks import SystemClock
        from nudge.services.reporting import build_report
        from nudge.settings import Settings
        from nudge.wiring import build_aws

        container = build_aws(Settings.from_env(os.environ), SystemClock())
        found = build_report(container.store, window_length)  # type: ignore[arg-type]
    if html is None:
        _print_report(found, window)
    else:
        _write_html_report(found, window, html, flows_dir)


def _write_html_report(found, window: str, out: Path, flows_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """The page needs the flow files only for diagrams: without a flows directory it still has every figure."""
    from datetime import UTC, datetime

    from nudge.flow_files import FlowFileError, load_catalog
    from nudge.report_html import render

    flows = []
    if flows_dir.is_dir():
        try:
            flows = list(load_catalog(flows_dir))
        except FlowFileError as exc:
            console.print(f"[red]✗[/] {exc}")
            raise typer.Exit(1) from None
    else:
        console.print(f"[yellow]no flows directory {flows_dir}: the page has figures but no diagrams[/]")
    out.write_text(render(found, flows, generated_at=datetime.now(UTC), window=window), encoding="utf-8")
    drawn = len({f.id for f in flows} & {r.flow_id for r in found.flows})
    console.print(f"wrote {out}: {len(found.flows)} flow(s) with activity, {drawn} drawn", highlight=False)


def _print_report(found, window: str) -> None:  # type: ignore[no-untyped-def]
    from nudge.report_text import KPI_COLUMNS, kpi_tables, verdict_text

    for title, first, rows in kpi_tables(found):
        if not rows:
            continue
        table = Table(
            title=f"{title} (last-touch revenue, {window} window)" if title == "Flows" else title, title_justify="left"
        )
        table.add_column(first, no_wrap=True)
        for column in KPI_COLUMNS:
            table.add_column(column, justify="right")
        for label, cells in rows:
            table.add_row(label, *cells)
        console.print(table)
    for verdict in found.splits:
        console.print(f"{verdict.flow_id} · {verdict.split_id}: {verdict_text(verdict)}")


@app.command()
def bench(
    contacts: Annotated[int, typer.Option(help="Contacts for the in-memory engine benchmark.")] = 2000,
    moto_contacts: Annotated[int, typer.Option(help="Contacts for the moto-adapter benchmark.")] = 100,
    daily_contacts: Annotated[int, typer.Option(help="Contacts for the daily-job benchmark on moto.")] = 500,
) -> None:
    """Print throughput and memory figures for the engine (in memory) and the adapters (on moto)."""
    _quiet_lambda_logs()
    from nudge.local.bench import run_benchmarks

    figures = run_benchmarks(
        contacts=contacts, moto_contacts=moto_contacts, daily_contacts=daily_contacts, progress=console.status
    )
    for line in figures:
        console.print(line)


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Loopback port to listen on (0: any free one).")] = 8787,
    host: Annotated[str, typer.Option(help="Loopback address: 127.0.0.1 or ::1.")] = "127.0.0.1",
    speed: Annotated[float, typer.Option(help="Run time N times faster: waits of a day pass in 1/N day.")] = 1.0,
) -> None:
    """Serve the HTTP API on localhost, backed by moto, with the Scheduler pump running in the background."""
    import signal
    import threading

    _quiet_lambda_logs()
    from nudge.local.server import start_server

    server = start_server(host=host, port=port, speed=speed, log_line=lambda line: console.print(f"[dim]{line}[/]"))
    console.print(f"[bold]nudge serve[/] on {server.url} (moto inside; time x{speed:g}). Ctrl-C stops it.")
    console.print("Paste these into the shell you run curl from (they change on every start):")
    for name, value in server.environment.items():
        console.print(f"export {name}={value}", highlight=False, soft_wrap=True)
    console.print(f"Then `nudge events tail --url {server.url}` shows what arrives and what it starts.")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


import_app = typer.Typer(help="Backfill nudge from a shop's history; nothing is sent.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("orders")
def import_orders(
    file: Annotated[Path, typer.Argument(help="A CSV export of past orders.", exists=True, dir_okay=False)],
    fmt: Annotated[str, typer.Option("--format", help="shopify (Shopify's orders export) or minimal.")] = "shopify",
    local: Annotated[
        bool,
        typer.Option(
            "--local/--settings-from-env",
            help="Into a throwaway moto deployment (a dry run), or into the tables NUDGE_* variables name.",
        ),
    ] = True,
) -> None:
    """Import past orders: contacts, aggregates, stages and segments, without starting a flow or sending."""
    import time
    from collections import Counter

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from nudge.services.order_import import Format, ImportFormatError, backfill_orders, parse_orders

    _quiet_lambda_logs()
    try:
        chosen = Format(fmt)
    except ValueError:
        console.print(f"[red]✗[/] --format is one of {', '.join(f.value for f in Format)}, not {fmt!r}")
        raise typer.Exit(2) from None
    stack = None
    if local:
        from nudge.clocks import ScaledClock
        from nudge.local.moto_stack import start_moto_stack

        stack = start_moto_stack(ScaledClock())
        container = stack.container
    else:
        from nudge.clocks import SystemClock
        from nudge.settings import Settings
        from nudge.wiring import build_aws

        container = build_aws(Settings.from_env(os.environ), SystemClock())
    try:
        started = time.perf_counter()
        with file.open(newline="", encoding="utf-8-sig") as lines:
            try:
                parsed = parse_orders(lines, chosen, container.clock.now())
            except ImportFormatError as exc:
                console.print(f"[red]✗[/] {file}: {exc}")
                raise typer.Exit(1) from None
        columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("events", total=len(parsed.events))
            report = backfill_orders(
                container.ingest, parsed, progress=lambda done: progress.update(task, completed=done)
            )
        # What recommendations read: the orders this import added (a re-import adds none), then the table.
        table = container.daily.copurchases.add_imported(report.new_orders)
        elapsed = time.perf_counter() - started
        stages = Counter(
            contact.stage for cid in report.contacts if (contact := container.store.get_contact(cid)) is not None
        )
    finally:
        if stack is not None:
            stack.stop()
    where = "a throwaway moto deployment (dry run)" if local else "the deployed tables"
    console.print(f"{file} ({chosen.value}) into {where}:", highlight=False)
    console.print(
        f"  rows read {report.rows} · orders found {report.orders_found} · imported {report.orders_imported} · "
        f"duplicates skipped {report.duplicates} · cancellations and refunds {report.adjustments} · "
        f"rows rejected {len(report.rejected)}",
        highlight=False,
    )
    by_stage = ", ".join(f"{stage} {count}" for stage, count in sorted(stages.items(), key=lambda s: (-s[1], s[0])))
    console.print(f"  contacts {len(report.contacts)}: {by_stage or '-'}", highlight=False)
    console.print(
        f"  recommendations: {table.orders} orders, {len(table.products)} products in the co-purchase table",
        highlight=False,
    )
    console.print(f"  {elapsed:.2f} s, {report.rows / elapsed if elapsed else 0:,.0f} rows/s", highlight=False)
    for rejected in report.rejected:
        console.print(f"  [yellow]line {rejected.line}[/]: {rejected.reason}", highlight=False)


events_app = typer.Typer(help="Look at the events nudge received.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("tail")
def events_tail(
    url: Annotated[str, typer.Option(help="The `nudge serve` URL.")] = "http://127.0.0.1:8787",
    every: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
    count: Annotated[int, typer.Option(help="Stop after this many events (0: never).")] = 0,
) -> None:
    """Follow the events a `nudge serve` receives: type, contact, and the flows each started or exited."""
    import json
    import time
    import urllib.parse
    import urllib.request

    since = ""
    seen = 0
    while True:
        query = f"?since={urllib.parse.quote(since)}" if since else ""
        with urllib.request.urlopen(f"{url.rstrip('/')}/_local/events{query}", timeout=10) as response:  # noqa: S310
            rows = json.load(response)
        for row in rows:
            effects = [f"started {f}" for f in row["started"]] + [f"exited {f}" for f in row["exited"]]
            console.print(
                f"{row['received_at'][11:19]}  {row['type']:<18} {row['contact_id']:<28} {row['event_id']:<40} "
                f"{', '.join(effects) or '-'}",
                highlight=False,
            )
            since = row["received_at"]
            seen += 1
            if count and seen >= count:
                return
        time.sleep(every)


keys_app = typer.Typer(help="API keys, stored hashed in the keys table (NUDGE_KEYS_TABLE).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _key_service():  # type: ignore[no-untyped-def]
    import boto3

    from nudge import names
    from nudge.adapters.dynamodb.access import DynamoApiKeys, bind_access_tables
    from nudge.clocks import SystemClock
    from nudge.services.keys import KeyService

    region = boto3.Session().region_name or "us-east-1"
    tables = bind_access_tables(
        keys=os.environ.get(names.ENV_KEYS_TABLE, names.KEYS_TABLE),
        refs=os.environ.get(names.ENV_CONTACT_REFS_TABLE, names.CONTACT_REFS_TABLE),
        privacy=os.environ.get(names.ENV_PRIVACY_TABLE, names.PRIVACY_TABLE),
        region=region,
    )
    return KeyService(DynamoApiKeys(tables), SystemClock())


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for, e.g. 'backend' or 'footer form'.")],
    publishable: Annotated[bool, typer.Option(help="A publishable key for signup forms, not a secret one.")] = False,
    origin: Annotated[list[str] | None, typer.Option(help="Publishable: a site allowed to call (repeatable).")] = None,
    double_opt_in: Annotated[bool, typer.Option(help="Publishable: confirm addresses by email first.")] = False,
) -> None:
    """Create a key and print it once; only its SHA-256 is stored."""
    from nudge.ports import KeyKind

    if not publishable and (origin or double_opt_in):
        console.print("[red]✗[/] --origin and --double-opt-in are for --publishable keys")
        raise typer.Exit(1)
    kind = KeyKind.PUBLISHABLE if publishable else KeyKind.SECRET
    plain, record = _key_service().create(kind, name, origins=origin or [], double_opt_in=double_opt_in)
    console.print(f"{kind.value} key for {name!r} (shown once, store it now):", highlight=False)
    console.print(plain, highlight=False, soft_wrap=True)
    console.print(f"id (its SHA-256, for `nudge keys revoke`): {record.key_hash}", highlight=False, soft_wrap=True)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The key itself, or its id (SHA-256).")]) -> None:
    """Revoke a key: calls with it get 401 from now on."""
    if not _key_service().revoke(key):
        console.print("[red]✗[/] no such key")
        raise typer.Exit(1)
    console.print("[green]✓[/] revoked")


@app.command()
def openapi() -> None:
    """Print the OpenAPI 3.1 document of the HTTP API (docs/openapi.json is this output)."""
    import json

    from nudge.openapi import document

    sys.stdout.write(json.dumps(document(), indent=2) + "\n")


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
