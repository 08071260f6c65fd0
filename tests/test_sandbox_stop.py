"""Stopping a sandbox (the end of every CLI command that used one) is immediate, and still
lets an answer being written finish: nobody loses a download because the command ended."""

from __future__ import annotations

import io
import threading
import time

import httpx
from PIL import Image

from portrait_studio.testing.sandbox import start_sandbox


def _ready_sample(http: httpx.Client, url: str, key: str) -> str:
    accepted = http.post(f"{url}/v1/flux-pro-1.1", json={"prompt": "p", "seed": 3}, headers={"x-key": key}).json()
    for _ in range(100):
        answer = http.get(accepted["polling_url"], headers={"x-key": key}).json()
        if answer["status"] == "Ready":
            return str(answer["result"]["sample"])
        time.sleep(0.02)
    raise AssertionError("still pending")


def test_stop_ends_the_server_and_closes_idle_kept_alive_connections(tmp_path):
    sb = start_sandbox("bfl", latency=0.0, state_dir=tmp_path)
    http = httpx.Client()
    try:
        _ready_sample(http, sb.url, sb.key)  # leaves a kept-alive connection open
        sb.stop()
        assert not sb._server  # the server thread ended (stop joined it)
        try:
            http.get(f"{sb.url}/v1/get_result?id=x", headers={"x-key": sb.key}, timeout=2)
        except httpx.TransportError:
            pass  # nothing listens any more: the request cannot reach a server
        else:
            raise AssertionError("a stopped sandbox still answered")
    finally:
        http.close()
    again = start_sandbox("bfl", state_dir=tmp_path)  # the state folder is free for the next command
    again.stop()


def test_a_download_being_written_when_the_sandbox_stops_is_delivered_whole():
    sb = start_sandbox("bfl", latency=0.0)
    with httpx.Client() as http:
        sb.inject("slow_download", delay=0.5)  # a task's download faults are drawn when it is accepted
        sample = _ready_sample(http, sb.url, sb.key)
        started = threading.Event()
        got: dict[str, object] = {}

        def download() -> None:
            with http.stream("GET", sample, timeout=5) as answer:
                started.set()  # the head is here; the body trickles out for half a second
                got["status"], got["body"] = answer.status_code, answer.read()

        reader = threading.Thread(target=download)
        reader.start()
        assert started.wait(5)
        sb.stop()
        reader.join(timeout=5)
    assert got["status"] == 200
    with Image.open(io.BytesIO(got["body"])) as image:  # type: ignore[arg-type]
        image.load()  # the whole image, not a truncated one
