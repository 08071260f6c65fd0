"""Batches on a real local Ray cluster (CPU only; 'GPU' workers are scheduled on a custom resource):
hosted requests through the BFL sandbox, local ones on tiny random-weight pipelines.

One cluster serves the whole module (starting one takes seconds). Each test uses its own sandbox
key, so the cluster-wide limiter keeps each test's account apart.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from _batch_helpers import fails_for, given, write_batch
from portrait_studio.batch import batch_report, example_batch_path, load_batch, plan_batch, record_consent
from portrait_studio.cluster import ClusterOptions, ClusterRunner
from portrait_studio.config import Studio
from portrait_studio.engine import Engine
from portrait_studio.ledger import Ledger
from portrait_studio.testing.sandbox import SandboxHandle, start_sandbox

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torchvision.*:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*should be kept in float32.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

FAST = {"bfl": {"poll_interval": 0.05, "max_poll_interval": 0.1}}
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster: 4 CPU slots and 2 simulated GPUs; its workers import these tests' helpers."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), old) if p)
    try:
        ray.init(num_cpus=4, resources={"fake_gpu": 2}, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, object_store_memory=128 * 1024 * 1024, namespace="portrait-studio")
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def forty(tmp_path: Path, **defaults: Any) -> Path:
    return write_batch(tmp_path, [{"name": f"Person {i:02d}"} for i in range(20)], seeds=2, rerolls=0, **defaults)


def statuses(studio: Studio, run_id: str | None = None) -> list[str]:
    db = sqlite3.connect(studio.ledger_path)
    try:
        return [r[0] for r in db.execute("SELECT status FROM requests")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


async def on_cluster(studio: Studio, sb: SandboxHandle, path: Path, cluster: str, *, checker: Any = None,
                     during: Any = None, after: Any = None, options: dict[str, Any] | None = None,
                     providers: dict[str, dict[str, Any]] | None = None) -> tuple[str, ClusterRunner]:
    """Record and run a batch on the cluster; `during(runner)` runs alongside (to kill a worker), `after(runner)`
    before its workers are let go."""
    plan = plan_batch(load_batch(path), base_dir=path.parent, source=str(path))
    async with Engine.open(studio, plan.provider_ids, sandbox="always", start_sandbox=given(sb), checker=checker,
                           options=providers or FAST) as engine:
        runner = ClusterRunner(ClusterOptions(address=cluster, **(options or {})), engine=engine)
        engine.runner = runner
        try:
            run_id = engine.record(record_consent(plan, engine.ledger).to_plan())
            work = asyncio.ensure_future(engine.execute(run_id))
            if during is not None:
                await during(runner, run_id)
            await work
            if after is not None:
                await after(runner)
        finally:
            runner.close()
    return run_id, runner


async def quiescent(studio: Studio, *, accepted: int, timeout: float = 60.0) -> None:
    """Wait until `accepted` tasks are accepted and none is being sent: every slot is held by a task
    the provider has (its ticket in the ledger) and the rest wait for a slot, still 'planned'."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = statuses(studio)
        if now.count("accepted") >= accepted and "submitting" not in now:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never quiescent: {statuses(studio)}")


def test_a_40_request_batch_completes_on_two_workers_within_the_account_limit(
        cluster: str, studio: Studio, tmp_path: Path) -> None:
    with start_sandbox("bfl", latency=1.0, key="key-forty") as sb:
        run_id, runner = asyncio.run(on_cluster(studio, sb, forty(tmp_path), cluster))
        assert sb.stats.paid == 40 and not sb.stats.paid_twice
        assert sb.stats.max_active <= 24 and sb.stats.rejected[429] == 0  # never more than BFL's 24 at once
    with Ledger(studio.ledger_path) as ledger:
        rows = ledger.requests(run_id)
        images = ledger.images(run_id=run_id, limit=100)
        assert len(rows) == 40 and {r.status for r in rows} == {"done"} and len(images) == 40
        assert len({i.metadata["worker"]["pid"] for i in images}) == 2  # spread over both hosted workers
        labelled = [f for i in images for f in ledger.files_for(i.id) if f["labelled"]]
        assert len(labelled) == 40 and runner.stats["finished_remote"] == 40  # labelled on the CPU worker
        assert ledger.run(run_id).status == "done" and batch_report(ledger, run_id).kept == 20


@pytest.mark.parametrize("how", ["sigkill", "gone for good"])
def test_a_worker_killed_mid_batch_is_replaced_without_paying_twice(
        cluster: str, studio: Studio, tmp_path: Path, how: str) -> None:
    """SIGKILL: Ray restarts the worker. Gone for good (as when its node is lost): the batch finishes on
    the worker that remains."""
    killed: list[int] = []
    killed_at: list[float] = []

    async def kill_one(runner: ClusterRunner, run_id: str) -> None:
        await quiescent(studio, accepted=24)  # 24 active at the provider, 16 waiting for a slot
        pids = (await runner.worker_pids())["hosted"]
        if how == "sigkill":
            os.kill(pids[0], signal.SIGKILL)
        else:
            ray.kill(runner.pools["hosted"].workers[0], no_restart=True)
        killed.append(pids[0])
        killed_at.append(time.time())

    with start_sandbox("bfl", latency=2.0, key=f"key-kill-worker-{how.replace(' ', '-')}") as sb:
        run_id, runner = asyncio.run(on_cluster(studio, sb, forty(tmp_path), cluster, during=kill_one))
        assert sb.stats.paid == 40 and not sb.stats.paid_twice and sb.stats.submissions == 40
        assert sb.stats.max_active <= 24 and sb.stats.rejected[429] == 0
    assert runner.remote["bfl"].repolled >= 1  # the dead worker's accepted tasks were polled elsewhere
    with Ledger(studio.ledger_path) as ledger:
        rows = ledger.requests(run_id)
        images = ledger.images(run_id=run_id, limit=100)
        assert len(rows) == 40 and {r.status for r in rows} == {"done"} and len(images) == 40
        assert len({i.request_id for i in images}) == 40
        after = [i for i in images if i.created_at > killed_at[0] + 0.5]
        assert after and killed[0] not in {i.metadata["worker"]["pid"] for i in after}  # finished by the others
        assert ledger.spent(run_id, sandbox=True).usd == pytest.approx(40 * 0.04)  # each charge recorded once


@pytest.fixture(scope="module")
def tiny_schnell(tmp_path_factory: pytest.TempPathFactory) -> str:
    from portrait_studio.testing.tiny import save_tiny_pipeline

    return str(save_tiny_pipeline("flux1-schnell", tmp_path_factory.mktemp("tiny") / "schnell"))


def test_gpu_workers_keep_their_pipeline_and_a_killed_one_is_replaced(
        cluster: str, studio: Studio, tmp_path: Path, tiny_schnell: str) -> None:
    people = [{"name": f"Person {i}", "overrides": {"output": {"width": 256, "height": 256}}} for i in range(10)]
    path = write_batch(tmp_path, people, model="flux-1-schnell", provider="local", seeds=2, rerolls=0)
    killed: list[int] = []
    held: list[int] = []

    async def pipelines(runner: ClusterRunner) -> None:
        held.extend(await asyncio.gather(*(w.pipelines.remote() for w in runner.pools["local"].workers)))

    async def kill_one(runner: ClusterRunner, run_id: str) -> None:
        """Once both GPU workers have made an image, SIGKILL one of them."""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with Ledger(studio.ledger_path) as ledger:
                pids = {i.metadata["worker"]["pid"] for i in ledger.images(run_id=run_id, limit=100)}
            if len(pids) >= 2:
                break
            await asyncio.sleep(0.05)
        os.kill(min(pids), signal.SIGKILL)
        killed.append(min(pids))

    with start_sandbox("bfl", key="key-local") as sb:
        run_id, runner = asyncio.run(on_cluster(studio, sb, path, cluster, during=kill_one, after=pipelines,
                                                options={"gpu_resource": "fake_gpu", "cpu_workers": 0},
                                                providers={"local": {"weights": tiny_schnell}}))
    with Ledger(studio.ledger_path) as ledger:
        rows = ledger.requests(run_id)
        images = ledger.images(run_id=run_id, limit=100)
        assert len(rows) == 20 and {r.status for r in rows} == {"done"} and len(images) == 20
        assert len({i.request_id for i in images}) == 20  # each made once in the ledger
        pids = {i.metadata["worker"]["pid"] for i in images}
        assert len(pids) >= 2  # both simulated GPUs worked
        assert {i.versions["model_revision"] for i in images} == {images[0].versions["model_revision"]}
        assert all(i.width == 256 for i in images)
        # a GPU worker loads its pipeline once and keeps it for the batch (the restarted one holds its own, or
        # none if the survivor finished the rest first)
        assert max(held) == 1 and all(h <= 1 for h in held)
        assert sum(i.timings["load_s"] < 0.05 for i in images) >= 20 - 3 * 4  # only those waiting on a first load


def test_the_driver_killed_mid_batch_is_finished_by_resume(cluster: str, tmp_path: Path) -> None:
    """The issue's story: `portrait batch --ray ADDRESS` killed with SIGKILL, then `portrait resume --ray`: the
    24 accepted tasks are re-polled on the new workers (the leases the dead driver held are its requests'
    own), the 16 that waited for a slot are sent, nothing is paid twice."""
    home = tmp_path / "home"
    home.mkdir()
    path = forty(tmp_path)
    with start_sandbox("bfl", latency=2.0, key="key-kill-driver") as sb:
        (home / "config.toml").write_text(f'bfl_host = "{sb.url}"\n[providers.bfl]\npoll_interval = 0.05\n')
        env = {**os.environ, "PORTRAIT_STUDIO_HOME": str(home), "BFL_API_KEY": sb.key}
        cmd = [sys.executable, "-m", "portrait_studio", "batch", str(path), "--ray", cluster, "--sandbox", "never",
               "--no-check", "--json"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        studio = Studio(home)
        try:
            asyncio.run(quiescent(studio, accepted=24, timeout=120))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        before = statuses(studio)
        assert before.count("accepted") == 24 and before.count("planned") == 16 and "done" not in before
        resumed = subprocess.run([sys.executable, "-m", "portrait_studio", "resume",
                                  sqlite3.connect(home / "ledger.db").execute("SELECT id FROM runs").fetchone()[0],
                                  "--sandbox", "never", "--ray", cluster, "--json"],
                                 env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert sb.stats.paid == 40 and not sb.stats.paid_twice and sb.stats.submissions == 40
    report = json.loads(resumed.stdout)
    assert len(report["images"]) == 40 and not report["failed"]
    assert statuses(studio) == ["done"] * 40
    with Ledger(studio.ledger_path) as ledger:
        run = ledger.runs()[0]
        assert run.status == "done" and (Path(run.out_dir or "") / "batch-report.json").is_file()


def test_the_driver_killed_on_the_commands_own_sandbox_is_finished_by_resume(cluster: str, tmp_path: Path) -> None:
    """No API key: `portrait batch --ray` runs on the sandbox the command starts, which keeps its tasks under
    the studio folder; killed with its driver, it comes back with `portrait resume` and bills each task once."""
    from portrait_studio.testing.sandbox import SandboxStats

    home = tmp_path / "home"
    state = home / "sandbox" / "bfl"
    with start_sandbox("bfl", latency=2.0, state_dir=state):  # the sandbox the commands will find: 2 s per task
        pass
    (home / "config.toml").write_text('[providers.bfl]\npoll_interval = 0.05\n')
    env = {**os.environ, "PORTRAIT_STUDIO_HOME": str(home)}
    env.pop("BFL_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "portrait_studio", "batch", str(forty(tmp_path)), "--ray", cluster,
                             "--no-check", "--json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    studio = Studio(home)
    try:
        asyncio.run(quiescent(studio, accepted=24, timeout=120))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert statuses(studio).count("planned") == 16
    run_id = sqlite3.connect(home / "ledger.db").execute("SELECT id FROM runs").fetchone()[0]
    resumed = subprocess.run([sys.executable, "-m", "portrait_studio", "resume", run_id, "--ray", cluster, "--json"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert statuses(studio) == ["done"] * 40
    stats = SandboxStats.load(state)
    assert stats.paid == 40 and not stats.paid_twice and stats.max_active <= 24


def test_checks_labels_and_upscales_run_on_cpu_workers(
        cluster: str, studio: Studio, tmp_path: Path) -> None:
    path = write_batch(tmp_path, [{"name": "Ana Ruiz"}, {"name": "Ben Okafor"}], rerolls=1, upscale=2,
                       upscale_method="lanczos")
    with start_sandbox("bfl", latency=0.2, key="key-filter") as sb:
        run_id, runner = asyncio.run(on_cluster(studio, sb, path, cluster, checker=fails_for("Ben Okafor")))
        assert sb.stats.paid == 5
    with Ledger(studio.ledger_path) as ledger:
        report = batch_report(ledger, run_id)
        assert report.rerolls == 1 and report.short_cells == ["ben-okafor"] and report.kept == 1
        assert report.checked == 5 and runner.stats["finished_remote"] == 5  # checked by the CPU worker
        assert report.upscaled == 1 and runner.stats["upscaled_remote"] == 1  # the kept one, upscaled there too


def test_the_example_batch_runs_on_the_sandbox_with_ray_auto(cluster: str, cli: Any, studio: Studio) -> None:
    """`portrait batch presets/batches/team-page.yaml --ray auto`: joins the cluster this process is on."""
    code, out, err = cli("batch", str(example_batch_path()), "--ray", "auto", "--no-check", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["status"] == "done" and data["report"]["images"] == 22 and data["report"]["kept"] == 10
    assert data["report"]["sandbox_usd"] == pytest.approx(22 * 0.04) and data["report"]["spent_usd"] == 0
    with Ledger(studio.ledger_path) as ledger:
        images = ledger.images(run_id=data["run_id"], limit=100)
        assert len({i.metadata["worker"]["pid"] for i in images}) == 2
