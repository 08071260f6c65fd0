"""The BFL API sandbox: validated against BFL's own OpenAPI document.

Contract (notes/provider-apis.md §1): `x-key` auth (403 otherwise); `POST /v1/<model>`
validated against the OpenAPI schema (422 FastAPI detail list); 402 when credits run
out; 429 beyond 24 active tasks (6 for flux-kontext-max); the answer carries `id`,
`polling_url` (on another host name *and* path, so clients must follow it verbatim),
`cost`, `input_mp`, `output_mp`; `GET polling_url` moves Pending → Ready | Error |
Request Moderated | Content Moderated, or "Task not found"; `result.sample` is a
signed URL that expires after `result_ttl` seconds.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import time
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .openapi import request_schema, validate
from .sandbox import (
    SandboxState,
    Task,
    delivery_response,
    dropped_connection,
)
from .sandbox_images import size_for_aspect

__all__ = ["PRICES", "build_app", "price"]

# credits per image (1 credit = $0.01); FLUX.2 is priced per megapixel: (first MP, each further MP)
PRICES: dict[str, float] = {
    "flux-pro-1.1": 4, "flux-pro-1.1-ultra": 6, "flux-pro-1.1-ultra-finetuned": 7, "flux-dev": 2.5,
    "flux-kontext-pro": 4, "flux-kontext-max": 8, "flux-pro-1.0-fill": 5, "flux-pro-1.0-fill-finetuned": 6,
    "flux-pro-1.0-expand": 5,
}
MP_PRICES: dict[str, tuple[float, float]] = {
    "flux-2-klein-4b": (1.4, 0.1), "flux-2-klein-9b": (1.5, 0.2), "flux-2-klein-9b-preview": (1.5, 0.2),
    "flux-2-pro": (3, 1.5), "flux-2-pro-preview": (3, 1.5), "flux-2-max": (7, 3), "flux-2-flex": (5, 5),
}
_FINETUNE_HOST_ONLY = {"flux-pro-1.1-ultra-finetuned", "flux-pro-1.0-fill-finetuned"}
_NOT_AUTHENTICATED = {"detail": "Not authenticated - Invalid Authentication"}


def price(model: str, input_mp: float, output_mp: float) -> float:
    """The credits BFL charges for one image of `model` (DP pricing page)."""
    if model in MP_PRICES:
        first, each = MP_PRICES[model]
        return round(first + max(0.0, output_mp - 1) * each + input_mp * each, 2)
    return PRICES.get(model, 5)


def _ratio(text: str) -> float | None:
    try:
        w, h = (int(p) for p in text.split(":"))
        return w / h if w > 0 and h > 0 else None
    except ValueError:
        return None


def _decode_image(value: str) -> Image.Image | None:
    if value.startswith(("http://", "https://")):
        return Image.new("RGB", (1024, 1024))  # the sandbox does not fetch URLs
    try:
        img = Image.open(io.BytesIO(base64.b64decode(value, validate=True)))
        img.load()
        return img
    except (binascii.Error, ValueError, OSError):
        return None


def _error(loc: list[str | int], msg: str, kind: str = "value_error") -> list[dict[str, Any]]:
    return [{"loc": ["body", *loc], "msg": msg, "type": kind}]


def _plan(model: str, body: dict[str, Any], ultra_mp: float) -> tuple[list[dict[str, Any]], int, int, float]:
    """Check what the schema cannot express; return (errors, width, height, input megapixels)."""
    images: dict[str, Image.Image] = {}
    for name, value in body.items():
        if (name.startswith(("input_image", "image")) or name == "mask") and isinstance(value, str) and value:
            img = _decode_image(value)
            if img is None:
                return _error([name], "Invalid image: could not decode base64 image data"), 0, 0, 0.0
            images[name] = img
    input_mp = round(sum(i.width * i.height for n, i in images.items() if n != "mask") / 1e6, 2)
    first = next((images[n] for n in ("input_image", "image") if n in images), None)
    width, height = int(body.get("width") or 0), int(body.get("height") or 0)
    if model.startswith("flux-pro-1.1-ultra"):
        ar = body.get("aspect_ratio", "16:9")
        r = _ratio(ar)
        if r is None or not (9 / 21 - 1e-9 <= r <= 21 / 9 + 1e-9):
            return _error(["aspect_ratio"], "Aspect ratio must be between 21:9 and 9:21"), 0, 0, 0.0
        width, height = size_for_aspect(ar, ultra_mp, 32)
    elif model.startswith("flux-kontext"):
        ar = body.get("aspect_ratio")
        if ar:
            r = _ratio(ar)
            if r is None or not (9 / 21 - 1e-9 <= r <= 21 / 9 + 1e-9):
                return _error(["aspect_ratio"], "Aspect ratio must be between 21:9 and 9:21"), 0, 0, 0.0
            width, height = size_for_aspect(ar, 1.0, 16)
        elif first is not None:
            width, height = size_for_aspect(f"{first.width}:{first.height}", 1.0, 16)
        else:
            width, height = 1024, 1024
    elif model.startswith("flux-2"):
        if not width or not height:
            width, height = (first.width, first.height) if first is not None else (1024, 1024)
        width, height = width // 16 * 16, height // 16 * 16
        if width * height > 4_194_304:
            return _error(["width"], "Output image exceeds 4 megapixels (width * height <= 4194304)"), 0, 0, 0.0
    elif model.startswith(("flux-pro-1.0-fill", "flux-pro-1.0-expand")):
        assert first is not None  # required by the schema
        width, height = first.width, first.height
        mask = images.get("mask")
        if mask is not None and mask.size != first.size:
            return _error(["mask"], "Mask dimensions must match the image dimensions"), 0, 0, 0.0
        if model == "flux-pro-1.0-expand":
            width += int(body.get("left") or 0) + int(body.get("right") or 0)
            height += int(body.get("top") or 0) + int(body.get("bottom") or 0)
    else:
        width, height = width or 1024, height or 768
    return [], width, height, input_mp


def build_app(
    *, key: str = "sandbox-key", latency: float = 0.2, credits: float = 1000.0, result_ttl: float = 600.0,
    max_active: int = 24, kontext_max_active: int = 6, public_host: str = "localhost",
    ultra_megapixels: float = 4.0, state_dir: str | os.PathLike[str] | None = None,
) -> tuple[Starlette, SandboxState]:
    """BFL bills on acceptance: the `cost` returned at submit is charged whatever happens next
    (moderated, failed, lost and expired tasks stay paid)."""
    state = SandboxState(provider="bfl", billing="on_accept", key=key, latency=latency, credits=credits,
                         result_ttl=result_ttl, max_active=max_active,
                         group_limits={"flux-kontext-max": kontext_max_active}, public_host=public_host,
                         state_dir=state_dir)

    def authorised(request: HttpRequest) -> Response | None:
        given = request.headers.get("x-key")
        if given is None:
            return JSONResponse({"detail": "Not authenticated"}, status_code=403)
        if given != state.key:
            return JSONResponse(_NOT_AUTHENTICATED, status_code=403)
        return None

    async def submit(request: HttpRequest) -> Response:
        model = request.path_params["model"]
        schema = request_schema(f"/v1/{model}")
        if schema is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        if (denied := authorised(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": _error([0], "JSON decode error", "json_invalid")}, status_code=422)
        state.record(request, body)
        if state.take("drop_submit_early"):
            return dropped_connection()
        if state.take("rate_limit") or state.limit_hit(model):
            state.reject(429)
            limit = state.group_limits.get(model, state.max_active)
            return JSONResponse({"detail": f"You have reached the limit of {limit} active tasks. "
                                 "Wait for a task to finish before submitting another."}, status_code=429)
        if state.take("unavailable"):
            state.reject(503)
            return JSONResponse({"detail": "Service temporarily unavailable"}, status_code=503)
        if state.take("server_error"):
            state.reject(500)
            return JSONResponse({"detail": "Internal Server Error"}, status_code=500)
        errors = validate(body, schema) if isinstance(body, dict) else _error([], "Input should be a valid dictionary")
        if not errors:
            props = set(schema_properties(schema))
            state.note_unknown(k for k in body if k not in props)
            errors, width, height, input_mp = _plan(model, body, ultra_megapixels)
        if errors:
            state.reject(422)
            return JSONResponse({"detail": errors}, status_code=422)
        output_mp = round(width * height / 1e6, 2)
        cost = price(model, input_mp, output_mp)
        if state.credits < cost:
            state.reject(402)
            return JSONResponse({"detail": "Insufficient credits"}, status_code=402)
        task = state.new_task(model=model, body=body, cost=cost, width=width, height=height, seed=body.get("seed"),
                              prompt=body.get("prompt") or "", output_format=body.get("output_format") or
                              ("png" if model.startswith("flux-kontext") else "jpeg"), group=model)
        polling_url = f"{state.public_base()}/poll/v1/get_result?id={task.id}"
        task.urls["polling_url"] = polling_url
        state.accept(task)
        if state.take("drop_submit"):
            return dropped_connection()
        return JSONResponse({"id": task.id, "polling_url": polling_url, "cost": cost,
                             "input_mp": input_mp, "output_mp": output_mp})

    async def get_result(request: HttpRequest) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        task_id = request.query_params.get("id")
        if task_id is None:
            return JSONResponse({"detail": _error_q("id")}, status_code=422)
        state.count("polls")
        if state.take("drop_poll"):
            return dropped_connection()
        if state.take("poll_error"):
            return PlainTextResponse("502 Bad Gateway", status_code=502)
        task = state.tasks.get(task_id)
        if task is None or task.outcome == "lost":
            return JSONResponse({"id": task_id, "status": "Task not found", "result": None, "progress": None,
                                 "details": None, "preview": None})
        now = time.time()
        reply: dict[str, Any] = {"id": task.id, "result": None, "progress": None, "details": None, "preview": None}
        if task.outcome == "moderate_request":
            reply.update(status="Request Moderated",
                         details={"Moderation Reasons": ["Sandbox: request flagged on purpose"]})
        elif not task.done(now):
            reply.update(status="Pending", progress=round(min(0.99, (now - task.created) / max(task.duration, 1e-6)), 2))
        elif task.outcome == "moderate_content":
            reply.update(status="Content Moderated",
                         details={"Moderation Reasons": ["Sandbox: output flagged on purpose"]})
        elif task.outcome == "fail":
            reply.update(status="Error", details={"error": "Sandbox: the generation failed on purpose"})
        else:
            reply.update(status="Ready", progress=1.0, result={
                "sample": state.signed_url(task, "/delivery"), "prompt": task.prompt, "seed": task.seed,
                "start_time": task.created, "end_time": task.ready_at, "duration": round(task.duration, 3)})
        return JSONResponse(reply)

    async def delivery(request: HttpRequest) -> Response:
        task = state.tasks.get(request.path_params["task_id"])
        q = request.query_params
        if task is None:
            return PlainTextResponse("BlobNotFound", status_code=404)
        reason = state.check_signature(task.id, q.get("se", "0"), q.get("sig", ""))
        if reason:
            return Response(f"<Error><Code>AuthenticationFailed</Code><Message>{reason}</Message></Error>",
                            status_code=403, media_type="application/xml")
        state.count("downloads")
        return delivery_response(task, await state.image(task), state)

    async def credits_endpoint(request: HttpRequest) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        return JSONResponse({"credits": round(state.credits, 2)})

    app = Starlette(routes=[
        Route("/v1/credits", credits_endpoint, methods=["GET"]),
        Route("/v1/get_result", get_result, methods=["GET"]),
        Route("/poll/v1/get_result", get_result, methods=["GET"]),
        Route("/delivery/{task_id}/{name}", delivery, methods=["GET"]),
        Route("/v1/{model}", submit, methods=["POST"]),
    ])
    return app, state


def schema_properties(schema: dict[str, Any]) -> dict[str, Any]:
    from .openapi import _resolve

    return _resolve(schema).get("properties", {})


def _error_q(name: str) -> list[dict[str, Any]]:
    return [{"loc": ["query", name], "msg": "Field required", "type": "missing"}]


def task_of(state: SandboxState, task_id: str) -> Task | None:
    return state.tasks.get(task_id)
