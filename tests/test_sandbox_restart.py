"""Sandboxes keep accepted tasks when their process dies, the way the real APIs do.

The stories: a client with its in-process sandbox is killed with SIGKILL at different
moments; a sandbox started again on the same state folder still has every task (and the
counters prove each was paid exactly once); tasks keep to their wall-clock schedule; the
15 faults still work after a restart; two processes never serve one folder; nothing is
left in the temp folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from portrait_studio.errors import (
    GenerationFailed,
    Moderated,
    ProviderError,
    ResultExpired,
    TaskNotFound,
    UncertainSubmission,
)
from portrait_studio.ledger import Ledger
from portrait_studio.providers.bfl import BflProvider
from portrait_studio.providers.fal import FalProvider
from portrait_studio.providers.replicate import ReplicateProvider
from portrait_studio.records import Request, Ticket
from portrait_studio.testing import sandbox_store
from portrait_studio.testing.sandbox import FAULTS, SandboxStats, start_sandbox

SRC = Path(__file__).resolve().parents[1] / "src"
PROVIDERS: dict[str, Any] = {"bfl": BflProvider, "fal": FalProvider, "replicate": ReplicateProvider}
FAST = {"poll_interval_s": 0.05, "poll_backoff": 1.0, "rate_limit_wait_s": 0.05, "retry_backoff_s": 0.02}

# A client process with its own sandbox, like `portrait shoot` with no key: it submits N
# portraits and writes each ticket to a file (fsynced) the moment it is accepted.
CLIENT = r"""
import asyncio, os, sys
from portrait_studio.providers.bfl import BflProvider
from portrait_studio.providers.fal import FalProvider
from portrait_studio.providers.replicate import ReplicateProvider
from portrait_studio.records import Request
from portrait_studio.testing.sandbox import start_sandbox

provider_id, state_dir, out, n, latency, poll = sys.argv[1:7]
cls = {"bfl": BflProvider, "fal": FalProvider, "replicate": ReplicateProvider}[provider_id]
sb = start_sandbox(provider_id, state_dir=state_dir, latency=float(latency))
extra = {"wait_s": None} if provider_id == "replicate" else {}
provider = cls.for_sandbox(sb, poll_interval_s=float(poll), adaptive_polling=poll == "0.05", **extra)

async def accepted(ticket):
    with open(out, "a") as fh:
        fh.write(ticket.model_dump_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())

def request(i):
    return Request(model="flux-1.1-pro", provider=provider_id, prompt=f"studio portrait {i}", seed=i,
                   width=512, height=512, output_format="jpeg")

async def main():
    await asyncio.gather(*(provider.submit(request(i), accepted) for i in range(int(n))))

asyncio.run(main())
print("all collected", flush=True)
"""


def portrait(provider_id: str, i: int) -> Request:
    return Request(model="flux-1.1-pro", provider=provider_id, prompt=f"studio portrait {i}", seed=i,
                   width=512, height=512, output_format="jpeg")


def _tickets(path: Path) -> list[Ticket]:
    if not path.exists():
        return []
    return [Ticket.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def _wait_for(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out waiting for the client process")
        time.sleep(0.02)


@pytest.fixture
def occupied_port() -> Iterator[Any]:
    """Hold a port so a restarted sandbox cannot re-bind it."""
    held: list[socket.socket] = []

    def hold(port: int) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the dead process left TIME_WAITs
        sock.bind(("127.0.0.1", port))
        sock.listen(1)
        held.append(sock)

    yield hold
    for sock in held:
        sock.close()


def _run_client(provider_id: str, state_dir: Path, out: Path, n: int, latency: float, poll: float) -> Any:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen([sys.executable, "-c", CLIENT, provider_id, str(state_dir), str(out), str(n),
                             str(latency), str(poll)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def _resume_all(provider: Any, tickets: list[Ticket]) -> list[Any]:
    try:
        return await asyncio.gather(*(provider.resume(t, portrait(t.provider, i)) for i, t in enumerate(tickets)))
    finally:
        await provider.aclose()


@pytest.mark.parametrize(("provider_id", "moment", "port_taken"), [
    ("bfl", "accepted", False),      # every task accepted, none finished
    ("bfl", "collecting", False),    # some images already downloaded by the dead process
    ("bfl", "finished", True),       # every task finished at the provider, none collected; old port taken
    ("fal", "accepted", True),
    ("replicate", "accepted", True),
])
def test_kill_9_then_a_restarted_sandbox_delivers_every_accepted_task_paid_exactly_once(
        tmp_path: Path, occupied_port: Any, provider_id: str, moment: str, port_taken: bool) -> None:
    state_dir, out, n = tmp_path / "sandbox" / provider_id, tmp_path / "tickets.jsonl", 4
    latency = 1.5
    # the "finished" client polls so rarely that the tasks finish unseen before the kill
    proc = _run_client(provider_id, state_dir, out, n, latency, poll=30.0 if moment == "finished" else 0.05)
    try:
        _wait_for(lambda: len(_tickets(out)) == n or proc.poll() is not None)
        if moment == "collecting":
            _wait_for(lambda: SandboxStats.load(state_dir).downloads >= 1 or proc.poll() is not None)
        if moment == "finished":
            time.sleep(latency + 0.3)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    tickets = _tickets(out)
    before = SandboxStats.load(state_dir)
    assert len(tickets) == n and before.accepted == n and before.submissions == n
    old_port = int(json.loads((state_dir / "account.json").read_text())["port"])
    if port_taken:
        occupied_port(old_port)

    with start_sandbox(provider_id, state_dir=state_dir) as sb:
        assert (sb.port != old_port) is port_taken and bool(sb.moved_origins) is port_taken
        provider = PROVIDERS[provider_id].for_sandbox(sb, **FAST)
        results = asyncio.run(_resume_all(provider, tickets))
        assert [r.provider_task_id for r in results] == [t.task_id for t in tickets]
        assert all(r.sandbox and r.image for r in results)
        stats = sb.stats
    after = SandboxStats.load(state_dir)
    for seen in (stats, after):
        assert seen.submissions == n and seen.accepted == n and seen.paid == n
        assert not seen.paid_twice and not seen.accepted_twice


def test_tasks_keep_their_wall_clock_schedule_across_a_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "bfl"
    with start_sandbox("bfl", state_dir=state_dir, latency=1.2) as sb:
        answer = httpx.post(f"{sb.url}/v1/flux-pro-1.1", headers={"x-key": sb.key},
                            json={"prompt": "portrait", "width": 512, "height": 512}).json()
        short = httpx.post(f"{sb.url}/v1/flux-pro-1.1", headers={"x-key": sb.key},
                           json={"prompt": "portrait 2", "width": 512, "height": 512}).json()
        accepted = time.time()
    with start_sandbox("bfl", state_dir=state_dir, latency=5.0) as sb:  # a new latency applies to new tasks only
        status = httpx.get(answer["polling_url"], headers={"x-key": sb.key}).json()
        assert status["status"] == "Pending" and status["progress"] > 0
        time.sleep(max(0.0, accepted + 1.3 - time.time()))
        ready = httpx.get(answer["polling_url"], headers={"x-key": sb.key}).json()
        assert ready["status"] == "Ready" and ready["result"]["duration"] == pytest.approx(1.2, abs=0.01)
        image = httpx.get(ready["result"]["sample"])
        assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
        # a task that finished while no process was serving it is simply Ready
        assert httpx.get(short["polling_url"], headers={"x-key": sb.key}).json()["status"] == "Ready"


def test_the_saved_latency_is_the_default_of_the_next_start(tmp_path: Path) -> None:
    with start_sandbox("bfl", state_dir=tmp_path, latency=0.7) as sb:
        assert sb.state.latency == 0.7
    with start_sandbox("bfl", state_dir=tmp_path) as sb:
        assert sb.state.latency == 0.7 and sb.stats.accepted == 0
    with pytest.raises(ProviderError, match="holds the bfl sandbox"):
        start_sandbox("fal", state_dir=tmp_path)
    with start_sandbox("bfl", state_dir=tmp_path):  # the refused start left no lock behind
        pass


# fault → what the BFL client sees after a restart, and how many tasks were accepted
AFTER_RESTART: dict[str, tuple[type[BaseException] | None, int]] = {
    "rate_limit": (None, 1), "server_error": (ProviderError, 0), "unavailable": (None, 1),
    "drop_submit": (UncertainSubmission, 1), "drop_submit_early": (UncertainSubmission, 0),
    "poll_error": (None, 1), "drop_poll": (None, 1), "moderate_request": (Moderated, 1),
    "moderate_content": (Moderated, 1), "fail": (GenerationFailed, 1), "lose_task": (TaskNotFound, 1),
    "slow_download": (None, 1), "drop_download": (None, 1), "corrupt_image": (None, 1), "expire": (ResultExpired, 1),
}


def test_the_fault_table_covers_every_fault() -> None:
    assert set(AFTER_RESTART) == set(FAULTS) and len(FAULTS) == 15


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("injected", ["before_restart", "after_restart"])
def test_every_fault_works_after_a_restart(tmp_path: Path, fault: str, injected: str) -> None:
    error, accepted = AFTER_RESTART[fault]
    params: dict[str, Any] = {"delay": 0.2} if fault == "slow_download" else {}
    with start_sandbox("bfl", state_dir=tmp_path, latency=0.1) as sb:
        if injected == "before_restart":
            sb.inject(fault, **params)  # still pending when the process goes away
    with start_sandbox("bfl", state_dir=tmp_path) as sb:
        if injected == "after_restart":
            sb.inject(fault, **params)
        provider = BflProvider.for_sandbox(sb, poll_interval=0.05, max_poll_interval=0.1, rate_limit_wait_s=0.05,
                                           retry_backoff_s=0.02)

        async def one() -> Any:
            try:
                return await provider.submit(portrait("bfl", 1))
            finally:
                await provider.aclose()

        if error is None:
            assert asyncio.run(one()).image
        else:
            with pytest.raises(error):
                asyncio.run(one())
        assert sb.stats.accepted == accepted and sb.stats.paid == accepted
        assert sb.state.faults[fault] == 0  # consumed, and saved as consumed
    assert json.loads((tmp_path / "account.json").read_text())["faults"].get(fault, 0) == 0


def test_one_process_serves_a_state_folder_others_share_it_or_are_told_who_holds_it(tmp_path: Path) -> None:
    with start_sandbox("bfl", state_dir=tmp_path, latency=0.1) as owner:
        with pytest.raises(ProviderError) as caught:
            start_sandbox("bfl", state_dir=tmp_path)
        assert str(os.getpid()) in caught.value.message and owner.url in caught.value.message
        shared = start_sandbox("bfl", state_dir=tmp_path, busy="join")  # e.g. two web jobs at once
        assert shared is owner
        shared.stop()  # its user is done; the owner keeps serving
        assert httpx.get(f"{owner.url}/v1/credits", headers={"x-key": owner.key}).status_code == 200
    with start_sandbox("bfl", state_dir=tmp_path) as again:  # the lock went with the last user
        assert again.stats.accepted == 0


OWNER = r"""
import sys
from portrait_studio.testing.sandbox import start_sandbox
sb = start_sandbox("bfl", state_dir=sys.argv[1], latency=0.1)
print(sb.url, flush=True)
sys.stdin.read()
sb.stop()
"""


def test_a_second_process_joins_the_sandbox_another_one_serves(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path)], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None and owner.stdin is not None
    try:
        url = owner.stdout.readline().strip()
        with pytest.raises(ProviderError) as caught:
            start_sandbox("bfl", state_dir=tmp_path)
        assert str(owner.pid) in caught.value.message
        joined = start_sandbox("bfl", state_dir=tmp_path, busy="join")
        assert joined.joined and joined.url == url
        with pytest.raises(RuntimeError):
            joined.inject("fail")
        provider = BflProvider.for_sandbox(joined, poll_interval=0.05)

        async def one() -> Any:
            try:
                return await provider.submit(portrait("bfl", 2))
            finally:
                await provider.aclose()

        assert asyncio.run(one()).sandbox
        assert joined.stats.paid == 1  # read from the owner's state folder
        joined.stop()  # leaves the owner running
        assert httpx.get(f"{url}/v1/credits", headers={"x-key": joined.key}).status_code == 200
    finally:
        owner.stdin.close()
        owner.wait(timeout=30)
    with start_sandbox("bfl", state_dir=tmp_path) as again:  # the owner is gone, and so is its lock
        assert again.stats.paid == 1


def test_sandboxes_leave_no_temp_folders_behind(tmp_path: Path) -> None:
    tmp = Path(tempfile.gettempdir())
    orphan = tmp / f"{sandbox_store.TEMP_PREFIX}999999999-orphan"  # left by a process that was killed
    orphan.mkdir(exist_ok=True)
    (orphan / "lock").touch()  # its owner's lock died with it
    mine = f"{sandbox_store.TEMP_PREFIX}{os.getpid()}-*"
    with start_sandbox("fal") as sb:
        assert sb.ca_file and Path(sb.ca_file).exists()
        assert len(list(tmp.glob(mine))) == 1
        sandbox_store.sweep_orphaned_temp_dirs()  # a live owner's folder is never swept
        assert Path(sb.ca_file).exists()
    with start_sandbox("fal", state_dir=tmp_path) as sb:
        assert sb.ca_file and Path(sb.ca_file).is_relative_to(tmp_path)
    with start_sandbox("bfl"), start_sandbox("replicate"):
        pass
    assert not orphan.exists() and not list(tmp.glob(mine))


def test_the_portrait_commands_keep_their_sandboxes_under_the_studio_folder(studio: Any) -> None:
    from portrait_studio.cli._engine import sandbox_starter
    from portrait_studio.providers import open_providers

    starter = sandbox_starter(studio)
    with open_providers(studio, ["bfl", "fal", "replicate"], sandbox="auto", start_sandbox=starter) as providers:
        assert all(p.sandbox for p in providers.values())
        for pid in providers:
            assert (studio.home / "sandbox" / pid / "account.json").exists()
        # a second command at the same time (here: in the same process) shares the running sandbox
        with open_providers(studio, ["bfl"], sandbox="auto", start_sandbox=starter) as again:
            assert again["bfl"].base_url == providers["bfl"].base_url
    assert SandboxStats.load(studio.home / "sandbox" / "bfl").accepted == 0


KILL_MOMENTS = {
    # every task accepted, none downloaded / some images in, others in flight / all in, finishing not done
    "accepted": lambda st, sheet: len(st) == 3 and set(st) == {"accepted"},
    "some_done": lambda st, sheet: len(st) == 3 and 0 < st.count("done") < 3,
    "finishing": lambda st, sheet: len(st) == 3 and set(st) == {"done"} and not sheet,
}


@pytest.mark.parametrize("moment", list(KILL_MOMENTS))
def test_kill_9_of_a_keyless_shoot_then_resume_collects_from_the_auto_sandbox(moment: str, tmp_path: Path,
                                                                              studio_home: Path) -> None:
    """The README's main job with no key: `portrait shoot` (auto sandbox), kill -9 at three moments,
    `portrait resume`: every image delivered, labelled, each task paid exactly once."""
    import sqlite3

    from portrait_studio.brief import example_brief_path
    from portrait_studio.labels import verify

    state_dir = studio_home / "sandbox" / "bfl"
    # the account's tasks take 2 s; for "some_done" one download trickles out over 8 s (a pending fault,
    # kept in the sandbox's folder like everything else)
    with start_sandbox("bfl", state_dir=state_dir, latency=2.0) as sb:
        if moment == "some_done":
            sb.inject("slow_download", count=1, delay=8.0)
    env = {**os.environ, "PORTRAIT_STUDIO_HOME": str(studio_home), "PYTHONPATH": str(SRC)}
    brief = example_brief_path("rembrandt-studio-headshot")
    proc = subprocess.Popen([sys.executable, "-m", "portrait_studio", "shoot", str(brief), "-m", "flux-1.1-pro",
                             "--seeds", "3", "--json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def statuses() -> list[str]:
        try:
            rows = sqlite3.connect(studio_home / "ledger.db").execute("SELECT status FROM requests ORDER BY position")
            return [r[0] for r in rows.fetchall()]
        except sqlite3.Error:
            return []

    reached = KILL_MOMENTS[moment]

    def sheet() -> bool:
        return any(studio_home.glob("runs/*/contact-sheet.png"))

    try:
        _wait_for(lambda: reached(statuses(), sheet()) or proc.poll() is not None, timeout=90)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    (run_id,) = sqlite3.connect(studio_home / "ledger.db").execute("SELECT id FROM runs").fetchone()
    resumed = subprocess.run([sys.executable, "-m", "portrait_studio", "resume", run_id, "--json"], env=env,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert len(report["images"]) == 3 and not report["failed"]
    for image in report["images"]:
        assert verify(image["out_path"]).labelled, image["out_path"]
        assert image["check_overall"] in ("pass", "warn", "fail")  # the checklist ran on every image
    assert sheet()
    stats = SandboxStats.load(state_dir)
    assert stats.accepted == 3 and stats.paid == 3 and not stats.paid_twice, (moment, stats)


def test_two_resumes_of_one_run_at_once_record_each_image_once(tmp_path: Path, studio_home: Path) -> None:
    """Two `portrait resume RUN` at the same moment: one works, the other is told who holds the run."""
    import sqlite3

    from portrait_studio.brief import example_brief_path

    state_dir = studio_home / "sandbox" / "bfl"
    with start_sandbox("bfl", state_dir=state_dir, latency=3.0):
        pass
    env = {**os.environ, "PORTRAIT_STUDIO_HOME": str(studio_home), "PYTHONPATH": str(SRC)}
    brief = example_brief_path("rembrandt-studio-headshot")
    proc = subprocess.Popen([sys.executable, "-m", "portrait_studio", "shoot", str(brief), "-m", "flux-1.1-pro",
                             "--seeds", "3", "--json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def accepted() -> bool:
        try:
            rows = sqlite3.connect(studio_home / "ledger.db").execute("SELECT status FROM requests").fetchall()
        except sqlite3.Error:
            return False
        return len(rows) == 3 and {r[0] for r in rows} == {"accepted"}

    try:
        _wait_for(lambda: accepted() or proc.poll() is not None, timeout=90)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    (run_id,) = sqlite3.connect(studio_home / "ledger.db").execute("SELECT id FROM runs").fetchone()
    cmd = [sys.executable, "-m", "portrait_studio", "resume", run_id, "--json"]
    both = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=180), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "")
               for p in both]
    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0, results
    refused = [err for code, _, err in results if code != 0]
    assert all("being worked on by another process" in " ".join(e.split()) for e in refused), refused
    with Ledger(studio_home / "ledger.db") as ledger:
        images = ledger.images(run_id=run_id)
        assert len(images) == 3 and len({i.request_id for i in images}) == 3  # each image recorded once
        assert ledger.spent(run_id, sandbox=True).usd == pytest.approx(0.12)
    stats = SandboxStats.load(state_dir)
    assert stats.paid == 3 and not stats.paid_twice


def test_two_keyless_shoots_at_once_in_one_studio_share_the_sandbox_and_both_finish(studio_home: Path) -> None:
    """Two `portrait shoot` started together with no key: the second failed with 'the bfl sandbox
    … is already served by another process' while the first was still starting it; and the first,
    done sooner, stopped the server under the second. Now the second joins, the first keeps
    serving until the second is done, and every image is paid once."""
    import sqlite3

    from portrait_studio.brief import example_brief_path

    state_dir = studio_home / "sandbox" / "bfl"
    with start_sandbox("bfl", state_dir=state_dir, latency=2.0, max_active=4):
        pass  # four active tasks at a time: the second shoot's twelve take three rounds, long after the first ends
    env = {**os.environ, "PORTRAIT_STUDIO_HOME": str(studio_home), "PYTHONPATH": str(SRC)}
    brief = str(example_brief_path("rembrandt-studio-headshot"))
    first = subprocess.Popen([sys.executable, "-m", "portrait_studio", "shoot", brief, "-m", "flux-1.1-pro",
                              "--seeds", "1", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    second = subprocess.Popen([sys.executable, "-m", "portrait_studio", "shoot", brief, "-m", "flux-2-pro",
                               "--seeds", "12", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)  # started together: one starts the sandbox while the other looks for it
    done = [(p.wait(timeout=180), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "")
            for p in (first, second)]
    for code, out, err in done:
        assert code in (0, 1) and "already served" not in err, done  # 1: the checklist failed an image
        assert json.loads(out)["status"] == "done", done
    runs = sqlite3.connect(studio_home / "ledger.db").execute("SELECT count(*) FROM images").fetchone()[0]
    assert runs == 13
    stats = SandboxStats.load(state_dir)
    assert stats.paid == 13 and not stats.paid_twice
