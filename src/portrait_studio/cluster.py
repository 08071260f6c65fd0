"""The runner on a Ray cluster: the same plan, the same ledger, many machines.

    driver (this process: the engine, the ledger's only writer)         Ray workers
    ─────────────────────────────────────────────────────────           ─────────────────────────────
    run_plan ── admit: a slot from the SlotLimiter actor ─────────────► (one per cluster: the account's
       │        (hosted: ≤ the account's active tasks, cluster-wide;     active-task limit, leased)
       │         local: ≤ 2 per live GPU worker) — still 'planned'
       ├─ reserve budget ('submitting'), then RemoteProvider.submit ──► GenerationWorker.submit: the real
       │                                                                 provider sends it; on acceptance
       │  ◄──────────────────────────── the provider's Ticket ───────── it parks BEFORE polling
       ├─ record the ticket ('accepted') ── then collect ──────────────► ... polls, downloads
       │  ◄──────────────────────────── the Result (image bytes) ──────
       ├─ record the image (content-addressed, 'done')
       └─ labels + checklist ──────────────────────────────────────────► Finisher (CPU), in parallel
          ◄──────── labelled bytes, label record, checks ─── written and recorded here
          (and the kept images' upscales, once the batch step has chosen them)

- One GPU worker per GPU holds its loaded pipeline (and its compiled/quantised state) for the
  whole batch (`num_gpus=1`; or a custom resource, which is how the tests simulate GPUs on CPUs).
- A worker killed after the provider accepted a task: its ticket is already in the ledger, so the
  task is re-polled on another worker (`Provider.resume`), never sent again. Killed while sending
  (before the ticket came back): the request is left uncertain, as in the runner — it may have been
  accepted, so it is not re-sent unless the user asks (`resume --resubmit-uncertain`). Local
  generation is free, so it simply runs again elsewhere.
- A node lost: its workers' calls fail, they are set aside, and the batch finishes on the workers
  that remain (a worker that Ray restarts comes back after it answers a ping).
- The driver killed: the workers go with it; `portrait resume RUN` (in process or with `--ray`)
  re-polls what was accepted and sends what never went out — the engine's resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import errors as _errors
from .errors import CapabilityError, NotConfigured, StudioError, UncertainSubmission
from .ledger import ImageRow, Ledger, RequestRow
from .providers.base import OnAccepted, Provider
from .records import Request, Result, Ticket
from .runner import Outcome, RunReport, run_plan

__all__ = ["ClusterOptions", "ClusterRunner", "ProviderRecipe", "RemoteError", "connect"]

NAMESPACE = "portrait-studio"
LIMITER_NAME = "portrait-studio-slots"


class ClusterOptions(BaseModel):
    """Where and how a batch runs on Ray. `address`: 'auto' joins the cluster this machine belongs to
    (RAY_ADDRESS, or one started with `ray start`) or starts one here; else a cluster's address."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = "auto"
    gpu_resource: str | None = Field(default=None, description="schedule GPU workers on this custom resource instead of GPUs")
    gpu_workers: int | None = Field(default=None, ge=1, description="default: one per GPU (or per unit of gpu_resource)")
    hosted_workers: int = Field(default=2, ge=1, description="workers that send and poll hosted requests")
    cpu_workers: int = Field(default=1, ge=0, description="workers that label and check images (0: the driver does it)")
    max_active: dict[str, int] = Field(default_factory=dict, description="override a provider's account limit")
    slot_ttl_s: float = Field(default=30.0, gt=1, description="a slot whose holder stops renewing it is freed after this")
    down_after_s: float = Field(default=300.0, gt=0, description="give up on a request when no worker is up for this long")
    num_cpus: int | None = Field(default=None, description="a cluster started here: CPUs to offer")


def connect(options: ClusterOptions) -> dict[str, Any]:
    """Join (or start) the cluster; returns its resources. Ray is imported here, never at start-up."""
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a declared dependency of the cluster extra
        raise NotConfigured("Ray is not installed", hint="pip install 'portrait-studio[cluster]' (or: pip install ray)") from None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False, "configure_logging": False}
        if options.address == "auto":
            try:
                ray.init(address="auto", **kwargs)
            except (ConnectionError, RuntimeError):
                ray.init(include_dashboard=False, num_cpus=options.num_cpus,
                         resources={options.gpu_resource: float(options.gpu_workers or 1)} if options.gpu_resource else None,
                         **kwargs)
        else:
            try:
                ray.init(address=options.address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise NotConfigured(f"cannot reach the Ray cluster at {options.address}: {exc}",
                                    hint="start it with 'ray start --head' (and 'ray start --address ...' on each "
                                         "machine), or use --ray auto on one machine") from None
    return dict(ray.cluster_resources())


# --- providers on workers --------------------------------------------------------------------------


class ProviderRecipe(BaseModel):
    """How a worker builds the same provider the driver opened (real service or sandbox)."""

    model_config = ConfigDict(frozen=True)

    provider_id: str
    key: str | None = Field(default=None, repr=False)
    options: dict[str, Any] = Field(default_factory=dict)
    sandbox: bool = False
    licences: tuple[str, ...] = ()

    @classmethod
    def of(cls, provider: Provider) -> ProviderRecipe:
        from .catalog import all_models
        from .providers._hosted import HostedProvider
        from .providers.local import LocalProvider

        if isinstance(provider, HostedProvider):
            return cls(provider_id=provider.provider_id, key=provider._key.reveal(),
                       options=provider.options.model_dump(mode="json"), sandbox=provider.sandbox)
        if isinstance(provider, LocalProvider):
            accepted = tuple(m.id for m in all_models() if "local" in m.routes and provider.licence_accepted(m.id))
            return cls(provider_id="local", key=None, options=provider.options.model_dump(mode="json", exclude_unset=True),
                       licences=accepted)
        raise CapabilityError(f"provider '{provider.provider_id}' cannot run on a Ray cluster yet",
                              hint="run this batch without --ray")

    def build(self) -> Provider:
        from .providers import provider_class

        cls: Any = provider_class(self.provider_id)
        if cls.hosted:
            provider = cls(self.key, cls.Options(**self.options))
        else:
            provider = cls(self.options)
            for model in self.licences:
                provider.accept_licence(model)
        provider.sandbox = self.sandbox
        return provider  # type: ignore[no-any-return]


class RemoteError(BaseModel):
    """A StudioError carried back from a worker (exceptions with keyword-only fields do not pickle)."""

    model_config = ConfigDict(frozen=True)

    type: str
    message: str
    hint: str | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)
    ticket: Ticket | None = None

    @classmethod
    def of(cls, exc: BaseException) -> RemoteError:
        if not isinstance(exc, StudioError):
            return cls(type="ProviderError", message=f"{type(exc).__name__}: {exc}")
        attrs = {k: v for k, v in vars(exc).items()
                 if k not in ("message", "hint", "ticket") and isinstance(v, str | int | float | bool | list | type(None))}
        ticket = getattr(exc, "ticket", None)
        return cls(type=type(exc).__name__, message=exc.message, hint=exc.hint, attrs=attrs,
                   ticket=ticket if isinstance(ticket, Ticket) else None)

    def rebuild(self) -> StudioError:
        cls = _error_classes().get(self.type, _errors.ProviderError)
        exc = cls.__new__(cls)
        StudioError.__init__(exc, self.message, hint=self.hint)
        for key, value in self.attrs.items():
            setattr(exc, key, value)
        if self.ticket is not None:
            exc.ticket = self.ticket  # type: ignore[attr-defined]
        return exc


def _error_classes() -> dict[str, type[StudioError]]:
    found: dict[str, type[StudioError]] = {}
    todo: list[type[StudioError]] = [StudioError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.__name__, cls)
        todo.extend(cls.__subclasses__())
    return found


class Answer(BaseModel):
    """What a worker says about one request."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    kind: Literal["made", "accepted", "error"]
    result: Result | None = None
    ticket: Ticket | None = None
    error: RemoteError | None = None
    pid: int = 0
    node: str = ""


def _here() -> dict[str, Any]:
    """Which process on which node answered (recorded with each image made on the cluster)."""
    node = ""
    with contextlib.suppress(Exception):
        node = _ray().get_runtime_context().get_node_id()
    return {"pid": os.getpid(), "node": node}


class GenerationWorker:
    """A Ray actor that holds providers: on a GPU, the local pipeline (loaded once, kept for the whole
    batch); on a CPU, hosted clients. It sends, parks on acceptance until the driver has recorded the
    ticket, then polls and downloads."""

    def __init__(self, recipes: Mapping[str, ProviderRecipe]) -> None:
        self._recipes = dict(recipes)
        self._providers: dict[str, Provider] = {}
        self._parked: dict[str, tuple[asyncio.Event, asyncio.Task[Result]]] = {}

    def _provider(self, provider_id: str) -> Provider:
        if provider_id not in self._providers:
            self._providers[provider_id] = self._recipes[provider_id].build()
        return self._providers[provider_id]

    async def ping(self) -> int:
        return os.getpid()

    async def pipelines(self) -> int:
        """How many local pipelines this worker holds (one per weights it served: loaded once, kept)."""
        import sys

        runtime = sys.modules.get("portrait_studio.providers.local_runtime")
        return len(getattr(runtime, "_CACHE", {}))

    async def submit(self, request: Request) -> Answer:
        try:
            provider = self._provider(request.provider)
        except Exception as exc:
            return Answer(kind="error", error=RemoteError.of(exc), **_here())
        accepted: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        go = asyncio.Event()

        async def on_accepted(ticket: Ticket) -> None:
            if not accepted.done():
                accepted.set_result(ticket)
            await go.wait()  # the driver records the ticket, then asks us to poll

        task = asyncio.ensure_future(provider.submit(request, on_accepted=on_accepted))
        await asyncio.wait([task, accepted], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        if accepted.done() and not task.done():
            self._parked[request.request_id] = (go, task)
            return Answer(kind="accepted", ticket=accepted.result(), **_here())
        go.set()
        return await self._answer(task)

    async def collect(self, request_id: str) -> Answer:
        go, task = self._parked.pop(request_id)
        go.set()
        return await self._answer(task)

    async def resume(self, ticket: Ticket, request: Request) -> Answer:
        try:
            provider = self._provider(request.provider)
            task = asyncio.ensure_future(provider.resume(ticket, request))
        except Exception as exc:
            return Answer(kind="error", error=RemoteError.of(exc), **_here())
        return await self._answer(task)

    @staticmethod
    async def _answer(task: asyncio.Future[Result]) -> Answer:
        try:
            result = await task
        except Exception as exc:
            return Answer(kind="error", error=RemoteError.of(exc), **_here())
        return Answer(kind="made", result=result, **_here())


class SlotLimiter:
    """A Ray actor: the account's active-task limit across the whole cluster. A slot is leased to a
    holder (a request id) and renewed by its driver; a killed driver's slots lapse after the ttl."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[tuple[tuple[str, int], ...], float]] = {}
        self._changed = asyncio.Condition()
        self._peak: dict[str, int] = {}

    def _count(self, group: str) -> int:
        return sum(1 for groups, _ in self._held.values() if any(g == group for g, _ in groups))

    def _purge(self) -> None:
        now = time.time()
        for holder in [h for h, (_, until) in self._held.items() if until < now]:
            del self._held[holder]

    async def acquire(self, holder: str, groups: list[tuple[str, int]], ttl_s: float) -> None:
        async with self._changed:
            while True:
                self._purge()
                if holder in self._held:
                    self._held[holder] = (self._held[holder][0], time.time() + ttl_s)
                    return
                if all(self._count(g) < limit for g, limit in groups):
                    self._held[holder] = (tuple((g, int(n)) for g, n in groups), time.time() + ttl_s)
                    for g, _ in groups:
                        self._peak[g] = max(self._peak.get(g, 0), self._count(g))
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=1.0)

    async def release(self, holder: str) -> None:
        async with self._changed:
            self._held.pop(holder, None)
            self._changed.notify_all()

    async def renew(self, holders: list[str], ttl_s: float) -> None:
        until = time.time() + ttl_s
        for h in holders:
            if h in self._held:
                self._held[h] = (self._held[h][0], until)

    async def peak(self) -> dict[str, int]:
        return dict(self._peak)

    async def held(self) -> int:
        self._purge()
        return len(self._held)


class Finisher:
    """A Ray actor on a CPU: writes the AI labels into an image and runs the checklist on it; upscales."""

    def __init__(self, labels: Any, checker: Any, secrets: Sequence[str]) -> None:
        self._labels = labels
        self._checker = checker
        self._secrets = tuple(secrets)
        if checker is not None:
            from .engine import _warm_checklist

            _warm_checklist(checker)

    def ping(self) -> int:
        return os.getpid()

    def upscale(self, data: bytes, scale: float, method: str) -> bytes:
        """A kept image, upscaled (the pixels only; the driver records and labels the result)."""
        import io

        from PIL import Image

        from .finishing.upscale import upscale

        with Image.open(io.BytesIO(data)) as im:
            big = upscale(im.convert("RGB"), scale, method=method)  # type: ignore[arg-type]
        buffer = io.BytesIO()
        big.save(buffer, "PNG")
        return buffer.getvalue()

    def finish(self, data: bytes, name: str, info: Any, brief: dict[str, Any] | None) -> dict[str, Any]:
        import tempfile

        from .brief import Brief
        from .engine import write_labelled

        with tempfile.TemporaryDirectory(prefix="portrait-finish-") as tmp:
            source = Path(tmp) / ("source" + Path(name).suffix)
            source.write_bytes(data)
            target = Path(tmp) / "out" / name
            sha, record = write_labelled(source, target, info, self._labels, secrets=self._secrets)
            checks = None
            if self._checker is not None and brief is not None:
                checks = self._checker(target, Brief.model_validate(brief))
            sidecar = target.parent / (target.name + ".json")
            return {"labelled": target.read_bytes(), "sha256": sha, "record": record.model_dump(mode="json"),
                    "signed": record.c2pa is not None, "sidecar": sidecar.read_bytes() if sidecar.exists() else None,
                    "checks": checks, "pid": os.getpid()}


# --- the driver side -------------------------------------------------------------------------------


def _ray() -> Any:
    import ray

    return ray


def _lost(exc: BaseException) -> bool:
    """The worker (or its node) went away during the call."""
    ray = _ray()
    return isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.WorkerCrashedError
                      | ray.exceptions.ObjectLostError | ray.exceptions.NodeDiedError)


class WorkerPool:
    """Workers of one kind; a call goes to the least busy live one. A worker whose call failed because it
    died is set aside until it answers a ping again (Ray restarts it, or its node is gone for good)."""

    def __init__(self, name: str, workers: list[Any], *, down_after_s: float) -> None:
        self.name = name
        self.workers = list(workers)
        self.busy = {id(w): 0 for w in self.workers}
        self.down: set[int] = set()
        self.down_after_s = down_after_s
        self._probes: dict[int, asyncio.Task[None]] = {}

    @property
    def live(self) -> int:
        return len(self.workers) - len(self.down)

    async def pick(self, avoid: Any = None) -> Any:
        deadline = time.monotonic() + self.down_after_s
        while True:
            up = [w for w in self.workers if id(w) not in self.down and w is not avoid] or \
                 [w for w in self.workers if id(w) not in self.down]
            if up:
                return min(up, key=lambda w: (self.busy[id(w)], random.random()))
            if time.monotonic() > deadline:
                raise NotConfigured(f"no {self.name} worker is up on the cluster", provider="",
                                    hint="check the cluster ('ray status'); then 'portrait resume RUN' finishes the batch")
            await asyncio.sleep(0.2)

    def mark_down(self, worker: Any) -> None:
        key = id(worker)
        if key in self.down:
            return
        self.down.add(key)
        self._probes[key] = asyncio.ensure_future(self._probe(worker))

    async def _probe(self, worker: Any) -> None:
        """Back in the pool once it answers (Ray restarted it); never, if its node is gone."""
        while True:
            await asyncio.sleep(0.5)
            try:
                await asyncio.wait_for(worker.ping.remote(), timeout=10.0)
            except Exception:
                continue
            self.down.discard(id(worker))
            return

    @contextlib.asynccontextmanager
    async def using(self, worker: Any) -> AsyncIterator[None]:
        self.busy[id(worker)] += 1
        try:
            yield
        finally:
            self.busy[id(worker)] -= 1

    def close(self) -> None:
        for task in self._probes.values():
            task.cancel()


class RemoteProvider(Provider):
    """The driver's stand-in for a provider whose calls run on cluster workers. The runner sees an
    ordinary provider: acceptance is reported through `on_accepted` (so the driver records the ticket
    before the worker polls), failures are the same StudioErrors."""

    provider_id = "remote"

    def __init__(self, real: Provider, pool: WorkerPool) -> None:
        self.real = real
        self.pool = pool
        self.provider_id = real.provider_id  # type: ignore[misc]
        self.hosted = real.hosted  # type: ignore[misc]
        self.billing = real.billing  # type: ignore[misc]
        self.sandbox = real.sandbox
        self.repolled = 0
        """Accepted tasks re-polled on another worker after theirs was lost."""
        self.remade = 0
        """Free (local) requests made again elsewhere after their worker was lost."""

    def check(self, request: Request) -> None:
        self.real.check(request)

    def max_concurrency(self, model: str) -> int:
        return self.real.max_concurrency(model)

    async def submit(self, request: Request, on_accepted: OnAccepted | None = None) -> Result:
        tried: Any = None
        while True:
            worker = await self.pool.pick(avoid=tried)
            try:
                async with self.pool.using(worker):
                    answer: Answer = await worker.submit.remote(request)
            except Exception as exc:
                if not _lost(exc):
                    raise
                self.pool.mark_down(worker)
                if self.billing == "free":  # nothing can be paid twice: make it elsewhere
                    tried = worker
                    self.remade += 1
                    continue
                raise UncertainSubmission(
                    f"the {self.pool.name} worker was lost while sending this request; the provider may have "
                    "accepted (and charged for) it", provider=self.provider_id,
                    hint="check the provider's dashboard, then 'portrait resume RUN --resubmit-uncertain'") from None
            if answer.kind != "accepted":
                return self._unwrap(answer)
            ticket = answer.ticket
            assert ticket is not None
            if on_accepted is not None:
                await on_accepted(ticket)  # recorded in the ledger before the worker polls
            try:
                async with self.pool.using(worker):
                    answer = await worker.collect.remote(request.request_id)
            except Exception as exc:
                if not _lost(exc):
                    raise
                self.pool.mark_down(worker)
                self.repolled += 1
                return await self.resume(ticket, request, avoid=worker)
            return self._unwrap(answer)

    async def resume(self, ticket: Ticket, request: Request, *, avoid: Any = None) -> Result:
        """Re-poll an accepted task on any live worker (never a re-submission)."""
        tried = avoid
        while True:
            worker = await self.pool.pick(avoid=tried)
            try:
                async with self.pool.using(worker):
                    answer: Answer = await worker.resume.remote(ticket, request)
            except Exception as exc:
                if not _lost(exc):
                    raise
                self.pool.mark_down(worker)
                tried = worker
                continue
            return self._unwrap(answer)

    def _unwrap(self, answer: Answer) -> Result:
        if answer.kind == "made":
            assert answer.result is not None
            worker = {"pid": answer.pid, "node": answer.node}
            return answer.result.model_copy(update={"metadata": {**answer.result.metadata, "worker": worker}})
        assert answer.error is not None
        raise answer.error.rebuild()


def account_of(provider: Provider) -> str:
    """Requests on the same account share its active-task limit (by the key's fingerprint)."""
    key = getattr(provider, "_key", None)
    fingerprint = key.fingerprint() if key is not None else hashlib.sha256(b"local").hexdigest()[:12]
    return f"{provider.provider_id}:{fingerprint}"


def account_limit(provider: Provider, overrides: Mapping[str, int]) -> int:
    """The account's active-task limit: the override, else the most any of its models allows (BFL: 24)."""
    if provider.provider_id in overrides:
        return overrides[provider.provider_id]
    from .catalog import all_models

    served = [m.id for m in all_models() if provider.provider_id in m.routes]
    return max((provider.max_concurrency(m) for m in served), default=4)


class ClusterRunner:
    """`run_plan` on a Ray cluster, with the same arguments and the same report: set as `engine.runner`.
    Workers are started on first use and kept for the engine's life (`close()` ends them)."""

    def __init__(self, options: ClusterOptions, *, engine: Any = None) -> None:
        self.options = options
        self.engine = engine
        self.resources: dict[str, Any] = {}
        self.pools: dict[str, WorkerPool] = {}
        self.finishers: WorkerPool | None = None
        self.limiter: Any = None
        self._local_slots: asyncio.Semaphore | None = None
        self._held: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None
        self.remote: dict[str, RemoteProvider] = {}
        self.stats: dict[str, Any] = {"finished_remote": 0, "finish_errors": []}

    # --- workers --------------------------------------------------------------------------------
    def start(self, providers: Mapping[str, Provider]) -> None:
        ray = _ray()
        self.resources = connect(self.options)
        if self.limiter is None:
            self.limiter = ray.remote(SlotLimiter).options(
                name=LIMITER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0,
                max_restarts=-1).remote()
        actor = ray.remote(GenerationWorker)
        hosted = {pid: ProviderRecipe.of(p) for pid, p in providers.items() if p.hosted}
        if hosted and "hosted" not in self.pools:
            workers = [actor.options(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=1000).remote(hosted)
                       for _ in range(self.options.hosted_workers)]
            self.pools["hosted"] = WorkerPool("hosted", workers, down_after_s=self.options.down_after_s)
        local = {pid: ProviderRecipe.of(p) for pid, p in providers.items() if not p.hosted}
        if local and "local" not in self.pools:
            resource = self.options.gpu_resource
            units = int(self.resources.get(resource or "GPU", 0))
            count = self.options.gpu_workers or units
            if count < 1:
                raise NotConfigured(
                    f"the cluster offers no {'GPU' if resource is None else repr(resource)} for local generation",
                    hint="add GPU nodes, or name the resource that marks them (--gpu-resource), or run without --ray")
            placement: dict[str, Any] = {"resources": {resource: 1}} if resource else {"num_gpus": 1}
            workers = [actor.options(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=4,
                                     **placement).remote(local) for _ in range(count)]
            self.pools["local"] = WorkerPool("GPU", workers, down_after_s=self.options.down_after_s)
            self._local_slots = asyncio.Semaphore(2 * count)
        self.remote.update({pid: RemoteProvider(p, self.pools["hosted" if p.hosted else "local"])
                            for pid, p in providers.items() if pid not in self.remote})
        engine = self.engine
        if self.options.cpu_workers and self.finishers is None and engine is not None:
            checker = engine.checker
            try:
                from ray import cloudpickle

                cloudpickle.dumps(checker)
            except Exception:
                checker = None
            finisher = ray.remote(Finisher)
            workers = [finisher.options(num_cpus=1, max_restarts=-1, max_task_retries=0).remote(
                engine.labels, checker, engine.secrets) for _ in range(self.options.cpu_workers)]
            self.finishers = WorkerPool("CPU", workers, down_after_s=self.options.down_after_s)

    async def worker_pids(self) -> dict[str, list[int]]:
        """The process ids of the workers, by pool (tests kill one; the bench counts them)."""
        found = {}
        for name, pool in {**self.pools, **({"cpu": self.finishers} if self.finishers else {})}.items():
            found[name] = list(await asyncio.gather(*(w.ping.remote() for w in pool.workers)))
        return found

    def close(self) -> None:
        ray = _ray()
        for pool in [*self.pools.values(), *([self.finishers] if self.finishers else [])]:
            pool.close()
            for w in pool.workers:
                with contextlib.suppress(Exception):
                    ray.kill(w)
        self.pools, self.finishers = {}, None

    # --- slots ------------------------------------------------------------------------------------
    def admit(self, row: RequestRow, provider: Provider) -> contextlib.AbstractAsyncContextManager[None]:
        return self._slot(row, provider)

    @contextlib.asynccontextmanager
    async def _slot(self, row: RequestRow, provider: Provider) -> AsyncIterator[None]:
        if row.status == "done":
            yield
            return
        if not provider.hosted:
            assert self._local_slots is not None
            async with self._local_slots:
                yield
            return
        account = account_of(provider)
        groups = [(account, account_limit(provider, self.options.max_active)),
                  (f"{account}:{row.model}", provider.max_concurrency(row.model))]
        await self.limiter.acquire.remote(row.id, groups, self.options.slot_ttl_s)
        self._held.add(row.id)
        try:
            yield
        finally:
            self._held.discard(row.id)
            await self.limiter.release.remote(row.id)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.options.slot_ttl_s / 3)
            if self._held:
                with contextlib.suppress(Exception):
                    await self.limiter.renew.remote(sorted(self._held), self.options.slot_ttl_s)

    # --- finishing on CPU workers ----------------------------------------------------------------
    async def _finish(self, ledger: Ledger, image: ImageRow, run: Any) -> None:
        """Labels (and the checklist) on a CPU worker; the driver writes the file and the records. Any
        failure leaves it to the engine's own steps, which repair what is missing."""
        from .engine import _has_step
        from .labels import LabelInfo

        engine = self.engine
        if self.finishers is None or engine is None or not image.out_path:
            return
        request = ledger.request(image.request_id).request if image.request_id else None
        if request is None:
            return
        brief = None
        if engine.checker is not None and (_has_step(run, "check") or _has_step(run, "batch")):
            from .batch import cell_brief

            found = cell_brief(run, request)
            brief = found.model_dump(mode="json") if found is not None else None
        info = LabelInfo.from_request(request, sandbox=image.sandbox, width=image.width, height=image.height,
                                      run_id=image.run_id, creator=getattr(engine.labels, "creator", None),
                                      credit=getattr(engine.labels, "credit", None))
        target = Path(image.out_path)
        try:
            worker = await self.finishers.pick()
            async with self.finishers.using(worker):
                done = await worker.finish.remote(Path(image.path).read_bytes(), target.name, info, brief)
        except Exception as exc:
            if self.finishers is not None and _lost(exc):
                self.finishers.mark_down(worker)
            self.stats["finish_errors"].append(f"{type(exc).__name__}: {exc}")
            return
        from .files import atomic_write_bytes

        target.parent.mkdir(parents=True, exist_ok=True)
        if done["sidecar"] is not None:
            atomic_write_bytes(target.parent / (target.name + ".json"), done["sidecar"])
        atomic_write_bytes(target, done["labelled"])
        ledger.record_file(target, done["sha256"], image.id, kind="output", labelled=True)
        ledger.record_label(image.image_sha256, {**done["record"], "path": str(target)},
                            "signed" if done["signed"] else "missing")
        if done["checks"] is not None and ledger.checks(image.image_sha256) is None:
            overall, score, data = done["checks"]
            ledger.record_checks(image.image_sha256, overall, score, data)
        self.stats["finished_remote"] += 1

    # --- the runner ---------------------------------------------------------------------------------
    async def __call__(
        self,
        run_id: str,
        *,
        ledger: Ledger,
        providers: Mapping[str, Provider],
        images_dir: Any,
        out_dir: Any = None,
        budget_usd: float | None = None,
        resubmit_uncertain: bool = False,
        retry_failed: bool = False,
        on_outcome: Callable[[Outcome], None] | None = None,
        max_parallel: int = 100_000,
        request_ids: Any = None,
        secrets: Sequence[str] = (),
        deliver: Any = None,
    ) -> RunReport:
        wanted = {r.provider for r in ledger.requests(run_id) if request_ids is None or r.id in request_ids}
        used = {pid: p for pid, p in providers.items() if pid in wanted}
        self.start(used)
        remote: dict[str, Provider] = {pid: self.remote[pid] for pid in used}
        run = ledger.run(run_id)
        finishing: list[asyncio.Task[None]] = []
        remote_finish = self.finishers is not None and deliver is not None

        def outcome(o: Outcome) -> None:
            if remote_finish and o.status == "done" and not o.already and o.image is not None:
                finishing.append(asyncio.ensure_future(self._finish(ledger, o.image, run)))
            if on_outcome is not None:
                on_outcome(o)

        if self._renewer is None:
            self._renewer = asyncio.ensure_future(self._renew())
        try:
            report = await run_plan(
                run_id, ledger=ledger, providers=remote, images_dir=images_dir, out_dir=out_dir, budget_usd=budget_usd,
                resubmit_uncertain=resubmit_uncertain, retry_failed=retry_failed, on_outcome=outcome,
                max_parallel=max_parallel, request_ids=request_ids, secrets=secrets,
                deliver=None if remote_finish else deliver, admit=self.admit,
            )
            if finishing:
                await asyncio.gather(*finishing)
        finally:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        return report

    async def upscale(self, data: bytes, scale: float, method: str) -> bytes:
        """Upscale on a CPU worker (the batch step's kept images); here when there is none."""
        if self.finishers is None:
            raise NotConfigured("no CPU worker on the cluster", hint="--cpu-workers 1 or more")
        worker = await self.finishers.pick()
        async with self.finishers.using(worker):
            made: bytes = await worker.upscale.remote(data, scale, method)
        self.stats["upscaled_remote"] = self.stats.get("upscaled_remote", 0) + 1
        return made

    async def peak_active(self) -> dict[str, int]:
        """The most slots held at once per group since the limiter started (tests, bench)."""
        return dict(await self.limiter.peak.remote())
