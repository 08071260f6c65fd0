"""Learnt model latencies kept between processes (`<studio>/latency.json`).

The stories: a command that follows another polls each task about once, at the latency the
earlier command learnt, instead of starting cold; the file is a cache that can be missing,
corrupt or written by two processes at once without harm; a sandbox never teaches the real
API's numbers (or the reverse); and a remembered latency that no longer holds costs a task at
most one documented poll interval (0.5 s) before the client re-learns it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from portrait_studio.config import Studio
from portrait_studio.providers import open_providers
from portrait_studio.providers._hosted import HostedOptions, Latency, LatencyLog, next_poll_delay
from portrait_studio.providers.bfl import BflProvider
from portrait_studio.providers.latency_store import LatencyStore
from portrait_studio.records import Request
from portrait_studio.testing.sandbox import start_sandbox

MODEL = "flux-1.1-pro"
OPTS = HostedOptions()


def _portrait(i: int) -> Request:
    return Request(model=MODEL, provider="bfl", prompt=f"portrait {i}", seed=i, width=256, height=256,
                   output_format="jpeg")


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process would: nothing learnt in memory."""
    monkeypatch.setattr(LatencyLog, "_all", {})


def _new_process() -> None:
    LatencyLog._all.clear()


def _first_polls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[float]]:
    """Record when each polling URL was asked (Unix time), in order."""
    asked: dict[str, list[float]] = {}
    get = BflProvider.get_with_retries

    async def recording(self: BflProvider, url: Any, **kw: Any) -> Any:
        asked.setdefault(str(url), []).append(time.time())
        return await get(self, url, **kw)

    monkeypatch.setattr(BflProvider, "get_with_retries", recording)
    return asked


def _shoot(studio: Studio, latency: float, n: int, accepted: dict[str, float] | None = None) -> int:
    """n portraits through a studio-made client against a fresh sandbox; the polls it answered."""
    with start_sandbox("bfl", latency=latency) as sb:
        with open_providers(studio, ["bfl"], sandbox="always", start_sandbox=lambda pid: _same(sb)) as providers:
            provider = providers["bfl"]

            async def on_accepted(ticket: Any) -> None:
                if accepted is not None:
                    accepted[ticket.polling_url] = ticket.accepted_at

            async def go() -> None:
                try:
                    await asyncio.gather(*(provider.submit(_portrait(i), on_accepted) for i in range(n)))
                finally:
                    await provider.aclose()

            asyncio.run(go())
        return int(sb.stats.polls)


class _same:
    """A context manager handing out an already running sandbox (the test stops it)."""

    def __init__(self, sb: Any) -> None:
        self.sb = sb

    def __enter__(self) -> Any:
        return self.sb

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_latency_learnt_by_one_command_places_the_next_commands_first_polls(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    studio = Studio(tmp_path, environ={})
    latency = 1.2
    _shoot(studio, latency, 1)  # the first command learns the latency and saves it
    saved = json.loads((tmp_path / "latency.json").read_text())
    assert list(saved["models"]) == [f"bfl sandbox {MODEL}"]

    _new_process()  # the next command: a new process, and a sandbox on another port
    asked = _first_polls(monkeypatch)
    accepted: dict[str, float] = {}
    polls = _shoot(studio, latency, 4, accepted)
    first = sorted(asked[url][0] - at for url, at in accepted.items())
    # Three tasks poll first right at the remembered latency and find their task done; one
    # (the scout) also polls at the documented pace on the way in case the model got faster.
    # Cold, the scout polled every ~0.12 s (14 polls or so) and woke the others.
    assert sum(1 for t in first if t >= 0.95 * latency) >= 3
    assert polls <= 4 + 3


def test_a_missing_or_corrupt_latency_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    store = LatencyStore(path)
    assert store.load() == {}  # missing
    for junk in (b"{not json", b"\x00\xff" * 50, b'{"version": 1, "models": {"k": "nope"}}', b"[1, 2]",
                 b'{"version": 99, "models": {}}', b" " * 300_000):
        path.write_bytes(junk)
        assert store.load() == {}
    studio = Studio(tmp_path, environ={})
    path.write_bytes(b"{not json")
    _shoot(studio, 0.2, 1)  # a studio with a corrupt file shoots as before, and rewrites it
    assert list(json.loads(path.read_text())["models"]) == [f"bfl sandbox {MODEL}"]


def test_an_unwritable_latency_file_never_fails_a_shoot(tmp_path: Path) -> None:
    (tmp_path / "latency.json").mkdir()  # cannot be replaced by a file
    _shoot(Studio(tmp_path, environ={}), 0.2, 1)
    assert LatencyStore(tmp_path / "latency.json").save({"k": [(1.0, time.time())]}) is False


def test_two_processes_saving_at_once_leave_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    errors: list[BaseException] = []

    def writer(key: str) -> None:
        store = LatencyStore(path)
        try:
            for i in range(30):
                store.save({key: [(1.0 + i / 100, time.time())]})
        except BaseException as exc:  # the test reports any
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"bfl sandbox m{k}",)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    loaded = LatencyStore(path).load()
    assert loaded and all(key.startswith("bfl sandbox m") for key in loaded)  # last writer wins


def test_old_samples_age_out(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    now = time.time()
    path.write_text(json.dumps({"version": 1, "models": {
        "bfl https://api.bfl.ai m": [[9.0, now - 30 * 86400], [2.0, now - 60]],
        "bfl https://api.bfl.ai old": [[9.0, now - 30 * 86400]]}}))
    assert LatencyStore(path).load() == {"bfl https://api.bfl.ai m": [(2.0, pytest.approx(now - 60, abs=1))]}


def test_a_sandbox_and_the_real_api_never_share_numbers(tmp_path: Path) -> None:
    store = LatencyStore(tmp_path / "latency.json")
    now = time.time()
    store.save({f"bfl sandbox {MODEL}": [(2.0, now)] * 5})
    real = BflProvider("a-real-key")  # api.bfl.ai
    real.remember_latencies(store)
    assert real.latency_log(MODEL).latency is None  # the sandbox's 2 s is not the real API's
    sandbox = BflProvider("sandbox-key", BflProvider.Options(base_url="http://localhost:8123"), sandbox=True)
    sandbox.remember_latencies(store)
    assert sandbox.latency_log(MODEL).estimate == pytest.approx(2.0)

    store.save({f"bfl {real.base_url} {MODEL}": [(9.0, now)] * 5})
    _new_process()
    other_sandbox = BflProvider("sandbox-key", BflProvider.Options(base_url="http://localhost:9000"), sandbox=True)
    other_sandbox.remember_latencies(store)
    assert other_sandbox.latency_log(MODEL).estimate == pytest.approx(2.0)  # not the real 9 s
    real = BflProvider("a-real-key")
    real.remember_latencies(store)
    assert real.latency_log(MODEL).estimate == pytest.approx(9.0)
    # a client pointed at another host by hand (a proxy, a sandbox URL in config.toml) has its own
    by_hand = BflProvider("k", BflProvider.Options(base_url="http://127.0.0.1:8123"))
    by_hand.remember_latencies(store)
    assert by_hand.latency_log(MODEL).latency is None
    # and a password in a proxy URL never reaches the file
    proxied = BflProvider("k", BflProvider.Options(base_url="https://me:s3cret@proxy.example:8443/bfl?token=t0k"))
    assert proxied.latency_origin == "https://proxy.example:8443/bfl"


def test_a_remembered_latency_that_is_too_long_delays_a_task_by_at_most_the_documented_pace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Saved: the model took 20 s. Now it takes 0.3 s. The scout polls every 0.5 s on its way
    to the first poll, sees its task done, and its sample replaces the remembered ones, waking
    the other tasks: each is seen done within 0.5 s (+ a status round trip) of its finish."""
    now = time.time()
    LatencyStore(tmp_path / "latency.json").save({f"bfl sandbox {MODEL}": [(20.0, now)] * 10})
    asked = _first_polls(monkeypatch)
    accepted: dict[str, float] = {}
    latency = 0.3
    t0 = time.perf_counter()
    _shoot(Studio(tmp_path, environ={}), latency, 3, accepted)
    took = time.perf_counter() - t0
    seen = [asked[url][-1] - at for url, at in accepted.items()]
    assert max(seen) <= latency + OPTS.poll_interval_s + 0.35  # the bound, plus a busy machine's slack
    assert took < 5
    saved = LatencyStore(tmp_path / "latency.json").load()[f"bfl sandbox {MODEL}"]
    assert max(s for s, _ in saved) < 1.0  # the 20 s samples were forgotten


def test_past_a_remembered_latency_the_scout_keeps_the_documented_pace_and_the_others_wait() -> None:
    short = Latency(0.2, 0.2, 0.25)  # remembered; the task has now been running for 10 s
    assert next_poll_delay(short, 10.0, polls=3, scout=True, options=OPTS, remembered=True) <= OPTS.poll_interval_s
    assert next_poll_delay(short, 0.22, polls=1, scout=False, options=OPTS, remembered=True) <= 0.05  # the spread
    # past it the others wait for the scout (it wakes them) instead of each polling on its own
    assert next_poll_delay(short, 10.0, polls=3, scout=False, options=OPTS, remembered=True) == OPTS.poll_max_interval_s
    # learnt in this process, the gaps grow with the time overdue (a slower model is not stormed)
    assert next_poll_delay(short, 10.0, polls=3, scout=False, options=OPTS) > OPTS.poll_interval_s
    # on its way to the first poll the scout keeps the documented pace; the others wait for it
    long = Latency(20.0, 20.0, 20.0)
    assert next_poll_delay(long, 0.0, polls=0, scout=True, options=OPTS, remembered=True) == OPTS.poll_interval_s
    assert next_poll_delay(long, 0.0, polls=0, scout=False, options=OPTS, remembered=True) == pytest.approx(20.1)


def test_a_remembered_latency_that_is_too_short_costs_no_poll_storm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Saved: 0.1 s. Now the model takes 1.0 s. Every task polls once at 0.1 s and finds it
    running; then one scout polls at the documented pace (or faster for a batch) and the others
    wait for it, as when nothing was known; each task is seen done soon after it is."""
    LatencyStore(tmp_path / "latency.json").save({f"bfl sandbox {MODEL}": [(0.1, time.time())] * 10})
    asked = _first_polls(monkeypatch)
    accepted: dict[str, float] = {}
    latency = 1.0
    polls = _shoot(Studio(tmp_path, environ={}), latency, 4, accepted)
    seen = [asked[url][-1] - at for url, at in accepted.items()]
    assert max(seen) <= latency + OPTS.poll_interval_s + 0.35
    assert polls <= 4 * 3 + 12  # each: a first poll, a step over the spread, one after the wake; the scout's
    saved = LatencyStore(tmp_path / "latency.json").load()[f"bfl sandbox {MODEL}"]
    assert min(s for s, _ in saved) > 0.5  # the 0.1 s samples were forgotten


def test_a_remembered_latency_is_a_prior_the_first_live_task_confirms_or_replaces() -> None:
    now = time.time()
    log = LatencyLog()
    assert log.remember([(2.0, now), (2.1, now), (1.9, now)])
    assert log.remembered and not log.settled and log.estimate == pytest.approx(2.0)
    log.observe(1.95, 2.05)  # agrees: joins the remembered samples
    assert log.settled and len(log.samples) == 4
    slower = LatencyLog()
    slower.remember([(2.0, now)] * 10)
    slower.observe(5.9, 6.1)  # the model got slower: one task re-learns it
    assert slower.estimate == pytest.approx(6.0) and list(slower.samples) == [pytest.approx(6.0)]
    learnt = LatencyLog()
    learnt.observe(0.9, 1.1)
    assert not learnt.remember([(9.0, now)])  # what this process saw beats what was saved
