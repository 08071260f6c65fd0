"""The fal.ai queue client (queue.fal.run).

Flow (notes/provider-apis.md §2): `POST {queue}/{model_id}` with `Authorization: Key` →
`{request_id, status_url, response_url, cancel_url}` (URLs on `owner/app` only; used
verbatim) → `on_accepted` → GET status_url (202 queued / in progress, 200 COMPLETED)
→ GET response_url → download `images[0].url` and check it decodes.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

from ..errors import GenerationFailed, Moderated, ProviderError, TaskNotFound
from ..records import Request, Result, Ticket
from ._hosted import HostedOptions, HostedProvider, data_uri, nearest_ratio, reported_seconds
from .base import OnAccepted

__all__ = ["FalOptions", "FalProvider"]

log = logging.getLogger("portrait_studio.providers.fal")

_KONTEXT_RATIOS = ["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]


class FalOptions(HostedOptions):
    base_url: str | None = "https://queue.fal.run"
    max_concurrency: int = 8


class FalProvider(HostedProvider):
    """fal.ai's queue API.

    Billing: `on_success`. docs.fal.ai "Pricing" (Model APIs): "You pay only for successful
    outputs, and you are never charged for server errors or time spent waiting in the
    queue"; the FAQ (fal.ai/docs/model-apis/faq, "Do you charge for failed requests?"):
    "Server errors (HTTP 500+) are never charged ... Client-side errors like invalid inputs
    (HTTP 422) may still be charged if a runner spent GPU time processing the request".
    So a delivered output is paid (an
    NSFW-blanked one too, and a result whose URL expired), a runner error or a cancelled
    request is not, and a content-policy refusal (422) is counted as paid: the budget never
    under-counts. fal returns no cost: `Ticket.cost` stays None (use the catalog price)."""

    provider_id: ClassVar[str] = "fal"
    key_env_var: ClassVar[str | None] = "FAL_KEY"
    billing = "on_success"
    Options: ClassVar[type[FalOptions]] = FalOptions  # type: ignore[assignment]
    default_base_url: ClassVar[str] = "https://queue.fal.run"

    def check(self, request: Request) -> None:
        super().check(request)
        if request.mode == "upscale":
            _upscale_scale(request)  # raises on a missing image or a scale out of range

    def arguments(self, request: Request) -> tuple[str, dict[str, Any]]:
        """(fal model id, input JSON) for `request`, by model family."""
        spec, route = self.route(request)
        family = spec.family
        refs = [i for i in request.images if i.role != "mask"]
        model_id: str = route.model_id
        if family == "upscale":
            return model_id, _upscale_body(request)
        body: dict[str, Any] = {"prompt": request.prompt, "seed": request.seed}
        size = {"width": request.width, "height": request.height} if request.width and request.height else None
        flux2 = family in ("flux2", "flux2-flex", "klein")
        fmt = request.output_format if (flux2 or request.output_format != "webp") else "png"
        tolerance = None
        if request.safety_tolerance is not None:
            tolerance = str(max(1, min(5 if flux2 else 6, request.safety_tolerance)))
        if family == "pro11":
            _put(body, image_size=size, safety_tolerance=tolerance, output_format=fmt)
        elif family == "ultra":
            body["aspect_ratio"] = request.aspect_ratio or nearest_ratio(request.width, request.height, _KONTEXT_RATIOS)
            _put(body, raw=request.raw, safety_tolerance=tolerance, output_format=fmt)
            if refs:
                body["image_url"] = data_uri(refs[0])
                _put(body, image_prompt_strength=request.reference_weight)
            if request.finetune_id:
                model_id = f"{route.model_id}-finetuned"
                body["finetune_id"] = request.finetune_id
                body["finetune_strength"] = request.finetune_strength if request.finetune_strength is not None else 1.2
        elif family in ("dev", "schnell"):
            _put(body, image_size=size, num_inference_steps=request.steps, output_format=fmt)
            if family == "dev":
                _put(body, guidance_scale=request.guidance)
                if refs:
                    model_id = route.edit_model_id or f"{route.model_id}/image-to-image"
                    body["image_url"] = data_uri(refs[0])
                    _put(body, strength=request.denoise)
        elif flux2:
            _put(body, image_size=size, output_format=fmt)
            if family != "klein":
                _put(body, safety_tolerance=tolerance)
            if family == "flux2-flex":
                _put(body, guidance_scale=request.guidance, num_inference_steps=request.steps)
            if family == "klein":
                _put(body, num_inference_steps=request.steps)
            if refs:
                model_id = route.edit_model_id or f"{route.model_id}/edit"
                body["image_urls"] = [data_uri(i) for i in refs]
        elif family == "kontext":
            if len(refs) > 1:
                model_id = route.edit_model_id or f"{route.model_id}/multi"
                body["image_urls"] = [data_uri(i) for i in refs]
            elif refs:
                body["image_url"] = data_uri(refs[0])
            else:
                model_id = f"{route.model_id}/text-to-image"
            if request.aspect_ratio or (request.width and request.height):
                body["aspect_ratio"] = nearest_ratio(request.width, request.height, _KONTEXT_RATIOS,
                                                     request.aspect_ratio)
            _put(body, guidance_scale=request.guidance, safety_tolerance=tolerance, output_format=fmt)
        elif family == "fill":
            init = next((i for i in refs if i.role in ("init", "edit")), refs[0] if refs else None)
            if init is None or request.mask is None:
                from ..errors import CapabilityError

                raise CapabilityError("fal's FLUX Fill needs an image and a mask", hint="add an init image and a mask")
            body["image_url"], body["mask_url"] = data_uri(init), data_uri(request.mask)
            _put(body, safety_tolerance=tolerance, output_format=fmt)
        if "prompt_upsampling" in request.options and family in ("pro11", "ultra", "kontext", "fill"):
            body["enhance_prompt"] = bool(request.options["prompt_upsampling"])
        for name in ("enable_safety_checker", "acceleration", "sync_mode"):
            if name in request.options:
                body[name] = request.options[name]
        return model_id, body

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Key {self._key.reveal()}", "accept": "application/json"}

    async def submit(self, request: Request, on_accepted: OnAccepted | None = None) -> Result:
        self.check(request)
        model_id, body = self.arguments(request)
        started = time.monotonic()
        response = await self.post_submission(f"{self.base_url}/{model_id}", json=body, headers=self._headers())
        if response.status_code != 200:
            raise self.http_error(response, during="submit")
        answer = response.json()
        ticket = Ticket(
            request_id=request.request_id, provider=self.provider_id, task_id=answer["request_id"],
            polling_url=answer["status_url"],
            data={"model_id": model_id, "response_url": answer["response_url"], "cancel_url": answer["cancel_url"]},
        )
        log.info("fal accepted %s (%s)", ticket.task_id, model_id)
        if on_accepted is not None:
            await on_accepted(ticket)
        return await self._finish(ticket, request, started, time.monotonic() - started)

    async def resume(self, ticket: Ticket, request: Request) -> Result:
        return await self._finish(ticket, request, time.monotonic(), 0.0, immediately=True)

    async def cancel(self, ticket: Ticket) -> None:
        """Ask fal to cancel a queued task (best effort)."""
        await self._client.put(self.resolve(ticket.data["cancel_url"]), headers=self._headers())

    async def _finish(self, ticket: Ticket, request: Request, started: float, submit_s: float, *,
                      immediately: bool = False) -> Result:
        try:
            return await self._finish_accepted(ticket, request, started, submit_s, immediately)
        except ProviderError as exc:
            raise self.settle(exc, ticket) from None
        except (ValueError, KeyError) as exc:  # an answer that is not the documented shape
            raise self.settle(self.unreadable(exc), ticket) from None

    async def _finish_accepted(self, ticket: Ticket, request: Request, started: float, submit_s: float,
                               immediately: bool) -> Result:
        assert ticket.polling_url
        status_url = self.resolve(ticket.polling_url)
        headers = self._headers()

        async def once() -> dict[str, Any] | None:
            response = await self.get_with_retries(status_url, headers=headers)
            if response.status_code == 404:
                raise TaskNotFound(f"fal does not know request {ticket.task_id}", provider=self.provider_id)
            if response.status_code not in (200, 202):
                raise self.http_error(response, during="status")
            status: dict[str, Any] = response.json()
            if status.get("status") == "COMPLETED":
                if status.get("error"):
                    self._raise_failure(ticket, str(status["error"]), str(status.get("error_type") or ""))
                return status
            if status.get("status") not in ("IN_QUEUE", "IN_PROGRESS"):
                raise GenerationFailed(f"fal answered an unknown status {status.get('status')!r}",
                                       provider=self.provider_id)
            return None

        await self.poll(request.model, ticket.accepted_at, once, what=f"fal request {ticket.task_id}",
                        immediately=immediately,  # inference time only: an estimate on the low side
                        reported=lambda st: reported_seconds((st.get("metrics") or {}).get("inference_time")))
        waited = time.monotonic()
        response = await self.get_with_retries(self.resolve(ticket.data["response_url"]), headers=headers,
                                               what="result")
        if response.status_code != 200:
            kind = response.headers.get("x-fal-error-type", "")
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            if "content_policy" in kind or "content_policy_violation" in str(detail):
                raise Moderated(f"fal refused request {ticket.task_id}: content policy", provider=self.provider_id,
                                stage="request", reasons=["content_policy_violation"])
            raise self.http_error(response, during="result")
        output = response.json()
        images = output.get("images") or ([output["image"]] if output.get("image") else [])  # esrgan: one `image`
        if not images:
            raise GenerationFailed(f"fal request {ticket.task_id} finished without images", provider=self.provider_id)
        if (output.get("has_nsfw_concepts") or [False])[0]:
            raise Moderated(f"fal flagged the output of request {ticket.task_id} as NSFW", provider=self.provider_id,
                            stage="content", reasons=["has_nsfw_concepts"])
        image, info = await self.download(images[0]["url"])
        done = time.monotonic()
        return Result(
            request_id=request.request_id, provider=self.provider_id, model=request.model, image=image,
            media_type=info["media_type"], seed=output.get("seed", request.seed), provider_task_id=ticket.task_id,
            cost=request.estimated_cost,
            timings={"submit_s": submit_s, "wait_s": waited - started - submit_s, "download_s": done - waited,
                     "total_s": done - started},
            metadata={"model_id": ticket.data.get("model_id"), "width": info["width"], "height": info["height"],
                      "provider_prompt": output.get("prompt"), "provider_timings": output.get("timings")},
            sandbox=self.sandbox or bool(info["sandbox_mark"]),
        )

    def _raise_failure(self, ticket: Ticket, error: str, kind: str) -> None:
        """A COMPLETED request with an error. Content-policy refusals may be billed (fal FAQ:
        a 422 "may still be charged" once a runner worked on it); runner errors and
        cancellations are not ("Server errors (HTTP 500+) are never charged")."""
        if "content_policy" in kind:
            raise Moderated(f"fal refused request {ticket.task_id}: {error}", provider=self.provider_id,
                            stage="request", reasons=[kind])
        failure = GenerationFailed(f"fal request {ticket.task_id} failed: {error}", provider=self.provider_id)
        failure.charged = False
        raise failure


def _put(body: dict[str, Any], **values: Any) -> None:
    body.update({k: v for k, v in values.items() if v is not None})


_UPSCALE_MAX = 8.0  # fal-ai/esrgan: scale 1–8


def _upscale_scale(request: Request) -> float:
    """The enlargement an upscale Request asks for: `options['scale']`, else target size / input size."""
    from ..errors import CapabilityError, UsageError

    inits = [i for i in request.images if i.role != "mask"]
    if len(inits) != 1:
        raise CapabilityError(f"a hosted upscale takes exactly one image, got {len(inits)}",
                              hint="pass the image to enlarge as the request's only image")
    scale = request.options.get("scale")
    if scale is None and request.width and request.height:
        from PIL import Image

        with Image.open(inits[0].path) as img:
            scale = max(request.width / img.width, request.height / img.height)
    scale = float(scale if scale is not None else 2.0)
    if not 1.0 <= scale <= _UPSCALE_MAX:
        raise UsageError(f"fal's ESRGAN enlarges 1× to {_UPSCALE_MAX:g}×, not {scale:g}×", field="scale",
                         hint="upscale in two passes, or pick a smaller target size")
    return round(scale, 4)


def _upscale_body(request: Request) -> dict[str, Any]:
    """fal-ai/esrgan's input (fal.ai/models/fal-ai/esrgan: image_url, scale 1–8 (default 2),
    tile, face, model (default RealESRGAN_x4plus)); no prompt or seed."""
    init = next(i for i in request.images if i.role != "mask")
    body: dict[str, Any] = {"image_url": data_uri(init), "scale": _upscale_scale(request)}
    for name in ("face", "tile", "model"):
        if name in request.options:
            body[name] = request.options[name]
    return body
