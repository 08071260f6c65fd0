"""The Replicate predictions client (api.replicate.com) for the official BFL models.

Flow (notes/provider-apis.md §3): `POST /v1/models/{owner}/{name}/predictions` with
`{"input": …}`, `Authorization: Bearer` and `Prefer: wait=N` → a prediction →
`on_accepted` → GET `urls.get` until succeeded | failed | canceled → download the
output URL and check it decodes. Errors are RFC 7807 problem documents.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

from pydantic import Field

from ..errors import GenerationFailed, Moderated, ProviderError, TaskNotFound
from ..records import Request, Result, Ticket
from ._hosted import HostedOptions, HostedProvider, data_uri, nearest_ratio, reported_seconds
from .base import OnAccepted

__all__ = ["ReplicateOptions", "ReplicateProvider"]

log = logging.getLogger("portrait_studio.providers.replicate")

_RATIOS = ["1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3"]
_ULTRA_RATIOS = ["21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16", "9:21"]
_TERMINAL = ("succeeded", "failed", "canceled")


class ReplicateOptions(HostedOptions):
    wait_s: int | None = Field(default=60, ge=1, le=60, description="Prefer: wait=N on create; None to poll only")
    max_concurrency: int = 8


class ReplicateProvider(HostedProvider):
    """Replicate's predictions API.

    Billing: `on_success`. The official FLUX models are "charged by output ... for each
    image it generates" instead of by run time (replicate.com changelog 2025-01-29,
    "Official models"; the model pages' pricing sections): a succeeded prediction is paid, a
    failed one (also "flagged as sensitive", E005) or a canceled one produces no image and
    is not. Models billed by time (community models such as nightmareai/real-esrgan, "you
    only pay for the time it's active", replicate.com/docs/billing) also pay for failures:
    `_bills_failures`. A prediction the API forgets is counted as paid (documents silent).
    Replicate returns no cost: `Ticket.cost` stays None (use the catalog price)."""

    provider_id: ClassVar[str] = "replicate"
    key_env_var: ClassVar[str | None] = "REPLICATE_API_TOKEN"
    billing = "on_success"
    Options: ClassVar[type[ReplicateOptions]] = ReplicateOptions  # type: ignore[assignment]
    options: ReplicateOptions
    default_base_url: ClassVar[str] = "https://api.replicate.com"

    def arguments(self, request: Request) -> tuple[str, dict[str, Any]]:
        """(owner/name, input JSON) for `request`, by model family."""
        spec, route = self.route(request)
        family = spec.family
        refs = [i for i in request.images if i.role != "mask"]
        body: dict[str, Any] = {"prompt": request.prompt, "seed": request.seed}
        fmt = {"jpeg": "jpg"}.get(request.output_format, request.output_format)
        flux2 = family in ("flux2", "flux2-flex", "klein")
        if fmt == "webp" and family in ("ultra", "kontext", "fill"):
            fmt = "png"
        body["output_format"] = fmt
        if request.safety_tolerance is not None:
            low = 0 if family == "kontext" else 1
            body["safety_tolerance"] = max(low, min(5 if flux2 else 6, request.safety_tolerance))
        if family == "pro11":
            if request.width and request.height:
                body.update(aspect_ratio="custom", width=request.width, height=request.height)
            elif request.aspect_ratio:
                body["aspect_ratio"] = nearest_ratio(None, None, _RATIOS, request.aspect_ratio)
            if refs:
                body["image_prompt"] = data_uri(refs[0])
        elif family == "ultra":
            body["aspect_ratio"] = nearest_ratio(request.width, request.height, _ULTRA_RATIOS, request.aspect_ratio)
            body["raw"] = request.raw
            if refs:
                body["image_prompt"] = data_uri(refs[0])
                _put(body, image_prompt_strength=request.reference_weight)
        elif family in ("dev", "schnell"):
            body["aspect_ratio"] = nearest_ratio(request.width, request.height, _RATIOS, request.aspect_ratio)
            body["num_outputs"] = 1
            steps = request.steps if family == "dev" or request.steps is None else min(4, request.steps)
            _put(body, num_inference_steps=steps)
            if family == "dev":
                _put(body, guidance=request.guidance)
                if refs:
                    body["image"] = data_uri(refs[0])
                    _put(body, prompt_strength=request.denoise)
            body.pop("safety_tolerance", None)
        elif flux2:
            if refs:
                body["input_images"] = [data_uri(i) for i in refs]
            if request.width and request.height:
                body.update(aspect_ratio="custom", width=request.width, height=request.height)
            else:
                body["aspect_ratio"] = "match_input_image" if refs else nearest_ratio(
                    None, None, _RATIOS, request.aspect_ratio)
            if family == "flux2-flex":
                _put(body, steps=request.steps, guidance=request.guidance)
        elif family == "kontext":
            if refs:
                body["input_image"] = data_uri(refs[0])
            body["aspect_ratio"] = (nearest_ratio(request.width, request.height, _ULTRA_RATIOS, request.aspect_ratio)
                                    if request.aspect_ratio or not refs else "match_input_image")
        elif family == "fill":
            init = next((i for i in refs if i.role in ("init", "edit")), refs[0] if refs else None)
            if init is None:
                from ..errors import CapabilityError

                raise CapabilityError("FLUX Fill needs an image to inpaint", hint="add an init image")
            body["image"] = data_uri(init)
            if request.mask is not None:
                body["mask"] = data_uri(request.mask)
            _put(body, steps=request.steps, guidance=request.guidance)
        if "prompt_upsampling" in request.options and family in ("pro11", "kontext", "fill"):
            body["prompt_upsampling"] = bool(request.options["prompt_upsampling"])
        return route.model_id, body

    def check(self, request: Request) -> None:
        super().check(request)
        spec = self.spec(request.model)
        refs = [i for i in request.images if i.role != "mask"]
        if spec.family in ("kontext", "dev", "ultra", "pro11", "fill") and len(refs) > 1:
            from ..errors import CapabilityError

            raise CapabilityError(
                f"{spec.name} on Replicate takes one input image, got {len(refs)}",
                hint="use --provider bfl or fal for several reference images, or drop the extra ones")

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._key.reveal()}", "accept": "application/json"}

    async def submit(self, request: Request, on_accepted: OnAccepted | None = None) -> Result:
        self.check(request)
        model_id, body = self.arguments(request)
        headers = self._headers()
        if self.options.wait_s:
            headers["prefer"] = f"wait={self.options.wait_s}"
        started = time.monotonic()
        response = await self.post_submission(f"{self.base_url}/v1/models/{model_id}/predictions",
                                              json={"input": body}, headers=headers)
        if response.status_code not in (200, 201):
            raise self.http_error(response, during="create")
        prediction = response.json()
        ticket = Ticket(request_id=request.request_id, provider=self.provider_id, task_id=prediction["id"],
                        polling_url=prediction["urls"]["get"],
                        data={"model_id": model_id, "cancel_url": prediction["urls"].get("cancel")})
        log.info("replicate accepted %s (%s)", ticket.task_id, model_id)
        if on_accepted is not None:
            await on_accepted(ticket)
        return await self._finish(ticket, request, started, time.monotonic() - started, prediction)

    async def resume(self, ticket: Ticket, request: Request) -> Result:
        return await self._finish(ticket, request, time.monotonic(), 0.0, None)

    async def cancel(self, ticket: Ticket) -> None:
        await self._client.post(self.resolve(ticket.data["cancel_url"]), headers=self._headers())

    async def _finish(self, ticket: Ticket, request: Request, started: float, submit_s: float,
                      prediction: dict[str, Any] | None) -> Result:
        try:
            return await self._finish_accepted(ticket, request, started, submit_s, prediction)
        except ProviderError as exc:
            raise self.settle(exc, ticket) from None
        except (ValueError, KeyError) as exc:  # an answer that is not the documented shape
            raise self.settle(self.unreadable(exc), ticket) from None

    async def _finish_accepted(self, ticket: Ticket, request: Request, started: float, submit_s: float,
                               prediction: dict[str, Any] | None) -> Result:
        assert ticket.polling_url
        poll_url = self.resolve(ticket.polling_url)
        headers = self._headers()

        async def once() -> dict[str, Any] | None:
            response = await self.get_with_retries(poll_url, headers=headers)
            if response.status_code == 404:
                raise TaskNotFound(f"Replicate does not know prediction {ticket.task_id}", provider=self.provider_id)
            if response.status_code != 200:
                raise self.http_error(response, during="poll")
            polled: dict[str, Any] = response.json()
            return polled if polled.get("status") in _TERMINAL else None

        if prediction is None or prediction.get("status") not in _TERMINAL:
            prediction = await self.poll(request.model, ticket.accepted_at, once,
                                         what=f"prediction {ticket.task_id}", immediately=prediction is None,
                                         reported=_created_to_completed)
        status = prediction["status"]
        if status in ("failed", "canceled"):
            raise self._failure(ticket, prediction)
        output = prediction.get("output")
        url = output[0] if isinstance(output, list) and output else output
        if not isinstance(url, str):
            raise GenerationFailed(f"prediction {ticket.task_id} succeeded without an output URL",
                                   provider=self.provider_id)
        waited = time.monotonic()
        image, info = await self.download(url)
        done = time.monotonic()
        return Result(
            request_id=request.request_id, provider=self.provider_id, model=request.model, image=image,
            media_type=info["media_type"], seed=request.seed, provider_task_id=ticket.task_id,
            cost=request.estimated_cost,
            timings={"submit_s": submit_s, "wait_s": waited - started - submit_s, "download_s": done - waited,
                     "total_s": done - started,
                     **({"provider_predict_s": prediction["metrics"]["predict_time"]}
                        if (prediction.get("metrics") or {}).get("predict_time") is not None else {})},
            metadata={"model_id": ticket.data.get("model_id"), "width": info["width"], "height": info["height"],
                      "version": prediction.get("version")},
            sandbox=self.sandbox or bool(info["sandbox_mark"]),
        )

    def _failure(self, ticket: Ticket, prediction: dict[str, Any]) -> ProviderError:
        """A failed or canceled prediction: no output, so an output-priced model charges nothing."""
        failure: ProviderError
        if prediction["status"] == "canceled":
            failure = GenerationFailed(f"Replicate prediction {ticket.task_id} was canceled",
                                       provider=self.provider_id)
        else:
            error = str(prediction.get("error") or "no error message")
            if "E005" in error or "flagged as sensitive" in error.lower() or "nsfw" in error.lower():
                failure = Moderated(f"Replicate flagged prediction {ticket.task_id}: {error}",
                                    provider=self.provider_id, stage="content", reasons=[error])
            else:
                failure = GenerationFailed(f"Replicate prediction {ticket.task_id} failed: {error}",
                                           provider=self.provider_id)
        failure.charged = self._bills_failures(ticket)
        return failure

    def _bills_failures(self, ticket: Ticket) -> bool:
        """Official models (black-forest-labs/*) are priced per output; other models bill the
        time they ran, so a failure after it started is paid."""
        return not str(ticket.data.get("model_id", "")).startswith("black-forest-labs/")


def _put(body: dict[str, Any], **values: Any) -> None:
    body.update({k: v for k, v in values.items() if v is not None})


def _created_to_completed(prediction: dict[str, Any]) -> float | None:
    """Seconds from `created_at` to `completed_at` (the whole wait, queue included)."""
    import datetime

    try:
        created = datetime.datetime.fromisoformat(str(prediction["created_at"]).replace("Z", "+00:00"))
        completed = datetime.datetime.fromisoformat(str(prediction["completed_at"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        return None
    return reported_seconds((completed - created).total_seconds())
