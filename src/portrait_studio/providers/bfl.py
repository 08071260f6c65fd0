"""The BFL API client (api.bfl.ai): FLUX1.1 [pro] / Ultra, FLUX.2, Kontext, Fill, dev.

Contract (shared/notes/provider-apis.md §1, BFL's OpenAPI document):

    POST {host}/v1/{endpoint}   x-key auth   → 200 {id, polling_url, cost}
                                              422 detail list · 402 credits · 403 key · 429 busy
    GET  polling_url (verbatim; its host may differ) → status Pending | Ready | Error |
         Request Moderated | Content Moderated | Task not found
    GET  result.sample (signed, valid for 10 minutes) → the image, downloaded at once

Paying twice is the expensive mistake, so: a submission is retried only when it certainly
did not reach BFL (connection refused, 429, 502/503/504 from the gateway); once BFL has
answered with a task id the runner is told (`on_accepted`) and only the *poll* is retried.
A connection dropped after the request was sent raises `UncertainSubmission`: the task may
exist, and the runner will not re-send it on its own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import time
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field

from ..catalog import USD_PER_CREDIT, get_model
from ..errors import (
    AuthenticationError,
    CapabilityError,
    GenerationFailed,
    InsufficientCredits,
    Moderated,
    NetworkError,
    ProviderError,
    ProviderValidationError,
    RateLimited,
    ResultExpired,
    TaskNotFound,
    UncertainSubmission,
)
from ..records import Cost, Request, Result, Ticket
from .base import OnAccepted, Provider, ProviderOptions

__all__ = ["BflOptions", "BflProvider", "HOSTS", "request_body"]

HOSTS = {
    "global": "https://api.bfl.ai",
    "eu": "https://api.eu.bfl.ai",
    "us": "https://api.us.bfl.ai",
    "eu1": "https://api.eu1.bfl.ai",  # legacy single-cluster; needed for finetuned endpoints
    "us1": "https://api.us1.bfl.ai",
    "legacy": "https://api.bfl.ml",
}
GATEWAY_RETRY = {502, 503, 504}


class BflOptions(ProviderOptions):
    region: Literal["global", "eu", "us", "eu1", "us1", "legacy"] = "global"
    base_url: str | None = Field(default=None, description="overrides region (a sandbox, a proxy)")
    poll_interval: float = Field(default=0.5, gt=0, description="first poll delay; the docs poll every 0.5 s")
    poll_backoff: float = Field(default=1.5, ge=1.0)
    max_poll_interval: float = Field(default=4.0, gt=0)
    timeout_s: float = Field(default=600.0, gt=0, description="give up waiting for one task after this")
    max_submit_retries: int = Field(default=8, ge=0)
    max_poll_errors: int = Field(default=8, ge=0)
    max_download_tries: int = Field(default=3, ge=1)
    http_timeout_s: float = 60.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def request_body(request: Request) -> tuple[str, dict[str, Any]]:
    """(endpoint, JSON body) for a Request, by the model's family. Pure."""
    spec = get_model(request.model)
    route = spec.route("bfl")
    family = spec.family
    body: dict[str, Any] = {"prompt": request.prompt, "seed": request.seed, "output_format": request.output_format}
    if request.safety_tolerance is not None:
        body["safety_tolerance"] = request.safety_tolerance
    refs = [i for i in request.images if i.role != "mask"]
    endpoint = route.model_id
    if family in ("pro11", "dev"):
        body.update(width=request.width, height=request.height)
        if family == "dev":
            body.update(steps=request.steps, guidance=request.guidance)
        if refs:
            body["image_prompt"] = _b64(refs[0].read())
    elif family == "ultra":
        body.update(aspect_ratio=request.aspect_ratio or "3:4", raw=request.raw)
        if refs:
            body.update(image_prompt=_b64(refs[0].read()), image_prompt_strength=request.strength if request.strength is not None else 0.1)
        if request.finetune_id:
            endpoint = route.edit_model_id or endpoint
            body.update(finetune_id=request.finetune_id, finetune_strength=request.finetune_strength or 1.2)
    elif family in ("flux2", "flux2-flex", "klein"):
        body.update(width=request.width, height=request.height)
        if family == "flux2-flex":
            body.update(steps=request.steps, guidance=request.guidance)
        for n, ref in enumerate(refs[: spec.max_references], 1):
            body["input_image" if n == 1 else f"input_image_{n}"] = _b64(ref.read())
    elif family == "kontext":
        body["aspect_ratio"] = request.aspect_ratio
        for n, ref in enumerate(refs[: spec.max_references], 1):
            body["input_image" if n == 1 else f"input_image_{n}"] = _b64(ref.read())
    elif family == "fill":
        if not refs or request.mask is None:
            raise CapabilityError("Fill needs an image and a mask", hint="use 'portrait fix IMAGE --region ...'")
        body.update(image=_b64(refs[0].read()), mask=_b64(request.mask.read()), steps=request.steps,
                    guidance=request.guidance)
        if request.finetune_id:
            endpoint = route.edit_model_id or endpoint
            body.update(finetune_id=request.finetune_id, finetune_strength=request.finetune_strength or 1.1)
    else:  # pragma: no cover - the catalog only routes the families above to BFL
        raise CapabilityError(f"{spec.name} is not served by the BFL API")
    return endpoint, {k: v for k, v in body.items() if v is not None}


class _Limits:
    """BFL's account-wide active-task limits (24; 6 for kontext-max), per event loop."""

    _gates: ClassVar[dict[tuple[int, str, int], asyncio.Semaphore]] = {}

    @classmethod
    def gate(cls, key_hash: str, limit: int) -> asyncio.Semaphore:
        ident = (id(asyncio.get_running_loop()), key_hash, limit)
        if ident not in cls._gates:
            cls._gates[ident] = asyncio.Semaphore(limit)
        return cls._gates[ident]


class BflProvider(Provider):
    """Black Forest Labs' own API."""

    provider_id = "bfl"
    key_env_var = "BFL_API_KEY"
    hosted = True
    Options = BflOptions

    def __init__(
        self,
        api_key: str,
        options: BflOptions | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sandbox: bool = False,
        verify: bool | str = True,
    ) -> None:
        self._key = api_key
        self._key_hash = hashlib.sha256(api_key.encode()).hexdigest()[:12]
        self.options = options or BflOptions()
        self.base_url = (self.options.base_url or HOSTS[self.options.region]).rstrip("/")
        self.sandbox = sandbox
        self._transport = transport
        self._verify = verify
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:  # never show the key
        return f"BflProvider(base_url={self.base_url!r}, sandbox={self.sandbox})"

    @classmethod
    def create(cls, studio: Any, **options: Any) -> BflProvider:
        opts = BflOptions(**options)
        if opts.base_url is None and "region" not in options and studio.config.bfl_host != HOSTS["global"]:
            opts = opts.model_copy(update={"base_url": studio.config.bfl_host})
        return cls(studio.require_key("bfl"), opts)

    @classmethod
    def for_sandbox(cls, sandbox: Any, **options: Any) -> BflProvider:
        return cls(sandbox.key, BflOptions(**{**options, "base_url": sandbox.url}), sandbox=True)

    # --- plumbing ------------------------------------------------------------------------
    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                transport=self._transport, timeout=self.options.http_timeout_s, verify=self._verify,
                headers={"accept": "application/json"},
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def max_concurrency(self, model: str) -> int:
        return get_model(model).route("bfl").max_active or 24

    def _error(self, response: httpx.Response, what: str) -> ProviderError:
        try:
            payload = response.json()
        except ValueError:
            payload = {"detail": response.text[:200]}
        detail = payload.get("detail") if isinstance(payload, dict) else payload
        code = response.status_code
        if code == 422:
            items = detail if isinstance(detail, list) else []
            fields = [".".join(str(p) for p in item.get("loc", []) if p != "body") for item in items]
            msgs = "; ".join(f"{f}: {item.get('msg')}" for f, item in zip(fields, items, strict=False))
            return ProviderValidationError(f"BFL rejected the {what}: {msgs or detail}", provider="bfl", fields=fields)
        if code == 402:
            return InsufficientCredits("the BFL account is out of credits", provider="bfl",
                                       hint="add credits at https://api.bfl.ai, or lower the plan")
        if code in (401, 403):
            return AuthenticationError(f"BFL refused the API key ({detail})", provider="bfl",
                                       hint="check BFL_API_KEY or run 'portrait keys set bfl'")
        if code == 429:
            retry = float(response.headers.get("retry-after", 0) or 0)
            return RateLimited("BFL: too many active tasks", provider="bfl", retry_after=retry or 1.0)
        return ProviderError(f"BFL answered {code} to the {what}: {detail}", provider="bfl")

    # --- submit ----------------------------------------------------------------------------
    async def _post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/v1/{endpoint}"
        delay = 1.0
        for attempt in range(self.options.max_submit_retries + 1):
            try:
                response = await self.client.post(url, json=body, headers={"x-key": self._key})
            except httpx.ConnectError as exc:  # nothing reached BFL: safe to try again
                if attempt == self.options.max_submit_retries:
                    raise NetworkError(f"cannot reach {self.base_url}: {exc}", provider="bfl") from None
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                raise UncertainSubmission(
                    f"the connection dropped after the request was sent ({type(exc).__name__}); BFL may have "
                    "accepted it, so it was not re-sent", provider="bfl",
                    hint="check your BFL dashboard; 'portrait resume RUN --resubmit-uncertain' sends it again",
                ) from None
            else:
                if response.status_code == 200:
                    return dict(response.json())
                err = self._error(response, "request")
                if isinstance(err, RateLimited) or response.status_code in GATEWAY_RETRY:
                    if attempt == self.options.max_submit_retries:
                        raise err
                    wait = err.retry_after if isinstance(err, RateLimited) else delay
                    await asyncio.sleep(min(wait, 30))
                    delay = min(delay * 2, 30)
                    continue
                raise err
            await asyncio.sleep(min(delay, 30))
            delay = min(delay * 2, 30)
        raise NetworkError("gave up submitting", provider="bfl")  # pragma: no cover

    async def submit(self, request: Request, on_accepted: OnAccepted | None = None) -> Result:
        self.check(request)
        endpoint, body = request_body(request)
        limit = self.max_concurrency(request.model)
        started = time.time()
        async with _Limits.gate(self._key_hash, limit):
            answer = await self._post(endpoint, body)
            submitted = time.time()
            cost = answer.get("cost")
            ticket = Ticket(
                request_id=request.request_id, provider="bfl", task_id=str(answer["id"]),
                polling_url=answer.get("polling_url") or f"{self.base_url}/v1/get_result?id={answer['id']}",
                cost=Cost(credits=float(cost), usd=round(float(cost) * USD_PER_CREDIT, 6)) if cost is not None else None,
                data={"endpoint": endpoint, "input_mp": answer.get("input_mp"), "output_mp": answer.get("output_mp")},
            )
            if on_accepted is not None:
                await on_accepted(ticket)
            polled = time.time()
            payload = await self._poll(ticket)
        # the task stops counting against the account limit once it is Ready: download outside the gate
        result = await self._finish(ticket, request, payload, time.time() - polled)
        timings = {**result.timings, "submit_s": round(submitted - started, 3), "total_s": round(time.time() - started, 3)}
        return result.model_copy(update={"timings": timings})

    async def resume(self, ticket: Ticket, request: Request) -> Result:
        polled = time.time()
        async with _Limits.gate(self._key_hash, self.max_concurrency(request.model)):
            payload = await self._poll(ticket)
        return await self._finish(ticket, request, payload, time.time() - polled)

    # --- poll and download ------------------------------------------------------------------
    async def _poll(self, ticket: Ticket) -> dict[str, Any]:
        assert ticket.polling_url
        interval, errors = self.options.poll_interval, 0
        deadline = time.monotonic() + self.options.timeout_s
        while True:
            await asyncio.sleep(interval)
            interval = min(interval * self.options.poll_backoff, self.options.max_poll_interval)
            if time.monotonic() > deadline:
                raise NetworkError(f"task {ticket.task_id} not ready after {self.options.timeout_s:.0f}s", provider="bfl",
                                   hint="'portrait resume' polls it again later")
            try:
                response = await self.client.get(ticket.polling_url, headers={"x-key": self._key})
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                errors += 1
                if errors > self.options.max_poll_errors:
                    raise NetworkError(f"lost contact while polling task {ticket.task_id}: {type(exc).__name__}",
                                       provider="bfl", hint="'portrait resume RUN' polls it again") from None
                continue
            if response.status_code >= 500 or response.status_code == 429:
                errors += 1
                if errors > self.options.max_poll_errors:
                    raise NetworkError(f"BFL kept answering {response.status_code} while polling", provider="bfl")
                continue
            if response.status_code != 200:
                raise self._error(response, "poll")
            payload = dict(response.json())
            status = payload.get("status")
            if status == "Ready":
                return payload
            if status == "Pending" or status is None:
                continue
            details = payload.get("details") or {}
            reasons = list(details.get("Moderation Reasons", [])) if isinstance(details, dict) else []
            if status == "Request Moderated":
                raise Moderated("BFL moderated the request (prompt or input image)", provider="bfl",
                                stage="request", reasons=reasons)
            if status == "Content Moderated":
                raise Moderated("BFL moderated the generated image", provider="bfl", stage="content", reasons=reasons)
            if status == "Task not found":
                raise TaskNotFound(f"BFL does not know task {ticket.task_id}", provider="bfl")
            if status in ("Error", "Failed"):
                raise GenerationFailed(f"BFL reported an error for task {ticket.task_id}: {details or ''}", provider="bfl")
            raise ProviderError(f"BFL answered an unknown status {status!r}", provider="bfl")

    async def _download(self, url: str) -> tuple[bytes, str]:
        from PIL import Image

        last: Exception | None = None
        for _ in range(self.options.max_download_tries):
            try:
                response = await self.client.get(url)  # signed URL: no key sent to the delivery host
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last = exc
                continue
            if response.status_code in (401, 403, 404, 410):
                raise ResultExpired(f"the result URL answered {response.status_code}; signed URLs expire after 10 minutes",
                                    provider="bfl", hint="results must be downloaded at once; make the image again")
            if response.status_code != 200:
                last = ProviderError(f"download answered {response.status_code}", provider="bfl")
                continue
            try:
                with Image.open(io.BytesIO(response.content)) as im:
                    im.load()
                    fmt = (im.format or "PNG").lower()
            except OSError as exc:
                last = exc
                continue
            return response.content, {"jpeg": "image/jpeg", "webp": "image/webp"}.get(fmt, "image/png")
        raise GenerationFailed(f"the result could not be downloaded intact ({last})", provider="bfl")

    async def _finish(self, ticket: Ticket, request: Request, payload: dict[str, Any], poll_s: float) -> Result:
        t1 = time.time()
        result = payload.get("result") or {}
        sample = result.get("sample")
        if not sample:
            raise GenerationFailed(f"task {ticket.task_id} is Ready but has no sample", provider="bfl")
        image, media_type = await self._download(str(sample))
        t2 = time.time()
        cost = ticket.cost or request.estimated_cost
        return Result(
            request_id=request.request_id, provider="bfl", model=request.model, image=image, media_type=media_type,
            seed=int(result.get("seed", request.seed)), provider_task_id=ticket.task_id, cost=cost,
            timings={"poll_s": round(poll_s, 3), "download_s": round(t2 - t1, 3),
                     **({"provider_duration_s": float(result["duration"])} if result.get("duration") is not None else {})},
            metadata={"endpoint": ticket.data.get("endpoint"), "polling_host": httpx.URL(ticket.polling_url or "").host,
                      "input_mp": ticket.data.get("input_mp"), "output_mp": ticket.data.get("output_mp")},
            sandbox=self.sandbox,
        )
