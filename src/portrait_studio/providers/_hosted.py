"""What the three hosted clients (BFL, fal, Replicate) share.

- `HostedProvider`: the key (kept in a `Secret` so it never shows in a repr, log or
  error), one `httpx.AsyncClient` with an injectable transport, catalog routing, and
  the capability check.
- `post_submission`: POST a *paid* submission, retrying only when the provider
  cannot have accepted it (the connection was never made; 429; 503). A connection
  that drops after the body was sent leaves the outcome unknown, so it is never
  re-sent: that is how nobody pays twice for one image.
- `account_slots`: one semaphore per account and limit group per event loop, so a
  process never has more active tasks than the provider allows.
- `verify_image`: a downloaded result must be a whole image before it counts.
- `LatencyLog` / `HostedProvider.poll`: adaptive polling. Each model's latency is learnt
  from the tasks this process has seen; the first poll lands near the expected finish and
  later ones come at short intervals, so a slot is never left idle waiting for a poll.
  Until a first latency is known, one "scout" task polls densely and wakes the others.
- Errors raised after a provider accepted a task carry that `ticket` and whether the
  provider `charged` for the outcome (`settle`), so the engine can account for it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import io
import json as _json
import logging
import math
import random
import ssl
import statistics
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from fractions import Fraction
from typing import Any, ClassVar, NamedTuple, TypeVar

import httpx
from pydantic import Field

from ..config import KEY_ENV_VARS
from ..errors import (
    AuthenticationError,
    CapabilityError,
    InsufficientCredits,
    NetworkError,
    ProviderError,
    ProviderValidationError,
    RateLimited,
    UncertainSubmission,
)
from ..records import InputImage, Request, Ticket
from .base import Provider, ProviderOptions
from .latency_store import LatencyStore

__all__ = [
    "HostedOptions",
    "HostedProvider",
    "Latency",
    "LatencyLog",
    "Secret",
    "SANDBOX_MARK",
    "account_slots",
    "carries_sandbox_mark",
    "data_uri",
    "nearest_ratio",
    "raw_b64",
    "retry_after",
    "verify_image",
]

log = logging.getLogger("portrait_studio.providers")


class Secret:
    """An API key that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def fingerprint(self) -> str:
        return hashlib.sha256(self._value.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


class HostedOptions(ProviderOptions):
    """Settings every hosted client has."""

    base_url: str | None = Field(default=None, description="override the provider's host (sandboxes, proxies)")
    poll_interval_s: float = Field(default=0.5, gt=0, description="first poll interval while a model's "
                                   "latency is unknown (and with adaptive_polling off)")
    poll_backoff: float = Field(default=1.2, ge=1.0)
    poll_max_interval_s: float = Field(default=5.0, gt=0)
    poll_min_interval_s: float = Field(default=0.05, gt=0, description="shortest gap between two polls of one task")
    adaptive_polling: bool = Field(default=True, description="poll from each model's observed latency")
    request_timeout_s: float = Field(default=30.0, gt=0)
    download_timeout_s: float = Field(default=120.0, gt=0)
    task_timeout_s: float = Field(default=900.0, gt=0, description="give up waiting for one task after this")
    retry_backoff_s: float = Field(default=0.25, gt=0, description="first wait before retrying a failed call")
    connect_retries: int = Field(default=5, ge=0)
    max_poll_errors: int = Field(default=20, ge=0, description="consecutive failed polls before giving up")
    download_attempts: int = Field(default=3, ge=1)
    rate_limit_wait_s: float = Field(default=2.0, gt=0, description="wait after a 429 without Retry-After")
    max_rate_limit_wait_s: float = Field(default=900.0, ge=0)
    max_concurrency: int = Field(default=8, ge=1)
    verify: bool | str = Field(default=True, description="TLS verification, or a CA bundle path")


ModelLookup = Callable[[str], Any]


class HostedProvider(Provider):
    """Base of the BFL, fal and Replicate clients."""

    Options: ClassVar[type[HostedOptions]] = HostedOptions  # type: ignore[assignment]
    default_base_url: ClassVar[str] = ""

    def __init__(
        self,
        key: str,
        options: HostedOptions | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        models: ModelLookup | None = None,
        sandbox: bool = False,
        moved_origins: Mapping[str, str] | None = None,
    ) -> None:
        if not key:
            raise AuthenticationError("an empty API key was given", provider=self.provider_id)
        self._key = Secret(key)
        self.options = options or self.Options()
        self._models = models
        self.sandbox = sandbox
        self._moved = dict(moved_origins or {}) if sandbox else {}
        verify = _ssl_verify(self.options.verify)
        if transport is None:
            from ._wire import lean_transport

            transport = lean_transport(verify if isinstance(verify, ssl.SSLContext)
                                       else functools.partial(_shared_ssl_context, bool(verify)))
        from ._wire import LeanTransport

        self._wire = transport if isinstance(transport, LeanTransport) else None  # the fast path for GETs
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(self.options.request_timeout_s),
            verify=verify,
            follow_redirects=True,
            headers={"user-agent": "portrait-studio"},
        )
        # The provider APIs set no cookies, and parsing every answer for them (httpx builds
        # urllib request objects per response) costs more CPU than the rest of a poll.
        self._client._cookies = _NoCookies()
        self._get_headers = dict(self._client.headers)  # what httpx would send with every GET
        self._store: LatencyStore | None = None  # see remember_latencies
        self._saved: dict[str, list[tuple[float, float]]] = {}
        self._primed: set[str] = set()
        self._learnt_models: set[str] = set()
        self._last_save = 0.0

    @classmethod
    def create(cls, studio: Any, **options: Any) -> HostedProvider:
        """Build the client for the real service from a `Studio`'s key and the given options."""
        return cls(studio.require_key(cls.provider_id), cls.Options(**options))

    @classmethod
    def for_sandbox(cls, sandbox: Any, **options: Any) -> HostedProvider:
        """Build the client against a running sandbox (`testing.sandbox.start_sandbox`).

        Everything it returns is marked `sandbox=True`. If the sandbox was restarted on another
        port, the polling URLs of tickets it issued before are mapped to where it listens now
        (`handle.moved_origins`); URLs of real providers are never rewritten."""
        opts: dict[str, Any] = {**options, "base_url": sandbox.url}
        if getattr(sandbox, "ca_file", None):
            opts["verify"] = sandbox.ca_file
        return cls(sandbox.key, cls.Options(**opts), sandbox=True,
                   moved_origins=getattr(sandbox, "moved_origins", None))

    def resolve(self, url: str) -> str:
        """`url` as stored in a ticket, pointed at the sandbox's current origin if it moved."""
        for old, new in self._moved.items():
            if url == old or url.startswith(old + "/") or url.startswith(old + "?"):
                return new + url[len(old):]
        return url

    # --- what an accepted task's failure costs ------------------------------------------
    def charged_for(self, exc: ProviderError) -> bool | None:
        """Whether the provider bills a task that ended in `exc`, by `billing`. Subclasses
        set `exc.charged` at the raise site where the documentation says otherwise."""
        if self.billing == "on_accept":
            return True
        if self.billing == "free":
            return False
        if isinstance(exc, NetworkError):
            return None  # still running, or finished: resuming the ticket will tell
        return True  # documents silent: never under-count

    def unreadable(self, exc: Exception) -> ProviderError:
        """The error for an answer that does not have the documented shape (after acceptance)."""
        return ProviderError(f"{self.provider_id} sent an answer the client cannot read ({type(exc).__name__}: "
                             f"{exc})", provider=self.provider_id,
                             hint="the task was accepted; 'portrait resume RUN' asks for it again")

    def settle(self, exc: ProviderError, ticket: Ticket) -> ProviderError:
        """Attach the accepted `ticket` and what it costs to an error raised after acceptance."""
        if exc.ticket is None:
            exc.ticket = ticket
        if exc.charged is None:
            exc.charged = self.charged_for(exc)
        return exc

    @property
    def base_url(self) -> str:
        return (self.options.base_url or self.default_base_url).rstrip("/")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, key=***)"

    # --- catalog ------------------------------------------------------------------------
    def spec(self, model: str) -> Any:
        if self._models is not None:
            return self._models(model)
        from ..catalog import get_model

        return get_model(model)

    def route(self, request: Request) -> tuple[Any, Any]:
        spec = self.spec(request.model)
        route = spec.routes.get(self.provider_id)
        if route is None:
            raise CapabilityError(
                f"{spec.name} is not served by provider '{self.provider_id}'",
                hint=f"use one of: {', '.join(spec.routes)}",
            )
        return spec, route

    def check(self, request: Request) -> None:
        spec, _route = self.route(request)
        if request.mode not in spec.modes:
            raise CapabilityError(f"{spec.name} cannot do {request.mode}", hint=f"it supports: {', '.join(spec.modes)}")
        refs = [i for i in request.images if i.role != "mask"]
        limit = getattr(spec, "max_references", None)
        if limit is not None and len(refs) > max(limit, 1 if request.mode != "text-to-image" else 0):
            raise CapabilityError(f"{spec.name} takes at most {limit} reference images, got {len(refs)}",
                                  hint="drop some reference images")
        if request.finetune_id and not getattr(spec, "finetune", False):
            raise CapabilityError(f"{spec.name} cannot use a finetune", hint="pick a model that supports finetunes")

    def max_concurrency(self, model: str) -> int:
        return self.options.max_concurrency

    async def aclose(self) -> None:
        self.save_latencies()
        await self._client.aclose()

    # --- HTTP ---------------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        return min(8.0, self.options.retry_backoff_s * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)

    async def post_submission(self, url: str, *, json: Any, headers: dict[str, str]) -> httpx.Response:
        """POST a paid submission; retry only where nothing can have been accepted."""
        connect_failures = 0
        waited = 0.0
        while True:
            try:
                response = await self._post(url, json, headers)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                connect_failures += 1
                if connect_failures > self.options.connect_retries:
                    raise NetworkError(
                        f"could not connect to {httpx.URL(url).host} ({type(exc).__name__}); nothing was submitted",
                        provider=self.provider_id, hint="check the network or the host setting, then retry",
                    ) from None
                await asyncio.sleep(self._backoff(connect_failures))
                continue
            except httpx.TransportError as exc:
                raise UncertainSubmission(
                    f"the connection broke after the request was sent ({type(exc).__name__}); the provider may "
                    "have accepted and charged for it, so it was not re-sent",
                    provider=self.provider_id,
                    hint="check the provider's dashboard; 'portrait resume RUN --resubmit-uncertain' sends it again",
                ) from None
            if response.status_code in (429, 503):
                wait = retry_after(response) or self.options.rate_limit_wait_s
                if waited + wait > self.options.max_rate_limit_wait_s:
                    raise RateLimited(
                        f"{self.provider_id} kept refusing new tasks (HTTP {response.status_code}) for {waited:.0f} s",
                        provider=self.provider_id, retry_after=wait,
                    )
                log.info("%s answered %s; retrying in %.1f s", self.provider_id, response.status_code, wait)
                await asyncio.sleep(wait)
                waited += wait
                continue
            return response

    async def get_with_retries(self, url: str | httpx.URL, *, headers: dict[str, str] | None = None,
                               what: str = "poll") -> httpx.Response:
        """GET a status; 5xx, 429 and dropped connections are retried with backoff."""
        failures = 0
        while True:
            problem = ""
            try:
                response = await self._get(url, headers, self.options.request_timeout_s)
                if response.status_code < 500 and response.status_code != 429:
                    return response
                problem = f"HTTP {response.status_code}"
                wait = retry_after(response)
            except httpx.TransportError as exc:
                problem, wait = type(exc).__name__, None
            failures += 1
            if failures > self.options.max_poll_errors:
                raise NetworkError(
                    f"{what} failed {failures} times in a row ({problem})", provider=self.provider_id,
                    hint="the task was accepted; resume the run later to collect it without paying again",
                )
            await asyncio.sleep(wait if wait is not None else self._backoff(failures))

    async def _get(self, url: str | httpx.URL, headers: dict[str, str] | None, timeout: float) -> httpx.Response:
        """A GET (a poll, a download): straight on the lean transport's wire when it is ours,
        else (a test's transport, a proxy, a redirect) through httpx."""
        if self._wire is not None:
            sent = {**self._get_headers, **headers} if headers else self._get_headers
            response = await self._wire.request("GET", url, sent, timeout)
            if response is not None:
                return response
        return await self._client.get(url, headers=headers, timeout=timeout)

    async def _post(self, url: str, body: Any, headers: dict[str, str]) -> httpx.Response:
        """A JSON POST, like `_get`: straight on the lean wire when it is ours."""
        if self._wire is not None:
            data = _json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            sent = {**self._get_headers, **headers, "content-type": "application/json"}
            response = await self._wire.request("POST", url, sent, self.options.request_timeout_s, data)
            if response is not None:
                return response
        return await self._client.post(url, json=body, headers=headers)

    def poll_intervals(self) -> Iterator[float]:
        """The fixed schedule (adaptive_polling off): poll_interval_s growing by poll_backoff."""
        delay = self.options.poll_interval_s
        while True:
            yield delay
            delay = min(self.options.poll_max_interval_s, delay * self.options.poll_backoff)

    async def poll(self, model: str, started: float, once: Callable[[], Awaitable[_T | None]], *,
                   what: str, immediately: bool = False,
                   reported: Callable[[_T], float | None] | None = None) -> _T:
        """Call `once()` (one status request; None while the task runs) until it returns a value.

        `started` is when the task was accepted (time.time()). With adaptive polling the
        schedule comes from `next_poll_delay` and this model's `LatencyLog`; each finished
        task adds what it showed of the latency: the provider's own figure when `reported`
        finds one in the answer (exact, unlike timing our polls through a busy server),
        otherwise the window between the polls. Gives up after `task_timeout_s`."""
        opts = self.options
        deadline = time.monotonic() + opts.task_timeout_s
        log = self.latency_log(model)
        fixed = self.poll_intervals()
        scout = opts.adaptive_polling and not log.settled and log.enlist_scout()
        last_pending: float | None = None
        polls = 0
        log.in_flight += 1
        try:
            while True:
                elapsed = time.time() - started
                if opts.adaptive_polling and not scout and not log.settled:
                    scout = log.enlist_scout()  # the scout's task ended unseen: take over
                if opts.adaptive_polling:
                    delay = next_poll_delay(log.latency, elapsed, polls=polls, scout=scout, waiting=log.in_flight,
                                            options=opts, remembered=log.remembered)
                else:
                    delay = next(fixed)
                if immediately:
                    delay, immediately = 0.0, False
                if delay > 0:
                    await log.wait(on_wake_grid(delay), early=not scout and not log.settled)
                if time.monotonic() > deadline:
                    raise NetworkError(f"{what} not finished after {opts.task_timeout_s:.0f} s",
                                       provider=self.provider_id, hint="'portrait resume RUN' polls it again later")
                asked = time.time() - started
                value = await once()
                seen = (asked + time.time() - started) / 2  # the server looked about half-way through
                if value is not None:
                    log.observe(last_pending, seen, reported(value) if reported is not None else None)
                    self._learnt(model)
                    return value
                last_pending = seen
                polls += 1
        finally:
            log.in_flight -= 1
            if scout:
                log.scouts -= 1
                if not log.settled:
                    log.notify()  # wake the others: one of them scouts now

    # --- latencies kept between processes -------------------------------------------------
    @property
    def latency_origin(self) -> str:
        """Where this client's latencies come from, as saved: a sandbox (the studio's own, on
        whatever port it got) is never the real API, and another host is never either."""
        if self.sandbox:
            return "sandbox"
        try:  # never a password or token that a proxy URL may carry
            return str(httpx.URL(self.base_url).copy_with(userinfo=b"", query=None, fragment=None))
        except (httpx.InvalidURL, TypeError, ValueError):
            return "unparsed:" + hashlib.sha256(self.base_url.encode()).hexdigest()[:16]

    def latency_log(self, model: str) -> LatencyLog:
        """This process's log of `model`'s latency, primed from the studio's saved numbers (once)."""
        log = LatencyLog.of(self.provider_id, self.base_url, model)
        if self._store is not None and model not in self._primed:
            self._primed.add(model)
            saved = self._saved.get(self._store.key(self.provider_id, self.latency_origin, model))
            if saved:
                log.remember(saved)
        return log

    def remember_latencies(self, store: LatencyStore) -> None:
        """Start every model from the latencies `store` kept, and save what this client learns
        there (throttled while running, and on `aclose`). Without it a client learns in memory."""
        self._store, self._saved, self._primed = store, store.load(), set()
        self._last_save = time.monotonic()

    def save_latencies(self) -> bool:
        """Write what this client learnt since the last save to its store (if it has one)."""
        if self._store is None or not self._learnt_models:
            return False
        updates = {self._store.key(self.provider_id, self.latency_origin, model):
                   LatencyLog.of(self.provider_id, self.base_url, model).saved() for model in self._learnt_models}
        self._learnt_models = set()
        self._last_save = time.monotonic()
        return self._store.save({k: v for k, v in updates.items() if v})

    def _learnt(self, model: str) -> None:
        if self._store is None:
            return
        self._learnt_models.add(model)
        if time.monotonic() - self._last_save > _SAVE_EVERY_S:
            self.save_latencies()

    async def download(self, url: str) -> tuple[bytes, dict[str, Any]]:
        """Fetch a result image (without our key: result hosts are public CDNs) and check it decodes."""
        from ..errors import GenerationFailed, ResultExpired

        if url.startswith("data:"):
            data = base64.b64decode(url.split(",", 1)[1])
            return data, verify_image(data, self.provider_id)
        last = ""
        for attempt in range(1, self.options.download_attempts + 1):
            try:
                response = await self._get(url, None, self.options.download_timeout_s)
            except httpx.TransportError as exc:
                last = type(exc).__name__
                await asyncio.sleep(self._backoff(attempt))
                continue
            if response.status_code in (401, 403, 404, 410):
                raise ResultExpired(
                    f"the result URL was refused (HTTP {response.status_code}); signed result URLs expire",
                    provider=self.provider_id, hint="results must be downloaded as soon as they are ready",
                )
            if response.status_code >= 400:
                last = f"HTTP {response.status_code}"
                await asyncio.sleep(self._backoff(attempt))
                continue
            try:
                return response.content, verify_image(response.content, self.provider_id)
            except GenerationFailed as exc:
                last = exc.message
        from ..errors import NetworkError

        # The task is done and paid; only the download failed (a dropped connection, a truncated answer):
        # the image is still the provider's until its URL expires, so the task stays collectable.
        raise NetworkError(f"could not download a valid image after {self.options.download_attempts} "
                           f"attempts ({last})", provider=self.provider_id,
                           hint="'portrait resume RUN' downloads it again (the provider keeps it for a while)")

    def http_error(self, response: httpx.Response, *, during: str) -> ProviderError:
        """The error for an unexpected answer. Never includes the key (only the body's message)."""
        status = response.status_code
        detail = _detail(response)
        env = KEY_ENV_VARS[self.provider_id]
        if status in (401, 403) and "balance" not in detail.lower():
            return AuthenticationError(f"{self.provider_id} refused the API key (HTTP {status}): {detail}",
                                       provider=self.provider_id, hint=f"check {env}")
        if status == 402 or (status == 403 and "balance" in detail.lower()):
            return InsufficientCredits(f"{self.provider_id} account is out of credits (HTTP {status}): {detail}",
                                       provider=self.provider_id, hint="top up the account, then resume the run")
        if status == 422:
            fields = validation_fields(response)
            return ProviderValidationError(
                f"{self.provider_id} rejected the request: {detail}", provider=self.provider_id, fields=fields)
        return ProviderError(f"{self.provider_id} answered HTTP {status} during {during}: {detail}",
                             provider=self.provider_id)


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing (see HostedProvider.__init__)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


@functools.lru_cache(maxsize=2)
def _shared_ssl_context(verify: bool) -> ssl.SSLContext:
    """One default TLS context per process: loading the CA bundle costs ~20 ms of CPU, and every
    provider client (one per web job or batch worker) would otherwise load it again. Contexts are
    safe to share between clients and threads."""
    return httpx.create_ssl_context(verify=verify)


def _ssl_verify(verify: bool | str) -> Any:
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        detail = body.get("detail", body.get("title", body))
        if isinstance(detail, list):
            return "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', [])[1:]) or 'body'}: {d.get('msg')}"
                if isinstance(d, dict) else str(d) for d in detail
            )
        return str(detail)[:500]
    return str(body)[:200]


def validation_fields(response: httpx.Response) -> list[str]:
    """The rejected field names, from a FastAPI detail list or Replicate's invalid_fields."""
    try:
        body = response.json()
    except ValueError:
        return []
    fields: list[str] = []
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        for d in body["detail"]:
            loc = [str(p) for p in d.get("loc", []) if p != "body"] if isinstance(d, dict) else []
            if loc:
                fields.append(".".join(loc))
    if isinstance(body, dict) and isinstance(body.get("invalid_fields"), list):
        for f in body["invalid_fields"]:
            name = str(f.get("field", ""))
            if name == "input" and "property" in str(f.get("description", "")):
                name = str(f["description"]).split("property", 1)[1].split()[0]
            fields.append(name.removeprefix("input."))
    return list(dict.fromkeys(fields))


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        try:
            body = response.json()
            value = body.get("retry_after") if isinstance(body, dict) else None
        except ValueError:
            return None
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def verify_image(data: bytes, provider: str) -> dict[str, Any]:
    """Check `data` is a whole image file; return its media type and size.

    What breaks a download in practice is a cut-off or wrong body (an error page, a partial
    file), not flipped bits (TLS and TCP check those), so this checks structure, cheaply
    enough for every download: the header must parse; a PNG's chunks must all pass their
    CRC up to IEND; a JPEG must end with its EOI marker; a WebP's RIFF length must match;
    anything else is fully decoded."""
    from PIL import Image, UnidentifiedImageError

    from ..errors import GenerationFailed

    try:
        with Image.open(io.BytesIO(data)) as img:
            info = {"media_type": Image.MIME.get(img.format or "", "application/octet-stream"),
                    "width": img.width, "height": img.height, "sandbox_mark": carries_sandbox_mark(img)}
            if img.format == "PNG":
                img.verify()
            elif img.format == "JPEG":
                if b"\xff\xd9" not in data[-64:]:
                    raise OSError("the JPEG ends before its EOI marker (truncated)")
            elif img.format == "WEBP":
                if int.from_bytes(data[4:8], "little") + 8 > len(data):
                    raise OSError("the WebP file is shorter than its RIFF header says (truncated)")
            else:
                img.load()
            return info
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise GenerationFailed(f"the result image does not decode ({exc})", provider=provider) from None


SANDBOX_MARK = "SANDBOX: made by a Portrait Studio sandbox from a public-domain photo, not by FLUX"
"""What every sandbox image says in its metadata (PNG text, JPEG comment, WebP XMP)."""


def carries_sandbox_mark(img: Any) -> bool:
    """True when an opened image says it is sandbox output. A client pointed at a sandbox by
    hand (a `portrait sandbox` URL in config.toml) still marks what it gets as SANDBOX."""
    for key in ("Comment", "comment", "xmp"):
        value = img.info.get(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and "SANDBOX" in value:
            return True
    return False


def raw_b64(image: InputImage) -> str:
    return base64.b64encode(image.read()).decode()


def data_uri(image: InputImage) -> str:
    data = image.read()
    kind = "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "webp" if data[8:12] == b"WEBP" else "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


def nearest_ratio(width: int | None, height: int | None, allowed: list[str], exact: str | None = None) -> str:
    """The allowed 'W:H' closest to width/height (or `exact` if it is allowed)."""
    if exact and exact in allowed:
        return exact
    if exact and not (width and height):
        w, h = (int(p) for p in exact.split(":"))
        width, height = w, h
    if not (width and height):
        return "1:1" if "1:1" in allowed else allowed[0]
    target = math.log(width / height)
    numeric = [a for a in allowed if ":" in a]
    return min(numeric, key=lambda a: abs(math.log(Fraction(*map(int, a.split(":")))) - target))


def reduced_ratio(width: int, height: int) -> str:
    f = Fraction(width, height)
    return f"{f.numerator}:{f.denominator}"


_T = TypeVar("_T")
_FIRST_POLL_MARGIN = 0.005  # of the latency, after the earliest finish expected
_STEP_FRACTION = 0.015  # the shortest step between polls, of the latency
_SPREAD_POLLS = 4  # polls spent crossing the spread of the learnt latencies
_OVERDUE_FRACTION = 0.3  # past the slowest finish seen: each gap is this share of the time overdue
_SCOUT_FRACTION = 0.04
_SCOUTS = 1
_WINDOW = 15  # recent samples a model's latency is read from
_SAVE_EVERY_S = 60.0  # a long-running client saves what it learnt at most this often (and on close)


_WAKE_GRID_S = 0.01  # polls due within the same 10 ms go out in one pass of the event loop


def on_wake_grid(delay: float, now: float | None = None) -> float:
    """`delay`, stretched (by less than 10 ms) so that it ends on a shared 10 ms grid. Pure.

    Tasks submitted together are due to poll a few milliseconds apart (their acceptances
    arrived one by one); each would wake the client on its own, and a wakeup of an idle event
    loop costs more CPU than the poll it sends (0.24 ms against 0.17 ms on the 2-core VM the
    benches run on). On the grid they wake once, their polls go out together and their answers
    come back together. The added wait is under 1% of any latency a poll schedule works with."""
    now = time.monotonic() if now is None else now
    return max(0.0, math.ceil((now + delay) / _WAKE_GRID_S) * _WAKE_GRID_S - now)


class Latency(NamedTuple):
    """What the schedule needs to know of a model's learnt latency (seconds, accept -> done)."""

    early: float  # the earliest finish to expect (a low quantile of the samples)
    typical: float  # the median
    late: float  # the latest finish to expect (a high quantile)


def next_poll_delay(latency: Latency | None, elapsed: float, *, polls: int, scout: bool, waiting: int = 1,
                    options: HostedOptions, remembered: bool = False) -> float:
    """Seconds to wait before the next poll of a task accepted `elapsed` seconds ago. Pure.

    - latency known: the first poll lands just after the earliest finish expected (a task
      is seen done about as soon as it is, usually by that one poll); then steps of 1.5% of
      the latency (at least `poll_min_interval_s`, wider when the learnt latencies spread,
      so crossing the spread costs about four polls); past the latest finish seen the gaps
      grow with the time overdue (a model that got slower is not polled in a storm);
    - known only from an earlier process (`remembered`, not yet confirmed by a task of this
      one): the same up to the latest finish remembered, except that the scout polls at
      least every `poll_interval_s` on its way to the first poll (a remembered latency that
      is now too long delays the scout's task by at most that, and its finish wakes the
      others); past the latest finish remembered the latency is as good as unknown: the
      scout polls as a scout does (at least every `poll_interval_s`) and the others wait
      for it instead of polling on their own;
    - unknown, the scout (one task per model): every 4% of the time elapsed, at least twice
      `poll_min_interval_s` apart, and no more often than the `waiting` tasks it polls for
      would together at `poll_interval_s` (the providers' documented loop polls every 0.5 s):
      a lone task so polls at the documented pace, a batch of 6 or more every 100 ms (each
      poll costs the client about as much CPU as a download);
    - unknown, others: wait for the scout to learn the latency (it wakes them), polling at
      `poll_max_interval_s` meanwhile in case the scout's task is slow.
    """
    lo, hi = options.poll_min_interval_s, options.poll_max_interval_s
    if latency is not None:
        first = latency.early + _FIRST_POLL_MARGIN * latency.typical
        if elapsed < first:
            delay = first - elapsed if polls == 0 else max(first - elapsed, lo)
            return min(delay, options.poll_interval_s) if scout and remembered else delay
        if polls == 0:
            return 0.0
        step = max(lo, _STEP_FRACTION * latency.typical, (latency.late - latency.early) / _SPREAD_POLLS)
        overdue = elapsed - latency.late
        if not (remembered and overdue > 0):
            return min(max(hi, step), max(step, _OVERDUE_FRACTION * overdue))
    if scout:
        pace = options.poll_interval_s / max(1, waiting)
        return min(options.poll_interval_s, max(2 * lo, pace, _SCOUT_FRACTION * elapsed))
    return hi  # a safety net: the scout wakes this task as soon as it learns the latency


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[round(q * (len(ordered) - 1))]


class LatencyLog:
    """What this process has seen of one model's latency on one host: accept -> finished.

    A sample is the provider's own figure for the task when its answer carries one (kept
    inside the window the polls saw: a figure that leaves out queueing cannot be shorter than
    a poll that found the task still running); otherwise the middle of the window between
    the last poll that found the task running and the one that found it done; when the
    first poll already found it done, 97% of that time (so the estimate drifts down until a
    poll lands early again: it follows a model that got faster). The schedule reads the
    spread of recent samples (`latency`): its low end for the first poll, its width for the
    steps after it.

    Samples saved by an earlier process (`remember`) are a prior (`remembered` is True until
    a task of this process finishes): the first live sample joins them when it falls inside
    their spread (give or take 25%), and replaces them all when it does not, so a model that
    got slower or faster is re-learnt from one task."""

    _all: ClassVar[dict[tuple[str, str, str], LatencyLog]] = {}

    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=_WINDOW)
        self.seen_at: deque[float] = deque(maxlen=_WINDOW)  # when each sample was taken (Unix time)
        self.remembered = False
        self.scouts = 0
        self.in_flight = 0  # tasks of this model being polled in this process
        self._latency: Latency | None = None
        self._events: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
            weakref.WeakKeyDictionary())

    @classmethod
    def of(cls, provider: str, host: str, model: str) -> LatencyLog:
        return cls._all.setdefault((provider, host, model), cls())

    @property
    def estimate(self) -> float | None:
        return self._latency.typical if self._latency is not None else None

    @property
    def latency(self) -> Latency | None:
        return self._latency

    @property
    def settled(self) -> bool:
        """True once a task of this process has confirmed the latency: no scout is needed."""
        return self._latency is not None and not self.remembered

    def enlist_scout(self) -> bool:
        if self.scouts >= _SCOUTS:
            return False
        self.scouts += 1
        return True

    def remember(self, saved: list[tuple[float, float]]) -> bool:
        """Take (seconds, seen at) samples an earlier process saved, unless this one has its own."""
        if self.samples or not saved:
            return False
        for seconds, at in saved[-_WINDOW:]:
            self.samples.append(seconds)
            self.seen_at.append(at)
        self.remembered = True
        self._update()
        return True

    def saved(self) -> list[tuple[float, float]]:
        return list(zip(self.samples, self.seen_at, strict=True))

    def observe(self, last_pending: float | None, finished: float, reported: float | None = None) -> None:
        if reported is not None and reported > 0:
            sample = max(0.0, min(max(reported, last_pending or 0.0), finished))
        else:
            sample = max(0.0, finished * 0.97 if last_pending is None else (last_pending + finished) / 2)
        if self.remembered:
            self.remembered = False
            prior = self._latency
            if prior is None or not prior.early / 1.25 <= sample <= prior.late * 1.25:
                self.samples.clear()  # the model changed since: forget what was remembered
                self.seen_at.clear()
        self.samples.append(sample)
        self.seen_at.append(time.time())
        self._update()
        self.notify()

    def _update(self) -> None:
        ordered = sorted(self.samples)
        self._latency = Latency(_quantile(ordered, 0.1), statistics.median(ordered), _quantile(ordered, 0.9))

    def notify(self) -> None:
        """Wake every task waiting in `wait(early=True)`; later waiters wait afresh."""
        events, self._events = self._events, weakref.WeakKeyDictionary()
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, event in list(events.items()):
            if loop is current:
                event.set()
            else:  # another thread's loop (web jobs): events are not thread-safe
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(event.set)

    async def wait(self, delay: float, *, early: bool) -> None:
        """Sleep `delay` s; with `early`, wake as soon as a first latency is learnt (or the
        scout gave up)."""
        if not early:
            await asyncio.sleep(delay)
            return
        loop = asyncio.get_running_loop()
        event = self._events.get(loop)
        if event is None:
            event = self._events[loop] = asyncio.Event()
        try:
            await asyncio.wait_for(event.wait(), delay)
        except TimeoutError:
            pass


_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


class account_slots:
    """Hold one slot in every (group, limit) of `account` for the length of an `async with`."""

    def __init__(self, account: str, groups: list[tuple[str, int]]) -> None:
        self._account = account
        self._groups = groups
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> None:
        table = _SLOTS.setdefault(asyncio.get_running_loop(), {})
        for group, limit in self._groups:
            sem = table.setdefault((self._account, f"{group}:{limit}"), asyncio.Semaphore(limit))
            await self._stack.enter_async_context(sem)

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()


def reported_seconds(value: Any) -> float | None:
    """A provider-reported duration, when it is a positive number."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 < seconds < 86400 else None
