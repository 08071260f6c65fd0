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
import time
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field

from ..catalog import USD_PER_CREDIT, get_model
from ..errors import (
    CapabilityError,
    GenerationFailed,
    Moderated,
    ProviderError,
    TaskNotFound,
)
from ..records import Cost, Request, Result, Ticket
from ._hosted import HostedOptions, HostedProvider, account_slots, raw_b64, reported_seconds
from .base import OnAccepted

__all__ = ["BflOptions", "BflProvider", "HOSTS", "request_body"]

HOSTS = {
    "global": "https://api.bfl.ai",
    "eu": "https://api.eu.bfl.ai",
    "us": "https://api.us.bfl.ai",
    "eu1": "https://api.eu1.bfl.ai",  # legacy single-cluster; needed for finetuned endpoints
    "us1": "https://api.us1.bfl.ai",
    "legacy": "https://api.bfl.ml",
}


class BflOptions(HostedOptions):
    """The shared hosted settings, plus BFL's region; `poll_interval` and `max_poll_interval`
    are accepted as short names in config.toml."""

    region: Literal["global", "eu", "us", "eu1", "us1", "legacy"] = "global"
    poll_interval_s: float = Field(default=0.5, gt=0, validation_alias=AliasChoices("poll_interval_s", "poll_interval"))
    poll_max_interval_s: float = Field(
        default=4.0, gt=0, validation_alias=AliasChoices("poll_max_interval_s", "max_poll_interval")
    )


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
            body["image_prompt"] = raw_b64(refs[0])
    elif family == "ultra":
        body.update(aspect_ratio=request.aspect_ratio or "3:4", raw=request.raw)
        if refs:
            body.update(image_prompt=raw_b64(refs[0]), image_prompt_strength=request.reference_weight if request.reference_weight is not None else 0.1)
        if request.finetune_id:
            endpoint = route.edit_model_id or endpoint
            body.update(finetune_id=request.finetune_id, finetune_strength=request.finetune_strength or 1.2)
    elif family in ("flux2", "flux2-flex", "klein"):
        body.update(width=request.width, height=request.height)
        if family == "flux2-flex":
            body.update(steps=request.steps, guidance=request.guidance)
        for n, ref in enumerate(refs[: spec.max_references], 1):
            body["input_image" if n == 1 else f"input_image_{n}"] = raw_b64(ref)
    elif family == "kontext":
        body["aspect_ratio"] = request.aspect_ratio
        for n, ref in enumerate(refs[: spec.max_references], 1):
            body["input_image" if n == 1 else f"input_image_{n}"] = raw_b64(ref)
    elif family == "fill":
        if not refs or request.mask is None:
            raise CapabilityError("Fill needs an image and a mask", hint="use 'portrait fix IMAGE --region ...'")
        body.update(image=raw_b64(refs[0]), mask=raw_b64(request.mask), steps=request.steps,
                    guidance=request.guidance)
        if request.finetune_id:
            endpoint = route.edit_model_id or endpoint
            body.update(finetune_id=request.finetune_id, finetune_strength=request.finetune_strength or 1.1)
    else:  # pragma: no cover - the catalog only routes the families above to BFL
        raise CapabilityError(f"{spec.name} is not served by the BFL API")
    return endpoint, {k: v for k, v in body.items() if v is not None}


class BflProvider(HostedProvider):
    """Black Forest Labs' own API, on the shared hosted-client base.

    Billing: `on_accept`. BFL answers the submission with the task's `cost` in credits and
    charges it then (docs.bfl.ai pricing, "The real charge is returned in `cost`"; credits
    are taken at submission, notes/provider-apis.md §1.2, §1.6); nothing in its documents
    refunds a task that ends moderated, in error, lost or with an expired result, so every
    accepted task is counted as paid. `Ticket.cost` carries that cost."""

    provider_id = "bfl"
    key_env_var = "BFL_API_KEY"
    hosted = True
    billing = "on_accept"
    Options = BflOptions

    @property
    def base_url(self) -> str:
        assert isinstance(self.options, BflOptions)
        return (self.options.base_url or HOSTS[self.options.region]).rstrip("/")

    @classmethod
    def create(cls, studio: Any, **options: Any) -> BflProvider:
        opts = BflOptions(**options)
        if opts.base_url is None and "region" not in options and studio.config.bfl_host != HOSTS["global"]:
            opts = opts.model_copy(update={"base_url": studio.config.bfl_host})
        return cls(studio.require_key("bfl"), opts)

    def max_concurrency(self, model: str) -> int:
        return get_model(model).route("bfl").max_active or 24

    def _slots(self, model: str) -> account_slots:
        return account_slots(self._key.fingerprint(), [(model, self.max_concurrency(model))])

    # --- submit, then poll and download ------------------------------------------------------
    async def submit(self, request: Request, on_accepted: OnAccepted | None = None) -> Result:
        self.check(request)
        endpoint, body = request_body(request)
        started = time.time()
        async with self._slots(request.model):  # held while the task is active at BFL, not while downloading
            response = await self.post_submission(f"{self.base_url}/v1/{endpoint}", json=body,
                                                  headers={"x-key": self._key.reveal()})
            if response.status_code != 200:
                raise self.http_error(response, during="submit")
            answer = dict(response.json())
            submitted = time.time()
            cost = answer.get("cost")
            ticket = Ticket(
                request_id=request.request_id, provider="bfl", task_id=str(answer["id"]),
                polling_url=answer.get("polling_url") or f"{self.base_url}/v1/get_result?id={answer['id']}",
                accepted_at=submitted,
                cost=Cost(credits=float(cost), usd=round(float(cost) * USD_PER_CREDIT, 6)) if cost is not None else None,
                data={"endpoint": endpoint, "input_mp": answer.get("input_mp"), "output_mp": answer.get("output_mp")},
            )
            if on_accepted is not None:
                await on_accepted(ticket)
            try:
                ready = await self._poll(ticket, request.model)
            except ProviderError as exc:
                raise self.settle(exc, ticket) from None
            except (ValueError, KeyError) as exc:  # an answer that is not the documented shape
                raise self.settle(self.unreadable(exc), ticket) from None
        # The slot is free: let the submission waiting for it go out before this download, so
        # the provider starts the next task first (downloads are off the critical path).
        await asyncio.sleep(0)
        result = await self._collect(ticket, request, ready)
        timings = {**result.timings, "submit_s": round(submitted - started, 3), "total_s": round(time.time() - started, 3)}
        return result.model_copy(update={"timings": timings})

    async def resume(self, ticket: Ticket, request: Request) -> Result:
        async with self._slots(request.model):
            try:
                ready = await self._poll(ticket, request.model, immediately=True)
            except ProviderError as exc:
                raise self.settle(exc, ticket) from None
            except (ValueError, KeyError) as exc:  # an answer that is not the documented shape
                raise self.settle(self.unreadable(exc), ticket) from None
        return await self._collect(ticket, request, ready)

    async def _poll(self, ticket: Ticket, model: str, *, immediately: bool = False) -> dict[str, Any]:
        assert ticket.polling_url
        url = self.resolve(ticket.polling_url)
        headers = {"x-key": self._key.reveal()}
        start = time.time()

        async def once() -> dict[str, Any] | None:
            response = await self.get_with_retries(url, headers=headers)
            if response.status_code != 200:
                raise self.http_error(response, during="poll")
            payload = dict(response.json())
            status = payload.get("status")
            if status == "Ready":
                return payload
            if status in ("Pending", None):
                return None
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
                raise GenerationFailed(f"BFL reported an error for task {ticket.task_id}: {details or ''}",
                                       provider="bfl")
            raise ProviderError(f"BFL answered an unknown status {status!r}", provider="bfl")

        payload = await self.poll(model, ticket.accepted_at, once, what=f"task {ticket.task_id}",
                                  immediately=immediately,
                                  reported=lambda p: reported_seconds((p.get("result") or {}).get("duration")))
        payload["_poll_s"] = round(time.time() - start, 3)
        return payload

    async def _collect(self, ticket: Ticket, request: Request, ready: dict[str, Any]) -> Result:
        try:
            result = ready.get("result") or {}
            sample = result.get("sample")
            if not sample:
                raise GenerationFailed(f"task {ticket.task_id} is Ready but has no sample", provider="bfl")
            t0 = time.time()
            image, info = await self.download(str(sample))  # signed URL: the key is not sent there
        except ProviderError as exc:
            raise self.settle(exc, ticket) from None
        except (ValueError, KeyError) as exc:  # an answer that is not the documented shape
            raise self.settle(self.unreadable(exc), ticket) from None
        return Result(
            request_id=request.request_id, provider="bfl", model=request.model, image=image,
            media_type=str(info["media_type"]),
            seed=int(result.get("seed", request.seed)), provider_task_id=ticket.task_id,
            cost=ticket.cost or request.estimated_cost,
            timings={"poll_s": ready.get("_poll_s", 0.0), "download_s": round(time.time() - t0, 3),
                     **({"provider_duration_s": float(result["duration"])} if result.get("duration") is not None else {})},
            metadata={"endpoint": ticket.data.get("endpoint"), "polling_host": urlsplit(ticket.polling_url or "").hostname or "",
                      "input_mp": ticket.data.get("input_mp"), "output_mp": ticket.data.get("output_mp")},
            sandbox=self.sandbox or bool(info["sandbox_mark"]),
        )
