"""Region fixes: repaint only the failing region with a light masked inpaint, keep the rest.

    request, mask = plan_fix("portrait.png", "teeth", model="flux-fill-pro")
    outcome = await fix_region("portrait.png", "teeth", provider=bfl, ledger=ledger, images_dir=...)
    report = await auto_fix("portrait.png", provider=bfl, ledger=ledger, images_dir=..., max_tries=2)

The flow of one fix: region mask from the analysis (`finishing.masks`) → an inpaint `Request`
(the region's repair cue + the user's addition; a per-model default denoise from
`finishing.defaults`) → any provider that serves the model's inpaint mode → `composite`
pastes the repair back so every pixel farther than the feather from the mask is the
original's, byte for byte (FLUX re-encodes the whole picture through its VAE) → the new file
is relabelled as a composite and recorded with its parent's hash (`finishing.lineage`).

`auto_fix` runs the checklist, maps failed items to regions (`ITEM_REGIONS`), fixes them,
re-checks, and stops when nothing fixable fails or after `max_tries` rounds.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from ..catalog import estimate_cost, get_model
from ..errors import BudgetExceeded, CapabilityError, StudioError
from ..labels import LabelInfo
from ..ledger import ImageRow, Ledger
from ..providers.base import Provider
from ..records import InputImage, Request, Ticket
from .composite import composite, feathered_alpha
from .defaults import DEFAULT_FIX_MODEL, FIX_DEFAULTS, cue_for
from .lineage import LabelSettings, derived_path, ensure_recorded, file_sha256, record_derived
from .masks import RegionMask, region_mask, region_masks

__all__ = [
    "ITEM_REGIONS",
    "AutoFixReport",
    "FixOutcome",
    "FixRound",
    "auto_fix",
    "default_provider",
    "default_denoise",
    "fix_region",
    "plan_fix",
    "regions_for",
]

ITEM_REGIONS: dict[str, str] = {
    "eyes.sharpness": "eyes",
    "eyes.catchlights": "eyes",
    "eyes.pupils": "eyes",
    "eyes.pair": "eyes",
    "mouth.teeth": "teeth",
    "skin.texture": "skin",
    "skin.tone": "skin",
    "hands.fingers": "hands",
    "hands.pose": "hands",
}
"""Checklist item → the region a fix repaints. Lighting, background and export are not region fixes."""


def default_provider(model: str) -> str:
    """The provider a fix with `model` uses unless told otherwise (one that really does inpaint)."""
    spec = get_model(model)
    known = FIX_DEFAULTS.get(model)
    if known is not None and known.provider in spec.routes:
        return known.provider
    return spec.default_provider


def default_denoise(model: str, region: str) -> float | None:
    """The measured per-model default (see `finishing.defaults`); None for models without one."""
    known = FIX_DEFAULTS.get(model)
    return known.denoise_for(region) if known is not None else 0.85


def _seed(image_sha: str, region: str) -> int:
    """Same image, same region → same seed: a fix is reproducible unless a seed is given."""
    return int(hashlib.sha256(f"{image_sha}:{region}".encode()).hexdigest()[:8], 16)


def plan_fix(
    image_path: str | Path,
    region: str,
    *,
    model: str = DEFAULT_FIX_MODEL,
    provider: str | None = None,
    denoise: float | None = None,
    prompt_add: str | None = None,
    analysis: Any = None,
    seed: int | None = None,
    steps: int | None = None,
    base_prompt: str | None = None,
    mask_dir: str | Path | None = None,
    weights: str | None = None,
) -> tuple[Request, RegionMask]:
    """The inpaint Request for repairing `region` of the image, and the mask it repaints.

    The mask PNG is written to `mask_dir` (default: a temp folder) so the request can be
    re-sent or resumed. `weights` (local provider) names a diffusers folder or repo id and
    travels in `Request.options`. Denoise defaults per model; a denoise the model ignores or one
    below where it changes anything is kept but warned about in `Request.warnings`.
    """
    from ..analysis import analyze

    image_path = Path(image_path)
    spec = get_model(model)
    if "inpaint" not in spec.modes:
        inpainters = [m for m in FIX_DEFAULTS]
        raise CapabilityError(f"{spec.name} cannot inpaint a region", hint=f"use --model {' or '.join(inpainters)}")
    provider = provider or default_provider(model)
    spec.route(provider)  # raises naming the providers that serve it
    if denoise is not None and not 0.0 < denoise <= 1.0:
        raise CapabilityError(f"denoise {denoise} is outside (0, 1]", hint="FLUX repairs need 0.75-1.0; see 'portrait fix --help'")
    analysis = analysis if analysis is not None else analyze(image_path)
    mask = region_mask(analysis, region)

    sha = file_sha256(image_path)
    folder = Path(mask_dir) if mask_dir is not None else Path(tempfile.gettempdir()) / "portrait-studio-masks"
    folder.mkdir(parents=True, exist_ok=True)
    mask_path = folder / f"{sha[:16]}-{region}.png"
    mask.mask.save(mask_path)

    warnings: list[str] = []
    known = FIX_DEFAULTS.get(model)
    takes_denoise = not (known is not None and known.denoise is None)
    if not takes_denoise:
        if denoise is not None:
            warnings.append(f"{spec.name} takes no denoise (the mask bounds the change); {denoise:g} is not sent")
        denoise = None
    elif denoise is None:
        denoise = default_denoise(model, region)
    elif known is not None and known.min_effective is not None and denoise < known.min_effective:
        warnings.append(
            f"denoise {denoise:g} is below {known.min_effective:g}, where {spec.name} barely changes a region "
            f"(FLUX needs far more denoise than SD detailers); the default is {known.denoise_for(region):g}"
        )

    cue = cue_for(region)
    prompt = ", ".join(p for p in (cue, prompt_add) if p)
    if base_prompt:
        prompt = f"{prompt}. {base_prompt}"
    width, height = analysis.shape[1], analysis.shape[0]
    request = Request(
        model=model, provider=provider, mode="inpaint", prompt=prompt, seed=seed if seed is not None else _seed(sha, region),
        steps=steps, denoise=denoise, output_format="png",
        images=(InputImage(path=str(image_path), sha256=sha, role="init"),),
        mask=InputImage.from_path(mask_path, role="mask"),
        warnings=tuple(warnings), estimated_cost=estimate_cost(spec, provider, width, height),
        options={"weights": weights} if weights and provider == "local" else {},
    )
    return request, mask


class FixOutcome(BaseModel):
    """What one region fix did, as the CLI prints it and the ledger records it."""

    model_config = ConfigDict(frozen=True)

    region: str
    path: str
    image: ImageRow
    parent: ImageRow
    model: str
    provider: str
    denoise: float | None
    seed: int
    cost_usd: float
    mask_area: int
    feather_px: int
    changed_pixels: int
    """Pixels inside the feathered mask that differ from the original."""
    outside_changed: int
    """Pixels outside the feathered mask that differ: 0 by construction, stated as proof."""
    sandbox: bool
    warnings: tuple[str, ...] = ()


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im.copy() if im.mode in ("RGB", "RGBA", "L") else im.convert("RGB")


async def fix_region(
    image_path: str | Path,
    region: str,
    *,
    provider: Provider,
    ledger: Ledger,
    images_dir: Path,
    model: str = DEFAULT_FIX_MODEL,
    denoise: float | None = None,
    prompt_add: str | None = None,
    analysis: Any = None,
    seed: int | None = None,
    steps: int | None = None,
    base_prompt: str | None = None,
    out: str | Path | None = None,
    mask_dir: str | Path | None = None,
    labels: LabelSettings | None = None,
    budget_usd: float | None = None,
    weights: str | None = None,
) -> FixOutcome:
    """Repair `region` through `provider`, composite it back, label and record the new image."""
    image_path = Path(image_path)
    request, mask = plan_fix(
        image_path, region, model=model, provider=provider.provider_id, denoise=denoise, prompt_add=prompt_add,
        analysis=analysis, seed=seed, steps=steps, base_prompt=base_prompt, mask_dir=mask_dir,
        weights=weights,
    )
    provider.check(request)
    if budget_usd is not None and request.estimated_cost.usd > budget_usd + 1e-9:
        raise BudgetExceeded(
            f"this fix costs about ${request.estimated_cost.usd:.3f}, over the ${budget_usd:.2f} budget",
            budget_usd=budget_usd, needed_usd=request.estimated_cost.usd,
        )
    parent = ensure_recorded(ledger, image_path, images_dir)
    run_id = ledger.create_run("fix", name=f"fix {region} of {image_path.name}", budget_usd=budget_usd,
                               plan={"region": region, "model": model, "parent_sha256": parent.image_sha256})
    request = request.model_copy(update={"run_id": run_id, "parent_id": parent.id})
    ledger.add_requests(run_id, [request])

    async def accepted(ticket: Ticket) -> None:
        ledger.record_accepted(ticket)

    ledger.set_request_status(request.request_id, "submitting")
    started = time.perf_counter()
    try:
        result = await provider.submit(request, on_accepted=accepted)
    except StudioError as exc:
        ledger.set_request_status(request.request_id, "failed", str(exc))
        ledger.set_run_status(run_id, "failed")
        raise

    original = _open_rgb(image_path)
    with Image.open(BytesIO(result.image)) as im:
        generated = im.convert("RGB")
    fixed = composite(original, generated, mask.mask, mask.feather_px)
    alpha = feathered_alpha(mask.mask, mask.feather_px)
    diff = np.any(np.asarray(fixed) != np.asarray(original), axis=-1) if original.mode != "L" else (
        np.asarray(fixed) != np.asarray(original))
    changed_inside = int(np.count_nonzero(diff & (alpha > 0)))
    changed_outside = int(np.count_nonzero(diff & (alpha == 0)))

    path = derived_path(image_path, f"fix-{region}", out)
    params: dict[str, Any] = {}
    if original.info.get("icc_profile"):
        params["icc_profile"] = original.info["icc_profile"]
    fixed.save(path, "PNG", **params)

    denoise_text = f" at denoise {request.denoise:g}" if request.denoise is not None else ""
    info = LabelInfo.from_request(
        request, is_composite=True, parent_sha256=parent.image_sha256, width=fixed.width, height=fixed.height,
        edit=f"{region} repainted by masked inpaint{denoise_text}, composited onto the original",
        creator=labels.creator if labels else None, credit=labels.credit if labels else None,
    )
    details = {
        "region": region, "denoise": request.denoise, "model": model, "provider": provider.provider_id,
        "prompt": request.prompt, "seed": request.seed, "mask_area": mask.area, "feather_px": mask.feather_px,
        "mask_box": list(mask.box or ()), "changed_pixels": changed_inside, "outside_changed": changed_outside,
        "cost_usd": result.cost.usd, "warnings": list(request.warnings),
    }
    row = record_derived(
        ledger, path, parent=parent, parent_path=image_path, operation="fix", details=details, info=info,
        labels=labels, images_dir=images_dir, run_id=run_id, request_id=request.request_id,
        provider=result.provider, model=result.model, cost=result.cost, seed=request.seed,
        provider_task_id=result.provider_task_id, sandbox=result.sandbox,
        timings={**result.timings, "fix_s": round(time.perf_counter() - started, 3)}, versions=result.versions,
    )
    ledger.set_run_status(run_id, "done")
    return FixOutcome(
        region=region, path=str(path), image=row, parent=parent, model=model, provider=provider.provider_id,
        denoise=request.denoise, seed=request.seed, cost_usd=result.cost.usd, mask_area=mask.area,
        feather_px=mask.feather_px, changed_pixels=changed_inside, outside_changed=changed_outside,
        sandbox=result.sandbox, warnings=request.warnings,
    )


# --- the checklist-driven loop ------------------------------------------------------------------


def regions_for(checklist: Any, analysis: Any) -> tuple[list[str], list[str]]:
    """(regions to fix, failed items no region fix can repair) for a checklist's failures.

    A failed hand check with an evidence box fixes only the hands inside that box.
    """
    regions: list[str] = []
    unfixable: list[str] = []
    masks = region_masks(analysis) if any(i.item.startswith("hands.") for i in checklist.failed) else {}
    for item in checklist.failed:
        region = ITEM_REGIONS.get(item.item)
        if region is None:
            unfixable.append(item.item)
            continue
        chosen = [region]
        if region == "hands" and item.region:
            x0, y0, x1, y1 = item.region
            hits = [n for n, m in masks.items() if n.startswith("hand_") and m.box is not None
                    and m.box[0] < x1 and x0 < m.box[2] and m.box[1] < y1 and y0 < m.box[3]]
            chosen = hits or chosen
        for r in chosen:
            if r not in regions:
                regions.append(r)
    return regions, unfixable


class FixRound(BaseModel):
    model_config = ConfigDict(frozen=True)

    round: int
    regions: list[str]
    fixes: list[FixOutcome]
    failed_before: list[str]
    failed_after: list[str]
    score_before: float
    score_after: float
    errors: list[str] = []


class AutoFixReport(BaseModel):
    """Per round: which regions were fixed, what failed before and after; and how it ended."""

    model_config = ConfigDict(frozen=True)

    start: str
    final: str
    final_sha256: str
    rounds: list[FixRound]
    resolved: list[str]
    remaining: list[str]
    unfixable: list[str]
    spent_usd: float
    stopped: str


async def auto_fix(
    image_path: str | Path,
    *,
    provider: Provider,
    ledger: Ledger,
    images_dir: Path,
    model: str = DEFAULT_FIX_MODEL,
    max_tries: int = 2,
    context: Any = None,
    denoise: float | None = None,
    prompt_add: str | None = None,
    out: str | Path | None = None,
    mask_dir: str | Path | None = None,
    labels: LabelSettings | None = None,
    budget_usd: float | None = None,
    weights: str | None = None,
    steps: int | None = None,
    on_round: Callable[[FixRound], None] | None = None,
) -> AutoFixReport:
    """Fix the regions whose checks failed, re-check, repeat; at most `max_tries` rounds."""
    from ..analysis import analyze
    from ..checks import run_checklist

    if max_tries < 1:
        raise CapabilityError(f"--max-tries {max_tries} must be at least 1", hint="use 1-3")
    start = Path(image_path)
    current = start
    analysis = analyze(current)
    checklist = run_checklist(current, context, analysis=analysis)
    ledger.record_checks(ensure_recorded(ledger, current, images_dir).image_sha256, checklist.overall,
                         checklist.score, checklist.model_dump(mode="json"))
    first_failed = [i.item for i in checklist.failed]
    rounds: list[FixRound] = []
    spent = 0.0
    stopped = "max_tries"
    for n in range(1, max_tries + 1):
        regions, unfixable = regions_for(checklist, analysis)
        if not regions:
            stopped = "passed" if not checklist.failed else "nothing_fixable"
            break
        fixes: list[FixOutcome] = []
        errors: list[str] = []
        for region in regions:
            left = None if budget_usd is None else budget_usd - spent
            try:
                outcome = await fix_region(
                    current, region, provider=provider, ledger=ledger, images_dir=images_dir, model=model,
                    denoise=denoise, prompt_add=prompt_add, analysis=analysis, out=out, mask_dir=mask_dir,
                    labels=labels, budget_usd=left, weights=weights, steps=steps, seed=None if n == 1 else _seed(f"{current}:{n}", region),
                )
            except BudgetExceeded as exc:
                errors.append(f"{region}: {exc.message}")
                stopped = "budget"
                break
            except StudioError as exc:
                errors.append(f"{region}: {exc.message}")
                continue
            fixes.append(outcome)
            spent += outcome.cost_usd
            current = Path(outcome.path)
        before = checklist
        analysis = analyze(current)
        checklist = run_checklist(current, context, analysis=analysis)
        ledger.record_checks(file_sha256(current), checklist.overall, checklist.score, checklist.model_dump(mode="json"))
        done = FixRound(round=n, regions=regions, fixes=fixes, failed_before=[i.item for i in before.failed],
                        failed_after=[i.item for i in checklist.failed], score_before=before.score,
                        score_after=checklist.score, errors=errors)
        rounds.append(done)
        if on_round is not None:
            on_round(done)
        if stopped == "budget":
            break
        if not fixes:
            stopped = "fixes_failed"
            break
    else:
        if not regions_for(checklist, analysis)[0]:
            stopped = "passed" if not checklist.failed else "nothing_fixable"
    remaining = [i.item for i in checklist.failed]
    return AutoFixReport(
        start=str(start), final=str(current), final_sha256=file_sha256(current), rounds=rounds,
        resolved=[i for i in first_failed if i not in remaining], remaining=remaining,
        unfixable=[i for i in remaining if i not in ITEM_REGIONS], spent_usd=round(spent, 6), stopped=stopped,
    )


def fix_image(
    studio: Any,
    ledger: Ledger,
    image_id: str,
    region: str,
    *,
    model: str = DEFAULT_FIX_MODEL,
    provider: str | None = None,
    denoise: float | None = None,
    prompt_add: str | None = None,
    sandbox: str = "auto",
    weights: str | None = None,
    budget_usd: float | None = None,
) -> ImageRow:
    """Fix one region of a ledger image end to end (for the web studio's background jobs)."""
    import asyncio

    from ..catalog import get_model
    from ..providers import open_providers
    from .lineage import LabelSettings

    image = ledger.image(image_id)
    provider_id = provider or get_model(model).default_provider
    options = {"local": {"weights": weights}} if weights else {}
    with open_providers(studio, [provider_id], sandbox=sandbox, options=options) as providers:  # type: ignore[arg-type]
        chosen = providers[provider_id]

        async def go() -> FixOutcome:
            try:
                return await fix_region(
                    image.out_path or image.path, region, provider=chosen, ledger=ledger, images_dir=studio.images_dir,
                    model=model, denoise=denoise, prompt_add=prompt_add, labels=LabelSettings.from_studio(studio),
                    budget_usd=budget_usd, weights=weights,
                )
            finally:
                await chosen.aclose()

        return asyncio.run(go()).image
