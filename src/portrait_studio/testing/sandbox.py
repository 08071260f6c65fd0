"""Sandboxes: local HTTP servers that follow the BFL, fal and Replicate contracts.

Like `moto` for AWS: start one on loopback, point a client at `handle.url` with
`handle.key`, and every request is validated, charged, queued, moderated and answered
with the documented shapes and status codes. Results are real images (see
`sandbox_images`). Faults are injected on demand:

    with start_sandbox("bfl", latency=0.2) as sb:
        sb.inject("rate_limit", count=2)       # the next two submissions get 429
        ...
        assert sb.stats.paid == 1

Faults (each provider honours the ones its contract has):
    rate_limit            429 on the next submission(s)
    server_error          500 on the next submission(s), task not created
    unavailable           503 on the next submission(s), task not created
    drop_submit           the connection drops after the task was accepted and charged
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
import datetime
import hashlib
import hmac
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

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


@dataclass
class SandboxStats:
    """What the sandbox saw. `paid_by_body` counts charged tasks per distinct request body."""

    submissions: int = 0
    paid: int = 0
    credits_spent: float = 0.0
    polls: int = 0
    downloads: int = 0
    rejected: collections.Counter[int] = field(default_factory=collections.Counter)
    paid_by_body: collections.Counter[str] = field(default_factory=collections.Counter)
    max_active: int = 0
    unknown_fields: set[str] = field(default_factory=set)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)

    @property
    def paid_twice(self) -> list[str]:
        return [k for k, n in self.paid_by_body.items() if n > 1]


def body_key(body: Any) -> str:
    """A stable digest of a request body: the same image request gives the same key."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Task:
    """One accepted task, on any provider."""

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
    outcome: str = "ok"  # ok | moderate_request | moderate_content | fail | lost | canceled
    started: float | None = None
    download_faults: list[str] = field(default_factory=list)
    expires_at: float | None = None

    def done(self, now: float) -> bool:
        return self.outcome in ("canceled", "moderate_request") or now >= self.ready_at


class SandboxState:
    """Everything a sandbox server remembers; shared between its thread and the test's."""

    def __init__(
        self,
        *,
        key: str = "sandbox-key",
        latency: float = 0.2,
        credits: float = 1000.0,
        result_ttl: float = 600.0,
        max_active: int = 24,
        group_limits: dict[str, int] | None = None,
        public_host: str = "localhost",
    ) -> None:
        self.key = key
        self.latency = latency
        self.credits = credits
        self.result_ttl = result_ttl
        self.max_active = max_active
        self.group_limits = dict(group_limits or {})
        self.public_host = public_host
        self.stats = SandboxStats()
        self.tasks: dict[str, Task] = {}
        self.faults: collections.Counter[str] = collections.Counter()
        self.fault_params: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.secret = os.urandom(16)
        self.port = 0
        self.scheme = "http"

    # --- faults -------------------------------------------------------------------------
    def inject(self, fault: str, count: int = 1, **params: Any) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {', '.join(FAULTS)}")
        with self.lock:
            self.faults[fault] += count
            self.fault_params[fault] = params

    def take(self, fault: str) -> bool:
        """Consume one pending `fault`; True if there was one."""
        with self.lock:
            if self.faults[fault] > 0:
                self.faults[fault] -= 1
                return True
            return False

    # --- tasks --------------------------------------------------------------------------
    def active(self, now: float, group: str | None = None) -> int:
        return sum(
            1 for t in self.tasks.values() if not t.done(now) and (group is None or t.group == group)
        )

    def limit_hit(self, group: str) -> bool:
        now = time.monotonic()
        if self.active(now) >= self.max_active:
            return True
        limit = self.group_limits.get(group)
        return limit is not None and self.active(now, group) >= limit

    def accept(self, task: Task) -> None:
        """Charge for and register `task`, applying pending task faults."""
        with self.lock:
            for fault in ("moderate_request", "moderate_content", "fail", "lose_task"):
                if self.faults[fault] > 0:
                    self.faults[fault] -= 1
                    task.outcome = {"lose_task": "lost"}.get(fault, fault)
                    break
            for fault in ("slow_download", "drop_download", "corrupt_image", "expire"):
                if self.faults[fault] > 0:
                    self.faults[fault] -= 1
                    task.download_faults.append(fault)
            self.tasks[task.id] = task
            self.credits -= task.cost
            self.stats.paid += 1
            self.stats.credits_spent += task.cost
            self.stats.paid_by_body[body_key({"model": task.model, **task.body})] += 1
            self.stats.max_active = max(self.stats.max_active, self.active(time.monotonic()))

    def new_task(self, *, model: str, body: dict[str, Any], cost: float, width: int, height: int,
                 seed: int | None, prompt: str, output_format: str, group: str = "", prefix: str = "") -> Task:
        now = time.monotonic()
        import uuid

        return Task(
            id=prefix + str(uuid.uuid4()), model=model, body=body, created=now, ready_at=now + self.latency,
            cost=cost, width=width, height=height,
            seed=seed if seed is not None else int.from_bytes(os.urandom(3), "big"),
            prompt=prompt, output_format=output_format, group=group or model,
        )

    # --- signed result URLs -------------------------------------------------------------
    def public_base(self) -> str:
        return f"{self.scheme}://{self.public_host}:{self.port}"

    def signed_url(self, task: Task, path_prefix: str) -> str:
        if task.expires_at is None:
            ttl = -1.0 if "expire" in task.download_faults else self.result_ttl
            task.expires_at = time.time() + ttl
        exp = int(task.expires_at * 1000)
        sig = hmac.new(self.secret, f"{task.id}:{exp}".encode(), "sha256").hexdigest()[:32]
        ext = {"jpeg": "jpg"}.get(task.output_format, task.output_format)
        return f"{self.public_base()}{path_prefix}/{task.id}/sample.{ext}?se={exp}&sig={sig}"

    def check_signature(self, task_id: str, se: str, sig: str) -> str | None:
        """None when the signed URL is valid, else the reason it is not."""
        want = hmac.new(self.secret, f"{task_id}:{se}".encode(), "sha256").hexdigest()[:32]
        if not hmac.compare_digest(want, sig):
            return "Signature did not match"
        if time.time() * 1000 > int(se):
            return "Signed expiry time has passed"
        return None

    def record(self, request: HttpRequest, body: Any) -> None:
        with self.lock:
            self.stats.submissions += 1
            if isinstance(body, dict):
                self.stats.bodies.append(body)
            self.stats.headers_seen.append({k.lower(): v for k, v in request.headers.items()})


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


def _quiet_drops(app: Any) -> Any:
    """ASGI wrapper that turns deliberate drops into closed connections without tracebacks."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except _Dropped:
            raise ConnectionAbortedError("sandbox drop") from None

    return wrapped


# --- the server thread ------------------------------------------------------------------
class _ServerThread:
    def __init__(self, app: Any, sock: socket.socket, ssl: tuple[str, str] | None) -> None:
        import logging

        import uvicorn

        # deliberate drops would otherwise print tracebacks
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        kwargs: dict[str, Any] = {}
        if ssl:
            kwargs = {"ssl_certfile": ssl[0], "ssl_keyfile": ssl[1]}
        config = uvicorn.Config(_quiet_drops(app), log_level="critical", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1, **kwargs)
        self.server = uvicorn.Server(config)
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
        self.server.should_exit = True
        self.thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.sock.close()


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for localhost and 127.0.0.1 (fal clients insist on https)."""
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
        .not_valid_after(now + datetime.timedelta(days=2))
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


class SandboxHandle:
    """A running sandbox. `url` is the submit host; `key` the API key it accepts."""

    def __init__(self, provider: str, app: Any, state: SandboxState, *, host: str, port: int, tls: bool) -> None:
        self.provider = provider
        self.state = state
        self._app = app
        self._host = host
        self._tmp = tempfile.TemporaryDirectory(prefix="portrait-sandbox-")
        self.ca_file: str | None = None
        self._ssl: tuple[str, str] | None = None
        if tls:
            cert, key = make_certificate(Path(self._tmp.name))
            self.ca_file = str(cert)
            self._ssl = (str(cert), str(key))
            state.scheme = "https"
        sock = _bind(host, port)
        self.port = sock.getsockname()[1]
        state.port = self.port
        self._server: _ServerThread | None = _ServerThread(app, sock, self._ssl)
        self._server.start()

    @property
    def url(self) -> str:
        return f"{self.state.scheme}://{self._host}:{self.port}"

    @property
    def key(self) -> str:
        return self.state.key

    @property
    def stats(self) -> SandboxStats:
        return self.state.stats

    @property
    def credits(self) -> float:
        return self.state.credits

    @credits.setter
    def credits(self, value: float) -> None:
        with self.state.lock:
            self.state.credits = value

    def inject(self, fault: str, count: int = 1, **params: Any) -> None:
        """Make the next `count` matching calls fail with `fault` (see the module docstring)."""
        self.state.inject(fault, count, **params)

    def pause(self) -> None:
        """Stop listening: clients now get 'connection refused' (nothing reaches the server)."""
        if self._server:
            self._server.stop()
            self._server = None

    def resume(self) -> None:
        """Listen again on the same port, with the same tasks and stats."""
        if self._server is None:
            self._server = _ServerThread(self._app, _bind(self._host, self.port), self._ssl)
            self._server.start()

    def stop(self) -> None:
        self.pause()
        self._tmp.cleanup()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SandboxHandle {self.provider} {self.url}>"


def start_sandbox(
    provider: str = "bfl", *, host: str = "127.0.0.1", port: int = 0, **opts: Any
) -> SandboxHandle:
    """Start the `provider` sandbox ('bfl', 'fal' or 'replicate') on loopback.

    Options: key, latency (s), credits, result_ttl (s), max_active, public_host, and
    for BFL `ultra_megapixels`. Use as a context manager or call `.stop()`.
    """
    import importlib

    if provider not in ("bfl", "fal", "replicate"):
        raise ValueError(f"no sandbox for provider {provider!r}; choose bfl, fal or replicate")
    module = importlib.import_module(f"{__package__}.sandbox_{provider}")
    app, state = module.build_app(**opts)
    return SandboxHandle(provider, app, state, host=host, port=port, tls=(provider == "fal"))


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
    faults = task.download_faults
    if "corrupt_image" in faults:
        faults.remove("corrupt_image")
        return Response(corrupt(data), media_type=media)
    if "drop_download" in faults:
        faults.remove("drop_download")
        return TrickleResponse(data, media, 0.05, drop=True)
    if "slow_download" in faults:
        faults.remove("slow_download")
        return TrickleResponse(data, media, float(state.fault_params.get("slow_download", {}).get("delay", 2.0)))
    return Response(data, media_type=media)
