"""Background jobs for long work (shoots, compares, varies, fixes, upscales, exports, batches).

A job is a row in the ledger's database, not a closure in a server's memory: its `kind` names a
registered handler and its `spec` holds what the handler needs (a run id, an image id, a scale).
So a page reload or a second tab finds it again, and so does the next server: when a server
stops (even killed), its running jobs' leases run out — at once when it was on this host, since
its process is gone — and whichever server claims them next does them again. Doing a job again
is safe: a run job resumes its run through the engine, which never pays twice.

Two servers behind one database never run one job at once: a worker claims a job with one
conditional UPDATE (`Ledger.claim_job`) and holds it under a lease it renews while it works.
The progress of a run-shaped job is read from the ledger, never from the job itself, so it is the
same truth the CLI shows. A job never raises out of its thread: a StudioError becomes the job's
`error` and `hint`, anything else its `error` with the exception type.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from .accounts import Actor
from .config import Studio
from .errors import LedgerError, StudioError
from .ledger import JobRow, Ledger, open_ledger
from .providers import SandboxMode, SandboxStarter
from .runner import Outcome, RunReport

__all__ = [
    "Job",
    "JobContext",
    "JobManager",
    "JobStatus",
    "execute_recorded_run",
    "job_kind",
    "record_plan",
    "run_on_engine",
]

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
    attempts: int = 0
    """How many times a worker took it on (more than one: a server stopped while working on it)."""
    user_id: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")

    @classmethod
    def from_row(cls, row: JobRow) -> Job:
        return cls(id=row.id, kind=row.kind, title=row.title, status=row.status, run_id=row.run_id,  # type: ignore[arg-type]
                   image_id=row.image_id, result_id=row.result_id, message=row.message, error=row.error, hint=row.hint,
                   created_at=row.created_at, finished_at=row.finished_at, attempts=row.attempts, user_id=row.user_id)


class JobContext:
    """Handed to a job's handler: its spec, the studio, the ledger as the person who queued the job,
    what the server was started with (sandboxes, checker), and where to report a message."""

    def __init__(self, manager: JobManager, row: JobRow, ledger: Ledger) -> None:
        self._manager = manager
        self.job_id = row.id
        self.spec = row.spec
        self.studio = manager.studio
        self.ledger = ledger
        self.actor: Actor | None = ledger.actor
        self.start_sandbox = manager.start_sandbox
        self.checker = manager.checker

    def say(self, message: str) -> None:
        self._manager.ledger.update_job(self.job_id, self._manager.owner, message=message)


JobHandler = Callable[[JobContext], str | None]
"""Does the work; returns what it made (an image id or a path), if anything."""
_HANDLERS: dict[str, JobHandler] = {}


def job_kind(name: str) -> Callable[[JobHandler], JobHandler]:
    """Register the handler for jobs of `kind` (planners and surfaces add theirs)."""

    def wrap(fn: JobHandler) -> JobHandler:
        _HANDLERS[name] = fn
        return fn

    return wrap


def _owner_alive(owner: str) -> bool:
    """Whether the worker holding a job still runs (on this host; elsewhere: trust its lease)."""
    host, _, rest = owner.partition(":")
    pid = rest.split(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobManager:
    """Claims jobs from the database and runs them on a small thread pool.

    `submit` records a job and wakes the dispatcher; any manager behind the same database may take
    it. `start=False` makes a manager that records and reads jobs but never runs one.
    """

    def __init__(
        self,
        studio: Studio,
        *,
        workers: int = 2,
        ledger: Ledger | None = None,
        start_sandbox: SandboxStarter | None = None,
        checker: Any = "default",
        lease_s: float = 30.0,
        poll_s: float = 0.5,
        start: bool = True,
    ) -> None:
        self.studio = studio
        self._own_ledger = ledger is None
        self.ledger = ledger if ledger is not None else Ledger(studio.ledger_path)
        self.ledger = self.ledger.as_actor(None)  # the dispatcher sees every team's queue
        self.start_sandbox = start_sandbox
        self.checker = checker
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.workers = workers
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="portrait-job")
        self._threads: list[threading.Thread] = []
        if start:
            for target, name in ((self._dispatch, "portrait-jobs"), (self._heartbeat, "portrait-job-lease")):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    # --- queueing and reading ----------------------------------------------------------------
    def submit(self, kind: str, title: str, spec: dict[str, Any] | None = None, *, actor: Actor | None = None,
               run_id: str | None = None, image_id: str | None = None) -> Job:
        if kind not in _HANDLERS:
            raise StudioError(f"no handler for jobs of kind '{kind}'", hint="register one with @job_kind")
        row = self.ledger.as_actor(actor).add_job(kind, title, spec or {}, run_id=run_id, image_id=image_id)
        self._wake.set()
        return Job.from_row(row)

    def get(self, job_id: str, actor: Actor | None = None) -> Job:
        try:
            return Job.from_row(self.ledger.as_actor(actor).job(job_id))
        except LedgerError:
            raise LedgerError(f"no job '{job_id}'", hint="see the Jobs page") from None

    def jobs(self, actor: Actor | None = None, limit: int = 200) -> list[Job]:
        return [Job.from_row(r) for r in self.ledger.as_actor(actor).jobs(limit)]

    def for_run(self, run_id: str, actor: Actor | None = None) -> Job | None:
        row = self.ledger.as_actor(actor).job_for_run(run_id)
        return Job.from_row(row) if row else None

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until the job finishes (tests, scripts)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = self.get(job_id)
            if job.finished:
                return job
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} still {self.get(job_id).status} after {timeout}s")

    # --- working ----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        while not self._stop.is_set():
            claimed = None
            with self._lock:
                free = len(self._running) < self.workers
            if free:
                try:
                    claimed = self.ledger.claim_job(self.owner, ttl_s=self.lease_s, alive=_owner_alive,
                                                    kinds=list(_HANDLERS) or None)
                except Exception:  # the database is away for a moment: try again on the next tick
                    traceback.print_exc()
            if claimed is not None:
                with self._lock:
                    self._running.add(claimed.id)
                self._pool.submit(self._run, claimed)
                continue
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with self._lock:
                running = list(self._running)
            for job_id in running:
                try:
                    self.ledger.renew_job(job_id, self.owner, ttl_s=self.lease_s)
                except Exception:
                    traceback.print_exc()

    def _run(self, row: JobRow) -> None:
        try:
            handler = _HANDLERS.get(row.kind)
            actor = self.ledger.actor_for(row.user_id, row.team_id) if row.user_id and row.team_id else None
            ctx = JobContext(self, row, self.ledger.as_actor(actor))
            if handler is None:
                raise StudioError(f"this server cannot do jobs of kind '{row.kind}'", hint="upgrade portrait-studio")
            made = handler(ctx)
        except StudioError as exc:
            self.ledger.finish_job(row.id, self.owner, status="failed", error=exc.message, hint=exc.hint)
        except Exception as exc:  # a bug must not kill the worker; the job page shows it
            traceback.print_exc()
            self.ledger.finish_job(row.id, self.owner, status="failed", error=f"{type(exc).__name__}: {exc}")
        else:
            self.ledger.finish_job(row.id, self.owner, status="done", result_id=made)
        finally:
            with self._lock:
                self._running.discard(row.id)
            self._wake.set()

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs. With `wait`, finish the running ones first; without, leave them: when this
        process ends, their leases let another server (or this one, restarted) take them over."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._pool.shutdown(wait=wait, cancel_futures=True)
        if self._own_ledger:
            self.ledger.close()


# --- the engine from a thread ----------------------------------------------------------------------


def run_on_engine(
    studio: Studio,
    provider_ids: Any,
    work: Callable[[Any], Awaitable[T]],
    *,
    sandbox: SandboxMode = "auto",
    start_sandbox: SandboxStarter | None = None,
    checker: Any = "default",
    ledger: Ledger | None = None,
) -> T:
    """Open the engine (on `ledger`, else the studio's own), run `work(engine)`, close it all.
    For threads that are not in an event loop: web jobs, scripts."""
    from .engine import Engine

    async def go() -> T:
        async with Engine.open(studio, provider_ids, sandbox=sandbox, start_sandbox=start_sandbox,
                               checker=checker, ledger=ledger) as engine:
            return await work(engine)

    return asyncio.run(go())


def record_plan(studio: Studio, plan: Any, *, budget: float | None, sandbox: SandboxMode = "auto",
                start_sandbox: SandboxStarter | None = None, ledger: Ledger | None = None,
                project: str | None = None) -> str:
    """Preflight and record a plan (nothing is sent); returns the run id for a job to execute."""

    async def work(engine: Any) -> str:
        return str(engine.record(plan, budget_usd=budget, project=project))

    return run_on_engine(studio, plan.provider_ids, work, sandbox=sandbox, start_sandbox=start_sandbox, checker=None,
                         ledger=ledger)


def execute_recorded_run(
    studio: Studio,
    run_id: str,
    *,
    sandbox: SandboxMode = "auto",
    budget: float | None = None,
    checker: Any = "default",
    on_outcome: Callable[[Outcome], None] | None = None,
    start_sandbox: SandboxStarter | None = None,
    ledger: Ledger | None = None,
) -> RunReport:
    """Run (or resume) a recorded run on the engine: the same steps as `portrait shoot` without a
    terminal. Each finished image is in the ledger before the next is paid for, so a reader of
    the ledger sees progress live."""
    from .engine import failure_summary

    led = ledger if ledger is not None else open_ledger(studio)
    try:
        run = led.run(run_id)
        providers = list(dict.fromkeys([*(run.plan or {}).get("providers", []), *(r.provider for r in led.requests(run.id))]))

        async def work(engine: Any) -> RunReport:
            report: RunReport = await engine.execute(run.id, budget_usd=budget, on_outcome=on_outcome)
            return report

        report = run_on_engine(studio, providers, work, sandbox=sandbox, start_sandbox=start_sandbox, checker=checker,
                               ledger=led)
    finally:
        if ledger is None:
            led.close()
    failure = failure_summary(report)
    if failure is not None:
        raise failure
    return report


# --- the built-in kinds ------------------------------------------------------------------------------


def _run_job(ctx: JobContext) -> str:
    """Execute (or, after a restart, resume) a recorded run: a shoot, compare or vary."""
    run_id = str(ctx.spec["run_id"])
    execute_recorded_run(ctx.studio, run_id, sandbox=ctx.spec.get("sandbox", "auto"), budget=ctx.spec.get("budget"),
                         checker=ctx.checker, start_sandbox=ctx.start_sandbox, ledger=ctx.ledger)
    return run_id


for _kind in ("run", "shoot", "compare", "vary"):
    job_kind(_kind)(_run_job)


@job_kind("upscale")
def _upscale_job(ctx: JobContext) -> str:
    from . import actions

    made = actions.upscale_image(ctx.studio, ctx.ledger, str(ctx.spec["image_id"]), float(ctx.spec.get("scale", 2.0)),
                                 progress=lambda done, total, *_: ctx.say(f"tile {done} of {total}"),
                                 start_sandbox=ctx.start_sandbox)
    return made.id


@job_kind("fix")
def _fix_job(ctx: JobContext) -> str:
    from . import actions

    made = actions.fix_region(ctx.studio, ctx.ledger, str(ctx.spec["image_id"]), str(ctx.spec["region"]),
                              start_sandbox=ctx.start_sandbox)
    return made.id


@job_kind("edit")
def _edit_job(ctx: JobContext) -> str:
    """One instruction edit or one restyle (a look) of an image."""
    from . import actions

    look = ctx.spec.get("look")
    report = actions.edit_image(ctx.studio, ctx.ledger, str(ctx.spec["image_id"]), instruction=ctx.spec.get("instruction"),
                                looks=(look,) if look else (), model=str(ctx.spec.get("model") or "flux-2-pro"),
                                sandbox=ctx.spec.get("sandbox", "auto"), start_sandbox=ctx.start_sandbox,
                                budget_usd=ctx.spec.get("budget"))
    first = report.results[0]
    ctx.say(f"identity {first.identity} ({first.distance}); checklist {first.check or 'n/a'}")
    return str(first.image_id)


@job_kind("export")
def _export_job(ctx: JobContext) -> str:
    from . import actions

    path, status = actions.export_labelled(ctx.studio, ctx.ledger, str(ctx.spec["image_id"]))
    ctx.say(f"labelled; C2PA {status}")
    return str(path.relative_to(ctx.studio.home))


@job_kind("export_approved")
def _export_approved_job(ctx: JobContext) -> str:
    """Ship the approved images (of one run, or all the team's) with their audit records."""
    from .approvals import export_approved

    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = ctx.studio.home / "exports" / f"approved-{stamp}-{ctx.job_id[-6:]}"
    done = export_approved(ctx.studio, ctx.ledger, folder, run_id=ctx.spec.get("run_id"))
    ctx.say(f"{len(done.files)} approved image(s) shipped, each with its audit record")
    return str(done.folder.relative_to(ctx.studio.home))
