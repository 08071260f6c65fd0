"""The BFL API client (api.bfl.ai): FLUX1.1 [pro], Ultra, FLUX.2, Kontext, Fill, dev.

Flow (notes/provider-apis.md §1): `POST /v1/<endpoint>` with `x-key` → `{id,
polling_url, cost}`; `on_accepted(Ticket)` at once; `GET polling_url` verbatim (its
host may differ) with backoff until Ready / Error / Request Moderated / Content
Moderated / Task not found; download `result.sample` at once (signed, 10 minutes) and
check it decodes. At most 24 active tasks per account (6 for flux-kontext-max).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field

from ..errors import GenerationFailed, Moderated, NetworkError, TaskNotFound
from ..records import Cost, Request, Result, Ticket
from ._hosted import HostedOptions, HostedProvider, account_slots, raw_b64, reduced_ratio
from .base import OnAccepted

__all__ = ["REGIONS", "BflOptions", "BflProvider"]

log = logging.getLogger("portrait_studio.providers.bfl")

REGIONS: dict[str, str] = {
    "global": "https://api.bfl.ai",      # automatic failover
    "eu": "https://api.eu.bfl.ai",
    "us": "https://api.us.bfl.ai",
    "eu1": "https://api.eu1.bfl.ai",     # legacy single-cluster hosts (finetunes)
    "us1": "https://api.us1.bfl.ai",
    "legacy": "https://api.bfl.ml",
}
FINETUNE_HOST = "https://api.us1.bfl.ai"  # OpenAPI: per-operation server of the finetune endpoints
USD_PER_CREDIT = 0.01


class BflOptions(HostedOptions):
    region: Literal["global", "eu", "us", "eu1", "us1", "legacy"] = "global"
    max_active_tasks: int = Field(default=24, ge=1, description="the account's active-task limit")
    not_found_grace_s: float = Field(default=5.0, ge=0, description="tolerate 'Task not found' this long after submit")
    max_concurrency: int = 24


class BflProvider(HostedProvider):
    """Black Forest Labs' own API."""

    provider_id: ClassVar[str] = "bfl"
    key_env_var: ClassVar[str | None] = "BFL_API_KEY"
    Options: ClassVar[type[BflOptions]] = BflOptions  # type: ignore[assignment]
    options: BflOptions

    @property
    def base_url(self) -> str:
        return (self.options.base_url or REGIONS[self.options.region]).rstrip("/")

    def max_concurrency(self, model: str) -> int:
        try:
            _spec, route = self.route_for(model)
            return min(self.options.max_active_tasks, getattr(route, "max_active", None) or 24)
        except Exception:
            return self.options.max_active_tasks

    def route_for(self, model: str) -> tuple[Any, Any]:
        spec = self.spec(model)
        return spec, spec.routes[self.provider_id]

    # --- request building ---------------------------------------------------------------
    def endpoint(self, request: Request) -> str:
        _spec, route = self.route(request)
        if request.finetune_id:
            return route.edit_model_id or f"{route.model_id}-finetuned"
        return route.model_id

    def host_for(self, endpoint: str) -> str:
        if endpoint.endswith("-finetuned") and not self.options.base_url:
            return FINETUNE_HOST
        return self.base_url

    def body(self, request: Request) -> dict[str, Any]:
        """The JSON body for BFL, by model family (field names from BFL's OpenAPI document)."""
        spec, _route = self.route(request)
        family = spec.family
        refs = [i for i in request.images if i.role != "mask"]
        body: dict[str, Any] = {"prompt": request.prompt, "seed": request.seed, "output_format": request.output_format}
        if request.safety_tolerance is not None:
            limit = 5 if family in ("flux2", "flux2-flex", "klein") else 6
            body["safety_tolerance"] = max(0, min(limit, request.safety_tolerance))
        if family in ("pro11", "dev"):
            if request.width and request.height:
                body["width"], body["height"] = request.width, request.height
            if family == "dev":
                _put(body, steps=request.steps, guidance=request.guidance)
            if refs:
                body["image_prompt"] = raw_b64(refs[0])
        elif family == "ultra":
            body["aspect_ratio"] = request.aspect_ratio or (
                reduced_ratio(request.width, request.height) if request.width and request.height else "1:1")
            body["raw"] = request.raw
            if refs:
                body["image_prompt"] = raw_b64(refs[0])
                _put(body, image_prompt_strength=request.strength)
        elif family in ("flux2", "flux2-flex", "klein"):
            if request.width and request.height:
                body["width"], body["height"] = request.width, request.height
            for i, image in enumerate(refs):
                body["input_image" if i == 0 else f"input_image_{i + 1}"] = raw_b64(image)
            if family == "flux2-flex":
                _put(body, steps=request.steps, guidance=request.guidance)
        elif family == "kontext":
            for i, image in enumerate(refs):
                body["input_image" if i == 0 else f"input_image_{i + 1}"] = raw_b64(image)
            if request.aspect_ratio:
                body["aspect_ratio"] = request.aspect_ratio
            elif request.width and request.height:
                body["aspect_ratio"] = reduced_ratio(request.width, request.height)
        elif family == "fill":
            init = next((i for i in refs if i.role in ("init", "edit")), refs[0] if refs else None)
            if init is None:
                from ..errors import CapabilityError

                raise CapabilityError("FLUX Fill needs an image to inpaint", hint="add an init image")
            body["image"] = raw_b64(init)
            if request.mask is not None:
                body["mask"] = raw_b64(request.mask)
            _put(body, steps=request.steps, guidance=request.guidance)
        if request.finetune_id:
            body["finetune_id"] = request.finetune_id
            _put(body, finetune_strength=request.finetune_strength)
        for name in ("prompt_upsampling", "webhook_url", "webhook_secret"):
            if name in request.options:
                body[name] = request.options[name]
        return body

    def _headers(self) -> dict[str, str]:
        return {"x-key": self._key.reveal(), "accept": "application/json"}

    def _slot_groups(self, request: Request) -> list[tuple[str, int]]:
        _spec, route = self.route(request)
        groups = [("account", self.options.max_active_tasks)]
        limit = getattr(route, "max_active", None)
        if limit and limit < self.options.max_active_tasks:
            groups.append((route.model_id, limit))
        return groups

    # --- the flow -----------------------------------------------------------------------
    async def submit(self, request: Request, on_accepted: OnAccepted | None = None) -> Result:
        self.check(request)
        endpoint = self.endpoint(request)
        body = self.body(request)
        started = time.monotonic()
        async with account_slots(self._key.fingerprint(), self._slot_groups(request)):
            url = f"{self.host_for(endpoint)}/v1/{endpoint}"
            response = await self.post_submission(url, json=body, headers=self._headers())
            if response.status_code != 200:
                raise self.http_error(response, during="submit")
            answer = response.json()
            credits = answer.get("cost")
            ticket = Ticket(
                request_id=request.request_id, provider=self.provider_id, task_id=answer["id"],
                polling_url=answer["polling_url"],
                cost=Cost(credits=credits, usd=round(credits * USD_PER_CREDIT, 6)) if credits is not None else None,
                data={"endpoint": endpoint, "input_mp": answer.get("input_mp"), "output_mp": answer.get("output_mp")},
            )
            log.info("bfl accepted %s (%s) for %s credits", ticket.task_id, endpoint, credits)
            if on_accepted is not None:
                await on_accepted(ticket)
            accepted = time.monotonic()
            ready = await self._wait(ticket)
        return await self._collect(ticket, request, ready, {"submit_s": accepted - started}, started)

    async def resume(self, ticket: Ticket, request: Request) -> Result:
        """Re-poll and download a task accepted earlier; never re-submits."""
        started = time.monotonic()
        ready = await self._wait(ticket)
        return await self._collect(ticket, request, ready, {"submit_s": 0.0}, started)

    async def credits(self) -> float:
        response = await self._client.get(f"{self.base_url}/v1/credits", headers=self._headers())
        if response.status_code != 200:
            raise self.http_error(response, during="credits")
        return float(response.json()["credits"])

    async def _wait(self, ticket: Ticket) -> dict[str, Any]:
        """Poll `ticket.polling_url` verbatim until the task ends; return the Ready result."""
        assert ticket.polling_url
        deadline = time.monotonic() + self.options.task_timeout_s
        for delay in self.poll_intervals():
            response = await self.get_with_retries(ticket.polling_url, headers=self._headers())
            if response.status_code != 200:
                raise self.http_error(response, during="poll")
            data = response.json()
            status = data.get("status")
            if status == "Ready":
                return data.get("result") or {}
            if status in ("Request Moderated", "Content Moderated"):
                stage = "request" if status == "Request Moderated" else "content"
                reasons = list((data.get("details") or {}).get("Moderation Reasons") or [])
                raise Moderated(f"BFL moderated the {stage} of task {ticket.task_id}"
                                + (f": {', '.join(reasons)}" if reasons else ""),
                                provider=self.provider_id, stage=stage, reasons=reasons)
            if status in ("Error", "Failed"):
                raise GenerationFailed(f"BFL reported an error for task {ticket.task_id}: "
                                       f"{data.get('details') or 'no details'}", provider=self.provider_id)
            if status == "Task not found" and time.time() - ticket.accepted_at > self.options.not_found_grace_s:
                raise TaskNotFound(f"BFL no longer knows task {ticket.task_id}", provider=self.provider_id,
                                   hint="results are kept only for a while; submit the image again")
            if time.monotonic() > deadline:
                raise NetworkError(f"task {ticket.task_id} still {status} after {self.options.task_timeout_s:.0f} s",
                                   provider=self.provider_id, hint="resume the run later to collect it")
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _collect(self, ticket: Ticket, request: Request, ready: dict[str, Any], timings: dict[str, float],
                       started: float) -> Result:
        waited = time.monotonic()
        sample = ready.get("sample")
        if not sample:
            raise GenerationFailed(f"BFL marked task {ticket.task_id} Ready without a sample", provider=self.provider_id)
        image, info = await self.download(sample)
        done = time.monotonic()
        timings = {**timings, "wait_s": waited - started - timings["submit_s"], "download_s": done - waited,
                   "total_s": done - started}
        if isinstance(ready.get("duration"), (int, float)):
            timings["provider_generation_s"] = float(ready["duration"])
        return Result(
            request_id=request.request_id, provider=self.provider_id, model=request.model, image=image,
            media_type=info["media_type"], seed=ready.get("seed", request.seed), provider_task_id=ticket.task_id,
            cost=ticket.cost or request.estimated_cost, timings=timings,
            metadata={"endpoint": ticket.data.get("endpoint"), "polling_host": httpx.URL(ticket.polling_url or "").host,
                      "width": info["width"], "height": info["height"], "provider_prompt": ready.get("prompt"),
                      "input_mp": ticket.data.get("input_mp"), "output_mp": ticket.data.get("output_mp")},
            sandbox=info["sandbox"],
        )


def _put(body: dict[str, Any], **values: Any) -> None:
    body.update({k: v for k, v in values.items() if v is not None})
