"""The cyclic garbage collector, paused while a Lambda function starts cold (ADR 0020, Decision 10).

A cold start makes a few hundred thousand objects that live as long as the process: modules, classes, the
compiled catalog, the clients. Each time 700 of them have been made the collector scans the youngest, and
every tenth time the older ones too, all of it still alive: 8–25 % of a cold start's CPU for no garbage
(docs/benchmarks.md). So in Lambda (`AWS_EXECUTION_ENV` names it) importing `nudge.handlers` pauses the
collector, and the end of the first invocation resumes it (`resume`, from the logger's wrapper, the
outermost of every handler): what the cold start made is frozen first (`gc.freeze`: moved to a generation
the collector never scans, as they will never be garbage), then collection runs as usual. Meanwhile
reference counting frees everything that is not part of a cycle; only cycles made by the import and the
first invocation wait for the resume. Elsewhere (tests, the CLI, `nudge serve`) nothing changes.
"""

from __future__ import annotations

import gc
import os

_paused = False
_resumed = False  # the cold start is over: never paused again


def in_lambda() -> bool:
    return os.environ.get("AWS_EXECUTION_ENV", "").startswith("AWS_Lambda_")


def pause_for_cold_start() -> None:
    """Pause the collector if this is a Lambda function's cold start and nothing else paused it."""
    global _paused
    if in_lambda() and gc.isenabled() and not _paused and not _resumed:
        gc.disable()
        _paused = True


def resume() -> None:
    """Freeze what the cold start made and collect as usual from now on (idempotent)."""
    global _paused, _resumed
    if _paused:
        _paused, _resumed = False, True
        gc.freeze()
        gc.enable()


def paused() -> bool:
    return _paused
