"""`portrait sandbox` serves a provider sandbox until stopped."""

from __future__ import annotations

import re
import threading

import httpx
import typer
from typer.testing import CliRunner

from portrait_studio.cli.sandbox import register


def test_portrait_sandbox_serves_the_bfl_contract_on_loopback():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # keep 'sandbox' a named sub-command
    outcome: dict[str, object] = {}

    def serve() -> None:
        outcome["result"] = CliRunner().invoke(app, ["sandbox", "--port", str(port), "--latency", "0.1",
                                                     "--duration", "2"])

    thread = threading.Thread(target=serve)
    thread.start()
    answer = None
    for _ in range(100):
        try:
            answer = httpx.post(f"http://127.0.0.1:{port}/v1/flux-pro-1.1", json={"prompt": "p"},
                                headers={"x-key": "sandbox-key"})
            break
        except httpx.ConnectError:
            threading.Event().wait(0.05)
    thread.join()
    result = outcome["result"]
    assert answer is not None and answer.status_code == 200 and "polling_url" in answer.json()
    assert result.exit_code == 0, result.output
    assert re.search(rf"listening on http://127\.0\.0\.1:{port}", result.output)
    assert "stopped: 1 tasks, 4 credits spent" in result.output


def test_an_unknown_provider_is_refused():
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["sandbox", "--provider", "midjourney"])
    assert result.exit_code != 0
