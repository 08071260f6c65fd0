"""The Replicate predictions sandbox (notes/provider-apis.md §3).

Contract: `Authorization: Bearer <token>`; `POST /v1/models/{owner}/{name}/predictions`
with `{"input": {…}}` answers 201 with a prediction; `Prefer: wait[=N]` holds the
answer until the prediction finishes or N seconds pass; `GET /v1/predictions/{id}`;
`POST /v1/predictions/{id}/cancel`. Lifecycle starting → processing → succeeded |
failed | canceled. Predictions carry `id, model, version ("hidden"), input, output,
logs, error, status, created_at, started_at, completed_at, data_removed, metrics, urls`.
Errors are RFC 7807 problem documents `{type, title, status, detail, instance}`;
input errors are 422 with `invalid_fields`.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .sandbox import (
    SandboxState,
    Task,
    data_uri_image,
    delivery_response,
    dropped_connection,
)
from .sandbox_images import size_for_aspect

__all__ = ["MODELS", "build_app"]

_AR = ["1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3"]
_ULTRA_AR = ["21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16", "9:21"]
_KONTEXT_AR = ["match_input_image", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4", "21:9",
               "9:21", "2:1", "1:2"]
_BASE: dict[str, tuple[Any, ...]] = {"prompt": ("str",), "seed": ("int", None, None)}
MODELS: dict[str, tuple[dict[str, tuple[Any, ...]], set[str], float]] = {
    "black-forest-labs/flux-1.1-pro": ({**_BASE, "aspect_ratio": ("enum", [*_AR, "custom"]),
                                        "width": ("int", 256, 1440), "height": ("int", 256, 1440),
                                        "image_prompt": ("uri",), "safety_tolerance": ("int", 1, 6),
                                        "prompt_upsampling": ("bool",), "output_format": ("enum", ["webp", "jpg", "png"]),
                                        "output_quality": ("int", 0, 100)}, {"prompt"}, 0.04),
    "black-forest-labs/flux-1.1-pro-ultra": ({**_BASE, "aspect_ratio": ("enum", _ULTRA_AR), "raw": ("bool",),
                                              "image_prompt": ("uri",), "image_prompt_strength": ("float", 0, 1),
                                              "safety_tolerance": ("int", 1, 6),
                                              "output_format": ("enum", ["jpg", "png"])}, {"prompt"}, 0.06),
    "black-forest-labs/flux-dev": ({**_BASE, "aspect_ratio": ("enum", _AR), "image": ("uri",),
                                    "prompt_strength": ("float", 0, 1), "num_outputs": ("int", 1, 4),
                                    "num_inference_steps": ("int", 1, 50), "guidance": ("float", 0, 10),
                                    "output_format": ("enum", ["webp", "jpg", "png"]), "output_quality": ("int", 0, 100),
                                    "disable_safety_checker": ("bool",), "go_fast": ("bool",),
                                    "megapixels": ("enum", ["1", "0.25"])}, {"prompt"}, 0.025),
    "black-forest-labs/flux-schnell": ({**_BASE, "aspect_ratio": ("enum", _AR), "num_outputs": ("int", 1, 4),
                                        "num_inference_steps": ("int", 1, 4),
                                        "output_format": ("enum", ["webp", "jpg", "png"]),
                                        "output_quality": ("int", 0, 100), "disable_safety_checker": ("bool",),
                                        "go_fast": ("bool",), "megapixels": ("enum", ["1", "0.25"])}, {"prompt"}, 0.003),
    "black-forest-labs/flux-kontext-pro": ({**_BASE, "input_image": ("uri",), "aspect_ratio": ("enum", _KONTEXT_AR),
                                            "prompt_upsampling": ("bool",), "safety_tolerance": ("int", 0, 6),
                                            "output_format": ("enum", ["jpg", "png"])}, {"prompt"}, 0.04),
    "black-forest-labs/flux-kontext-max": ({**_BASE, "input_image": ("uri",), "aspect_ratio": ("enum", _KONTEXT_AR),
                                            "prompt_upsampling": ("bool",), "safety_tolerance": ("int", 0, 6),
                                            "output_format": ("enum", ["jpg", "png"])}, {"prompt"}, 0.08),
    "black-forest-labs/flux-fill-pro": ({**_BASE, "image": ("uri",), "mask": ("uri",), "steps": ("int", 15, 50),
                                         "guidance": ("float", 1.5, 100), "prompt_upsampling": ("bool",),
                                         "safety_tolerance": ("int", 1, 6),
                                         "output_format": ("enum", ["jpg", "png"])}, {"prompt", "image"}, 0.05),
}
_FLUX2: dict[str, tuple[Any, ...]] = {**_BASE, "input_images": ("uris", 8),
                                      "aspect_ratio": ("enum", [*_AR, "match_input_image", "custom"]),
                                      "resolution": ("enum", ["match_input_image", "0.5 MP", "1 MP", "2 MP", "4 MP"]),
                                      "width": ("int", 256, 2048), "height": ("int", 256, 2048),
                                      "safety_tolerance": ("int", 1, 5),
                                      "output_format": ("enum", ["webp", "jpg", "png"]),
                                      "output_quality": ("int", 0, 100)}
MODELS["black-forest-labs/flux-2-pro"] = (_FLUX2, {"prompt"}, 0.03)
MODELS["black-forest-labs/flux-2-max"] = (_FLUX2, {"prompt"}, 0.07)
MODELS["black-forest-labs/flux-2-flex"] = ({**_FLUX2, "steps": ("int", 1, 50), "guidance": ("float", 1.5, 10)},
                                           {"prompt"}, 0.05)
MODELS["black-forest-labs/flux-2-klein-4b"] = ({**_FLUX2, "input_images": ("uris", 4)}, {"prompt"}, 0.014)
MODELS["black-forest-labs/flux-2-klein-9b"] = ({**_FLUX2, "input_images": ("uris", 4)}, {"prompt"}, 0.015)

CHARGED_OUTCOMES = ("ok", "lost")
_SENSITIVE = "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"


def _problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": f"https://replicate.com/docs/reference/http#{title.lower().replace(' ', '-')}",
            "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _check(name: str, value: Any, spec: tuple[Any, ...]) -> str | None:
    kind = spec[0]
    if kind == "str" and not isinstance(value, str):
        return "Invalid type. Expected: string"
    if kind == "bool" and not isinstance(value, bool):
        return "Invalid type. Expected: boolean"
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == "int" and isinstance(value, float)):
            return f"Invalid type. Expected: {'integer' if kind == 'int' else 'number'}"
        if spec[1] is not None and value < spec[1]:
            return f"Must be greater than or equal to {spec[1]}"
        if spec[2] is not None and value > spec[2]:
            return f"Must be less than or equal to {spec[2]}"
    if kind == "enum" and value not in spec[1]:
        return f"{name} must be one of the following: " + ", ".join(f'"{v}"' for v in spec[1])
    if kind == "uri" and (not isinstance(value, str) or data_uri_image(value) is None):
        return "Does not match format 'uri' (or the file could not be read)"
    if kind == "uris":
        if not isinstance(value, list) or len(value) > spec[1]:
            return f"Expected an array of at most {spec[1]} URIs"
        if any(not isinstance(v, str) or data_uri_image(v) is None for v in value):
            return "Does not match format 'uri' (or the file could not be read)"
    return None


def _size(model: str, inp: dict[str, Any]) -> tuple[int, int]:
    ar = inp.get("aspect_ratio")
    images = inp.get("input_images") or [inp.get("input_image") or inp.get("image")]
    first = data_uri_image(images[0]) if images and isinstance(images[0], str) else None
    if ar == "custom" or (ar is None and "width" in inp and "height" in inp):
        return int(inp.get("width", 1024)) // 16 * 16, int(inp.get("height", 1024)) // 16 * 16
    if (ar in (None, "match_input_image")) and first is not None:
        return first.width, first.height
    if ar is None:
        ar = "1:1"
    return size_for_aspect(ar, 4.0 if "ultra" in model else 1.0, 16)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat().replace("+00:00", "Z")


def build_app(
    *, key: str = "sandbox-key", latency: float = 0.2, credits: float = 1000.0, result_ttl: float = 3600.0,
    max_active: int = 1000, public_host: str = "localhost", starting_fraction: float = 0.2,
    state_dir: str | os.PathLike[str] | None = None,
) -> tuple[Starlette, SandboxState]:
    """`credits` are US dollars of prepaid balance.

    Replicate's official models are "charged by output" (`ReplicateProvider.billing`): a
    succeeded prediction is paid, a failed (also flagged-as-sensitive) or canceled one is
    not; a prediction the API forgets counts as paid so the budget never under-counts."""
    state = SandboxState(provider="replicate", billing="on_success", charged_outcomes=CHARGED_OUTCOMES, key=key,
                         latency=latency, credits=credits, result_ttl=result_ttl, max_active=max_active,
                         public_host=public_host, state_dir=state_dir)

    def authorised(request: HttpRequest) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {state.key}":
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        return None

    def prediction(task: Task, base: str) -> dict[str, Any]:
        now = time.time()
        created = task.created
        elapsed = now - task.created
        status, output, error, started, completed = "starting", None, None, None, None
        if task.outcome == "canceled":
            status, completed = "canceled", task.canceled_at or now
        elif task.done(now):
            completed = created + min(elapsed, task.duration)
            started = created + task.duration * starting_fraction
            if task.outcome in ("fail",):
                status, error = "failed", "Sandbox: prediction failed on purpose"
            elif task.outcome in ("moderate_request", "moderate_content"):
                status, error = "failed", _SENSITIVE
            else:
                status = "succeeded"
                url = state.signed_url(task, "/delivery")
                many = task.model.endswith(("flux-dev", "flux-schnell"))
                output = [url] * int(task.body.get("num_outputs", 1)) if many else url
        elif elapsed >= task.duration * starting_fraction:
            status, started = "processing", created + task.duration * starting_fraction
        api = f"{base}/v1/predictions/{task.id}"
        return {
            "id": task.id, "model": task.model, "version": "hidden", "input": task.body, "output": output,
            "logs": "" if status == "starting" else "sandbox: generating\n", "error": error, "status": status,
            "created_at": _iso(created), "started_at": _iso(started), "completed_at": _iso(completed),
            "data_removed": False, "source": "api",
            "metrics": {"predict_time": round(task.duration * (1 - starting_fraction), 3)} if completed else {},
            "urls": {"get": api, "cancel": f"{api}/cancel", "stream": f"{base}/stream/{task.id}",
                     "web": f"https://replicate.com/p/{task.id}"},
        }

    async def create(request: HttpRequest) -> Response:
        model = f"{request.path_params['owner']}/{request.path_params['name']}"
        if (denied := authorised(request)) is not None:
            return denied
        if model not in MODELS:
            return _problem(404, "Not found", f"The requested model {model} was not found")
        try:
            body = await request.json()
        except ValueError:
            return _problem(400, "Bad request", "The request body is not valid JSON")
        state.record(request, body)
        if state.take("drop_submit_early"):
            return dropped_connection()
        if state.take("rate_limit"):
            state.reject(429)
            throttled = _problem(429, "Request was throttled", "Request was throttled. Expected available in 1 second.")
            throttled.headers["retry-after"] = "1"
            return throttled
        if state.take("unavailable"):
            state.reject(503)
            return _problem(503, "Service unavailable", "Replicate is temporarily unavailable")
        if state.take("server_error"):
            state.reject(500)
            return _problem(500, "Internal server error", "Something went wrong")
        specs, required, cost = MODELS[model]
        inp = body.get("input") if isinstance(body, dict) else None
        if not isinstance(inp, dict):
            return _problem(422, "Input validation failed", "- input: Invalid type. Expected: object",
                            invalid_fields=[{"type": "invalid_type", "field": "input", "description": "Expected: object"}])
        invalid = [{"type": "required", "field": f"input.{f}", "description": f"{f} is required"}
                   for f in sorted(required) if f not in inp]
        for name, value in inp.items():
            if name not in specs:
                invalid.append({"type": "additional_property_not_allowed", "field": "input",
                                "description": f"Additional property {name} is not allowed"})
            elif (msg := _check(name, value, specs[name])) is not None:
                invalid.append({"type": "invalid", "field": f"input.{name}", "description": msg})
        if invalid:
            state.reject(422)
            detail = "\n".join(f"- {i['field']}: {i['description']}" for i in invalid)
            return _problem(422, "Input validation failed", detail, invalid_fields=invalid)
        if state.credits < cost:
            state.reject(402)
            return _problem(402, "Insufficient credit", "You have insufficient credit to run this model. "
                            "Go to https://replicate.com/account/billing to purchase credit.")
        width, height = _size(model, inp)
        chosen = inp.get("output_format", specs["output_format"][1][0])
        fmt = {"jpg": "jpeg"}.get(chosen, chosen)
        task = state.new_task(model=model, body=inp, cost=cost, width=width, height=height, seed=inp.get("seed"),
                              prompt=inp.get("prompt", ""), output_format=fmt)
        base = f"{state.scheme}://{request.headers.get('host', '127.0.0.1')}"
        task.urls.update(get=f"{base}/v1/predictions/{task.id}", cancel=f"{base}/v1/predictions/{task.id}/cancel")
        state.accept(task)
        if state.take("drop_submit"):
            return dropped_connection()
        prefer = request.headers.get("prefer", "")
        if (m := re.fullmatch(r"\s*wait(?:=(\d+))?\s*", prefer)) is not None:
            limit = float(m.group(1) or 60)
            deadline = time.monotonic() + limit
            while not task.done(time.time()) and time.monotonic() < deadline:
                await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return JSONResponse(prediction(task, base), status_code=201,
                            headers={"location": f"{base}/v1/predictions/{task.id}"})

    async def get(request: HttpRequest) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        task = state.tasks.get(request.path_params["id"])
        if task is None or task.outcome == "lost":
            return _problem(404, "Not found", "The requested prediction was not found")
        state.count("polls")
        if state.take("drop_poll"):
            return dropped_connection()
        if state.take("poll_error"):
            return _problem(503, "Service unavailable", "Replicate is temporarily unavailable")
        return JSONResponse(prediction(task, f"{state.scheme}://{request.headers.get('host')}"))

    async def cancel(request: HttpRequest) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        task = state.tasks.get(request.path_params["id"])
        if task is None:
            return _problem(404, "Not found", "The requested prediction was not found")
        if not task.done(time.time()):
            state.cancel(task)
        return JSONResponse(prediction(task, f"{state.scheme}://{request.headers.get('host')}"))

    async def delivery(request: HttpRequest) -> Response:
        task = state.tasks.get(request.path_params["task_id"])
        if task is None:
            return Response("Not found", status_code=404)
        q = request.query_params
        if (reason := state.check_signature(task.id, q.get("se", "0"), q.get("sig", ""))) is not None:
            return Response(reason, status_code=404)
        state.count("downloads")
        return delivery_response(task, await state.image(task), state)

    app = Starlette(routes=[
        Route("/v1/models/{owner}/{name}/predictions", create, methods=["POST"]),
        Route("/v1/predictions/{id}", get, methods=["GET"]),
        Route("/v1/predictions/{id}/cancel", cancel, methods=["POST"]),
        Route("/delivery/{task_id}/{name}", delivery, methods=["GET"]),
    ])
    return app, state
