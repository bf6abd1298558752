"""`nudge serve`: the HTTP API on a loopback port, backed by moto, with the Scheduler pump in the background.

Requests go through the local gateway (gateway.py) to the same Lambda handlers API Gateway invokes,
as REST proxy events. moto runs in this process (mock_aws), not as a separate server: one process to
start and stop, and the handlers, the pump and the event feed see the same state. One lock serializes
handler invocations and pump rounds, as moto's in-memory backends are not built for concurrent writers.
"""

from __future__ import annotations

import ipaddress
import json
import socketserver
import threading
from collections.abc import Callable, Iterable
from dataclasses import field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from nudge.clocks import ScaledClock
from nudge.domain.frozen import dataclass
from nudge.local import gateway
from nudge.local.moto_stack import DEV_SHOPIFY_SHOP, DEV_WOOCOMMERCE_SITE, MotoStack, start_moto_stack
from nudge.ports import KeyKind

EVENTS_FEED = "/_local/events"  # local only: what `nudge events tail` reads; no Lambda serves it


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(WSGIRequestHandler):
    log_line: Callable[[str], None] | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        if self.log_line is not None:
            self.log_line(format % args)


@dataclass
class LocalServer:
    """A running `nudge serve`; `stop()` ends the pump, the HTTP server and moto."""

    url: str
    stack: MotoStack
    secret_key: str
    publishable_key: str
    clock: ScaledClock
    _httpd: WSGIServer
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def environment(self) -> dict[str, str]:
        """What the README's curl commands read."""
        return {
            "NUDGE_URL": self.url,
            "NUDGE_KEY": self.secret_key,
            "NUDGE_PK": self.publishable_key,
            "SHOPIFY_SHOP": DEV_SHOPIFY_SHOP,
            "SHOPIFY_SECRET": self.stack.webhook_secrets["shopify"][DEV_SHOPIFY_SHOP],
            "WOO_SITE": DEV_WOOCOMMERCE_SITE,
            "WOO_SECRET": self.stack.webhook_secrets["woocommerce"][DEV_WOOCOMMERCE_SITE],
        }

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self.stack.stop()


def _loopback(host: str) -> str:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"nudge serve listens on loopback only (127.0.0.1, ::1), not {host}")
    return host


def start_server(
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    speed: float = 1.0,
    pump_every: float = 1.0,
    log_line: Callable[[str], None] | None = None,
) -> LocalServer:
    """Start moto, the HTTP server (port 0 picks a free one) and the pump; returns once requests are served."""
    lock = threading.Lock()
    holder: dict[str, MotoStack] = {}

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == EVENTS_FEED:
            with lock:
                body = json.dumps(recent_events(holder["stack"], parse_qs(environ.get("QUERY_STRING", ""))))
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body.encode()]
        with lock:
            return gateway.wsgi_app(environ, start_response)

    handler = type("Handler", (_Handler,), {"log_line": staticmethod(log_line) if log_line else None})
    httpd = make_server(_loopback(host), port, app, server_class=_ThreadingServer, handler_class=handler)
    url = f"http://{host}:{httpd.server_port}"
    clock = ScaledClock(speed)
    stack = start_moto_stack(clock, public_base_url=url, daily_job=True, repair_job=True)
    holder["stack"] = stack
    secret, _ = stack.container.keys.create(KeyKind.SECRET, "nudge serve")
    publishable, _ = stack.container.keys.create(
        KeyKind.PUBLISHABLE, "nudge serve", origins=[url, "http://localhost:8000", "http://127.0.0.1:8000"]
    )
    server = LocalServer(url, stack, secret, publishable, clock, httpd)

    def pump() -> None:
        while not server._stop.wait(pump_every):
            with lock:
                stack.pump.run_until(clock.now())

    server._threads = [
        threading.Thread(target=httpd.serve_forever, name="nudge-http", daemon=True),
        threading.Thread(target=pump, name="nudge-pump", daemon=True),
    ]
    for thread in server._threads:
        thread.start()
    return server


def recent_events(stack: MotoStack, query: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Events received after ?since=<ISO time>, oldest first, with what each started and exited."""
    since = datetime.fromisoformat(query["since"][0]) if query.get("since") else None
    model = stack.container.store.models.events  # type: ignore[attr-defined]
    rows = []
    for item in model.scan():
        if since is not None and item.received_at <= since:
            continue
        outcome = item.outcome or {}
        rows.append(
            {
                "received_at": item.received_at.isoformat(),
                "event_id": item.event_id,
                "type": item.type,
                "contact_id": item.contact_id,
                "status": item.status,
                "started": outcome.get("started", []),
                "exited": outcome.get("exited", []),
            }
        )
    return sorted(rows, key=lambda row: (row["received_at"], row["event_id"]))
