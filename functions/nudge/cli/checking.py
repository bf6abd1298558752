"""One way `nudge validate` and `nudge campaign validate` report files: ✗ per problem, ✓ per clean item."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from rich.console import Console

T = TypeVar("T")


def report_checks(
    console: Console,
    targets: Sequence[Path],
    load: Callable[[Path], Sequence[T]],
    check: Callable[[T], tuple[str, list[str], str]],
) -> tuple[int, int]:
    """Load each target (a file or a directory), check each item it holds, print the verdicts; (items checked,
    problems). `check` gives an item's label, its problems, and what ✓ says of it; a file that does not load
    counts one problem per line of its error."""
    from nudge.flow_files import FlowFileError

    checked = problems = 0
    for target in targets:
        try:
            items = load(target)
        except FlowFileError as exc:
            for line in str(exc).splitlines():
                console.print(f"[red]✗[/] {line}")
                problems += 1
            continue
        for item in items:
            checked += 1
            label, found, ok = check(item)
            for line in found:
                console.print(f"[red]✗[/] {label}: {line}")
            problems += len(found)
            if not found:
                console.print(f"[green]✓[/] {label}: {ok}")
    return checked, problems
