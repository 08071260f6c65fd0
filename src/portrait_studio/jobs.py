"""Background jobs for long work (shoots, compares, varies, fixes, upscales, exports).

A job is kept server-side, so a page reload (or a second tab) finds it again; the progress of
a run-shaped job is read from the ledger, never from the job itself, so it is the same truth
the CLI shows. A job never raises out of its thread: a StudioError becomes the job's
`error` and `hint`, anything else its `error` with the exception type.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from .config import Studio
from .errors import LedgerError, StudioError
from .providers import SandboxMode, SandboxStarter
from .records import new_id
from .runner import Outcome, RunReport

__all__ = ["Job", "JobContext", "JobManager", "JobStatus", "execute_recorded_run", "record_plan", "run_on_engine"]

T = TypeVar("T")

JobStatus = Literal["queued", "running", "done", "failed"]


class Job(BaseModel):
    """What the user sees of one background job."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: str
    title: str
    status: JobStatus = "queued"
    run_id: str | None = None
    image_id: str | None = None  # the image a fix/upscale/export was made from
    result_id: str | None = None  # what it made (an image id, or a file for exports)
    message: str | None = None
    error: str | None = None
    hint: str | None = None
    created_at: float
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")


class JobContext:
    """Handed to a job's function: where to report a message, and the studio it works on."""

    def __init__(self, manager: JobManager, job_id: str) -> None:
        self._manager = manager
        self.job_id = job_id
        self.studio = manager.studio

    def say(self, message: str) -> None:
        self._manager._update(self.job_id, message=message)


JobFn = Callable[[JobContext], str | None]
"""Does the work; returns what it made (an image id or a path), if anything."""


class JobManager:
    """Runs jobs on a small thread pool and remembers every job of this server's life."""

    def __init__(self, studio: Studio, *, workers: int = 2) -> None:
        self.studio = studio
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="portrait-job")

    def submit(
        self, kind: str, title: str, fn: JobFn, *, run_id: str | None = None, image_id: str | None = None
    ) -> Job:
        job = Job(id=new_id("job_"), kind=kind, title=title, run_id=run_id, image_id=image_id, created_at=time.time())
        with self._lock:
            self._jobs[job.id] = job
        self._pool.submit(self._run, job.id, fn)
        return job

    def _update(self, job_id: str, **changes: object) -> Job:
        with self._lock:
            job = self._jobs[job_id].model_copy(update=changes)
            self._jobs[job_id] = job
            return job

    def _run(self, job_id: str, fn: JobFn) -> None:
        self._update(job_id, status="running")
        try:
            made = fn(JobContext(self, job_id))
        except StudioError as exc:
            self._update(job_id, status="failed", error=exc.message, hint=exc.hint, finished_at=time.time())
        except Exception as exc:  # a bug must not kill the worker; the job page shows it
            traceback.print_exc()
            self._update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=time.time())
        else:
            self._update(job_id, status="done", result_id=made, finished_at=time.time())

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise LedgerError(f"no job '{job_id}'", hint="jobs live as long as the server; see the Jobs page")
        return job

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: -j.created_at)

    def for_run(self, run_id: str) -> Job | None:
        return next((j for j in self.jobs() if j.run_id == run_id), None)

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until the job finishes (tests, scripts)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = self.get(job_id)
            if job.finished:
                return job
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} still {self.get(job_id).status} after {timeout}s")

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)


def run_on_engine(
    studio: Studio,
    provider_ids: Any,
    work: Callable[[Any], Awaitable[T]],
    *,
    sandbox: SandboxMode = "auto",
    start_sandbox: SandboxStarter | None = None,
    checker: Any = "default",
) -> T:
    """Open the engine (its own ledger connection and providers), run `work(engine)`, close it all.
    For threads that are not in an event loop: web jobs, scripts."""
    from .engine import Engine

    async def go() -> T:
        async with Engine.open(studio, provider_ids, sandbox=sandbox, start_sandbox=start_sandbox,
                               checker=checker) as engine:
            return await work(engine)

    return asyncio.run(go())


def record_plan(studio: Studio, plan: Any, *, budget: float | None, sandbox: SandboxMode = "auto",
                start_sandbox: SandboxStarter | None = None) -> str:
    """Preflight and record a plan (nothing is sent); returns the run id for a job to execute."""

    async def work(engine: Any) -> str:
        return str(engine.record(plan, budget_usd=budget))

    return run_on_engine(studio, plan.provider_ids, work, sandbox=sandbox, start_sandbox=start_sandbox, checker=None)


def execute_recorded_run(
    studio: Studio,
    run_id: str,
    *,
    sandbox: SandboxMode = "auto",
    budget: float | None = None,
    checker: Any = "default",
    on_outcome: Callable[[Outcome], None] | None = None,
    start_sandbox: SandboxStarter | None = None,
) -> RunReport:
    """Run (or resume) a recorded run on the engine: the same steps as `portrait shoot` without a
    terminal. Each finished image is in the ledger before the next is paid for, so a reader of
    the ledger sees progress live."""
    from .engine import failure_summary
    from .ledger import Ledger

    with Ledger(studio.ledger_path) as ledger:
        run = ledger.run(run_id)
        providers = list(dict.fromkeys([*(run.plan or {}).get("providers", []), *(r.provider for r in ledger.requests(run.id))]))

    async def work(engine: Any) -> RunReport:
        report: RunReport = await engine.execute(run_id, budget_usd=budget, on_outcome=on_outcome)
        return report

    report = run_on_engine(studio, providers, work, sandbox=sandbox, start_sandbox=start_sandbox, checker=checker)
    failure = failure_summary(report)
    if failure is not None:
        raise failure
    return report
