"""`nudge serve` over real loopback HTTP: the README's curl commands work, and the pump fires on time."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from nudge.local.server import LocalServer, start_server
from tests.conftest import ROOT

pytestmark = pytest.mark.xdist_group("serve")


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- serve-curl:begin -->\n```sh\n(.*?)```\n<!-- serve-curl:end -->", text, re.S)
    assert match, "README.md lost its serve-curl block"
    return match.group(1)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    running = start_server(port=0, speed=3600, pump_every=0.2)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")), reason="needs curl and openssl")
def test_the_readme_curl_commands_work_against_nudge_serve(server: LocalServer) -> None:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_block()],
        env={"PATH": os.environ["PATH"]} | server.environment,
        capture_output=True,
        text=True,
        timeout=600,  # a guard against a hang, not a speed check: it took over 60 s on a machine at load 10
        check=False,
    )

    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    track, identify, checkout, retry, order, signup, ping, forged = answers
    assert (track["type"], track["started"]) == ("checkout_started", ["abandoned_cart"])
    assert (identify["type"], identify["contact_id"]) == ("identify", "u_1")
    assert checkout["started"] == ["abandoned_cart"]
    assert (order["exited"], order["started"]) == (["abandoned_cart"], ["post_purchase", "sunset", "win_back"])
    assert retry["duplicate"] is True
    assert signup == {"status": "subscribed"}
    assert ping == {"ping": True}
    assert (forged["status"], forged["type"]) == (401, "urn:nudge:problem:unauthorized")


def test_the_pump_fires_due_steps_in_compressed_time(server: LocalServer) -> None:
    from nudge.domain.model import ContactPatch, Event

    # Given a checkout: its first reminder is due an hour later, which at x3600 is a second
    server.stack.container.ingest.ingest(
        Event(
            "evt_pump",
            "checkout_started",
            ContactPatch(email="dee@example.com", email_marketing=True),
            {"checkout_id": "chk_p", "recovery_url": "https://shop.example/c/chk_p"},
            server.clock.now(),
        )
    )
    # When the background pump runs for a few wall-clock seconds
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not server.stack.sent_emails():
        time.sleep(0.2)

    # Then the reminder went out through SES, without anyone calling the step handler by hand
    [reminder] = server.stack.sent_emails()
    assert "Subject: You left something in your cart" in reminder.raw_data


def test_serve_refuses_a_non_loopback_address() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        start_server(host="0.0.0.0", port=0)


def test_events_tail_shows_what_arrived_and_what_it_started(server: LocalServer) -> None:
    from typer.testing import CliRunner

    from nudge.cli.main import app
    from nudge.local import gateway

    body = json.dumps(
        {
            "userId": "u_9",
            "event": "Checkout Started",
            "properties": {"checkout_id": "c9", "recovery_url": "https://shop.example/c/c9"},
        }
    )
    gateway.invoke(
        "POST",
        "/v1/track",
        body=body.encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {server.secret_key}"},
    )

    result = CliRunner().invoke(app, ["events", "tail", "--url", server.url, "--count", "1"])

    assert result.exit_code == 0, result.output
    assert re.search(r"checkout_started\s+u_9\s+segment:\S+\s+started abandoned_cart", result.output)
