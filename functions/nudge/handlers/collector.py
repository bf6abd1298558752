"""The cyclic garbage collector, paused while a Lambda function starts cold (ADR 0020, Decision 10).

A cold start makes a few hundred thousand objects that live as long as the process: modules, classes, the
compiled catalog, the clients. Each time 700 of them have been made the collector scans the youngest, and
every tenth time the older ones too, all of it still alive: 8–15 % of a cold start's CPU for no garbage
(docs/benchmarks.md). So in Lambda (`AWS_EXECUTION_ENV` names it) importing `nudge.handlers` pauses the
collector, and the first invocation, before its request, builds what the request uses (the handler's
`warm()`, through the logger's wrapper, the outermost of every handler) and resumes it (`end_cold_start`):
what the cold start made is frozen first (`gc.freeze`: moved to a generation the collector never scans,
as none of it will be garbage), then collection runs as usual. The pause covers the import and that build
only, which call no AWS API and take a fraction of a second: no request, however long (the daily sweep,
a campaign's piece), runs with the collector paused. Meanwhile reference counting frees everything that
is not part of a cycle. Elsewhere (tests, the CLI, `nudge serve`) nothing changes.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable

_paused = False
_resumed = False  # the cold start is over: never paused again
_log = logging.getLogger(__name__)


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


def end_cold_start(build: Callable[[], object] | None) -> None:
    """If the collector is paused for this cold start: build what the first request uses (`build`, the
    handler's warm()), still paused, then resume. A build that fails is logged and the collector resumes;
    the request then builds again and fails or answers as it would have without this."""
    if not _paused:
        return
    try:
        if build is not None:
            build()
    except Exception:
        _log.exception("cold start: building what the first request uses failed; the request builds it again")
    finally:
        resume()


def paused() -> bool:
    return _paused
