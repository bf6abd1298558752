"""The handlers' structured logger: one JSON object a line, Powertools' field names, no Powertools import.

Powertools' package imports its Logger, Metrics and Tracer together (~30 ms at every cold start, ADR 0020);
the handlers use five calls of it. This writes the same fields Powertools' Logger writes, so log queries,
metric filters and the runbook's CloudWatch Logs Insights queries read both alike: `level`, `location`,
`message`, `timestamp`, `service`, the Lambda context's `cold_start`, `function_name`,
`function_memory_size`, `function_arn`, `function_request_id`, `xray_trace_id` when traced, the `extra=`
keys (None values left out), and `exception` + `exception_name` with a traceback. Not written: Powertools'
structured `stack_trace` (the `exception` text carries the same frames). The level is `POWERTOOLS_LOG_LEVEL`
or `LOG_LEVEL` (INFO by default). Standard-library loggers under `nudge.` (the SQS batch loop's) write through
the same handler.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from nudge.handlers import collector

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_Handler = TypeVar("_Handler", bound=Callable[..., Any])
_cold_start = True


class JsonFormatter(logging.Formatter):
    """A log record as Powertools' JSON line: its keys in its order, the invocation's context keys included."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self.context: dict[str, Any] = {}

    def format(self, record: logging.LogRecord) -> str:
        log: dict[str, Any] = {
            "level": record.levelname,
            "location": f"{record.funcName}:{record.lineno}",
            "message": record.getMessage(),
            "timestamp": self.formatTime(record),
            "service": self.service,
            **self.context,
        }
        log.update((key, value) for key, value in vars(record).items() if key not in _RESERVED)
        if record.exc_info and record.exc_info[0] is not None:
            log["exception"] = self.formatException(record.exc_info)
            log["exception_name"] = record.exc_info[0].__name__
        trace = os.environ.get("_X_AMZN_TRACE_ID", "")
        if trace.startswith("Root="):  # Root=1-…;Parent=…;Sampled=…: Powertools logs the root id
            log["xray_trace_id"] = trace.partition(";")[0].removeprefix("Root=")
        return json.dumps(
            {key: value for key, value in log.items() if value is not None},
            default=str,
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """Powertools' default: 2026-12-03 21:22:59,131+0000."""
        return time.strftime(f"%Y-%m-%d %H:%M:%S,{int(record.msecs):03d}%z", time.localtime(record.created))


class _Stdout(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the sys.stdout of the moment (Lambda's; a test's capture), not the one at import."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


class Logger:
    """`Logger(service=...)`: info/warning/error/exception with `extra=`, and `inject_lambda_context`."""

    def __init__(self, service: str) -> None:
        self._logger = logging.getLogger(service)
        found = [h.formatter for h in self._logger.handlers if isinstance(h.formatter, JsonFormatter)]
        if found:  # one handler per service however many handler modules make a Logger
            self._formatter = found[0]
        else:
            self._formatter = JsonFormatter(service)
            handler = _Stdout()
            handler.setFormatter(self._formatter)
            self._logger.addHandler(handler)
        self._logger.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL") or os.environ.get("LOG_LEVEL") or "INFO")
        self._logger.propagate = False

    def info(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        self._logger.info(message, extra=extra, stacklevel=2)

    def warning(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        self._logger.warning(message, extra=extra, stacklevel=2)

    def error(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        self._logger.error(message, extra=extra, stacklevel=2)

    def exception(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        self._logger.exception(message, extra=extra, stacklevel=2)

    def inject_lambda_context(
        self, *, clear_state: bool = True, cold_start: Callable[[], object] | None = None
    ) -> Callable[[_Handler], _Handler]:
        """Add the invocation's context keys to every line it logs (`clear_state`: only this invocation's).

        `cold_start`: the function's `warm()`. In Lambda the first invocation runs it before the request, the
        collector still paused, then resumes the collector (`collector.end_cold_start`, ADR 0020 Decision 10):
        the request itself always runs with the collector on.
        """

        def decorate(handler: _Handler) -> _Handler:
            @functools.wraps(handler)
            def wrapper(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
                global _cold_start
                if clear_state:
                    self._formatter.context.clear()
                self._formatter.context.update(
                    cold_start=_cold_start,
                    function_name=getattr(context, "function_name", None),
                    function_memory_size=_int(getattr(context, "memory_limit_in_mb", None)),
                    function_arn=getattr(context, "invoked_function_arn", None),
                    function_request_id=getattr(context, "aws_request_id", None),
                )
                first, _cold_start = _cold_start, False
                if first:
                    collector.end_cold_start(cold_start)
                return handler(event, context, *args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorate


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return None
