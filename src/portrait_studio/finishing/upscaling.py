"""Upscale a finished portrait 1.5–4x (or to an exact delivery size), optionally add a light detail
pass, and record the lineage — as an engine run, so a detail pass that costs money is recorded
before it is paid for, budgeted, and finished by `portrait resume` after a kill.

`finishing.upscale` does the pixels (a super-resolution network, then an exact resample). This
module is the step around it: the parent is found (any file the studio wrote leads back to its
generation) or imported; the `upscale` step upscales locally, runs the optional detail pass as a
low-denoise image-to-image request through the engine (memoised in the ledger), resamples to the
exact size, labels the result as a composite and records it as an "upscale" row with its parent.
A hosted upscaler (mode `upscale`) is a request of the plan; the step then finishes its output.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict

from ..catalog import estimate_cost, get_model
from ..errors import CapabilityError, LimitError, StudioError
from ..labels import LabelInfo
from ..ledger import ImageRow
from ..records import InputImage, Request
from .lineage import derived_path, ensure_recorded, record_derived

__all__ = ["DETAIL_PROMPT", "DetailPass", "UpscaleOutcome", "upscale_image", "upscale_plan"]

ENGINE = "span-x2-ch48"  # the default network at 2x; each upscale records the one it ran (`_network`)


def _network(method: str | None, scale: float) -> tuple[str, str]:
    """(name, title) of the network `finishing.upscale` runs for this method and scale."""
    from .upscale import DEFAULT_METHOD, model_for

    model = model_for(method or DEFAULT_METHOD, min(scale, 4.0))  # type: ignore[arg-type]
    return (model.name, model.title) if model else ("lanczos", "Lanczos")
DETAIL_PROMPT = "the same photograph with crisp natural detail, fine skin texture, sharp eyes"


class DetailPass(BaseModel):
    """A light image-to-image pass over the upscaled picture (denoise 0.1-0.3)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    denoise: float = 0.2
    prompt: str = DETAIL_PROMPT
    seed: int | None = None
    steps: int | None = None
    weights: str | None = None
    provider: str | None = None


class UpscaleOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    image: ImageRow
    parent: ImageRow
    scale: float
    size: tuple[int, int]
    seconds: float
    cost_usd: float
    detail_model: str | None = None
    engine: str = ENGINE
    run_id: str | None = None
    sandbox: bool = False


def _detail_request(detail: DetailPass, provider: str, path: Path, size: tuple[int, int], sha: str,
                    parent_id: str) -> Request:
    spec = get_model(detail.model)
    if "image-to-image" not in spec.modes:
        raise CapabilityError(f"{spec.name} cannot do image-to-image, so it cannot add detail",
                              hint="use --model flux-1-dev or flux-1-schnell for the detail pass")
    if not 0.0 < detail.denoise <= 0.5:
        raise CapabilityError(f"detail denoise {detail.denoise} is outside (0, 0.5]",
                              hint="a detail pass is light: 0.1-0.3")
    seed = detail.seed if detail.seed is not None else int(sha[:8], 16)
    return Request(
        model=detail.model, provider=provider, mode="image-to-image", prompt=detail.prompt, seed=seed,
        width=size[0], height=size[1], steps=detail.steps, denoise=detail.denoise, output_format="png",
        images=(InputImage(path=str(path), sha256=sha, role="init"),), parent_id=parent_id,
        options={**({"weights": detail.weights} if detail.weights and provider == "local" else {}), "record_as": "raw"},
        estimated_cost=estimate_cost(spec, provider, size[0], size[1]),
    )


def _parent_prompt(engine: Any, parent: ImageRow) -> str:
    """The prompt the parent was made with, so the upscale's label still says what was asked."""
    for row in engine.ledger.lineage(parent.image_sha256):
        if row.request_id:
            return engine.ledger.request(row.request_id).request.prompt
    return f"upscale of image {parent.image_sha256[:12]} with {ENGINE}"


def upscale_plan(
    engine: Any,
    image_path: str | Path,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    out: str | Path | None = None,
    detail: DetailPass | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    gpu: int | None = None,
    method: str | None = None,
) -> Any:
    """An upscale run of the image at `image_path` (by `scale`, or to exactly `size`)."""
    from ..engine import Plan, Step

    if scale is None and size is None:
        raise LimitError("give a scale or a size", field="--scale")
    if scale is not None and not 1.0 < scale <= 4.0:
        raise LimitError(f"scale {scale:g} is outside 1–4", field="--scale", hint="upscale 1.5–2x for portraits")
    image_path = Path(image_path)
    out = engine.check_out(out) if out is not None else None
    parent = ensure_recorded(engine.ledger, image_path, engine.images_dir)
    provider = None
    if detail is not None:
        provider = detail.provider or get_model(detail.model).default_provider
    if method == "hosted":
        return _hosted_plan(engine, image_path, parent, scale, size, out)
    tag = f"x{scale:g}" if scale is not None else f"{size[0]}x{size[1]}"  # type: ignore[index]
    path = derived_path(image_path, tag, out)
    args = {"parent_id": parent.id, "scale": scale, "size": list(size) if size else None, "path": str(path),
            "tile": tile, "overlap": overlap, "gpu": gpu, "method": method,
            "detail": detail.model_dump() if detail else None, "detail_provider": provider}
    return Plan(kind="upscale", name=f"upscale {image_path.name} {tag}", steps=(Step(name="upscale", args=args),),
                details={"parent_sha256": parent.image_sha256, "source": str(image_path), "scale": scale,
                         "providers": [provider] if provider else []})


HOSTED_UPSCALER = "real-esrgan"


def _hosted_plan(engine: Any, image_path: Path, parent: ImageRow, scale: float | None,
                 size: tuple[int, int] | None, out: str | Path | None) -> Any:
    """A hosted super-resolution request (for users with a key and no GPU): recorded, budgeted and
    resumable like any paid request; the `upscale` step resamples its answer to the exact size."""
    from ..engine import Plan, Step
    from .upscale import target_size

    spec = get_model(HOSTED_UPSCALER)
    provider = spec.default_provider
    w, h = parent.width or 0, parent.height or 0
    final = size or target_size(w, h, float(scale or 2.0))
    factor = round(max(final[0] / max(w, 1), final[1] / max(h, 1)), 4)
    request = Request(
        model=spec.id, provider=provider, mode="upscale", prompt="", seed=0, width=final[0], height=final[1],
        images=(InputImage(path=parent.path, sha256=parent.image_sha256, role="init"),), parent_id=parent.id,
        options={"scale": min(8.0, max(1.0, factor)), "record_as": "raw"},
        estimated_cost=estimate_cost(spec, provider, final[0], final[1]),
    )
    tag = f"x{scale:g}" if scale is not None else f"{final[0]}x{final[1]}"
    args = {"parent_id": parent.id, "scale": factor, "size": list(final), "path": str(derived_path(image_path, tag, out)),
            "hosted_request_id": request.request_id, "method": "hosted"}
    return Plan(kind="upscale", name=f"upscale {image_path.name} {tag} (hosted)", requests=(request,),
                steps=(Step(name="upscale", args=args),),
                details={"parent_sha256": parent.image_sha256, "source": str(image_path), "scale": factor,
                         "engine": f"{spec.name} on {provider}"})


def choose_method(studio: Any, method: str, *, gpu: int | None = None) -> str:
    """'auto' → a local Vulkan GPU, else the hosted upscaler when its provider has a key, else the CPU."""
    if method != "auto":
        return method
    if gpu is not None:
        return "standard"
    from .vulkan import probe_vulkan

    if probe_vulkan().hardware:
        return "standard"
    spec = get_model(HOSTED_UPSCALER)
    if studio.key(spec.default_provider):
        return "hosted"
    return "standard"


async def _upscale_step(ctx: Any) -> None:
    await _drive_upscale(ctx.engine, ctx.run.id, ctx.args, ctx.budget_usd, progress=getattr(ctx.engine, "progress", None))


async def _drive_upscale(engine: Any, run_id: str, args: dict[str, Any], budget_usd: float | None,
                         progress: Callable[..., None] | None = None) -> ImageRow:
    """Upscale locally, then (optionally) the detail pass through the engine; replay-safe."""
    from .upscale import target_size, upscale

    ledger = engine.ledger
    done = ledger.derived_in_run(run_id, "upscale")
    if done is not None and args.get("method") != "hosted":
        parent = ledger.image(done.parent_sha256 or "")
        engine.deliver(done, info=_label(engine, done, parent, args), kind="upscale",
                       parent_path=parent.out_path if parent.out_path and Path(parent.out_path).is_file() else parent.path)
        return done
    parent = ledger.image(args["parent_id"])
    if args.get("method") == "hosted":
        if done is not None:
            return done
        return await _finish_hosted(engine, run_id, args, parent)
    from ..imaging import open_image

    source = open_image(parent.path, mode=None)
    if args.get("size"):
        size = (int(args["size"][0]), int(args["size"][1]))
        scale = max(size[0] / source.width, size[1] / source.height)
    else:
        scale = float(args["scale"])
        size = target_size(source.width, source.height, scale)
    started = time.perf_counter()
    options = {k: args[k] for k in ("tile", "overlap", "gpu", "method") if args.get(k) is not None}
    network, _ = _network(args.get("method"), scale)
    if progress is not None:
        options["progress"] = progress
    upscaled = await asyncio.to_thread(upscale, source, scale, **options)
    if upscaled.size != size:
        upscaled = upscaled.resize(size, Image.Resampling.LANCZOS)
    seconds = round(time.perf_counter() - started, 3)
    details: dict[str, Any] = {"scale": round(scale, 4), "engine": network, "size": list(size), "seconds": seconds,
                               **{k: args.get(k) for k in ("tile", "overlap", "gpu")}}
    cost_usd, provider, model, seed, sandbox = 0.0, "local", network, None, parent.sandbox
    request_id = None
    final = upscaled
    if args.get("detail"):
        detail = DetailPass.model_validate(args["detail"])
        buffer = BytesIO()
        upscaled.convert("RGB").save(buffer, "PNG")
        data = buffer.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        work = engine.work_path(f"upscale/{sha[:24]}.png")
        if not work.exists():
            from ..files import atomic_write_bytes

            atomic_write_bytes(work, data)
        ledger.record_file(work, sha, parent.id, kind="work")  # the studio's own intermediate (consent)
        request = _detail_request(detail, args["detail_provider"], work, size, sha, parent.id)
        outcome = await engine.make(run_id, request, budget_usd=budget_usd)
        if outcome.status != "done" or outcome.image is None:
            raise StudioError(f"the detail pass did not finish: {outcome.error or outcome.status}",
                              hint=outcome.hint or f"'portrait resume {run_id}' continues it")
        from ..imaging import open_image as _open

        refined = _open(outcome.image.path)
        final = refined if refined.size == size else refined.resize(size, Image.Resampling.LANCZOS)
        request_id, cost_usd = outcome.request_id, outcome.image.cost_usd
        provider, model, seed = request.provider, detail.model, request.seed
        sandbox = sandbox or outcome.image.sandbox
        details.update(detail_model=detail.model, detail_denoise=detail.denoise, detail_provider=request.provider,
                       detail_prompt=detail.prompt, detail_seed=request.seed, cost_usd=cost_usd)
    buffer = BytesIO()
    if source.mode in ("L", "RGBA") and final.mode != source.mode and not args.get("detail"):
        final = final.convert(source.mode)
    final.save(buffer, "PNG")
    info = _label(engine, None, parent, args, size=size, details=details)
    return record_derived(
        engine, buffer.getvalue(), parent=parent, operation="upscale", details=details, info=info,
        path=Path(args["path"]), run_id=run_id, request_id=request_id, provider=provider, model=model,
        cost_usd=cost_usd, seed=seed, sandbox=sandbox, timings={"upscale_s": seconds},
    )


async def _finish_hosted(engine: Any, run_id: str, args: dict[str, Any], parent: ImageRow) -> ImageRow:
    from ..imaging import open_image

    ledger = engine.ledger
    raw = ledger.result_for_request(args["hosted_request_id"])
    if raw is None:
        row = ledger.request(args["hosted_request_id"])
        raise StudioError(f"the hosted upscale did not finish: {row.error or row.status}",
                          hint=f"'portrait resume {run_id}' collects it")
    size = (int(args["size"][0]), int(args["size"][1]))
    made = open_image(raw.path)
    final = made if made.size == size else made.resize(size, Image.Resampling.LANCZOS)
    buffer = BytesIO()
    final.save(buffer, "PNG")
    request = ledger.request(args["hosted_request_id"]).request
    details = {"scale": args["scale"], "engine": f"{request.model}@{request.provider}", "size": list(size),
               "hosted": True, "cost_usd": raw.cost_usd}
    info = LabelInfo(model=request.model, provider=request.provider, prompt=_parent_prompt(engine, parent),
                     width=size[0], height=size[1], is_composite=True,
                     edit=f"upscaled {args['scale']:g}x by {request.model} on {request.provider}",
                     parent_sha256=parent.image_sha256, sandbox=parent.sandbox or raw.sandbox,
                     creator=getattr(engine.labels, "creator", None), credit=getattr(engine.labels, "credit", None))
    return record_derived(
        engine, buffer.getvalue(), parent=parent, operation="upscale", details=details, info=info,
        path=Path(args["path"]), run_id=run_id, request_id=raw.request_id, provider=request.provider,
        model=request.model, cost_usd=raw.cost_usd, sandbox=raw.sandbox, timings=raw.timings,
    )


def _label(engine: Any, made: ImageRow | None, parent: ImageRow, args: dict[str, Any],
           size: tuple[int, int] | None = None, details: dict[str, Any] | None = None) -> LabelInfo:
    details = details or (made.operation_details if made else {}) or {}
    detail = args.get("detail")
    factor = float(details.get("scale") or args.get("scale") or 2)
    network, title = _network(args.get("method"), factor)
    edit = f"upscaled {factor:g}x with {title}" + (
        f", detail pass by {detail['model']} at denoise {detail['denoise']:g}" if detail else "")
    width, height = size or ((made.width, made.height) if made else (None, None))
    labels = engine.labels
    return LabelInfo(
        model=detail["model"] if detail else network, provider=args.get("detail_provider") or "local",
        prompt=detail["prompt"] if detail else _parent_prompt(engine, parent),
        seed=details.get("detail_seed"), denoise=detail["denoise"] if detail else None,
        width=width, height=height, is_composite=True, edit=edit, parent_sha256=parent.image_sha256,
        creator=getattr(labels, "creator", None), credit=getattr(labels, "credit", None),
        sandbox=parent.sandbox or bool(made and made.sandbox),
    )


async def upscale_image(engine: Any, image_path: str | Path, scale: float | None = None, *,
                        budget_usd: float | None = None, **options: Any) -> UpscaleOutcome:
    """Upscale to exactly round(w*scale) x round(h*scale) (or `size`), label it, record it as a child."""
    plan = upscale_plan(engine, image_path, scale, **options)
    run_id = engine.record(plan, budget_usd=budget_usd)
    started = time.perf_counter()
    await engine.execute(run_id, budget_usd=budget_usd)
    made = engine.ledger.derived_in_run(run_id, "upscale")
    if made is None:
        raise StudioError("the upscale did not finish", hint=f"'portrait resume {run_id}' continues it")
    d = made.operation_details or {}
    return UpscaleOutcome(
        path=str(made.out_path or made.path), image=made, parent=engine.ledger.image(made.parent_sha256 or ""),
        scale=float(d.get("scale") or scale or 0), size=(made.width or 0, made.height or 0),
        seconds=round(time.perf_counter() - started, 3), cost_usd=engine.ledger.spent(run_id, sandbox=None).usd,
        detail_model=d.get("detail_model"), run_id=run_id, sandbox=made.sandbox, engine=str(d.get("engine") or ENGINE),
    )


# --- delivery sizes: the exact 1080p / 2K / 4K file -----------------------------------------------


async def _deliver_size_step(ctx: Any) -> None:
    """Every image of the run made for a delivery size gets its exact-size child: upscaled to cover
    the delivery size with the detail-preserving upscaler, centre-cropped, labelled, recorded."""
    from ..delivery import DeliveryPlan, parse_delivery, plan_delivery

    engine, run = ctx.engine, ctx.run
    ledger = engine.ledger
    operations = set(ctx.args.get("operations") or ["generate"])
    for image in ledger.images(run_id=run.id, limit=10_000):
        if image.operation not in operations or not image.request_id:
            continue
        request = ledger.request(image.request_id).request
        raw = request.options.get("delivery")
        if raw is None and ctx.args.get("deliver"):
            raw = plan_delivery(request.model, request.provider, parse_delivery(ctx.args["deliver"]),
                                (image.width or 1) / (image.height or 1)).model_dump()
        if raw is None:
            continue
        plan = DeliveryPlan.model_validate(raw)
        done = next((c for c in ledger.children(image.image_sha256)
                     if c.operation == "upscale" and c.run_id == run.id
                     and (c.operation_details or {}).get("deliver") == plan.deliver), None)
        target = Path(image.out_path or image.path)
        path = target.with_name(f"{target.stem}.{plan.deliver}.png")
        if done is not None:
            engine.deliver(done, info=_delivery_label(engine, done, image, request, plan), kind="upscale",
                           path=Path(done.out_path or path), parent_path=_file_of(image))
            continue
        await _make_delivery(engine, run.id, image, request, plan, path, getattr(engine, "progress", None))


def _file_of(image: ImageRow) -> str:
    return image.out_path if image.out_path and Path(image.out_path).is_file() else image.path


async def _make_delivery(engine: Any, run_id: str, image: ImageRow, request: Request, plan: Any, path: Path,
                         progress: Callable[..., None] | None) -> ImageRow:
    from ..imaging import open_image
    from .upscale import upscale

    source = open_image(image.path)
    scale = plan.scale_for(source.width, source.height)
    started = time.perf_counter()
    if scale > 1.0 + 1e-6:
        options: dict[str, Any] = {"progress": progress} if progress is not None else {}
        big = await asyncio.to_thread(upscale, source, min(scale, 4.0), **options)
    else:
        big = source
    cover_w = max(plan.final_w, round(source.width * scale))
    cover_h = max(plan.final_h, round(source.height * scale))
    if big.size != (cover_w, cover_h):
        big = big.resize((cover_w, cover_h), Image.Resampling.LANCZOS)
    left, top = (cover_w - plan.final_w) // 2, (cover_h - plan.final_h) // 2
    final = big.crop((left, top, left + plan.final_w, top + plan.final_h))
    seconds = round(time.perf_counter() - started, 3)
    network, _ = _network(None, scale)
    details = {"deliver": plan.deliver, "scale": round(scale, 4), "engine": network, "size": [plan.final_w, plan.final_h],
               "native": [source.width, source.height], "crop": [left, top], "seconds": seconds}
    buffer = BytesIO()
    final.save(buffer, "PNG")
    return record_derived(
        engine, buffer.getvalue(), parent=image, operation="upscale", details=details,
        info=_delivery_label(engine, None, image, request, plan, size=final.size, scale=scale), path=path,
        run_id=run_id, provider="local", model=network, sandbox=image.sandbox, timings={"upscale_s": seconds},
    )


def _delivery_label(engine: Any, made: ImageRow | None, parent: ImageRow, request: Request, plan: Any,
                    size: tuple[int, int] | None = None, scale: float | None = None) -> LabelInfo:
    width, height = size or ((made.width, made.height) if made else (None, None))
    factor = scale if scale is not None else ((made.operation_details or {}).get("scale") if made else None)
    return LabelInfo.from_request(
        request, is_composite=True, parent_sha256=parent.image_sha256, width=width, height=height,
        edit=f"{plan.deliver} delivery: upscaled ×{factor:.2f} with {_network(None, factor)[1]} and centre-cropped to "
             f"{plan.final_w}×{plan.final_h}" if factor else f"{plan.deliver} delivery",
        sandbox=parent.sandbox, creator=getattr(engine.labels, "creator", None),
        credit=getattr(engine.labels, "credit", None),
    )


def _register() -> None:
    from ..engine import register_step

    register_step("upscale")(_upscale_step)
    register_step("deliver_size")(_deliver_size_step)


_register()
