"""Sandboxes: local HTTP servers that follow the BFL, fal and Replicate contracts.

Like `moto` for AWS: start one on loopback, point a client at `handle.url` with
`handle.key`, and every request is validated, charged, queued, moderated and answered
with the documented shapes and status codes. Results are real images (see
`sandbox_images`). Faults are injected on demand:

    with start_sandbox("bfl", latency=0.2) as sb:
        sb.inject("rate_limit", count=2)       # the next two submissions get 429
        ...
        assert sb.stats.paid == 1

Charging follows each provider's documented billing (`Provider.billing`): BFL charges
when it accepts a task, whatever happens next; fal and Replicate charge when a task
delivers (fal also for content-policy refusals, which its FAQ says may be billed). So
`stats.accepted` counts tasks created and `stats.paid` the ones charged so far.

Like the real APIs, a sandbox can keep its tasks when its process dies: give it a
`state_dir` (see `sandbox_store`) and a sandbox started again on that folder reloads the
tasks, counters and pending faults, re-binds its port (or, when the port is taken, tells
clients through `handle.moved_origins` how to reach the old polling URLs), and tasks keep
finishing on their wall-clock schedule. `SandboxStats.load(state_dir)` reads the
counters from disk at any time, so a test can prove "each task paid exactly once"
across kills.

Faults (each provider honours the ones its contract has):
    rate_limit            429 on the next submission(s)
    server_error          500 on the next submission(s), task not created
    unavailable           503 on the next submission(s), task not created
    drop_submit           the connection drops after the task was accepted
    drop_submit_early     the connection drops before the task was created
    poll_error            502 on the next poll(s)
    drop_poll             the connection drops on the next poll(s)
    moderate_request      the next task ends as request-moderated
    moderate_content      the next task ends as content-moderated
    fail                  the next task ends with an error
    lose_task             the next task is forgotten ("Task not found")
    slow_download         the next download trickles out over `delay` seconds
    drop_download         the connection drops during the next download
    corrupt_image         the next download is a truncated image
    expire                the next result URL is already expired
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import functools
import hashlib
import hmac
import itertools
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from . import sandbox_store as store

__all__ = [
    "FAULTS",
    "Fault",
    "SandboxHandle",
    "SandboxState",
    "SandboxStats",
    "body_key",
    "data_uri_image",
    "delivery_response",
    "dropped_connection",
    "start_sandbox",
]

Fault = Literal[
    "rate_limit",
    "server_error",
    "unavailable",
    "drop_submit",
    "drop_submit_early",
    "poll_error",
    "drop_poll",
    "moderate_request",
    "moderate_content",
    "fail",
    "lose_task",
    "slow_download",
    "drop_download",
    "corrupt_image",
    "expire",
]
FAULTS: tuple[str, ...] = Fault.__args__  # type: ignore[attr-defined]
_TASK_FAULTS = ("moderate_request", "moderate_content", "fail", "lose_task")
_DOWNLOAD_FAULTS = ("slow_download", "drop_download", "corrupt_image", "expire")
_OUTCOMES = ("ok", "moderate_request", "moderate_content", "fail", "lost", "canceled")
_SETTINGS = ("latency", "result_ttl", "max_active")
"""Server settings saved with the account: a restart without them uses the saved ones."""
RETAIN_S = 7 * 24 * 3600.0
_IMAGE_CACHE = 64
"""Tasks finished longer ago than this are folded into the counters and forgotten on restart."""


@dataclass
class SandboxStats:
    """What the sandbox saw. `paid_by_body` counts charged tasks per distinct request body.

    `bodies` and `headers_seen` are kept in memory by the serving process only; every other
    field survives restarts (and is what `SandboxStats.load(state_dir)` returns)."""

    submissions: int = 0
    accepted: int = 0
    paid: int = 0
    credits_spent: float = 0.0
    polls: int = 0
    downloads: int = 0
    rejected: collections.Counter[int] = field(default_factory=collections.Counter)
    accepted_by_body: collections.Counter[str] = field(default_factory=collections.Counter)
    paid_by_body: collections.Counter[str] = field(default_factory=collections.Counter)
    max_active: int = 0
    unknown_fields: set[str] = field(default_factory=set)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)

    @property
    def paid_twice(self) -> list[str]:
        return [k for k, n in self.paid_by_body.items() if n > 1]

    @property
    def accepted_twice(self) -> list[str]:
        return [k for k, n in self.accepted_by_body.items() if n > 1]

    @classmethod
    def load(cls, state_dir: str | os.PathLike[str]) -> SandboxStats:
        """The counters of the sandbox kept in `state_dir`, as of now (it need not be running).

        Tasks that finished while no process served them count as the provider would bill them."""
        account = store.load_account(Path(state_dir))
        if account is None:
            return cls()
        state = SandboxState(provider=account.get("provider", "bfl"), billing=account.get("billing", "on_accept"),
                             charged_outcomes=account.get("charged_outcomes"))
        state.restore(Path(state_dir), account, prune=False)
        return state.stats


def body_key(body: Any) -> str:
    """A stable digest of a request body: the same image request gives the same key."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Task:
    """One accepted task, on any provider. Times are wall-clock (time.time()), so they mean
    the same thing in the process that reloads the task."""

    id: str
    model: str
    body: dict[str, Any]
    created: float
    ready_at: float
    cost: float
    width: int
    height: int
    seed: int
    prompt: str
    output_format: str
    group: str
    key: str = ""
    outcome: str = "ok"  # ok | moderate_request | moderate_content | fail | lost | canceled
    download_faults: list[str] = field(default_factory=list)
    expires_at: float | None = None
    canceled_at: float | None = None
    urls: dict[str, str] = field(default_factory=dict)

    def done(self, now: float) -> bool:
        return self.outcome in ("canceled", "moderate_request") or now >= self.ready_at

    @property
    def duration(self) -> float:
        return max(0.0, self.ready_at - self.created)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class SandboxState:
    """Everything a sandbox server remembers; shared between its thread and the test's.

    With a `state_dir` every change is written there (see `sandbox_store`); `flush()` runs
    before each HTTP answer starts, and `accept()` writes the task durably at once."""

    def __init__(
        self,
        *,
        provider: str = "bfl",
        billing: str = "on_accept",
        charged_outcomes: Iterable[str] | None = None,
        key: str = "sandbox-key",
        latency: float = 0.2,
        credits: float = 1000.0,
        result_ttl: float = 600.0,
        max_active: int = 24,
        group_limits: dict[str, int] | None = None,
        public_host: str = "localhost",
        state_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.provider = provider
        self.billing = billing
        self.charged_outcomes = frozenset(charged_outcomes if charged_outcomes is not None else _OUTCOMES)
        self.key = key
        self.latency = latency
        self.credit_base = credits
        self.result_ttl = result_ttl
        self.max_active = max_active
        self.group_limits = dict(group_limits or {})
        self.public_host = public_host
        self._stats = SandboxStats()
        self._archived: dict[str, Any] = {"accepted": 0, "paid": 0, "credits_spent": 0.0,
                                          "accepted_by_body": {}, "paid_by_body": {}}
        self.tasks: dict[str, Task] = {}
        self.faults: collections.Counter[str] = collections.Counter()
        self.fault_params: dict[str, dict[str, Any]] = {}
        self.lock = threading.RLock()
        self.secret = os.urandom(16)
        self.port = 0
        self.scheme = "http"
        self.origins: list[str] = []
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.renderer: Any = None  # task -> image bytes; set by each sandbox app
        self._images: collections.OrderedDict[str, asyncio.Future[bytes]] = collections.OrderedDict()
        self._dirty_account = False
        self._dirty_tasks: set[str] = set()
        if self.state_dir is not None:
            (self.state_dir / "tasks").mkdir(parents=True, exist_ok=True)
            account = store.load_account(self.state_dir)
            if account is not None:
                self.restore(self.state_dir, account, prune=True)
            self._dirty_account = True

    # --- billing ------------------------------------------------------------------------
    def charged(self, task: Task, now: float) -> bool:
        """Whether the provider has charged for `task` by `now`, by its documented billing."""
        if self.billing == "on_accept":
            return True
        if self.billing == "free":
            return False
        if task.outcome == "lost":  # forgotten at once: counted (or not) from the start
            return "lost" in self.charged_outcomes
        return task.done(now) and task.outcome in self.charged_outcomes

    @property
    def stats(self) -> SandboxStats:
        """The counters, with the charges of tasks that finished since the last look settled."""
        with self.lock:
            now = time.time()
            s, arch = self._stats, self._archived
            paid = [t for t in self.tasks.values() if self.charged(t, now)]
            s.accepted = arch["accepted"] + len(self.tasks)
            s.accepted_by_body = collections.Counter(arch["accepted_by_body"])
            s.accepted_by_body.update(t.key for t in self.tasks.values())
            s.paid = arch["paid"] + len(paid)
            s.paid_by_body = collections.Counter(arch["paid_by_body"])
            s.paid_by_body.update(t.key for t in paid)
            s.credits_spent = round(arch["credits_spent"] + sum(t.cost for t in paid), 6)
            return s

    @property
    def credits(self) -> float:
        return round(self.credit_base - self.stats.credits_spent, 6)

    @credits.setter
    def credits(self, value: float) -> None:
        with self.lock:
            self.credit_base = value + self.stats.credits_spent
            self._touch(durable=True)

    # --- faults -------------------------------------------------------------------------
    def inject(self, fault: str, count: int = 1, **params: Any) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {', '.join(FAULTS)}")
        with self.lock:
            self.faults[fault] += count
            self.fault_params[fault] = params
            self._touch(durable=True)
            self.flush()

    def take(self, fault: str) -> bool:
        """Consume one pending `fault`; True if there was one."""
        with self.lock:
            if self.faults[fault] > 0:
                self.faults[fault] -= 1
                self._touch()
                return True
            return False

    # --- counters -----------------------------------------------------------------------
    def count(self, name: Literal["polls", "downloads"]) -> None:
        with self.lock:
            setattr(self._stats, name, getattr(self._stats, name) + 1)
            self._touch()

    def reject(self, status: int) -> None:
        with self.lock:
            self._stats.rejected[status] += 1
            self._touch()

    def note_unknown(self, names: Iterable[str]) -> None:
        with self.lock:
            self._stats.unknown_fields.update(names)
            self._touch()

    def record(self, request: HttpRequest, body: Any) -> None:
        with self.lock:
            self._stats.submissions += 1
            if isinstance(body, dict):
                self._stats.bodies.append(body)
            self._stats.headers_seen.append({k.lower(): v for k, v in request.headers.items()})
            self._touch()

    # --- tasks --------------------------------------------------------------------------
    def active(self, now: float, group: str | None = None) -> int:
        return sum(
            1 for t in self.tasks.values() if not t.done(now) and (group is None or t.group == group)
        )

    def limit_hit(self, group: str) -> bool:
        now = time.time()
        if self.active(now) >= self.max_active:
            return True
        limit = self.group_limits.get(group)
        return limit is not None and self.active(now, group) >= limit

    def accept(self, task: Task) -> None:
        """Register `task` (charging it where the provider bills on acceptance), apply pending
        task faults, and put it on disk before anyone hears it was accepted."""
        with self.lock:
            for fault in _TASK_FAULTS:
                if self.faults[fault] > 0:
                    self.faults[fault] -= 1
                    task.outcome = {"lose_task": "lost"}.get(fault, fault)
                    break
            for fault in _DOWNLOAD_FAULTS:
                if self.faults[fault] > 0:
                    self.faults[fault] -= 1
                    task.download_faults.append(fault)
            self.tasks[task.id] = task
            self._stats.max_active = max(self._stats.max_active, self.active(time.time()))
            self._dirty_tasks.add(task.id)
            self._touch(durable=True)
            self.flush(durable=True)
        if task.outcome not in ("moderate_request", "lost", "fail"):
            with contextlib.suppress(RuntimeError):  # no running loop: rendered on first download
                # half-way through the task, not in the middle of a burst of submissions
                asyncio.get_running_loop().call_later(task.duration / 2, self.image, task)

    def image(self, task: Task) -> asyncio.Future[bytes]:
        """The task's result image. Rendering starts in a worker thread half-way through the
        task (a real provider makes the image while the task runs), so a burst of downloads
        at the end of a wave does not queue behind the renders."""
        with self.lock:
            future = self._images.get(task.id)
            if future is None or (future.done() and future.exception() is not None):
                render = self.renderer
                if render is None:
                    from .sandbox_images import render_task as render
                future = asyncio.get_running_loop().run_in_executor(None, render, task)
                self._images[task.id] = future
                while len(self._images) > _IMAGE_CACHE:
                    self._images.popitem(last=False)
            self._images.move_to_end(task.id)
            return future

    def cancel(self, task: Task) -> None:
        with self.lock:
            task.outcome, task.canceled_at = "canceled", time.time()
            self._dirty_tasks.add(task.id)
            self._touch(durable=True)

    def take_download_fault(self, task: Task, fault: str) -> bool:
        with self.lock:
            if fault in task.download_faults:
                task.download_faults.remove(fault)
                self._dirty_tasks.add(task.id)
                return True
            return False

    def new_task(self, *, model: str, body: dict[str, Any], cost: float, width: int, height: int,
                 seed: int | None, prompt: str, output_format: str, group: str = "", prefix: str = "") -> Task:
        now = time.time()
        return Task(
            id=prefix + str(uuid.uuid4()), model=model, body=body, created=now, ready_at=now + self.latency,
            cost=cost, width=width, height=height,
            seed=seed if seed is not None else int.from_bytes(os.urandom(3), "big"),
            prompt=prompt, output_format=output_format, group=group or model,
            key=body_key({"model": model, **body}),
        )

    # --- signed result URLs -------------------------------------------------------------
    def public_base(self) -> str:
        return f"{self.scheme}://{self.public_host}:{self.port}"

    def signed_url(self, task: Task, path_prefix: str) -> str:
        if task.expires_at is None:
            ttl = -1.0 if "expire" in task.download_faults else self.result_ttl
            with self.lock:
                task.expires_at = time.time() + ttl
                self._dirty_tasks.add(task.id)
        exp = int(task.expires_at * 1000)
        sig = hmac.new(self.secret, f"{task.id}:{exp}".encode(), "sha256").hexdigest()[:32]
        ext = {"jpeg": "jpg"}.get(task.output_format, task.output_format)
        return f"{self.public_base()}{path_prefix}/{task.id}/sample.{ext}?se={exp}&sig={sig}"

    def check_signature(self, task_id: str, se: str, sig: str) -> str | None:
        """None when the signed URL is valid, else the reason it is not."""
        want = hmac.new(self.secret, f"{task_id}:{se}".encode(), "sha256").hexdigest()[:32]
        if not hmac.compare_digest(want, sig):
            return "Signature did not match"
        try:
            if time.time() * 1000 > int(se):
                return "Signed expiry time has passed"
        except ValueError:
            return "Signature did not match"
        return None

    # --- where it listens ---------------------------------------------------------------
    def listening(self, scheme: str, hosts: Iterable[str], port: int) -> None:
        """Record the port now served; origins used before stay known so old URLs can be mapped."""
        with self.lock:
            self.scheme, self.port = scheme, port
            for host in dict.fromkeys([self.public_host, *hosts]):
                origin = f"{scheme}://{host}:{port}"
                if origin not in self.origins:
                    self.origins.append(origin)
            self._touch(durable=True)
            self.flush(durable=True)

    def moved_origins(self) -> dict[str, str]:
        """{origin used by an earlier process: the origin serving it now} (same host name)."""
        moved: dict[str, str] = {}
        for origin in self.origins:
            scheme, _, rest = origin.partition("://")
            host, _, port = rest.rpartition(":")
            if port != str(self.port) or scheme != self.scheme:
                moved[origin] = f"{self.scheme}://{host}:{self.port}"
        return moved

    # --- persistence --------------------------------------------------------------------
    def _touch(self, durable: bool = False) -> None:
        self._dirty_account = True
        if durable:
            self._durable = True

    _durable = False

    def flush(self, durable: bool = False) -> None:
        """Write what changed to `state_dir` (nothing without one)."""
        if self.state_dir is None:
            return
        with self.lock:
            durable = durable or self._durable
            for task_id in sorted(self._dirty_tasks):
                task = self.tasks.get(task_id)
                if task is not None:
                    store.save_json(self.state_dir / "tasks" / f"{task_id}.json", task.to_json(), durable=durable)
            self._dirty_tasks.clear()
            if self._dirty_account:
                store.save_json(self.state_dir / "account.json", self._account_json(), durable=durable)
                self._dirty_account = False
            self._durable = False

    def _account_json(self) -> dict[str, Any]:
        s = self._stats
        return {
            "version": 1, "provider": self.provider, "billing": self.billing,
            "charged_outcomes": sorted(self.charged_outcomes), "key": self.key, "secret": self.secret.hex(),
            "port": self.port, "scheme": self.scheme, "origins": self.origins, "credit_base": self.credit_base,
            "counters": {"submissions": s.submissions, "polls": s.polls, "downloads": s.downloads,
                         "rejected": {str(k): v for k, v in s.rejected.items()}, "max_active": s.max_active,
                         "unknown_fields": sorted(s.unknown_fields)},
            "faults": {k: v for k, v in self.faults.items() if v > 0},
            "fault_params": self.fault_params, "archived": self._archived, "saved_at": time.time(),
            "settings": {"latency": self.latency, "result_ttl": self.result_ttl, "max_active": self.max_active},
        }

    def restore(self, state_dir: Path, account: dict[str, Any], *, prune: bool) -> None:
        """Load the account and tasks a previous process left in `state_dir`."""
        self.key = str(account.get("key", self.key))
        self.secret = bytes.fromhex(account["secret"]) if account.get("secret") else self.secret
        self.port = int(account.get("port") or 0)
        self.scheme = str(account.get("scheme", self.scheme))
        self.origins = list(account.get("origins", []))
        self.credit_base = float(account.get("credit_base", self.credit_base))
        c = account.get("counters", {})
        self._stats = SandboxStats(
            submissions=int(c.get("submissions", 0)), polls=int(c.get("polls", 0)),
            downloads=int(c.get("downloads", 0)), max_active=int(c.get("max_active", 0)),
            rejected=collections.Counter({int(k): int(v) for k, v in c.get("rejected", {}).items()}),
            unknown_fields=set(c.get("unknown_fields", [])),
        )
        self.faults = collections.Counter({k: int(v) for k, v in account.get("faults", {}).items()})
        self.fault_params = dict(account.get("fault_params", {}))
        self._archived = {**self._archived, **account.get("archived", {})}
        now = time.time()
        for data in store.load_tasks(state_dir):
            task = Task.from_json(data)
            if prune and task.ready_at < now - RETAIN_S:
                self._archive(task, now)
                (state_dir / "tasks" / f"{task.id}.json").unlink(missing_ok=True)
                continue
            self.tasks[task.id] = task

    def _archive(self, task: Task, now: float) -> None:
        arch = self._archived
        arch["accepted"] += 1
        arch["accepted_by_body"][task.key] = arch["accepted_by_body"].get(task.key, 0) + 1
        if self.charged(task, now):
            arch["paid"] += 1
            arch["credits_spent"] = round(arch["credits_spent"] + task.cost, 6)
            arch["paid_by_body"][task.key] = arch["paid_by_body"].get(task.key, 0) + 1
        self._dirty_account = True


class _Dropped(Exception):
    """Raised inside a response to make the server cut the connection."""


class DroppedResponse(Response):
    """Starts a response, sends a fragment and then cuts the connection."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"id', "more_body": True})
        raise _Dropped("sandbox dropped the connection on purpose")


def dropped_connection() -> Response:
    return DroppedResponse()


class TrickleResponse(Response):
    """Sends `body` in small pieces over `seconds` (a slow CDN), or drops half way."""

    def __init__(self, body: bytes, media_type: str, seconds: float, drop: bool = False) -> None:
        super().__init__(status_code=200, media_type=media_type)
        self._data = body
        self._seconds = seconds
        self._drop = drop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", (self.media_type or "image/png").encode()),
                                (b"content-length", str(len(self._data)).encode())]})
        pieces = 10
        step = max(1, len(self._data) // pieces)
        for i in range(0, len(self._data), step):
            if self._drop and i >= len(self._data) // 2:
                raise _Dropped("sandbox dropped the download on purpose")
            await send({"type": "http.response.body", "body": self._data[i : i + step], "more_body": True})
            await asyncio.sleep(self._seconds / pieces)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _serving(app: Any, state: SandboxState) -> Any:
    """ASGI wrapper: write the state to disk before an answer starts (so what a client hears
    has been saved), and turn deliberate drops into closed connections without tracebacks."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_saved(message: Message) -> None:
            if message["type"] == "http.response.start":
                state.flush()
            await send(message)

        try:
            await app(scope, receive, send_saved)
        except _Dropped:
            raise ConnectionAbortedError("sandbox drop") from None

    return wrapped


# --- the server thread ------------------------------------------------------------------
class _ServerThread:
    def __init__(self, app: Any, state: SandboxState, sock: socket.socket, ssl: tuple[str, str] | None) -> None:
        import logging

        import uvicorn

        # deliberate drops would otherwise print tracebacks
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        kwargs: dict[str, Any] = {}
        if ssl:
            kwargs = {"ssl_certfile": ssl[0], "ssl_keyfile": ssl[1]}
        config = uvicorn.Config(_serving(app, state), log_level="critical", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1, **kwargs)
        self.server = _quick_server_class()(config)
        self.sock = sock
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("sandbox server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.wake()
        self.thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.sock.close()


@functools.cache
def _quick_server_class() -> type[Any]:
    """uvicorn's server, stopped without its fixed pauses.

    uvicorn notices `should_exit` on a 0.1 s tick, then sleeps 0.1 s before it looks at the open
    connections, then polls them every 0.1 s: 0.15-0.25 s at the end of every CLI command that
    used a sandbox, for a server whose clients have already closed their connections. Here
    `wake()` ends the main loop at once (the tick still runs every 0.1 s for the Date header),
    and the shutdown asks every connection to close and waits for exactly those still open
    (a response being written finishes first; at most `timeout_graceful_shutdown`)."""
    import uvicorn

    class QuickServer(uvicorn.Server):  # type: ignore[misc]
        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self._loop: asyncio.AbstractEventLoop | None = None
            self._woken: asyncio.Event | None = None

        async def main_loop(self) -> None:
            self._loop, self._woken = asyncio.get_running_loop(), asyncio.Event()
            counter = 0
            while not await self.on_tick(counter):
                counter = (counter + 1) % 864000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), 0.1)

        def wake(self) -> None:
            """Stop serving now (from any thread)."""
            self.should_exit = True
            loop, woken = self._loop, self._woken
            if loop is not None and woken is not None:
                with contextlib.suppress(RuntimeError):  # the loop already ended
                    loop.call_soon_threadsafe(woken.set)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for server in self.servers:
                server.close()
            for sock in sockets or []:
                sock.close()
            for connection in list(self.server_state.connections):
                connection.shutdown()  # an idle keep-alive connection closes now, a busy one after its answer
            loop = asyncio.get_running_loop()
            deadline = loop.time() + (self.config.timeout_graceful_shutdown or 0)
            while (self.server_state.connections or self.server_state.tasks) and loop.time() < deadline:
                await asyncio.sleep(0.005)
            for task in list(self.server_state.tasks):
                task.cancel()
            for server in self.servers:
                await server.wait_closed()

    return QuickServer


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: accepted sockets inherit the protocol number, and asyncio turns
    # Nagle off (TCP_NODELAY) only on sockets that say they are TCP. With Nagle on, uvicorn's
    # two writes per answer (head, then body) wait for the client's delayed ACK: ~40 ms added
    # to every request on a kept-alive connection, which no real provider's front end does.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def make_certificate(folder: Path, days: int = 2) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (fal clients insist on https)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portrait-studio sandbox")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "sandbox-cert.pem", folder / "sandbox-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _cert_valid_for(cert: Path, days: float) -> bool:
    from cryptography import x509

    try:
        loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError):
        return False
    left = loaded.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return left > datetime.timedelta(days=days)


class SandboxHandle:
    """A running sandbox. `url` is the submit host; `key` the API key it accepts.

    `moved_origins` maps the origins an earlier process of the same `state_dir` served on
    to this one (empty unless the recorded port was taken); `for_sandbox(handle)` hands it to
    the provider so the polling URLs stored in old tickets still resolve. A handle that
    `joined` another process's sandbox serves nothing itself: it reads that sandbox's
    counters from disk and cannot inject faults."""

    def __init__(self, provider: str, app: Any, state: SandboxState, *, host: str, port: int, tls: bool,
                 lock: store.StateLock | None = None) -> None:
        self.provider = provider
        self.state = state
        self.state_dir = state.state_dir
        self.joined = False
        self._joiner_mark: Path | None = None
        self._refs = 1
        self._joined_url = ""
        self._app = app
        self._host = host
        self._lock = lock
        self._tmp: Path | None = None
        self._tmp_lock: store.StateLock | None = None
        self.ca_file: str | None = None
        self._ssl: tuple[str, str] | None = None
        if tls:
            cert, key = self._certificate()
            self.ca_file = str(cert)
            self._ssl = (str(cert), str(key))
        sock = self._bind_port(port)
        self.port = sock.getsockname()[1]
        state.listening("https" if tls else "http", [host], self.port)
        if self.state_dir is not None:
            store.save_json(self.state_dir / "owner.json", {"pid": os.getpid(), "url": self.url,
                                                            "provider": provider}, durable=True)
        self._server: _ServerThread | None = _ServerThread(app, state, sock, self._ssl)
        self._server.start()

    def _bind_port(self, port: int) -> socket.socket:
        if port or not self.state.port:
            return _bind(self._host, port)
        try:  # a restarted sandbox listens where its tasks' URLs point, if it can
            return _bind(self._host, self.state.port)
        except OSError:
            return _bind(self._host, 0)

    def _certificate(self) -> tuple[Path, Path]:
        if self.state_dir is not None:
            folder = self.state_dir / "tls"
            folder.mkdir(exist_ok=True)
            cert, key = folder / "sandbox-cert.pem", folder / "sandbox-key.pem"
            if cert.exists() and key.exists() and _cert_valid_for(cert, days=1):
                return cert, key
            return make_certificate(folder, days=30)
        import tempfile

        store.sweep_orphaned_temp_dirs()
        self._tmp = Path(tempfile.mkdtemp(prefix=f"{store.TEMP_PREFIX}{os.getpid()}-"))
        self._tmp_lock = store.StateLock(self._tmp)
        self._tmp_lock.acquire()  # held while this process lives: the sweep of others skips it
        return make_certificate(self._tmp)

    @classmethod
    def _join(cls, provider: str, state_dir: Path, owner: dict[str, Any]) -> SandboxHandle:
        handle = cls.__new__(cls)
        handle.provider = provider
        handle.state_dir = state_dir
        handle.joined = True
        handle._refs = 1
        handle._lock = None
        handle._tmp = None
        handle._tmp_lock = None
        handle._server = None
        handle._ssl = None
        cert = state_dir / "tls" / "sandbox-cert.pem"
        handle.ca_file = str(cert) if cert.exists() else None
        handle._joined_url = str(owner["url"])
        handle._joiner_mark = _mark_joiner(state_dir)
        handle.state = handle._reload()
        handle.port = handle.state.port
        handle._host = handle._joined_url.partition("://")[2].rpartition(":")[0]
        return handle

    def _reload(self) -> SandboxState:
        assert self.state_dir is not None
        account = store.load_account(self.state_dir) or {}
        state = SandboxState(provider=account.get("provider", self.provider),
                             billing=account.get("billing", "on_accept"),
                             charged_outcomes=account.get("charged_outcomes"))
        state.restore(self.state_dir, account, prune=False)
        return state

    @property
    def url(self) -> str:
        if self.joined:
            return self._joined_url
        return f"{self.state.scheme}://{self._host}:{self.port}"

    @property
    def key(self) -> str:
        return self.state.key

    @property
    def moved_origins(self) -> dict[str, str]:
        if self.joined:
            self.state = self._reload()
        return self.state.moved_origins()

    @property
    def stats(self) -> SandboxStats:
        if self.joined:
            self.state = self._reload()
        return self.state.stats

    @property
    def credits(self) -> float:
        if self.joined:
            self.state = self._reload()
        return self.state.credits

    @credits.setter
    def credits(self, value: float) -> None:
        self._own("set the balance")
        self.state.credits = value
        self.state.flush()

    def _own(self, what: str) -> None:
        if self.joined:
            raise RuntimeError(f"this handle joined the sandbox served by another process ({self.url}); "
                               f"only that process can {what}")

    def inject(self, fault: str, count: int = 1, **params: Any) -> None:
        """Make the next `count` matching calls fail with `fault` (see the module docstring)."""
        self._own("inject faults")
        self.state.inject(fault, count, **params)

    def pause(self) -> None:
        """Stop listening: clients now get 'connection refused' (nothing reaches the server)."""
        if self._server:
            self._server.stop()
            self._server = None

    def resume(self) -> None:
        """Listen again on the same port, with the same tasks and stats."""
        self._own("resume serving")
        if self._server is None:
            self._server = _ServerThread(self._app, self.state, _bind(self._host, self.port), self._ssl)
            self._server.start()

    def stop(self) -> None:
        """Stop serving; the state (with a state_dir) stays on disk for the next start. A
        server shared within the process stops when its last user stops it."""
        with _SERVING_LOCK:
            if self._refs > 1:
                self._refs -= 1
                return
            self._refs = 0
            if self.state_dir is not None and _SERVING.get(self.state_dir) is self:
                del _SERVING[self.state_dir]
        if self.joined:
            if self._joiner_mark is not None:
                with contextlib.suppress(OSError):
                    self._joiner_mark.unlink()
        elif self.state_dir is not None:
            _wait_for_joiners(self.state_dir)  # another command still polls this server: let it finish
        self.pause()
        if not self.joined:
            with self.state.lock:
                self.state.flush(durable=True)
        if self.state_dir is not None and not self.joined:
            with contextlib.suppress(OSError):
                (self.state_dir / "owner.json").unlink()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._tmp is not None:
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        if self._tmp_lock is not None:
            self._tmp_lock.release()
            self._tmp_lock = None

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SandboxHandle {self.provider} {self.url}{' joined' if self.joined else ''}>"


def start_sandbox(
    provider: str = "bfl", *, host: str = "127.0.0.1", port: int = 0,
    state_dir: str | os.PathLike[str] | None = None, busy: Literal["error", "join"] = "error", **opts: Any
) -> SandboxHandle:
    """Start the `provider` sandbox ('bfl', 'fal' or 'replicate') on loopback.

    Options: key, latency (s), credits, result_ttl (s), max_active, public_host, and
    for BFL `ultra_megapixels`. Use as a context manager or call `.stop()`.

    `state_dir` keeps the account (tasks, counters, faults, port) on disk so the sandbox can
    be started again after its process died; one process serves a state_dir at a time. When
    it is already served, `busy="join"` shares that server (in this process: the same handle,
    stopped when its last user stops it; in another live process: a handle that uses that
    server and reads its counters from disk), and `busy="error"` raises `ProviderError`
    naming the holder.
    On a restart the saved key, balance and signing secret win over `key`/`credits`, and the
    saved latency, result_ttl and max_active apply unless given again.
    """
    import importlib

    from ..errors import ProviderError

    if provider not in ("bfl", "fal", "replicate"):
        raise ValueError(f"no sandbox for provider {provider!r}; choose bfl, fal or replicate")
    module = importlib.import_module(f"{__package__}.sandbox_{provider}")
    tls = provider == "fal"
    if state_dir is None:
        app, state = module.build_app(**opts)
        return SandboxHandle(provider, app, state, host=host, port=port, tls=tls)
    folder = Path(state_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    with _SERVING_LOCK:
        running = _SERVING.get(folder)
        if running is not None and busy == "join":
            running._refs += 1  # this process already serves it: share that server
            return running
    lock = store.StateLock(folder)
    # Joining: the holder may still be starting (no URL yet, or not answering yet), or may be
    # stopping (its lock about to be dropped): wait a little for one or the other.
    deadline = time.monotonic() + (JOIN_WAIT_S if busy == "join" else 0.0)
    while not lock.acquire():
        owner = store.read_owner(folder) or {}
        if busy == "join" and owner.get("url") and _answers(str(owner["url"])):
            return SandboxHandle._join(provider, folder, owner)
        if time.monotonic() < deadline:
            time.sleep(0.05)
            continue
        who = f"process {owner['pid']} ({owner.get('url')})" if owner.get("pid") else "another process"
        raise ProviderError(
            f"the {provider} sandbox kept in {folder} is already served by {who}",
            provider=provider,
            hint="wait for that command to finish (or stop it), then run this one again",
        )
    account = store.load_account(folder) or {}
    if account.get("provider", provider) != provider:
        lock.release()
        raise ProviderError(f"{folder} holds the {account['provider']} sandbox's account, not {provider}'s",
                            provider=provider, hint="give each provider's sandbox its own state folder")
    saved = account.get("settings", {})
    opts = {**{k: v for k, v in saved.items() if k in _SETTINGS}, **opts}  # the account's own, unless given
    try:
        app, state = module.build_app(state_dir=folder, **opts)
        handle = SandboxHandle(provider, app, state, host=host, port=port, tls=tls, lock=lock)
    except BaseException:
        lock.release()
        raise
    with _SERVING_LOCK:
        _SERVING[folder] = handle
    return handle


JOIN_WAIT_S = 15.0
"""How long a command waits for a sandbox another command is starting or stopping."""
JOINER_WAIT_S = 120.0
"""How long the command serving a sandbox waits, when it is done, for commands that joined it."""


def _mark_joiner(state_dir: Path) -> Path:
    """Say 'this process uses the server' (state_dir/joined/<pid>-<n>), for the serving process."""
    folder = state_dir / "joined"
    folder.mkdir(exist_ok=True)
    mark = folder / f"{os.getpid()}-{next(_JOIN_COUNTER)}"
    mark.touch()
    return mark


def _wait_for_joiners(state_dir: Path) -> None:
    """Keep serving while a live process that joined this server still uses it (bounded)."""
    folder = state_dir / "joined"
    deadline = time.monotonic() + JOINER_WAIT_S
    while time.monotonic() < deadline:
        alive = False
        for mark in folder.glob("*-*") if folder.is_dir() else ():
            pid = mark.name.partition("-")[0]
            if pid == str(os.getpid()):
                continue
            if pid.isdigit() and _pid_alive(int(pid)):
                alive = True
            else:
                with contextlib.suppress(OSError):
                    mark.unlink()  # a joiner that died without saying so (or not a mark at all)
        if not alive:
            return
        time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False  # os.kill(0, …) would ask about our own process group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


_JOIN_COUNTER = itertools.count()

_SERVING: dict[Path, SandboxHandle] = {}
"""State folders this process serves, so a second user in the process shares the server."""
_SERVING_LOCK = threading.Lock()


def _answers(url: str) -> bool:
    rest = url.partition("://")[2]
    host, _, port = rest.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def sandbox(provider: str = "bfl", **opts: Any) -> Iterator[SandboxHandle]:
    handle = start_sandbox(provider, **opts)
    try:
        yield handle
    finally:
        handle.stop()


def data_uri_image(value: str) -> Any:
    """Decode a `data:...;base64,` input image (fal, Replicate); URLs stand in as a 1024² image
    because the sandbox never fetches. None when it is not a decodable image."""
    import base64
    import binascii
    import io

    from PIL import Image

    if value.startswith(("http://", "https://")):
        return Image.new("RGB", (1024, 1024))
    if not value.startswith("data:") or ";base64," not in value:
        return None
    try:
        img = Image.open(io.BytesIO(base64.b64decode(value.split(";base64,", 1)[1], validate=True)))
        img.load()
        return img
    except (binascii.Error, ValueError, OSError):
        return None


def delivery_response(task: Task, data: bytes, state: SandboxState) -> Response:
    """The result download, with this task's download faults applied (one each, in order)."""
    from .sandbox_images import corrupt

    media = f"image/{task.output_format}"
    if state.take_download_fault(task, "corrupt_image"):
        return Response(corrupt(data), media_type=media)
    if state.take_download_fault(task, "drop_download"):
        return TrickleResponse(data, media, 0.05, drop=True)
    if state.take_download_fault(task, "slow_download"):
        return TrickleResponse(data, media, float(state.fault_params.get("slow_download", {}).get("delay", 2.0)))
    return Response(data, media_type=media)
