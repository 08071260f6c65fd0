"""Upscale a finished portrait 1.5–2x, optionally add a light detail pass, and record the lineage.

`finishing.upscale` does the pixels (SPAN through ncnn by default, then an exact resample,
tiled, metadata carried). This module is the workflow step around it: the parent is found
or imported in the ledger, the optional detail pass runs as a low-denoise image-to-image
request through a provider, and the result is relabelled as a composite and recorded as an
"upscale" row with its parent's hash.

The detail pass runs inside the upscaler's worker thread; it hands the provider call back to
the event loop that owns the provider, so hosted and local providers work unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict

from ..catalog import estimate_cost, get_model
from ..errors import BudgetExceeded, CapabilityError
from ..labels import LabelInfo
from ..ledger import ImageRow, Ledger
from ..providers.base import Provider
from ..records import Cost, InputImage, Request, Result
from .lineage import LabelSettings, derived_path, ensure_recorded, record_derived
from .upscale import DEFAULT_METHOD, DEFAULT_OVERLAP, DEFAULT_TILE, model_for, upscale_file

__all__ = ["DETAIL_PROMPT", "DetailPass", "UpscaleOutcome", "upscale_image"]

ENGINE = "span-x2-ch48"  # the default network at 2x; each upscale records the one it ran
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


def _detail_request(detail: DetailPass, provider: Provider, path: Path, size: tuple[int, int], sha: str) -> Request:
    spec = get_model(detail.model)
    if "image-to-image" not in spec.modes:
        raise CapabilityError(f"{spec.name} cannot do image-to-image, so it cannot add detail",
                              hint="use --model flux-1-dev or flux-1-schnell for the detail pass")
    if not 0.0 < detail.denoise <= 0.5:
        raise CapabilityError(f"detail denoise {detail.denoise} is outside (0, 0.5]",
                              hint="a detail pass is light: 0.1-0.3")
    seed = detail.seed if detail.seed is not None else int(sha[:8], 16)
    return Request(
        model=detail.model, provider=provider.provider_id, mode="image-to-image", prompt=detail.prompt, seed=seed,
        width=size[0], height=size[1], steps=detail.steps, denoise=detail.denoise, output_format="png",
        images=(InputImage(path=str(path), sha256=sha, role="init"),),
        options={"weights": detail.weights} if detail.weights and provider.provider_id == "local" else {},
        estimated_cost=estimate_cost(spec, provider.provider_id, size[0], size[1]),
    )


def _parent_prompt(ledger: Ledger, parent: ImageRow) -> str:
    """The prompt the parent was labelled with, so the upscale's label still says what was asked."""
    label = ledger.label(parent.image_sha256)
    prompt = ((label or {}).get("info") or {}).get("prompt")
    return str(prompt) if prompt else f"upscale of image {parent.image_sha256[:12]} with {ENGINE}"


async def upscale_image(
    image_path: str | Path,
    scale: float,
    *,
    ledger: Ledger,
    images_dir: Path,
    out: str | Path | None = None,
    labels: LabelSettings | None = None,
    detail: DetailPass | None = None,
    provider: Provider | None = None,
    budget_usd: float | None = None,
    gpu: int | None = None,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
) -> UpscaleOutcome:
    """Upscale to exactly round(w*scale) x round(h*scale), label it, record it as a child of the input."""
    image_path = Path(image_path)
    if detail is not None and provider is None:
        raise CapabilityError("the detail pass needs a provider", hint="pass --provider (local for flux-1-dev)")
    parent = ensure_recorded(ledger, image_path, images_dir)
    tag = f"x{scale:g}"
    path = derived_path(image_path, tag, out)
    loop = asyncio.get_running_loop()
    results: list[Result] = []
    requests: list[Request] = []

    def run_detail(upscaled: Image.Image) -> Image.Image:
        assert detail is not None and provider is not None
        buffer = BytesIO()
        upscaled.save(buffer, "PNG")
        data = buffer.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        tmp = Path(tempfile.gettempdir()) / "portrait-studio-upscale" / f"{sha[:16]}.png"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        request = _detail_request(detail, provider, tmp, upscaled.size, sha)
        provider.check(request)
        if budget_usd is not None and request.estimated_cost.usd > budget_usd + 1e-9:
            raise BudgetExceeded(f"the detail pass costs about ${request.estimated_cost.usd:.3f}, over the "
                                 f"${budget_usd:.2f} budget", budget_usd=budget_usd, needed_usd=request.estimated_cost.usd)
        result = asyncio.run_coroutine_threadsafe(provider.submit(request), loop).result()
        requests.append(request)
        results.append(result)
        with Image.open(BytesIO(result.image)) as im:
            return im.convert("RGB")

    started = time.perf_counter()
    await asyncio.to_thread(
        upscale_file, image_path, path, scale, tile=tile, overlap=overlap, gpu=gpu,
        detail_pass=run_detail if detail is not None else None,
    )
    seconds = round(time.perf_counter() - started, 3)
    with Image.open(path) as im:
        size = im.size

    cost = results[0].cost if results else Cost()
    network = model_for(DEFAULT_METHOD, scale)
    engine, engine_title = (network.name, network.title) if network else ("lanczos", "Lanczos")
    details: dict[str, Any] = {"scale": scale, "engine": engine, "tile": tile, "overlap": overlap, "gpu": gpu,
                               "size": list(size), "seconds": seconds}
    model = engine
    run_id = request_id = None
    if detail is not None and requests:
        request = requests[0]
        details.update(detail_model=detail.model, detail_denoise=detail.denoise, detail_provider=request.provider,
                       detail_prompt=detail.prompt, detail_seed=request.seed, cost_usd=cost.usd)
        model = detail.model
        run_id = ledger.create_run("upscale", name=f"upscale {image_path.name} x{scale:g}",
                                   plan={"scale": scale, "parent_sha256": parent.image_sha256})
        request = request.model_copy(update={"run_id": run_id, "parent_id": parent.id})
        ledger.add_requests(run_id, [request])
        request_id = request.request_id
    edit = f"upscaled {scale:g}x with {engine_title}" + (
        f", detail pass by {detail.model} at denoise {detail.denoise:g}" if detail is not None else "")
    info = LabelInfo(
        model=model, provider=requests[0].provider if requests else "local",
        prompt=detail.prompt if detail else _parent_prompt(ledger, parent),
        seed=requests[0].seed if requests else None, denoise=detail.denoise if detail else None,
        width=size[0], height=size[1], is_composite=True, edit=edit, parent_sha256=parent.image_sha256,
        creator=labels.creator if labels else None, credit=labels.credit if labels else None,
    )
    row = record_derived(
        ledger, path, parent=parent, parent_path=image_path, operation="upscale", details=details, info=info,
        labels=labels, images_dir=images_dir, run_id=run_id, request_id=request_id,
        provider=results[0].provider if results else "local", model=model, cost=cost,
        seed=requests[0].seed if requests else None, sandbox=bool(results and results[0].sandbox),
        timings={"upscale_s": seconds}, versions=results[0].versions if results else {},
    )
    if run_id is not None:
        ledger.set_run_status(run_id, "done")
    return UpscaleOutcome(path=str(path), image=row, parent=parent, scale=scale, size=size, seconds=seconds,
                          cost_usd=cost.usd, detail_model=detail.model if detail else None)
