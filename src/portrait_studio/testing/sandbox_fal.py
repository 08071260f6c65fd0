"""The fal.ai queue sandbox (notes/provider-apis.md §2), served over https.

Contract: `Authorization: Key <key>`; `POST /{owner}/{app}[/{path}]` answers
`{request_id, response_url, status_url, cancel_url}`, whose URLs use only
`owner/app` (not the sub-path) and another host name; `GET …/requests/{id}/status`
answers 202 with IN_QUEUE (with `queue_position`) or IN_PROGRESS, then 200 with
COMPLETED (with `error`/`error_type` on failure); `GET …/requests/{id}` gives the
output `{images:[{url,width,height,content_type}], seed, has_nsfw_concepts, prompt,
timings}`; `PUT …/requests/{id}/cancel`. Errors are `{"detail": …}`; input errors are
422 with FastAPI-style detail lists (type `content_policy_violation` for moderated
requests).
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .sandbox import SandboxState, data_uri_image, delivery_response, dropped_connection
from .sandbox_images import render_task, size_for_aspect

__all__ = ["IMAGE_SIZES", "MODELS", "PRICES_USD", "build_app"]

IMAGE_SIZES = {
    "square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024), "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768), "landscape_16_9": (1024, 576),
}
_ASPECTS = ["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]
_TOL6 = ("enum", ["1", "2", "3", "4", "5", "6"])
_TOL5 = ("enum", ["1", "2", "3", "4", "5"])
_FMT = ("enum", ["jpeg", "png"])
_FMT3 = ("enum", ["jpeg", "png", "webp"])
_COMMON: dict[str, tuple[Any, ...]] = {
    "prompt": ("str",), "seed": ("int", 0, 2**32), "sync_mode": ("bool",), "num_images": ("int", 1, 4),
    "enable_safety_checker": ("bool",),
}
_PRO = {**_COMMON, "image_size": ("image_size",), "enhance_prompt": ("bool",), "output_format": _FMT,
        "safety_tolerance": _TOL6}
_ULTRA = {**_COMMON, "aspect_ratio": ("ratio",), "raw": ("bool",), "image_url": ("image",),
          "image_prompt_strength": ("float", 0, 1), "enhance_prompt": ("bool",), "output_format": _FMT,
          "safety_tolerance": _TOL6}
_DEV = {**_COMMON, "image_size": ("image_size",), "num_inference_steps": ("int", 1, 50),
        "guidance_scale": ("float", 1, 20), "acceleration": ("enum", ["none", "regular", "high"]),
        "output_format": _FMT}
_FLUX2 = {"prompt": ("str",), "seed": ("int", 0, 2**32), "sync_mode": ("bool",), "image_size": ("image_size",),
          "safety_tolerance": _TOL5, "enable_safety_checker": ("bool",), "output_format": _FMT3}
_FLEX = {**_FLUX2, "guidance_scale": ("float", 1.5, 10), "num_inference_steps": ("int", 2, 50)}
_KLEIN = {**_COMMON, "image_size": ("image_size",), "num_inference_steps": ("int", 1, 50), "output_format": _FMT3}
_KONTEXT = {**_COMMON, "image_url": ("image",), "aspect_ratio": ("enum", _ASPECTS),
            "guidance_scale": ("float", 1, 20), "enhance_prompt": ("bool",), "safety_tolerance": _TOL6,
            "output_format": _FMT}
_EDIT = {"image_urls": ("images",)}
_ESRGAN_MODELS = ["RealESRGAN_x4plus", "RealESRGAN_x2plus", "RealESRGAN_x4plus_anime_6B", "RealESRGAN_x4_v3",
                  "RealESRGAN_x4_wdn_v3", "RealESRGAN_x4_anime_v3"]
ESRGAN_USD_PER_MP = 0.002  # fal bills $0.00111 per compute second; per output MP here
_ESRGAN_MAX_PIXELS = 64_000_000

# model id -> (field specs, required fields)
MODELS: dict[str, tuple[dict[str, tuple[Any, ...]], set[str]]] = {
    "fal-ai/flux-pro/v1.1": (_PRO, {"prompt"}),
    "fal-ai/flux-pro/v1.1-ultra": (_ULTRA, {"prompt"}),
    "fal-ai/flux-pro/v1.1-ultra-finetuned": ({**_ULTRA, "finetune_id": ("str",),
                                              "finetune_strength": ("float", 0, 2)},
                                             {"prompt", "finetune_id", "finetune_strength"}),
    "fal-ai/flux/dev": (_DEV, {"prompt"}),
    "fal-ai/flux/dev/image-to-image": ({**_DEV, "image_url": ("image",), "strength": ("float", 0.01, 1)},
                                       {"prompt", "image_url"}),
    "fal-ai/flux/schnell": ({**_DEV, "num_inference_steps": ("int", 1, 12)}, {"prompt"}),
    "fal-ai/flux-2-pro": (_FLUX2, {"prompt"}),
    "fal-ai/flux-2-pro/edit": ({**_FLUX2, **_EDIT}, {"prompt", "image_urls"}),
    "fal-ai/flux-2-max": (_FLUX2, {"prompt"}),
    "fal-ai/flux-2-max/edit": ({**_FLUX2, **_EDIT}, {"prompt", "image_urls"}),
    "fal-ai/flux-2-flex": (_FLEX, {"prompt"}),
    "fal-ai/flux-2-flex/edit": ({**_FLEX, **_EDIT}, {"prompt", "image_urls"}),
    "fal-ai/flux-2/klein/4b": (_KLEIN, {"prompt"}),
    "fal-ai/flux-2/klein/4b/edit": ({**_KLEIN, **_EDIT}, {"prompt", "image_urls"}),
    "fal-ai/flux-2/klein/9b": (_KLEIN, {"prompt"}),
    "fal-ai/flux-2/klein/9b/edit": ({**_KLEIN, **_EDIT}, {"prompt", "image_urls"}),
    "fal-ai/flux-2": ({**_KLEIN, "guidance_scale": ("float", 0, 20)}, {"prompt"}),
    "fal-ai/flux-2/edit": ({**_KLEIN, "guidance_scale": ("float", 0, 20), **_EDIT}, {"prompt", "image_urls"}),
    "fal-ai/flux-pro/kontext": (_KONTEXT, {"prompt", "image_url"}),
    "fal-ai/flux-pro/kontext/max": (_KONTEXT, {"prompt", "image_url"}),
    "fal-ai/flux-pro/kontext/multi": ({**_KONTEXT, **_EDIT}, {"prompt", "image_urls"}),
    "fal-ai/flux-pro/kontext/max/multi": ({**_KONTEXT, **_EDIT}, {"prompt", "image_urls"}),
    "fal-ai/flux-pro/kontext/text-to-image": (_KONTEXT, {"prompt"}),
    "fal-ai/flux-pro/kontext/max/text-to-image": (_KONTEXT, {"prompt"}),
    # fal.ai/models/fal-ai/esrgan: image_url (required), scale 1–8 (default 2), tile, face, model
    "fal-ai/esrgan": ({"image_url": ("image",), "scale": ("float", 1, 8), "tile": ("int", 0, 4096),
                       "face": ("bool",), "model": ("enum", _ESRGAN_MODELS)}, {"image_url"}),
    "fal-ai/flux-pro/v1/fill": ({**_COMMON, "image_url": ("image",), "mask_url": ("image",),
                                 "enhance_prompt": ("bool",), "safety_tolerance": _TOL6, "output_format": _FMT},
                                {"prompt", "image_url", "mask_url"}),
}
CHARGED_OUTCOMES = ("ok", "moderate_content", "moderate_request", "lost")
PRICES_USD = {"fal-ai/flux-pro/v1.1-ultra": 0.06, "fal-ai/flux-pro/kontext/max": 0.08, "fal-ai/flux/schnell": 0.003}


def _err(loc: str, msg: str, kind: str, value: Any = None) -> dict[str, Any]:
    return {"loc": ["body", loc], "msg": msg, "type": kind, "input": value}


def _check(name: str, value: Any, spec: tuple[Any, ...]) -> dict[str, Any] | None:
    kind = spec[0]
    if kind == "str" and not isinstance(value, str):
        return _err(name, "Input should be a valid string", "string_type", value)
    if kind == "bool" and not isinstance(value, bool):
        return _err(name, "Input should be a valid boolean", "bool_type", value)
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == "int" and isinstance(value, float)):
            return _err(name, f"Input should be a valid {'integer' if kind == 'int' else 'number'}", f"{kind}_type", value)
        if value < spec[1]:
            return _err(name, f"Input should be greater than or equal to {spec[1]}", "greater_than_equal", value)
        if value > spec[2]:
            return _err(name, f"Input should be less than or equal to {spec[2]}", "less_than_equal", value)
    if kind == "enum" and value not in spec[1]:
        return _err(name, "Input should be " + ", ".join(repr(v) for v in spec[1]), "enum", value)
    if kind == "ratio":
        try:
            w, h = (int(p) for p in str(value).split(":"))
            ok = w > 0 and h > 0 and 9 / 21 - 1e-9 <= w / h <= 21 / 9 + 1e-9
        except ValueError:
            ok = False
        if not ok:
            return _err(name, "Aspect ratio must be between 21:9 and 9:21", "value_error", value)
    if kind == "image_size":
        if isinstance(value, str):
            if value not in IMAGE_SIZES and value != "auto":
                return _err(name, "Input should be " + ", ".join(repr(v) for v in IMAGE_SIZES), "enum", value)
        elif isinstance(value, dict) and set(value) == {"width", "height"}:
            for side in ("width", "height"):
                v = value[side]
                if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 14142:
                    return {"loc": ["body", name, side], "msg": "Input should be an integer between 1 and 14142",
                            "type": "value_error", "input": v}
        else:
            return _err(name, "Input should be an image size name or {width, height}", "model_type", value)
    if kind == "image" and (not isinstance(value, str) or data_uri_image(value) is None):
        return _err(name, "Could not read the image: give an https URL or a base64 data URI", "image_load_error")
    if kind == "images":
        if not isinstance(value, list) or not value:
            return _err(name, "Input should be a non-empty list of image URLs", "list_type")
        for item in value:
            if not isinstance(item, str) or data_uri_image(item) is None:
                return _err(name, "Could not read an image: give https URLs or base64 data URIs", "image_load_error")
    return None


def _size(model: str, body: dict[str, Any]) -> tuple[int, int]:
    if model == "fal-ai/esrgan":
        src = data_uri_image(body["image_url"])
        scale = float(body.get("scale", 2))
        assert src is not None  # validated
        return round(src.width * scale), round(src.height * scale)
    size = body.get("image_size")
    first = body.get("image_url") or (body.get("image_urls") or [None])[0]
    first_img = data_uri_image(first) if isinstance(first, str) else None
    if isinstance(size, dict):
        return size["width"], size["height"]
    if isinstance(size, str) and size in IMAGE_SIZES:
        return IMAGE_SIZES[size]
    if "aspect_ratio" in body:
        return size_for_aspect(body["aspect_ratio"], 4.0 if "ultra" in model else 1.0, 32)
    if first_img is not None:
        return first_img.width, first_img.height
    return (1024, 1024) if ("kontext" in model or "flux-2" in model) else IMAGE_SIZES["landscape_4_3"]


def build_app(
    *, key: str = "sandbox-key", latency: float = 0.2, credits: float = 1000.0, result_ttl: float = 3600.0,
    max_active: int = 1000, public_host: str = "localhost", queue_fraction: float = 0.3,
    state_dir: str | os.PathLike[str] | None = None,
) -> tuple[Starlette, SandboxState]:
    """`credits` are US dollars of balance here (fal bills in dollars).

    fal bills a request when its runner has done the work (`FalProvider.billing`): delivered
    outputs (NSFW-blanked ones too) and content-policy refusals (a 422 that "may still be
    charged", counted so the budget never under-counts) are paid; runner errors (5xx, "never
    charged") and cancelled requests are not; a forgotten request counts as paid."""
    state = SandboxState(provider="fal", billing="on_success", charged_outcomes=CHARGED_OUTCOMES, key=key,
                         latency=latency, credits=credits, result_ttl=result_ttl, max_active=max_active,
                         public_host=public_host, state_dir=state_dir)
    state.renderer = lambda task: render_task(task, blank=task.outcome == "moderate_content")  # NSFW: a black frame

    def authorised(request: HttpRequest) -> Response | None:
        auth = request.headers.get("authorization", "")
        if auth != f"Key {state.key}":
            return JSONResponse({"detail": "Invalid or missing credentials"}, status_code=401,
                                headers={"x-fal-error-type": "authentication_error"} if auth else {})
        return None

    def urls(owner: str, app: str, request_id: str) -> dict[str, str]:
        base = f"{state.public_base()}/{owner}/{app}/requests/{request_id}"
        return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}

    async def dispatch(request: HttpRequest) -> Response:
        parts = [p for p in request.url.path.split("/") if p]
        if len(parts) >= 4 and parts[2] == "requests":
            if (denied := authorised(request)) is not None:
                return denied
            return await queue_call(request, parts)
        if request.method == "GET" and parts[:1] == ["files"]:
            return await download(request, parts)
        if request.method != "POST":
            return JSONResponse({"detail": "Method Not Allowed"}, status_code=405)
        return await submit(request, "/".join(parts))

    async def submit(request: HttpRequest, model: str) -> Response:
        if model not in MODELS:
            return JSONResponse({"detail": f"Application '{model}' not found"}, status_code=404)
        if (denied := authorised(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": [_err("body", "JSON decode error", "json_invalid")]}, status_code=422)
        state.record(request, body)
        if state.take("drop_submit_early"):
            return dropped_connection()
        if state.take("rate_limit"):
            state.reject(429)
            return JSONResponse({"detail": "Too many requests"}, status_code=429, headers={"retry-after": "1"})
        if state.take("unavailable"):
            state.reject(503)
            return JSONResponse({"detail": "Service unavailable"}, status_code=503)
        if state.take("server_error"):
            state.reject(500)
            return JSONResponse({"detail": "Internal server error"}, status_code=500)
        specs, required = MODELS[model]
        errors: list[dict[str, Any]] = []
        if not isinstance(body, dict):
            errors.append(_err("body", "Input should be a valid dictionary", "dict_type"))
        else:
            errors += [_err(f, "Field required", "missing") for f in sorted(required) if f not in body]
            for name, value in body.items():
                if name in specs:
                    if (problem := _check(name, value, specs[name])) is not None:
                        errors.append(problem)
                else:
                    state.note_unknown([name])
        if errors:
            state.reject(422)
            return JSONResponse({"detail": errors}, status_code=422)
        width, height = _size(model, body)
        if model == "fal-ai/esrgan" and width * height > _ESRGAN_MAX_PIXELS:
            state.reject(422)
            return JSONResponse({"detail": [_err("scale", "The output would exceed 64 megapixels", "value_error",
                                                 body.get("scale"))]}, status_code=422)
        cost = PRICES_USD.get(model, 0.04)
        if model == "fal-ai/esrgan":
            cost = round(ESRGAN_USD_PER_MP * width * height / 1e6, 6)
        if state.credits < cost:
            state.reject(403)
            return JSONResponse({"detail": "User is locked. Reason: Exhausted balance. Top up your balance at "
                                 "fal.ai/dashboard/billing."}, status_code=403)
        fmt = body.get("output_format") or ("png" if "klein" in model or model in ("fal-ai/flux-2", "fal-ai/esrgan")
                                            else "jpeg")
        task = state.new_task(model=model, body=body, cost=cost, width=width, height=height, seed=body.get("seed"),
                              prompt=body.get("prompt", ""), output_format=fmt)
        owner, app = model.split("/")[:2]
        task.urls.update(urls(owner, app, task.id))
        state.accept(task)
        if state.take("drop_submit"):
            return dropped_connection()
        return JSONResponse({"request_id": task.id, **urls(owner, app, task.id), "status": "IN_QUEUE",
                             "queue_position": 0, "gateway_request_id": task.id})

    async def queue_call(request: HttpRequest, parts: list[str]) -> Response:
        owner, app, _, request_id, *rest = parts
        task = state.tasks.get(request_id)
        if task is None or task.outcome == "lost" or task.model.split("/")[:2] != [owner, app]:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        now = time.time()
        if rest == ["cancel"] and request.method == "PUT":
            if task.done(now):
                return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
            state.cancel(task)
            return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)
        if request.method != "GET":
            return JSONResponse({"detail": "Method Not Allowed"}, status_code=405)
        state.count("polls")
        if state.take("drop_poll"):
            return dropped_connection()
        if state.take("poll_error"):
            return Response("<html><body>502 Bad Gateway</body><hr><center>nginx</center></html>", status_code=502)
        logs = [{"message": "sandbox: generating", "level": "INFO", "source": "user",
                 "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}] if request.query_params.get("logs") == "1" else None
        if rest == ["status"]:
            if not task.done(now):
                elapsed = (now - task.created) / max(task.duration, 1e-6)
                if elapsed < queue_fraction:
                    return JSONResponse({"status": "IN_QUEUE", "queue_position": 0,
                                         "response_url": urls(owner, app, task.id)["response_url"]}, status_code=202)
                return JSONResponse({"status": "IN_PROGRESS", "logs": logs,
                                     "response_url": urls(owner, app, task.id)["response_url"]}, status_code=202)
            reply: dict[str, Any] = {"status": "COMPLETED", "logs": logs,
                                     "metrics": {"inference_time": round(task.duration, 3)},
                                     "response_url": urls(owner, app, task.id)["response_url"]}
            if task.outcome in ("fail", "moderate_request", "canceled"):
                reply["error"], reply["error_type"] = _failure(task.outcome)
            return JSONResponse(reply)
        if not task.done(now):
            return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
        if task.outcome == "moderate_request":
            return JSONResponse({"detail": [{"loc": ["body", "prompt"], "msg": "The content could not be processed "
                                 "because it was flagged by a content checker.", "type": "content_policy_violation",
                                 "input": task.prompt}]}, status_code=422,
                                headers={"x-fal-error-type": "content_policy_violation"})
        if task.outcome in ("fail", "canceled"):
            msg, kind = _failure(task.outcome)
            return JSONResponse({"detail": msg}, status_code=500 if kind == "runner_error" else 400,
                                headers={"x-fal-error-type": kind})
        n = int(task.body.get("num_images", 1))
        flagged = task.outcome == "moderate_content"
        image = {"url": f"{state.signed_url(task, '/files')}", "width": task.width, "height": task.height,
                 "content_type": f"image/{task.output_format}"}
        if task.body.get("sync_mode"):
            data = await state.image(task)
            image["url"] = f"data:image/{task.output_format};base64," + base64.b64encode(data).decode()
        if task.model == "fal-ai/esrgan":  # an upscaler answers with one `image`
            return JSONResponse({"image": image})
        return JSONResponse({"images": [image] * n, "seed": task.seed, "has_nsfw_concepts": [flagged] * n,
                             "prompt": task.prompt, "timings": {"inference": round(task.duration, 3)}})

    async def download(request: HttpRequest, parts: list[str]) -> Response:
        task = state.tasks.get(parts[1]) if len(parts) >= 3 else None
        if task is None:
            return JSONResponse({"detail": "Not found"}, status_code=404)
        q = request.query_params
        if (reason := state.check_signature(task.id, q.get("se", "0"), q.get("sig", ""))) is not None:
            return JSONResponse({"detail": reason}, status_code=403)
        state.count("downloads")
        data = await state.image(task)
        return delivery_response(task, data, state)

    app = Starlette(routes=[Route("/{path:path}", dispatch, methods=["GET", "POST", "PUT"])])
    return app, state


def _failure(outcome: str) -> tuple[str, str]:
    return {
        "fail": ("Sandbox: the runner failed on purpose", "runner_error"),
        "moderate_request": ("The content could not be processed because it was flagged by a content checker.",
                             "content_policy_violation"),
        "canceled": ("Request was cancelled", "request_cancelled"),
    }[outcome]


