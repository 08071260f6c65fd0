"""Jobs that survive restarts: background work is rows in the database, claimed under a lease; a server
killed mid-job leaves it to the next one, which finishes it without paying twice; two servers behind
one database never run one job twice."""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.config import Studio
from portrait_studio.jobs import JobContext, JobManager, job_kind
from portrait_studio.ledger import MAX_ATTEMPTS, Ledger
from portrait_studio.testing.sandbox import start_sandbox

SRC = Path(__file__).resolve().parents[1] / "src"
BRIEF = load_brief(example_brief_path("rembrandt-studio-headshot"))

_done: collections.Counter[str] = collections.Counter()
_done_by: dict[str, str] = {}
_lock = threading.Lock()


@job_kind("test-count")
def _count(ctx: JobContext) -> str:
    time.sleep(0.02)
    with _lock:
        _done[ctx.job_id] += 1
        _done_by[ctx.job_id] = ctx._manager.owner
    return ctx.job_id


def test_two_servers_behind_one_database_never_run_a_job_twice(ledger_url: str, tmp_path: Path) -> None:
    studio = Studio(tmp_path / "home", environ={}, database=ledger_url)
    queue = JobManager(studio, start=False)
    ids = [queue.submit("test-count", f"job {n}", {"n": n}).id for n in range(40)]
    one = JobManager(studio, workers=3, poll_s=0.02)
    two = JobManager(studio, workers=3, poll_s=0.02)
    try:
        for job_id in ids:
            assert queue.wait(job_id, timeout=120).status == "done"
    finally:
        one.shutdown()
        two.shutdown()
        queue.shutdown()
    assert [_done[i] for i in ids] == [1] * len(ids)
    assert {_done_by[i] for i in ids} == {one.owner, two.owner}  # both took part
    with Ledger(ledger_url) as ledger:
        assert {j.attempts for j in ledger.jobs(limit=100)} == {1}


def test_a_job_whose_worker_is_gone_is_taken_over(ledger_url: str, tmp_path: Path) -> None:
    studio = Studio(tmp_path / "home", environ={}, database=ledger_url)
    with Ledger(ledger_url) as ledger:
        stale = ledger.add_job("test-count", "left by a dead server", {})
        dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True, check=True).stdout.strip()
        assert ledger.claim_job(f"{socket.gethostname()}:{dead_pid}:gone", ttl_s=3600).id == stale.id
        elsewhere = ledger.add_job("test-count", "leased on another host", {})
        assert ledger.claim_job("otherhost:1:x", ttl_s=3600).id == elsewhere.id
        manager = JobManager(studio, workers=2, poll_s=0.02)
        try:
            assert manager.wait(stale.id, timeout=60).attempts == 2  # its process is gone: taken at once
            time.sleep(0.5)
            assert manager.get(elsewhere.id).status == "running"  # another host's lease is trusted until it ends
        finally:
            manager.shutdown()


def test_a_job_that_keeps_killing_its_server_is_given_up(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger:
        job = ledger.add_job("test-count", "poison", {})
        for n in range(MAX_ATTEMPTS):
            assert ledger.claim_job(f"otherhost:{n}:x", ttl_s=-1) is not None  # each lease ends at once
        assert ledger.claim_job("otherhost:99:x") is None
        row = ledger.job(job.id)
        assert row.status == "failed" and "stopped 5 times" in (row.error or "")


SERVER = """
import sys
import uvicorn
from portrait_studio.config import Studio
from portrait_studio.web import create_app

uvicorn.run(create_app(Studio(sys.argv[1]), checker=None), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(home), str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 90
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode()[-2000:] if proc.stderr else "server exited")
        try:
            if httpx.get(url + "/api/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not start")


def test_a_server_killed_during_a_shoot_finishes_it_after_restart_paying_once(ledger_url: str, tmp_path: Path) -> None:
    """kill -9 the server while the provider works on the shoot's three images; start it again: the job
    is picked up from the database, the run resumed (the provider's tasks polled, nothing re-sent),
    and the provider's own counters show each image paid for once."""
    home = tmp_path / "home"
    home.mkdir()
    with start_sandbox("bfl", latency=4.0) as sb:
        (home / "config.toml").write_text(f'bfl_host = "{sb.url}"\n')  # the real BFL client, pointed at the sandbox
        env = {"PYTHONPATH": str(SRC), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HUB_OFFLINE": "1",
               "PORTRAIT_STUDIO_HOME": str(home), "PORTRAIT_DATABASE": ledger_url, "BFL_API_KEY": sb.key}
        first, url = _serve(home, env)
        try:
            started = httpx.post(url + "/api/shoot", json={"brief": BRIEF.model_dump(mode="json"),
                                                           "models": ["flux-1.1-pro"], "seeds": 3}, timeout=60)
            assert started.status_code == 200, started.text
            job_id, run_id = started.json()["job_id"], started.json()["run_id"]
            end = time.monotonic() + 60
            with Ledger(ledger_url) as ledger:
                while time.monotonic() < end and sorted(r.status for r in ledger.requests(run_id)) != ["accepted"] * 3:
                    time.sleep(0.05)
                assert sorted(r.status for r in ledger.requests(run_id)) == ["accepted"] * 3
                assert sb.stats.paid == 3
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
                assert ledger.job(job_id).status == "running"  # as the killed server left it
        finally:
            if first.poll() is None:
                first.kill()
        second, url = _serve(home, env)
        try:
            end = time.monotonic() + 120
            job: dict = {}  # type: ignore[type-arg]
            while time.monotonic() < end:
                job = httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json()
                if job["status"] in ("done", "failed"):
                    break
                time.sleep(0.2)
            assert job["status"] == "done", json.dumps(job)
            assert job["attempts"] == 2
        finally:
            second.terminate()
            second.wait(timeout=20)
        assert sb.stats.paid == 3 and sb.stats.paid_twice == [] and sb.stats.submissions == 3
        with Ledger(ledger_url) as ledger:
            assert ledger.run(run_id).status == "done"
            assert [r.status for r in ledger.requests(run_id)] == ["done"] * 3
            assert len(ledger.images(run_id=run_id)) == 3
            assert ledger.spent(run_id).usd == pytest.approx(sb.stats.credits_spent * 0.01) == pytest.approx(0.12)
