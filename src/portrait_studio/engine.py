"""The one engine: every operation that can cost money runs here, and nowhere else.

A planner (shoot, compare, vary, series, swap, fix, auto-fix, upscale, edit, restyle, batch)
turns the user's words into a `Plan`: the requests to make and the *finishing steps* for its
kind. The engine then, always in this order:

    preflight ─► record ─► run (the runner) ─► finishing steps ─► run.json
    consent,     run, requests   reserve → submit → settle      deliver (labelled copies), checks,
    secrets,     and steps,      on what was charged; poll,     contact sheet, comparison, and the
    capability   before any is   download, record each image    steps planners register (composite,
    (spends      sent                                            series, upscale ...)
    nothing)

Because the steps are recorded with the run, `resume RUN` finishes a killed run of any kind
the same way: it re-polls what the provider accepted, sends what never went out, and applies
the steps again — each step is idempotent and repairs what is missing (a run-folder copy left
truncated by a full disk is written again from the content-addressed store). Multi-stage
planners (a series measures each shot before planning the next, auto-fix re-checks between
rounds) drive the engine through `make`, which is memoised in the ledger by the request's
idempotency key: replaying the driver after a kill pays for nothing twice and continues where
it stopped.

One process works on a run at a time (`Ledger.claim_run`); a second `resume` is refused with
the holder named. Consent is checked here, once, for every path: every input image is either
the studio's own output or has a rights record for its exact bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import shutil
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import CapabilityError, ConsentRequired, ProviderError, StudioError
from .files import atomic_write_text
from .ledger import ImageRow, Ledger, RunRow
from .providers.base import Provider
from .records import Cost, InputImage, Request, estimated_total, new_id
from .redaction import find_key, redact
from .runner import Outcome, RunReport, run_plan

__all__ = [
    "CONSENT_HINT",
    "Engine",
    "Plan",
    "RunFailed",
    "RunLocked",
    "Step",
    "StepContext",
    "register_step",
]

CONSENT_HINT = (
    "record who is shown, where the image comes from and what they agreed to: "
    "--who NAME --source WHERE --permission WHAT (or add rights: {who, source, permission} to the "
    "reference in the brief); for a generated face use --who synthetic"
)


class RunFailed(ProviderError):
    """Nothing of the run succeeded: the message names the cause, the hint the real fix."""


class RunLocked(StudioError):
    """Another process is working on this run right now."""


class Step(BaseModel):
    """A finishing step, by name, with its arguments (JSON), recorded with the run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class Plan(BaseModel):
    """Everything a run will do, decided before anything is paid for."""

    model_config = ConfigDict(frozen=True)

    kind: str
    requests: tuple[Request, ...] = ()
    steps: tuple[Step, ...] = ()
    name: str | None = None
    brief: dict[str, Any] | None = None
    brief_path: str | None = None
    parent_run_id: str | None = None
    varied: dict[str, Any] | None = None
    forced: bool = False
    details: dict[str, Any] = Field(default_factory=dict)
    """Planner-specific facts kept in the run's plan (a series' shots, a fix's region …)."""

    @property
    def estimated(self) -> Cost:
        return estimated_total(self.requests)

    @property
    def provider_ids(self) -> list[str]:
        return list(dict.fromkeys(r.provider for r in self.requests))


# --- finishing steps -------------------------------------------------------------------------------


class StepContext(BaseModel):
    """What a finishing step gets: the engine, the run, and what the runner reported."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    engine: Any
    run: RunRow
    report: RunReport
    out_dir: Path
    args: dict[str, Any]
    budget_usd: float | None = None


StepFn = Callable[[StepContext], Any]
_STEPS: dict[str, StepFn] = {}
_STEP_HOMES = {
    # Steps registered by planners; the engine imports the planner when a recorded run names the step.
    "composite": "portrait_studio.finishing.fix",
    "autofix": "portrait_studio.finishing.fix",
    "upscale": "portrait_studio.finishing.upscaling",
    "series": "portrait_studio.series",
    "swap": "portrait_studio.swap",
    "compare": "portrait_studio.compare",
    "edit": "portrait_studio.edit",
    "deliver_size": "portrait_studio.finishing.upscaling",
    "batch": "portrait_studio.batch",
}


def register_step(name: str) -> Callable[[StepFn], StepFn]:
    """Planners register their finishing steps (sync or async functions of a `StepContext`)."""

    def wrap(fn: StepFn) -> StepFn:
        _STEPS[name] = fn
        return fn

    return wrap


def _step(name: str) -> StepFn:
    if name not in _STEPS and name in _STEP_HOMES:
        importlib.import_module(_STEP_HOMES[name])
    if name not in _STEPS:
        raise StudioError(f"this run needs a finishing step '{name}' this version does not know",
                          hint="upgrade portrait-studio to finish it")
    return _STEPS[name]


# --- the engine ------------------------------------------------------------------------------------


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def hold_run(ledger: Ledger, run_id: str) -> None:
    """Claim `run_id` for this process before opening providers (so a second `resume` of the same run
    leaves before it starts a sandbox or a model); the engine's `execute` keeps the same claim."""
    holder = ledger.claim_run(run_id, _owner(), alive=_alive)
    if holder is not None:
        raise RunLocked(f"run {run_id} is being worked on by another process ({holder})",
                        hint="wait for it to finish, then 'portrait resume' again if anything is left")


def _alive(owner: str) -> bool:
    """Whether the process holding a run lock still exists (on this host; elsewhere: trust the lease)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Engine:
    """Runs plans. Built by the surfaces (`Engine.open`) with the providers they chose — real or sandbox."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        images_dir: Path,
        runs_dir: Path,
        providers: Mapping[str, Provider],
        labels: Any = None,
        checker: Any = None,
        secrets: Sequence[str] = (),
        work_dir: Path | None = None,
        default_budget_usd: float | None = None,
    ) -> None:
        self.ledger = ledger
        self.images_dir = Path(images_dir)
        self.runs_dir = Path(runs_dir)
        self.providers = dict(providers)
        self.labels = labels
        self.checker = checker
        self.secrets = tuple(s for s in secrets if s)
        self.work_dir = Path(work_dir) if work_dir else self.runs_dir.parent / "work"
        self.default_budget_usd = default_budget_usd
        self.owner = _owner()
        self.runner: Callable[..., Awaitable[RunReport]] = run_plan
        """What sends the requests: the in-process runner, or its cluster form (`cluster.ClusterRunner`),
        which takes the same arguments and keeps the ledger in this process."""
        self._early: EarlyChecks | None = None

    # --- opening ---------------------------------------------------------------------------
    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        studio: Any,
        provider_ids: Iterable[str],
        *,
        sandbox: str = "auto",
        options: dict[str, dict[str, Any]] | None = None,
        start_sandbox: Any = None,
        checker: Any = "default",
        sign: bool = True,
        ledger: Ledger | None = None,
    ) -> AsyncIterator[Engine]:
        """The engine over `studio`'s ledger with `provider_ids` open (sandboxes started by the
        surface's `start_sandbox` when allowed); providers are closed when the block ends."""
        from .finishing.lineage import LabelSettings
        from .ledger import open_ledger
        from .providers import open_providers

        own = ledger is None
        led = ledger if ledger is not None else open_ledger(studio)
        try:
            ids = list(dict.fromkeys(provider_ids))
            with contextlib.ExitStack() as stack:
                providers = (
                    stack.enter_context(open_providers(studio, ids, sandbox=sandbox, options=options,  # type: ignore[arg-type]
                                                       start_sandbox=start_sandbox))
                    if ids else {}
                )
                engine = cls(
                    ledger=led, images_dir=studio.images_dir, runs_dir=studio.runs_dir, providers=providers,
                    labels=LabelSettings.from_studio(studio, sign=sign),
                    checker=default_checker() if checker == "default" else checker,
                    secrets=studio.secrets(), work_dir=studio.home / "work",
                    default_budget_usd=studio.config.default_budget_usd,
                )
                try:
                    yield engine
                finally:
                    for p in providers.values():
                        with contextlib.suppress(Exception):
                            await p.aclose()
        finally:
            if own:
                led.close()

    @property
    def sandbox(self) -> bool:
        return any(p.sandbox for p in self.providers.values())

    def budget(self, explicit: float | None) -> float | None:
        """One budget rule: the command's --budget, else the studio's default."""
        return explicit if explicit is not None else self.default_budget_usd

    # --- before anything is recorded -------------------------------------------------------
    def preflight(self, plan: Plan) -> None:
        """Refuse, spending and recording nothing: secrets in prompts, photos of people without a
        rights record, requests a provider cannot serve (capability, weights, licence)."""
        for request in plan.requests:
            self.check_request(request)

    def check_request(self, request: Request) -> None:
        for text in (request.prompt, request.negative_prompt or ""):
            if find_key(text, self.secrets):
                raise StudioError("the prompt contains an API key; nothing was sent",
                                  hint="remove the key from the brief or instruction")
        self.check_consent(request)
        provider = self.providers.get(request.provider)
        if provider is None:
            raise CapabilityError(f"provider '{request.provider}' is not open for this run",
                                  hint=f"open it (--provider {request.provider})")
        provider.check(request)

    def check_consent(self, request: Request) -> None:
        """Every image sent (but masks) is the studio's own output or has a rights record."""
        for image in request.images:
            if image.role == "mask":
                continue
            if image.rights_id is not None or self.ledger.rights_for(image.sha256) is not None:
                continue
            if self._studio_made(image):
                continue
            raise ConsentRequired(
                f"{Path(image.path).name} ({image.role} image) may show a real person, and no consent/rights "
                "record exists for it; nothing was sent",
                hint=CONSENT_HINT,
            )

    def _studio_made(self, image: InputImage) -> bool:
        """The bytes are an image the studio made, or derived from photos that all have rights records
        (a fix of a consented photo is covered by that consent)."""
        found = self.ledger.image_for_file(image.path, image.sha256)
        if found is None:
            return False
        return all(r.operation != "import" or self.ledger.rights_for(r.image_sha256) is not None
                   for r in self.ledger.lineage(found.image_sha256))

    # --- recording -------------------------------------------------------------------------
    def record(self, plan: Plan, *, budget_usd: float | None = None, out_dir: Path | None = None,
               run_id: str | None = None, project: str | None = None) -> str:
        """Preflight, then write the run, its requests and steps (before anything is sent) and run.json."""
        from .shoot import check_budget

        self.preflight(plan)
        if out_dir is not None:
            out_dir = self.check_out(out_dir)
        limit = self.budget(budget_usd)
        check_budget(plan, limit)
        run_id = run_id or new_id("run_")
        out = Path(out_dir) if out_dir else self.runs_dir / run_id
        out.mkdir(parents=True, exist_ok=True)
        requests = [r.model_copy(update={"run_id": run_id}) for r in plan.requests]
        self.ledger.create_run(
            plan.kind, run_id=run_id, name=plan.name, brief=plan.brief, brief_path=plan.brief_path,
            plan={"estimated_usd": plan.estimated.usd, "requests": len(requests), **plan.details,
                  "providers": list(dict.fromkeys([*plan.provider_ids, *plan.details.get("providers", [])]))},
            budget_usd=limit, parent_run_id=plan.parent_run_id, varied=plan.varied, forced=plan.forced,
            out_dir=str(out), project=project,
        )
        self.ledger.set_run_steps(run_id, [s.model_dump() for s in plan.steps])
        if requests:
            self.ledger.add_requests(run_id, requests)
        self.write_run_json(run_id)
        return run_id

    # --- running ---------------------------------------------------------------------------
    async def execute(
        self,
        run_id: str,
        *,
        budget_usd: float | None = None,
        resubmit_uncertain: bool = False,
        retry_failed: bool = False,
        on_outcome: Callable[[Outcome], None] | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> RunReport:
        """Run (or resume) a recorded run: its requests, then its finishing steps. One process at a time."""
        run = self.ledger.run(run_id)
        holder = self.ledger.claim_run(run.id, self.owner, alive=_alive)
        if holder is not None:
            raise RunLocked(f"run {run.id} is being worked on by another process ({holder})",
                            hint="wait for it to finish, then 'portrait resume' again if anything is left")
        limit = budget_usd if budget_usd is not None else run.budget_usd
        heartbeat = asyncio.create_task(self._heartbeat(run.id))
        _warm_checklist(self.checker)
        self._early = early = EarlyChecks.for_run(self.checker, run)

        def arrived(outcome: Outcome) -> None:
            image = outcome.image
            if early is not None and outcome.status == "done" and image is not None and not outcome.already \
                    and image.operation == "generate" and self.ledger.checks(image.image_sha256) is None:
                early.submit(image.image_sha256, _checked_path(image))
            if on_outcome is not None:
                on_outcome(outcome)

        try:
            report = await self.runner(
                run.id, ledger=self.ledger, providers=self.providers, images_dir=self.images_dir,
                out_dir=Path(run.out_dir) if run.out_dir else None, budget_usd=limit,
                resubmit_uncertain=resubmit_uncertain, retry_failed=retry_failed, on_outcome=arrived,
                secrets=self.secrets, deliver=self.deliver if _has_step(run, "deliver") else None,
            )
            report = await self.finish(run.id, report, budget_usd=limit, on_step=on_step)
        finally:
            self._early = None
            if early is not None:
                early.close()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._settle_status(run.id)
            self.ledger.release_run(run.id, self.owner)
            with contextlib.suppress(OSError, StudioError):
                self.write_run_json(run.id)
        return report

    async def _heartbeat(self, run_id: str) -> None:
        while True:
            await asyncio.sleep(15)
            self.ledger.renew_run(run_id, self.owner)

    def _settle_status(self, run_id: str) -> None:
        counts, _ = self.ledger.request_counts(run_id)
        run = self.ledger.run(run_id)
        pending = any(s.get("status") == "pending" for s in (run.plan or {}).get("stages", []))
        if counts and set(counts) <= {"done"} and not pending and not (run.plan or {}).get("stopped"):
            status = "done"
        elif counts and counts.get("done", 0) == 0 and set(counts) <= {"failed", "skipped"}:
            status = "failed"
        elif not counts and not pending and not (run.plan or {}).get("stopped"):
            status = "done"
        else:
            status = "incomplete"
        self.ledger.set_run_status(run_id, status)

    async def finish(self, run_id: str, report: RunReport, *, budget_usd: float | None = None,
                     on_step: Callable[[str], None] | None = None) -> RunReport:
        """Apply the run's recorded finishing steps in order (each idempotent)."""
        run = self.ledger.run(run_id)
        out = Path(run.out_dir) if run.out_dir else self.runs_dir / run.id
        for raw in run.steps:
            step = Step.model_validate(raw)
            if on_step:
                on_step(step.name)
            fn = _BUILTIN_STEPS.get(step.name) or _step(step.name)
            ctx = StepContext(engine=self, run=run, report=report, out_dir=out, args=step.args, budget_usd=budget_usd)
            made = fn(ctx)
            if asyncio.iscoroutine(made):
                made = await made
            if isinstance(made, RunReport):
                report = made
        spent = self.ledger.spent(run_id).usd
        sandbox_spent = self.ledger.spent(run_id, sandbox=True).usd
        return report.model_copy(update={"spent_usd": spent, "sandbox_usd": sandbox_spent})

    async def make(self, run_id: str, request: Request, *, budget_usd: float | None = None,
                   parent_id: str | None = None) -> Outcome:
        """Make one image inside a multi-stage run, memoised by the request's settings: replaying a
        driver after a kill finds what was already asked for (done, in flight or failed) and
        never pays for it twice."""
        request = request.model_copy(update={"parent_id": parent_id or request.parent_id})
        return (await self.make_many(run_id, [request], budget_usd=budget_usd))[0]

    async def make_many(self, run_id: str, requests: Sequence[Request], *,
                        budget_usd: float | None = None) -> list[Outcome]:
        """`make` for several images at once (a batch's re-roll round), sent together; outcomes in order."""
        ids: list[str] = []
        known: dict[str, Outcome] = {}
        new: list[Request] = []
        planned: dict[str, str] = {}
        for request in requests:
            request = request.model_copy(update={"run_id": run_id})
            if request.idempotency_key in planned:  # the same image twice in one call: made once
                ids.append(planned[request.idempotency_key])
                continue
            existing = self.ledger.request_by_key(run_id, request.idempotency_key)
            if existing is None:
                planned[request.idempotency_key] = request.request_id
                self.check_request(request)
                new.append(request)
                ids.append(request.request_id)
                continue
            ids.append(existing.id)
            if existing.status == "done":
                known[existing.id] = Outcome(request_id=existing.id, position=existing.position, status="done",
                                             image=self.ledger.result_for_request(existing.id), already=True,
                                             sandbox=existing.sandbox)
        if new:
            self.ledger.add_requests(run_id, new)
        todo = {i for i in ids if i not in known}
        if todo:
            run = self.ledger.run(run_id)
            limit = budget_usd if budget_usd is not None else run.budget_usd
            report = await self.runner(
                run_id, ledger=self.ledger, providers=self.providers, images_dir=self.images_dir,
                out_dir=Path(run.out_dir) if run.out_dir else None, budget_usd=limit, request_ids=todo,
                secrets=self.secrets, deliver=self.deliver if _has_step(run, "deliver") else None,
            )
            known.update({o.request_id: o for o in report.outcomes})
        return [known[i] for i in ids]

    # --- delivery: the labelled copy of every image -----------------------------------------
    def deliver(self, image: ImageRow, request: Request | None = None, *, path: Path | None = None,
                info: Any = None, kind: str = "output", parent_path: str | None = None) -> ImageRow:
        """Write the labelled copy of `image` at its out path (or `path`), atomically, and record it.

        Idempotent: a copy that exists, is recorded and still has the recorded bytes is left alone;
        a missing or damaged one is written again from the content-addressed original.
        """
        from .labels import LabelInfo

        target = Path(path or image.out_path or "")
        if not str(target) or target == Path(""):
            return image
        record = self.ledger.file(target)
        if record is not None and record["result_id"] == image.id and target.is_file() and record["labelled"]:
            from .consent import file_sha256

            if file_sha256(target) == record["sha256"]:
                return image
        if info is None:
            if request is None and image.request_id:
                request = self.ledger.request(image.request_id).request
            if request is not None:
                info = LabelInfo.from_request(request, sandbox=image.sandbox, width=image.width, height=image.height,
                                              run_id=image.run_id,
                                              creator=getattr(self.labels, "creator", None),
                                              credit=getattr(self.labels, "credit", None))
            else:
                info = LabelInfo(model=image.model or "unknown", prompt="(not recorded)", seed=image.seed,
                                 sandbox=image.sandbox, width=image.width, height=image.height)
        sha, record = write_labelled(Path(image.path), target, info, self.labels, ingredient_from=parent_path,
                                     secrets=self.secrets)
        self.ledger.record_file(target, sha, image.id, kind=kind, labelled=True)
        data = record.model_dump(mode="json")
        self.ledger.record_label(image.image_sha256, {**data, "path": str(target)},
                                 "signed" if record.c2pa is not None else "missing")
        return image

    def check_out(self, out: str | Path) -> Path:
        """A user's --out (a folder, or a file for a derivative): never the studio folder, above it, or
        inside it outside runs/ (the web serves run folders; keys and the ledger live there)."""
        from .config import check_out_dir

        path = Path(out)
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
            return check_out_dir(self.runs_dir.parent, path.parent) / path.name
        return check_out_dir(self.runs_dir.parent, path)

    def work_path(self, name: str) -> Path:
        """A stable place for intermediates (masks, upscaled inputs), under the studio folder."""
        path = self.work_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # --- run.json --------------------------------------------------------------------------
    def write_run_json(self, run_id: str) -> Path:
        from .shoot import run_json

        run = self.ledger.run(run_id)
        out = Path(run.out_dir) if run.out_dir else self.runs_dir / run.id
        data = run_json(self.ledger, run.id)
        text = redact(json.dumps(data, indent=2, default=str, ensure_ascii=False), self.secrets)
        return atomic_write_text(out / "run.json", text)


def _has_step(run: RunRow, name: str) -> bool:
    return any(s.get("name") == name for s in run.steps)


def _checked_path(image: ImageRow) -> Path:
    """What the checklist reads: the delivered (labelled) copy when it exists, else the original."""
    return Path(image.out_path) if image.out_path and Path(image.out_path).is_file() else Path(image.path)


CHECK_WORKERS = min(4, (os.cpu_count() or 1) + 1)
"""Images checked at once as they arrive: one more than the cores, so three images arriving together on
two cores share both to the end (two workers would leave the third alone on one core, 1.3x longer)."""


class EarlyChecks:
    """The checklist on each image as soon as it arrives, in worker threads, while the provider still
    works on the others: up to `CHECK_WORKERS` images at once (its model runs release the GIL; each
    model and each OCR engine serves one thread at a time, and there is an OCR engine per core).

    The "check" step then only collects the results and records them (the ledger is written from
    the engine's thread only); an image that was not checked early is checked there as before.
    """

    def __init__(self, checker: Callable[[Path, Any], Any], brief: Any, workers: int | None = None) -> None:
        self.checker = checker
        self.brief = brief
        self._pool = ThreadPoolExecutor(max_workers=workers or CHECK_WORKERS,
                                        thread_name_prefix="portrait-check")
        self._futures: dict[str, Future[tuple[str, float, dict[str, Any]]]] = {}

    @classmethod
    def for_run(cls, checker: Any, run: RunRow) -> EarlyChecks | None:
        """Only for runs that have a check step, a brief to check against and a checklist installed."""
        if checker is None or not run.brief or not _has_step(run, "check"):
            return None
        from .brief import parse_brief

        try:
            brief = parse_brief(run.brief, source=f"run {run.id}")
        except StudioError:  # the check step reports it, as before
            return None
        return cls(checker, brief)

    def submit(self, sha256: str, path: Path) -> None:
        if sha256 not in self._futures:
            self._futures[sha256] = self._pool.submit(self.checker, path, self.brief)

    def take(self, sha256: str) -> tuple[str, float, dict[str, Any]] | None:
        """The finished check of this picture (waiting for it if it is still running), or None if it
        was never started. A check that raised raises here, where a late check would have."""
        future = self._futures.pop(sha256, None)
        return None if future is None else future.result()

    def close(self) -> None:
        """Drop checks nobody collected (a run that stopped early): they are recorded by the next resume."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._futures.clear()


def _warm_checklist(checker: Any) -> None:
    """Import the checklist and load its models in a thread while the provider works, not after
    (when available): the event loop only waits on the network then, so the import does not delay
    a submission or a poll. The labelling libraries and the contact sheet's fonts are readied in
    the same thread: every arrival and every run's end would otherwise pay for them first."""

    def load() -> None:
        if checker is not None:
            with contextlib.suppress(ImportError):
                from . import checks

                warm = getattr(checks, "warm_up", None)
                if callable(warm):
                    warm()
        for name in ("pyexiv2", "c2pa"):
            with contextlib.suppress(Exception):  # optional; labels.py says what is missing when it matters
                importlib.import_module(name)
        with contextlib.suppress(Exception):
            from . import grids

            grids.warm_up()

    threading.Thread(target=load, name="checklist-warm-up", daemon=True).start()


def write_labelled(source: Path, target: Path, info: Any, labels: Any, *, ingredient_from: str | None = None,
                   secrets: Sequence[str] = ()) -> tuple[str, Any]:
    """Copy `source` to `target` with the AI labels written (and the sidecar next to it), atomically:
    the labels are written on a private copy that is renamed into place last. Returns (sha256, label record)."""
    import hashlib

    from .files import atomic_replace
    from .labels import label_image

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{os.getpid()}.{new_id()}"
    try:
        staging.mkdir()
    except OSError:  # let the files module turn it into a clear error (disk full, read-only, permissions)
        with atomic_replace(target):
            pass
        raise
    try:
        tmp = staging / target.name
        shutil.copyfile(source, tmp)
        c2pa = getattr(labels, "c2pa", None) if labels is not None else None
        record = label_image(tmp, info, c2pa, ingredient_from=ingredient_from, sidecar=True, secrets=secrets)
        for f in (tmp, staging / (target.name + ".json")):
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(staging / (target.name + ".json"), target.parent / (target.name + ".json"))
        os.replace(tmp, target)
        return hashlib.sha256(target.read_bytes()).hexdigest(), record.model_copy(update={"path": str(target)})
    except OSError as exc:
        from .files import FileWriteError

        if isinstance(exc, FileWriteError) or exc.errno is None:
            raise
        raise FileWriteError(f"cannot write {target}: {exc.strerror}",
                             hint="free some space or fix the folder's permissions, then 'portrait resume' writes it",
                             code=exc.errno) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- built-in steps ------------------------------------------------------------------------------


def _step_deliver(ctx: StepContext) -> None:
    """Every finished image of the run has its labelled copy (repairs missing or damaged ones)."""
    engine: Engine = ctx.engine
    for image in engine.ledger.images(run_id=ctx.run.id, limit=100_000):
        if image.operation == "generate" and image.out_path:
            engine.deliver(image)


def _step_check(ctx: StepContext) -> None:
    """The checklist on every delivered image that has none yet."""
    engine: Engine = ctx.engine
    if engine.checker is None or not ctx.run.brief:
        return
    from .brief import parse_brief

    early = engine._early
    brief = early.brief if early is not None else parse_brief(ctx.run.brief, source=f"run {ctx.run.id}")
    for image in engine.ledger.images(run_id=ctx.run.id, limit=100_000):
        if image.operation == "generate" and engine.ledger.checks(image.image_sha256) is None:
            done = early.take(image.image_sha256) if early is not None else None
            overall, score, data = done if done is not None else engine.checker(_checked_path(image), brief)
            engine.ledger.record_checks(image.image_sha256, overall, score, data)


def _step_sheet(ctx: StepContext) -> None:
    from .shoot import contact_sheet_for

    contact_sheet_for(ctx.engine.ledger, ctx.run.id, ctx.out_dir)


_BUILTIN_STEPS: dict[str, StepFn] = {"deliver": _step_deliver, "check": _step_check, "sheet": _step_sheet}


def default_checker() -> Any:
    from .shoot import default_checker as make

    return make()


def failure_summary(report: RunReport) -> RunFailed | None:
    """When nothing of a run succeeded: one error naming the most common cause and its fix."""
    if not report.outcomes or report.done:
        return None
    by_cause: dict[tuple[str | None, str | None], int] = {}
    for o in report.outcomes:
        key = (o.error_type, o.hint)
        by_cause[key] = by_cause.get(key, 0) + 1
    (kind, hint), _ = max(by_cause.items(), key=lambda kv: kv[1])
    first = next(o for o in report.outcomes if (o.error_type, o.hint) == (kind, hint))
    n = len(report.outcomes)
    return RunFailed(f"nothing was made: {n} of {n} requests did not finish — {first.error}",
                     provider="", hint=hint or f"see 'portrait log'; then 'portrait resume {report.run_id}'")


__all__ += ["default_checker", "failure_summary", "hold_run", "write_labelled"]
