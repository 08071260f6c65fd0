"""Adaptive polling and the lean HTTP transport of the hosted clients.

The stories: the client learns how long a model takes and then polls each task about
once, right after it should have finished; until it knows, one scout task polls densely
and wakes the others; the transport under httpx reuses connections, reads every framing
HTTP/1.1 allows, and reports failures the way the never-pay-twice logic expects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from portrait_studio.providers._hosted import (
    HostedOptions,
    Latency,
    LatencyLog,
    next_poll_delay,
    on_wake_grid,
)
from portrait_studio.providers._wire import LeanTransport, lean_transport
from portrait_studio.providers.bfl import BflOptions, BflProvider
from portrait_studio.records import Request
from portrait_studio.testing.sandbox import start_sandbox

OPTS = HostedOptions()


def test_with_a_known_latency_the_first_poll_lands_just_after_the_expected_finish() -> None:
    fixed = Latency(2.0, 2.0, 2.0)  # every task took 2 s
    assert next_poll_delay(fixed, 0.3, polls=0, scout=False, options=OPTS) == pytest.approx(2.01 - 0.3)
    assert next_poll_delay(fixed, 2.1, polls=0, scout=False, options=OPTS) == 0.0  # overdue: poll now
    # still running after that: short steps (1.5% of the latency, at least 50 ms) that grow with the time overdue
    steps = [next_poll_delay(fixed, 2.05 + k, polls=1 + k, scout=False, options=OPTS) for k in range(20)]
    assert steps[0] == pytest.approx(0.05) and steps == sorted(steps) and steps[-1] == OPTS.poll_max_interval_s
    assert next_poll_delay(Latency(0.5, 0.5, 0.5), 0.6, polls=3, scout=False, options=OPTS) >= OPTS.poll_min_interval_s


def test_the_schedule_reads_the_spread_of_the_learnt_latencies() -> None:
    spread = Latency(4.0, 5.0, 6.0)  # tasks took 4 to 6 s
    assert next_poll_delay(spread, 1.0, polls=0, scout=False, options=OPTS) == pytest.approx(4.025 - 1.0)
    # crossing the 2 s spread takes about four polls, not forty
    assert next_poll_delay(spread, 4.1, polls=1, scout=False, options=OPTS) == pytest.approx(0.5)
    assert next_poll_delay(Latency(5.0, 5.0, 5.0), 5.1, polls=1, scout=False, options=OPTS) == pytest.approx(0.075)


def test_before_any_latency_is_known_one_scout_polls_for_the_tasks_waiting() -> None:
    def scout(t: float, waiting: int) -> float:
        return next_poll_delay(None, t, polls=1, scout=True, waiting=waiting, options=OPTS)

    # a batch of 24: every 100 ms until 4% of the time elapsed is longer, never sparser than 0.5 s
    assert [scout(t, 24) for t in (0.1, 1.0, 2.0, 4.0, 30.0)] == pytest.approx([0.1, 0.1, 0.1, 0.16, 0.5])
    assert scout(1.0, 3) == pytest.approx(0.5 / 3)  # three tasks: together they poll no faster than 2 per second
    assert scout(1.0, 1) == OPTS.poll_interval_s  # a lone task polls at the providers' documented pace
    assert next_poll_delay(None, 0.5, polls=0, scout=False, options=OPTS) == OPTS.poll_max_interval_s


def test_the_latency_estimate_follows_what_the_polls_saw() -> None:
    log = LatencyLog()
    assert log.estimate is None and log.enlist_scout() and not log.enlist_scout()  # one scout per model
    log.observe(1.9, 2.1)  # running at 1.9 s, done at 2.1 s
    assert log.estimate == pytest.approx(2.0)
    for _ in range(20):  # every first poll finds the task done: the estimate creeps down to find the edge
        log.observe(None, 2.04)
    assert 1.95 < log.estimate < 2.0  # type: ignore[operator]
    for _ in range(20):  # the provider's own figure beats timing polls through a busy server
        log.observe(None, 2.6, reported=2.25)
    assert log.estimate == pytest.approx(2.25)


def _portrait(i: int) -> Request:
    return Request(model="flux-1.1-pro", provider="bfl", prompt=f"portrait {i}", seed=i, width=256, height=256,
                   output_format="jpeg")


def test_once_the_latency_is_known_each_task_is_polled_about_once() -> None:
    with start_sandbox("bfl", latency=0.8) as sb:
        provider = BflProvider.for_sandbox(sb)  # default polling settings

        async def shoot() -> tuple[float, int, float, int]:
            try:
                t0 = time.perf_counter()
                await asyncio.gather(*(provider.submit(_portrait(i)) for i in range(6)))
                first, polls_first = time.perf_counter() - t0, sb.stats.polls
                t0 = time.perf_counter()
                await asyncio.gather(*(provider.submit(_portrait(10 + i)) for i in range(6)))
                return first, polls_first, time.perf_counter() - t0, sb.stats.polls - polls_first
            finally:
                await provider.aclose()

        first, first_polls, second, second_polls = asyncio.run(shoot())
    assert first_polls <= 6 + 20  # five tasks wait for the scout instead of polling on their own
    assert second_polls <= 6 * 2  # the first poll is right (or one step early)
    assert second < 0.8 * 1.5 + 0.5  # and nobody sleeps past the finish


def test_once_the_latency_is_learnt_the_first_poll_lands_within_one_percent_of_the_finish(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The client used to add 2% of the latency before its first poll; now it is 0.5%:
    on a 2 s model, 10 ms instead of 40 ms between the finish and the poll that sees it."""
    asked: dict[str, float] = {}
    accepted: dict[str, float] = {}
    get = BflProvider.get_with_retries

    async def recording(self: BflProvider, url: Any, **kw: Any) -> httpx.Response:
        asked.setdefault(str(url), time.time())
        return await get(self, url, **kw)

    async def on_accepted(ticket: Any) -> None:
        accepted[ticket.polling_url] = ticket.accepted_at

    monkeypatch.setattr(BflProvider, "get_with_retries", recording)
    latency = 1.5
    with start_sandbox("bfl", latency=latency) as sb:
        provider = BflProvider.for_sandbox(sb)  # default polling settings

        async def shoot() -> int:
            try:
                await provider.submit(_portrait(0))  # learns the latency
                asked.clear()
                before = sb.stats.polls
                await asyncio.gather(*(provider.submit(_portrait(1 + i), on_accepted) for i in range(6)))
                return sb.stats.polls - before
            finally:
                await provider.aclose()

        polls = asyncio.run(shoot())
    assert polls <= 6 + 1  # one poll per task (a busy machine may make one land early)
    late = sorted((asked[url] - at) / latency - 1 for url, at in accepted.items())
    assert late[0] < 0.015  # the old schedule could not poll before 2% past the finish


def test_polls_due_within_the_same_10_ms_wake_the_client_once() -> None:
    """Six tasks accepted a few ms apart are due to poll a few ms apart; each wakeup of an idle
    client costs CPU (more than the poll on a VM), so they wake together, at most 10 ms later."""
    now = 1000.0037
    due = [0.2, 0.2004, 0.2021, 0.2049, 0.2055, 0.2059]
    assert len({round(now + on_wake_grid(d, now), 9) for d in due}) == 1
    for delay in (0.0, 0.001, 0.0099, 0.5, 1.23456, 30.0):
        stretched = on_wake_grid(delay, now)
        assert 0 <= stretched - delay < 0.01
        assert round((now + stretched) * 100, 6) == round((now + stretched) * 100)  # on the grid


def test_a_lone_task_of_an_unknown_model_is_polled_at_the_documented_pace() -> None:
    """BFL's and Replicate's own loops poll every 0.5 s; a scout polling for nobody else
    keeps to that (it used to poll every 0.1 s), a scout for a batch polls more often."""
    with start_sandbox("bfl", latency=1.2) as sb:
        provider = BflProvider.for_sandbox(sb)

        async def shoot() -> None:
            try:
                await provider.submit(_portrait(0))
            finally:
                await provider.aclose()

        asyncio.run(shoot())
        polls = sb.stats.polls
    assert polls <= 1.2 / 0.5 + 2


def test_the_sandbox_answers_a_kept_alive_connection_at_once() -> None:
    """uvicorn writes an answer's head and body separately; on a socket with Nagle on, the
    body waited for the client's delayed ACK (~40 ms a request, every request)."""
    import socket

    with start_sandbox("bfl") as sb, socket.create_connection(("127.0.0.1", sb.port)) as conn:
        ask = f"GET /v1/credits HTTP/1.1\r\nhost: 127.0.0.1\r\nx-key: {sb.key}\r\n\r\n".encode()
        took = []
        for _ in range(15):
            t0 = time.perf_counter()
            conn.sendall(ask)
            data = b""
            while not (b"\r\n\r\n" in data and data.endswith(b"}")):
                data += conn.recv(65536)
            took.append(time.perf_counter() - t0)
    assert sorted(took)[len(took) // 2] < 0.02


# --- the transport -----------------------------------------------------------------------
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Any]]:
    """A bare TCP server on loopback with a handler per connection; counts connections."""
    servers: list[asyncio.base_events.Server] = []

    async def start(handler: Handler) -> tuple[str, dict[str, int]]:
        seen = {"connections": 0}

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen["connections"] += 1
            try:
                await handler(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen

    yield start
    for server in servers:
        server.close()


async def _request_head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    if length:
        await reader.readexactly(length[0])
    return head


async def test_the_transport_keeps_connections_alive_and_reads_every_framing(raw_server: Any) -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\nContent-Type: application/json\r\n\r\n{\"status\":\"one\"}\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while answers:
            await _request_head(reader)
            answer = answers.pop(0)
            writer.write(answer)
            await writer.drain()
            if b"Connection: close" in answer:
                return

    url, seen = await raw_server(handler)
    async with httpx.AsyncClient(transport=LeanTransport()) as client:
        first = await client.get(f"{url}/a")
        second = await client.post(f"{url}/b", json={"x": 1})
        third = await client.get(f"{url}/c")
        fourth = await client.get(f"{url}/d")
    assert first.json() == {"status": "one"} and second.text == "hello world"
    assert third.status_code == 204 and third.content == b"" and fourth.text == "until the end"
    assert seen["connections"] == 1  # one kept-alive connection carried all four


async def test_the_clients_fast_path_decodes_bodies_and_leaves_redirects_to_httpx(raw_server: Any) -> None:
    """Polls and downloads skip httpx's request machinery; what they get back must still be
    what httpx would give: a gzip body decoded, a redirect followed."""
    import gzip

    answers = {
        b"/zipped": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n",
        b"/moved": b"HTTP/1.1 302 Found\r\nLocation: /plain\r\nContent-Length: 0\r\n\r\n",
        b"/plain": b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}",
    }
    packed = gzip.compress(b'{"status":"zipped"}')

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await _request_head(reader)
            except asyncio.IncompleteReadError:
                return
            path = head.split(b" ")[1]
            if path == b"/zipped":
                writer.write(answers[path] % len(packed) + packed)
            else:
                writer.write(answers[path])
            await writer.drain()

    url, _ = await raw_server(handler)
    provider = BflProvider("key", BflOptions(base_url=url))
    try:
        assert provider._wire is not None  # the fast path is on
        assert (await provider._get(f"{url}/zipped", None, 5.0)).json() == {"status": "zipped"}
        assert (await provider._get(f"{url}/moved", {"x-key": "key"}, 5.0)).json() == {"status": "ok"}
    finally:
        await provider.aclose()


async def test_connect_failures_are_connect_errors_so_a_submission_may_be_retried() -> None:
    with start_sandbox("bfl") as sb:
        port = sb.port
    async with httpx.AsyncClient(transport=LeanTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"http://127.0.0.1:{port}/v1/flux-pro-1.1", json={})


async def test_a_post_on_a_connection_that_died_is_never_sent_twice(raw_server: Any) -> None:
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await _request_head(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        requests.append(await _request_head(reader))  # the next request arrives ... and the server dies

    url, seen = await raw_server(handler)
    async with httpx.AsyncClient(transport=LeanTransport()) as client:
        assert (await client.get(f"{url}/first")).text == "ok"
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"{url}/submit", json={"paid": True})
    assert seen["connections"] == 1 and len(requests) == 2  # sent once, not re-sent on a new connection


async def test_a_get_on_a_kept_alive_connection_that_died_is_sent_again_once(raw_server: Any) -> None:
    served: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(await _request_head(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        if len(served) == 1:
            await _request_head(reader)  # read the second request, then drop without answering

    url, seen = await raw_server(handler)
    async with httpx.AsyncClient(transport=LeanTransport()) as client:
        assert (await client.get(f"{url}/poll")).text == "ok"
        assert (await client.get(f"{url}/poll")).text == "ok"
    assert seen["connections"] == 2


async def test_a_silent_server_is_a_read_timeout(raw_server: Any) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request_head(reader)
        await asyncio.sleep(2)

    url, _ = await raw_server(handler)
    async with httpx.AsyncClient(transport=LeanTransport(), timeout=httpx.Timeout(0.2)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{url}/slow")


def test_a_configured_proxy_hands_the_wire_back_to_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(lean_transport(None), LeanTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert lean_transport(None) is None
    provider = BflProvider("key", BflOptions())
    assert not isinstance(provider._client._transport, LeanTransport)
    asyncio.run(provider.aclose())


def test_when_the_scouts_task_fails_another_task_takes_over_at_once() -> None:
    from portrait_studio.errors import GenerationFailed

    with start_sandbox("bfl", latency=0.6) as sb:
        sb.inject("fail")  # the first task accepted (the scout) ends in error
        provider = BflProvider.for_sandbox(sb)  # default settings: the others' safety net is 4 s

        async def shoot() -> tuple[list[Any], float]:
            try:
                t0 = time.perf_counter()
                outcomes = await asyncio.gather(*(provider.submit(_portrait(i)) for i in range(4)),
                                                return_exceptions=True)
                return outcomes, time.perf_counter() - t0
            finally:
                await provider.aclose()

        outcomes, wall = asyncio.run(shoot())
    assert sum(isinstance(o, GenerationFailed) for o in outcomes) == 1
    assert wall < 0.6 + 1.5  # not the 4 s the others would sleep without a scout


async def test_a_client_of_a_plain_http_sandbox_loads_no_tls_context_and_an_https_one_loads_it_once(
        raw_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the CA bundle costs 20-35 ms of every process's start; the sandbox on this machine
    speaks plain HTTP, so its clients never need it. Over https the context is made on the first
    connection, once, and a provider's own verify setting (off here) still applies."""
    import ssl

    from portrait_studio.providers import _hosted

    made: list[bool] = []
    real = _hosted._shared_ssl_context

    def counted(verify: bool) -> ssl.SSLContext:
        made.append(verify)
        return real(verify)

    monkeypatch.setattr(_hosted, "_shared_ssl_context", counted)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request_head(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}')
        await writer.drain()

    url, _ = await raw_server(handler)
    provider = BflProvider("key", BflOptions(base_url=url))
    assert isinstance(provider._client._transport, LeanTransport)
    assert (await provider._client.get(f"{url}/v1/get_result?id=x")).json() == {}
    await provider.aclose()
    assert made == []
    with start_sandbox("fal") as tls_sandbox:  # fal's sandbox speaks https, with its own certificate
        https_url = tls_sandbox.url
        assert https_url.startswith("https://")
        insecure = BflProvider("key", BflOptions(base_url=https_url, verify=False))
        for _ in range(2):
            await insecure._client.get(f"{https_url}/v1/get_result?id=x")
        await insecure.aclose()
    assert made == [False]  # made once, on the first https connection, without verification as asked
