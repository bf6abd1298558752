"""The `nudge` command. CLI-only packages (typer, rich) are imported here and never by a handler."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from nudge.services.keys import KeyService

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
    from nudge.local.demo import DURATION, HISTORY, NEWSLETTER_POSTED, START, campaign_line, run_demo

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
            f"\n[bold]Daily job[/] (planned at 04:00 UTC as the stack schedules it, done by the sweep function in "
            f"{sum(r['pieces'] for r in runs)} pieces off the jobs queue, {sum(r['errors'] for r in runs)} contact "
            f"errors): {len(runs)} days; segment reviews {sum(r['reviewed'] for r in runs)}, "
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
    if result.campaign is not None:
        console.print(
            f"[bold]Campaign[/] (POST /v1/campaigns {NEWSLETTER_POSTED:%a %m-%d %H:%M} → {result.campaign.status}; "
            f"the campaigns queue resolved the audience, each got it at 09:00 in their zone): {campaign_line(result)}",
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
    console.print(
        f"{result.wake_ups} pieces of work (first steps and wake-ups) done by the worker from the work queue."
    )


@app.command()
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Flow files or directories (default: flows/).")] = None,
    templates: Annotated[Path, typer.Option(help="The templates directory.")] = Path("templates"),
) -> None:
    """Check flow files against the flow schema and their templates; exit 1 listing every problem."""
    from nudge.cli.checking import report_checks
    from nudge.domain.flows import Flow
    from nudge.domain.whatsapp_templates import WhatsAppTemplates
    from nudge.flow_files import load_catalog, load_flow, load_whatsapp_templates, template_problems
    from nudge.templating import TemplateRenderer, TemplateRenderError

    try:
        renderer = TemplateRenderer(templates)
    except TemplateRenderError as exc:
        console.print(f"[red]✗[/] {exc}")
        raise typer.Exit(1) from None
    targets = paths or [Path("flows")]

    def load(target: Path) -> list[tuple[Flow, WhatsAppTemplates]]:
        flows = list(load_catalog(target)) if target.is_dir() else [load_flow(target)]
        whatsapp = load_whatsapp_templates(target if target.is_dir() else target.parent)
        return [(flow, whatsapp) for flow in flows]

    def check(item: tuple[Flow, WhatsAppTemplates]) -> tuple[str, list[str], str]:
        flow, whatsapp = item
        return flow.id, template_problems(flow, renderer, whatsapp), f"{len(flow.steps)} steps"

    checked, problems = report_checks(console, targets, load, check)
    segments_path = Path("segments")
    if segments_path.is_dir() and paths is None:
        problems += _validate_segments(segments_path, Path("flows"))
    if paths is None:
        problems += _validate_audiences(Path("audiences"), Path("flows"), segments_path)
    if Path("campaigns").is_dir() and paths is None:  # campaigns use the same templates (docs/campaigns.md)
        from nudge.cli.campaigns import check_campaigns

        problems += check_campaigns(console, [Path("campaigns")], templates, segments_path)[1]
    if not checked and not problems:
        console.print(f"[red]✗[/] no flow files (*.yaml) found in {', '.join(map(str, targets))}")
        raise typer.Exit(1)
    if problems:
        console.print(f"[red]{problems} problem(s)[/]")
        raise typer.Exit(1)


def _validate_audiences(audiences_path: Path, flows_dir: Path, segments_path: Path) -> int:
    """audiences/*.yaml against their schema; every audience a flow step names exists and is flow-managed,
    every segment an audience follows exists (ADR 0024). Returns the number of problems."""
    from nudge.flow_files import FlowFileError, audience_problems, load_audiences, load_catalog, load_segments

    try:
        audiences = load_audiences(audiences_path)
        found = audience_problems(load_catalog(flows_dir), audiences, load_segments(segments_path))
    except FlowFileError as exc:
        found = str(exc).splitlines()
    for problem in found:
        console.print(f"[red]✗[/] {problem}")
    if not found and len(audiences):
        console.print(f"[green]✓[/] {len(audiences)} ad audience(s) in {audiences_path}")
    return len(found)


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
    audience: Annotated[bool, typer.Option("--audience", help="The schema of audiences/*.yaml instead.")] = False,
) -> None:
    """Print (or write) the JSON Schema of flow files (or, with --audience, of audience files)."""
    from nudge.flow_tools import audience_json_schema, flow_json_schema

    text = audience_json_schema() if audience else flow_json_schema()
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
        model = container.daily.predictions_model()
        found = build_report(container.store, window_length, model)  # type: ignore[arg-type]
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
    drawn = len({f.id for f in flows} & {r.flow_id for r in found.flows}) + len(found.campaigns)
    console.print(f"wrote {out}: {len(found.flows)} flow(s) with activity, {drawn} drawn", highlight=False)


def _print_report(found, window: str) -> None:  # type: ignore[no-untyped-def]
    from nudge.report_text import (
        KPI_COLUMNS,
        campaign_words,
        kpi_tables,
        outlook_lines,
        send_time_lines,
        verdict_text,
    )

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
    for flow_id, document in found.campaigns.items():
        if (ab := campaign_words(document)[2]) is not None:
            console.print(f"{flow_id} · {ab}", highlight=False)
    for line in [*outlook_lines(found.outlook), *send_time_lines(found.send_time)]:
        console.print(line, highlight=False)


@app.command()
def backtest(
    flows: Annotated[
        list[str] | None, typer.Argument(help="Flow ids or flow files to replay (default: every flow in --flows-dir).")
    ] = None,
    orders: Annotated[Path | None, typer.Option(help="Past orders, a CSV export.", exists=True, dir_okay=False)] = None,
    fmt: Annotated[str, typer.Option("--format", help="The orders file: shopify or minimal.")] = "shopify",
    events: Annotated[
        Path | None,
        typer.Option(help="Past events, one API body (with occurred_at) a line.", exists=True, dir_okay=False),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--from", help="First day replayed (UTC); earlier history is only backfilled.")
    ] = None,
    until: Annotated[str | None, typer.Option("--to", help="Last day replayed (UTC), included.")] = None,
    window: Annotated[str, typer.Option(help="Attribution window after a message.")] = "5d",
    assume_consent: Annotated[
        bool, typer.Option(help="Customers the history gives no answer for said yes to marketing email.")
    ] = False,
    html: Annotated[Path | None, typer.Option(help="Also write the result as an HTML page with charts.")] = None,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(help="Two versions of one flow (files, same id): replay each in its place, side by side."),
    ] = None,
    flows_dir: Annotated[Path, typer.Option(help="The flows directory.")] = Path("flows"),
    templates: Annotated[Path, typer.Option(help="The templates directory.")] = Path("templates"),
    segments: Annotated[Path, typer.Option(help="The segments directory.")] = Path("segments"),
    processes: Annotated[
        int, typer.Option(help="Worker processes replaying groups of customers (0: one per core).", min=0)
    ] = 0,
    shard_contacts: Annotated[
        int,
        typer.Option(help="Customers replayed together, then summed and dropped (0: everyone in one store).", min=0),
    ] = 2_000,
) -> None:
    """Replay a shop's history through the flows on a virtual clock, sending nothing; what they would have done."""
    _quiet_lambda_logs()
    import os
    import resource
    import time
    from datetime import UTC, datetime, timedelta

    from nudge.cli.backtest import print_backtest, print_comparison
    from nudge.domain.durations import parse_duration
    from nudge.flow_files import FlowFileError, load_flow
    from nudge.local import backtest as bt
    from nudge.services.order_import import Format, ImportFormatError

    def day(text: str | None, option: str) -> datetime | None:
        if text is None:
            return None
        try:
            return datetime.fromisoformat(text[:10]).replace(tzinfo=UTC)
        except ValueError:
            console.print(f"[red]✗[/] {option} is a date like 2026-01-31, not {text!r}")
            raise typer.Exit(2) from None

    start = day(since, "--from")
    last = day(until, "--to")
    end = last + timedelta(days=1) if last is not None else None
    if orders is None and events is None:
        console.print("[red]✗[/] give the history: --orders FILE.csv and/or --events FILE.jsonl")
        raise typer.Exit(2)
    try:
        chosen = Format(fmt)
        window_length = parse_duration(window)
    except ValueError as exc:
        console.print(f"[red]✗[/] {exc}")
        raise typer.Exit(2) from None
    began = time.perf_counter()
    now = datetime.now(UTC)
    try:
        with (
            orders.open(newline="", encoding="utf-8-sig") if orders else _nothing() as order_lines,
            events.open(encoding="utf-8") if events else _nothing() as event_lines,
        ):
            history = bt.load_history(order_lines, chosen, event_lines, now, assume_consent=assume_consent)
    except (ImportFormatError, bt.HistoryError) as exc:
        console.print(f"[red]✗[/] {exc}")
        raise typer.Exit(1) from None
    for rejected in history.rejected:
        console.print(f"  [yellow]orders line {rejected.line}[/]: {rejected.reason}", highlight=False)

    def run(replacing: Path | None = None) -> tuple[bt.Counts, bt.Backtest]:
        with bt.flows_for(flows_dir, flows or [], replacing) as staged:
            settings = bt.backtest_settings(staged, templates, segments)
            if shard_contacts == 0:
                done, found = bt.backtest(history, settings, start=start, end=end, window=window_length)
                return bt.Counts(done.start, done.end, done.replayed, done.backfilled, done.worked, done.reviews), found
            return bt.backtest_sharded(
                history,
                settings,
                shard_contacts=shard_contacts,
                start=start,
                end=end,
                window=window_length,
                processes=processes or os.cpu_count() or 1,
            )

    try:
        if compare is not None:
            first, second = compare
            flow_id = load_flow(first).id
            if load_flow(second).id != flow_id:
                console.print(f"[red]✗[/] --compare needs two versions of one flow: {first} and {second} differ in id")
                raise typer.Exit(2)
            sides = [bt.Side(path, run(path)[1]) for path in (first, second)]
            print_comparison(console, flow_id, sides[0], sides[1])
            if html is not None:
                from nudge.backtest_html import render_comparison

                html.write_text(render_comparison(flow_id, sides[0], sides[1], window=window), encoding="utf-8")
                console.print(f"wrote {html}", highlight=False)
        else:
            done, result = run()
            print_backtest(console, done, result, window)
            if html is not None:
                from nudge.backtest_html import render

                html.write_text(render(result, window=window), encoding="utf-8")
                console.print(f"wrote {html}", highlight=False)
    except (FlowFileError, bt.HistoryError) as exc:
        console.print(f"[red]✗[/] {exc}")
        raise typer.Exit(1) from None
    elapsed = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    cpu = sum(
        resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    console.print(
        f"{elapsed:.1f} s ({cpu:.1f} CPU s), peak memory (RSS) {peak_mb:,.0f} MB"
        + (f", largest worker {workers_mb:,.0f} MB" if workers_mb else ""),
        highlight=False,
    )


def _print_when_done(status: str, produce: Callable[[], Iterable[str]], *, highlight: bool = False) -> None:
    """Show `status` while a benchmark produces its lines, then print them (a spinner and output do not mix)."""
    with console.status(status):
        lines = list(produce())
    for line in lines:
        console.print(line, highlight=highlight)


def _nothing() -> AbstractContextManager[None]:
    """A `with` target for a history file that was not given."""
    from contextlib import nullcontext

    return nullcontext(None)


@app.command()
def bench(
    contacts: Annotated[int, typer.Option(help="Contacts for the in-memory engine benchmark.")] = 2000,
    moto_contacts: Annotated[int, typer.Option(help="Contacts for the moto-adapter benchmark.")] = 100,
    daily_contacts: Annotated[int, typer.Option(help="Contacts for the daily-job benchmark on moto.")] = 500,
    history_customers: Annotated[
        int, typer.Option(help="CDNOW customers for the backtest benchmark (23,570: all; 0: skip it).")
    ] = 23_570,
    scaling: Annotated[
        str, typer.Option(help="Contact counts for the engine's scaling figures, comma-separated ('' skips them).")
    ] = "500,4000,32000",
    campaign: Annotated[
        int, typer.Option(help="Only a campaign: this many recipients in memory (ADR 0019); 0: the usual benches.")
    ] = 0,
    moto_campaign: Annotated[int, typer.Option(help="With --campaign: recipients of the campaign on moto.")] = 1000,
    quota: Annotated[
        int, typer.Option(help="With --campaign: the SES quota (sends/s) of the simulated campaign; 0 skips it.")
    ] = 500,
    audiences: Annotated[
        int,
        typer.Option(
            help="Only ad audiences: a segment of this many members synced to Meta, Google and TikTok, three times, "
            "through the real adapters against local fakes of their APIs (ADR 0024); 0: the usual benches."
        ),
    ] = 0,
    import_orders: Annotated[
        int, typer.Option(help="Only the order import: a generated file of this many orders (e.g. 1000000).")
    ] = 0,
    import_into: Annotated[
        str, typer.Option(help="With --import-orders: memory, moto or both, comma-separated (each in a fresh process).")
    ] = "memory,moto",
    backtest_orders: Annotated[
        int,
        typer.Option(
            help="Only a backtest of this many generated orders, in a fresh process across the cores "
            "(e.g. 1000000: tens of minutes on a busy machine); 0: the usual benches."
        ),
    ] = 0,
    backtest_processes: Annotated[
        int, typer.Option(help="With --backtest-orders: worker processes (0: one per core).", min=0)
    ] = 0,
    backtest_flows: Annotated[
        str,
        typer.Option(help="With --backtest-orders: the flows to backtest, comma-separated ('': every flow)."),
    ] = "",
    predictions: Annotated[
        bool,
        typer.Option(
            "--predictions",
            help="Only check the prediction models on CDNOW: the published fit, then AUC and date error vs baselines.",
        ),
    ] = False,
    cold_start: Annotated[
        bool,
        typer.Option(
            "--cold-start",
            help="Only each Lambda function's import + build time in fresh interpreters, against boto3 + one client.",
        ),
    ] = False,
    runs: Annotated[int, typer.Option(help="With --cold-start: fresh interpreters per function (the median).")] = 5,
    function: Annotated[
        str | None, typer.Option(help="With --cold-start: only this function (ingest, step, sweep, …).")
    ] = None,
    bytecode: Annotated[
        bool,
        typer.Option(help="With --cold-start: use the bytecode cache (--no-bytecode: compile every module, as Lambda)"),
    ] = True,
    functions_dir: Annotated[
        Path | None,
        typer.Option(help="With --cold-start: measure this functions/ directory (another checkout, to compare)."),
    ] = None,
) -> None:
    """Print throughput and memory figures for the engine (in memory) and the adapters (on moto)."""
    _quiet_lambda_logs()
    from nudge.local.machine import interpreter_line

    console.print(interpreter_line(), highlight=False)  # the figures are this interpreter's (its build matters)
    if cold_start:
        from nudge.local.cold_start import cold_starts
        from nudge.local.moto_stack import PROJECT_ROOT

        with console.status("cold start…") as status:
            lines = list(
                cold_starts(
                    PROJECT_ROOT,
                    runs=runs,
                    only=function,
                    bytecode=bytecode,
                    functions_dir=functions_dir,
                    progress=status.update,
                )
            )
        for line in lines:
            console.print(line, highlight=False)
        return
    if audiences:
        from nudge.local.audience_bench import audience_sync

        _print_when_done(f"audiences: a segment of {audiences:,} members…", lambda: audience_sync(audiences))
        return
    if backtest_orders:
        import tempfile

        from nudge.local import backtest as bt
        from nudge.local import backtest_bench

        with tempfile.TemporaryDirectory() as work_dir:
            named = [name.strip() for name in backtest_flows.split(",") if name.strip()]
            printed = backtest_bench.bench(backtest_orders, Path(work_dir), processes=backtest_processes, flows=named)
            try:
                for line in printed:
                    console.print(line, highlight=False)
            except bt.HistoryError as exc:  # a flow named that is not there
                console.print(f"[red]✗[/] --backtest-flows: {exc}")
                raise typer.Exit(2) from None
        return
    if campaign:
        from nudge.local.campaign_bench import campaign_in_memory, campaign_on_moto, quota_lines

        _print_when_done(
            f"campaign: {campaign:,} recipients in memory…", lambda: campaign_in_memory(campaign), highlight=True
        )
        if quota:
            _print_when_done(
                f"campaign: {campaign:,} recipients at {quota:,}/s, simulated…",
                lambda: quota_lines(campaign, quota),
                highlight=True,
            )
        if moto_campaign:
            _print_when_done(
                f"campaign: {moto_campaign:,} recipients on moto…",
                lambda: campaign_on_moto(moto_campaign),
                highlight=True,
            )
        return
    if import_orders:
        import tempfile

        from nudge.local import import_bench

        targets = [t.strip() for t in import_into.split(",") if t.strip()]
        if not targets or set(targets) - {"memory", "moto"}:
            console.print(f"[red]✗[/] --import-into is memory, moto or both, not {import_into!r}")
            raise typer.Exit(2)
        with tempfile.TemporaryDirectory() as work_dir:
            for line in import_bench.bench(import_orders, max(1, import_orders // 10), Path(work_dir), targets):
                console.print(line, highlight=False)
        return
    if predictions:
        from nudge.local.datasets import DatasetUnavailable
        from nudge.local.prediction_check import check

        try:
            for line in check(Path(".cache/lifetimes")):
                console.print(line, highlight=False)
        except DatasetUnavailable as exc:
            console.print(f"[red]✗[/] {exc}")
            raise typer.Exit(1) from None
        return
    from nudge.local.bench import run_benchmarks

    figures = run_benchmarks(
        contacts=contacts,
        moto_contacts=moto_contacts,
        daily_contacts=daily_contacts,
        history_customers=history_customers,
        scaling=[int(n) for n in scaling.split(",") if n.strip()],
        progress=console.status,
    )
    for line in figures:
        console.print(line)


@app.command()
def chaos(
    every_call: Annotated[bool, typer.Option("--every-call", help="One fault at call N, for every N.")] = False,
    rate: Annotated[
        float | None, typer.Option("--random", help="Fail each call with this probability (e.g. 0.2).")
    ] = None,
    seeds: Annotated[int, typer.Option(help="With --random: how many seeded plays.")] = 20,
    first: Annotated[int, typer.Option(help="With --every-call: the first call to fail.")] = 1,
    last: Annotated[int | None, typer.Option(help="With --every-call: the last call to fail.")] = None,
    stride: Annotated[
        int, typer.Option(min=1, help="With --every-call: fail every Nth call only (a sample; 1: every call).")
    ] = 1,
    workers: Annotated[int, typer.Option(help="Plays run in this many processes.")] = os.cpu_count() or 1,
    daily_job: Annotated[bool, typer.Option(help="Run the daily job each morning (and fault it too).")] = True,
    story: Annotated[
        str,
        typer.Option(
            help="demo (welcome, cart, post-purchase, an imported history), library (ten more flows) or campaign "
            "(a newsletter to 24 contacts with a flow beside it)."
        ),
    ] = "demo",
) -> None:
    """Play a story on moto with faults at every AWS call; exit 1 if any message was lost or doubled."""
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")  # thousands of plays: their warnings are expected
    _quiet_lambda_logs()
    from rich.progress import Progress

    from nudge.local import chaos as harness

    if every_call == (rate is not None):
        raise typer.BadParameter("give exactly one of --every-call and --random RATE")
    if story not in harness.STORIES:
        raise typer.BadParameter(f"--story must be one of {', '.join(harness.STORIES)}")
    clean = harness.clean_play(daily_job=daily_job, story=story)
    console.print(
        f"clean play of the {story} story: {clean.calls} AWS calls, "
        f"{sum(clean.delivered.values())} messages delivered, "
        f"{len(clean.stranded)} runs stranded"
    )
    if every_call and stride % len(harness.KINDS) == 0:
        raise typer.BadParameter(f"--stride {stride} would fault with one kind only: pick one not a multiple of 7")
    specs = (
        harness.every_call_specs(clean, first, last, stride) if every_call else harness.random_specs(rate or 0.0, seeds)
    )
    if console.is_terminal:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("faulted plays", total=len(specs))
            result = harness.sweep(
                specs,
                clean,
                daily_job=daily_job,
                story=story,
                workers=workers,
                progress=lambda done, _: bar.update(task, completed=done),
            )
    else:  # piped or in CI: a line every 5 % instead of a bar

        def report(done: int, total: int) -> None:
            if done == total or done % max(1, total // 20) == 0:
                print(f"chaos: {done}/{total} plays", flush=True)

        result = harness.sweep(specs, clean, daily_job=daily_job, story=story, workers=workers, progress=report)
    for label, verdict in result.failures:
        console.print(f"[red]wrong[/] {label}: {verdict}")
    console.print(f"work in the dead-letter queue at the end: {result.dlq}")
    print(result.line())
    if result.wrong:
        raise typer.Exit(1)


from nudge.cli.campaigns import campaign_app  # noqa: E402  (its commands import this module's console)

app.add_typer(campaign_app, name="campaign")

from nudge.cli.audiences import audiences_app  # noqa: E402  (the sub-app registers beside the others)

app.add_typer(audiences_app, name="audiences")

whatsapp_app = typer.Typer(help="WhatsApp through AWS End User Messaging Social (docs/whatsapp.md).")
app.add_typer(whatsapp_app, name="whatsapp")


@whatsapp_app.command("check-templates")
def whatsapp_check_templates(
    waba_id: Annotated[str, typer.Option(help="The WhatsApp Business Account's id in AWS (waba-…) or its ARN.")],
    flows_dir: Annotated[Path, typer.Option(help="Flows directory (its _whatsapp.yaml).")] = Path("flows"),
) -> None:
    """Compare flows/_whatsapp.yaml with the templates the account holds (needs AWS credentials)."""
    import boto3

    from nudge.adapters.whatsapp import list_templates
    from nudge.domain.whatsapp import account_problems
    from nudge.flow_files import load_whatsapp_templates

    declared = load_whatsapp_templates(flows_dir)
    problems = account_problems(declared, list_templates(boto3.client("socialmessaging"), waba_id))
    for problem in problems:
        console.print(f"✗ {problem}")
    if problems:
        raise typer.Exit(1)
    console.print(f"✓ {len(declared.templates)} declared template(s) approved in the account as declared")


dlq_app = typer.Typer(help="The dead-letter queue: see what failed for long, replay the work (docs/deploy.md).")
app.add_typer(dlq_app, name="dlq")


def _queues(stage: str, dlq_url: str | None, work_url: str | None, jobs_url: str | None) -> tuple[Any, str, str, str]:
    import boto3

    sqs = boto3.client("sqs")
    dlq = dlq_url or sqs.get_queue_url(QueueName=f"nudge-{stage}-step-dlq")["QueueUrl"]
    work = work_url or sqs.get_queue_url(QueueName=f"nudge-{stage}-work")["QueueUrl"]
    jobs = jobs_url or sqs.get_queue_url(QueueName=f"nudge-{stage}-jobs")["QueueUrl"]
    return sqs, dlq, work, jobs


def _campaigns_queue(sqs: Any, stage: str) -> str | None:
    """The campaigns' queue of the stage, or None for a stage deployed before it (pieces go to jobs)."""
    try:
        return str(sqs.get_queue_url(QueueName=f"nudge-{stage}-campaigns")["QueueUrl"])
    except Exception:  # noqa: BLE001 - QueueDoesNotExist: the jobs queue takes campaign pieces too
        return None


@dlq_app.command("redrive")
def dlq_redrive(
    stage: Annotated[
        str, typer.Option(help="The deployed stage (queues nudge-<stage>-step-dlq, -work and -jobs).")
    ] = "dev",
    dry_run: Annotated[bool, typer.Option(help="Only list what would be replayed.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many dead letters.")] = 1000,
    dlq_url: Annotated[str | None, typer.Option(help="The dead-letter queue's URL (default: by stage).")] = None,
    work_url: Annotated[str | None, typer.Option(help="The work queue's URL (default: by stage).")] = None,
    jobs_url: Annotated[str | None, typer.Option(help="The daily job's queue URL (default: by stage).")] = None,
) -> None:
    """Replay the nudge work in the dead-letter queue onto its queue; list what cannot be replayed."""
    from nudge.cli.dlq import REPLAYABLE, redrive

    sqs, dlq, work, jobs = _queues(stage, dlq_url, work_url, jobs_url)
    campaigns = _campaigns_queue(sqs, stage)
    report = redrive(sqs, dlq, work, jobs, campaigns_url=campaigns, dry_run=dry_run, limit=limit)
    for letter in report.kept:
        console.print(f"kept   {letter.kind:<15} {letter.detail}")
    verb = "would replay" if dry_run else "replayed"
    console.print(
        f"{verb} {report.replayed if not dry_run else sum(k.kind in REPLAYABLE for k in report.kept)}; "
        f"kept {sum(k.kind not in REPLAYABLE for k in report.kept)} (not nudge work: see each line)"
    )


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


# Where an import writes: a throwaway moto deployment (the default, a dry run), or the deployed tables.
ImportTarget = Annotated[
    bool,
    typer.Option(
        "--local/--settings-from-env",
        help="Into a throwaway moto deployment (a dry run), or into the tables NUDGE_* variables name.",
    ),
]
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
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="moto (as --local), memory (a dry run in memory, fastest), or aws (as --settings-from-env)."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="Threads reading and writing DynamoDB.")] = 8,
) -> None:
    """Import past orders: contacts, aggregates, stages and segments, without starting a flow or sending.

    Streams the file (memory does not grow with it), writes 100 contacts a request, and resumes an
    interrupted import of the same file where it stopped. Exits 1 if the file holds no valid order.
    """
    import hashlib
    import time

    from nudge.services.order_import import Format, ImportFormatError, ImportProgress

    _quiet_lambda_logs()
    try:
        chosen = Format(fmt)
    except ValueError:
        console.print(f"[red]✗[/] --format is one of {', '.join(f.value for f in Format)}, not {fmt!r}")
        raise typer.Exit(2) from None
    target = to or ("moto" if local else "aws")
    if target not in ("moto", "memory", "aws"):
        console.print(f"[red]✗[/] --to is one of moto, memory, aws, not {target!r}")
        raise typer.Exit(2)
    digest = hashlib.sha256()
    with file.open("rb") as raw:
        for block in iter(lambda: raw.read(1 << 20), b""):
            digest.update(block)
    stack = None
    if target == "moto":
        from nudge.clocks import ScaledClock
        from nudge.local.moto_stack import start_moto_stack

        stack = start_moto_stack(ScaledClock())
        container = stack.container
    elif target == "memory":
        from nudge.clocks import SystemClock
        from nudge.wiring import build_dry_run

        container = build_dry_run(SystemClock())
    else:
        from nudge.clocks import SystemClock
        from nudge.settings import Settings
        from nudge.wiring import build_aws

        container = build_aws(Settings.from_env(os.environ), SystemClock())
    size = file.stat().st_size
    read = [0]
    last_line = [time.monotonic()]

    def counted(lines: Iterable[str]) -> Iterator[str]:
        for text in lines:
            read[0] += len(text)
            yield text

    def show(done: ImportProgress) -> None:
        # Reading: the share of the file's bytes read; writing: the share of the groups of customers written.
        share = (min(read[0], size) / size if size else 1.0) if done.phase == "reading" else done.share
        if bar is not None and task is not None:
            bar.update(task, completed=share, description=f"{done.phase}: {done.orders:,} orders")
        elif done.phase == "recommendations" or time.monotonic() - last_line[0] >= 10:
            last_line[0] = time.monotonic()
            print(f"import: {done.phase}: {done.rows:,} rows, {done.orders:,} orders ({share:.0%})", flush=True)

    from nudge.wiring import bulk_importer

    importer = bulk_importer(container, workers=workers if target != "memory" else 1)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    # Piped or in CI: no bar, a log line every 10 seconds instead.
    bar = (
        Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=console, transient=True)
        if console.is_terminal
        else None
    )
    try:
        started = time.perf_counter()
        with bar if bar is not None else _nothing(), file.open(newline="", encoding="utf-8-sig") as lines:
            task = bar.add_task("reading", total=1.0) if bar is not None else None
            try:
                report = importer.run(counted(lines), chosen, file_key=digest.hexdigest()[:32], progress=show)
            except ImportFormatError as exc:
                console.print(f"[red]✗[/] {file}: {exc}")
                raise typer.Exit(1) from None
        elapsed = time.perf_counter() - started
    finally:
        if stack is not None:
            stack.stop()
    where = {
        "moto": "a throwaway moto deployment (dry run)",
        "memory": "memory (dry run)",
        "aws": "the deployed tables",
    }
    console.print(f"{file} ({chosen.value}) into {where[target]}:", highlight=False)
    if report.resumed_groups:
        console.print(
            f"  resumed: {report.resumed_groups} of {report.groups} groups of customers were written before "
            "(a checkpoint of this file)",
            highlight=False,
        )
    console.print(
        f"  rows read {report.rows} · orders found {report.orders_found} · imported {report.orders_imported} · "
        f"duplicates skipped {report.duplicates} · cancellations and refunds {report.adjustments} · "
        f"rows rejected {report.rejected_rows}",
        highlight=False,
    )
    by_stage = ", ".join(f"{stage} {n}" for stage, n in sorted(report.stages.items(), key=lambda s: (-s[1], s[0])))
    console.print(f"  contacts {sum(report.stages.values())}: {by_stage or '-'}", highlight=False)
    console.print(
        f"  recommendations: {report.copurchase_orders} orders, {report.products} products in the co-purchase table",
        highlight=False,
    )
    console.print(f"  {elapsed:.2f} s, {report.rows / elapsed if elapsed else 0:,.0f} rows/s", highlight=False)
    for rejected in report.rejected:
        console.print(f"  [yellow]line {rejected.line}[/]: {rejected.reason}", highlight=False)
    if report.rejected_rows > len(report.rejected):
        console.print(f"  … and {report.rejected_rows - len(report.rejected):,} more rejected rows", highlight=False)
    if report.orders_imported + report.duplicates == 0:
        # Nothing valid in the whole file (every row rejected, or no rows): a script must not read it as done.
        console.print(f"[red]✗[/] {file}: no valid order found; nothing was imported")
        raise typer.Exit(1)


def _import_target(local: bool) -> tuple[Any, Any]:
    """(the moto stack to stop, or None; the container an import writes through)."""
    if local:
        from nudge.clocks import ScaledClock
        from nudge.local.moto_stack import start_moto_stack

        stack = start_moto_stack(ScaledClock())
        return stack, stack.container
    from nudge.clocks import SystemClock
    from nudge.settings import Settings
    from nudge.wiring import build_aws

    return None, build_aws(Settings.from_env(os.environ), SystemClock())


@import_app.command("storefront")
def import_storefront(
    file: Annotated[Path, typer.Argument(help="A JSON document from the platform's REST API.", exists=True)],
    site: Annotated[str, typer.Option(help="The shop's *.myshopify.com domain, or the WooCommerce host.")],
    platform: Annotated[str, typer.Option(help="shopify or woocommerce.")] = "shopify",
    local: ImportTarget = True,
) -> None:
    """A first sync: customers, open checkouts, orders and products as the shop has them, starting no flow."""
    import json

    from nudge.cli.storefront_import import TOPICS, ImportFormatError, backfill_storefront

    _quiet_lambda_logs()
    if platform not in TOPICS:
        console.print(f"[red]✗[/] --platform is one of {', '.join(TOPICS)}, not {platform!r}")
        raise typer.Exit(2)
    stack, container = _import_target(local)
    try:
        try:
            document = json.loads(file.read_text(encoding="utf-8-sig"))
            shop = site.strip().lower()
            counts = backfill_storefront(container.webhooks, platform, shop, document, container.clock.now())
        except (ValueError, ImportFormatError) as exc:
            console.print(f"[red]✗[/] {file}: {exc}")
            raise typer.Exit(1) from None
    finally:
        if stack is not None:
            stack.stop()
    where = "a throwaway moto deployment (dry run)" if local else "the deployed tables"
    listed = " · ".join(f"{name} {counts[name]}" for name in TOPICS[platform] if counts[name])
    console.print(f"{file} ({platform}, {site}) into {where}: {listed}", highlight=False)
    console.print(
        f"  imported {counts['imported']} · already seen {counts['already seen']} · ignored {counts['ignored']}",
        highlight=False,
    )


history_app = typer.Typer(
    help="Public purchase histories to backtest on (fetched, never committed).", no_args_is_help=True
)
app.add_typer(history_app, name="history")


@history_app.command("cdnow")
def history_cdnow(
    out: Annotated[Path, typer.Option(help="Where to write the orders (the import's minimal CSV).")] = Path(
        ".cache/cdnow_orders.csv"
    ),
    cache: Annotated[Path, typer.Option(help="Where the lifetimes package is unpacked.")] = Path(".cache/lifetimes"),
) -> None:
    """CDNOW's 69,659 purchases (1997-98), from the lifetimes package, as orders for `nudge backtest`."""
    from nudge.local.datasets import DatasetUnavailable, cdnow_orders, fetch_cdnow

    try:
        source = fetch_cdnow(cache)
    except DatasetUnavailable as exc:
        console.print(f"[red]✗[/] {exc}")
        raise typer.Exit(1) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    with source.open(encoding="utf-8") as lines, out.open("w", encoding="utf-8", newline="") as target:
        target.writelines(cdnow_orders(lines))
    with out.open(encoding="utf-8") as written:
        rows = sum(1 for _ in written) - 1  # less the header
    console.print(f"wrote {out}: {rows:,} orders from {source} (--format minimal)", highlight=False)


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


def _key_service() -> KeyService:
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
