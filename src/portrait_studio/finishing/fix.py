"""Region fixes: repaint only the failing region with a light masked inpaint, keep the rest.

    request, mask = plan_fix("portrait.png", "teeth", model="flux-fill-pro")
    outcome = await fix_region(engine, "portrait.png", "teeth")          # one region, one paid request
    report = await auto_fix(engine, "portrait.png", max_tries=2)        # checklist-driven rounds

Both run on the engine (recorded before paying, budgeted, resumable): a fix run's finishing step
`composite` pastes the repair back; an auto-fix run's step `autofix` drives the rounds and is
replayed by `portrait resume` after a kill (each round's request is memoised in the ledger).

The flow of one fix: region mask from the analysis (`finishing.masks`) → an inpaint `Request`
(the region's repair cue + the user's addition; a per-model default denoise from
`finishing.defaults`) → the engine sends it → `composite` pastes the repair back so every pixel
farther than the feather from the mask is the original's, byte for byte (FLUX re-encodes the
whole picture through its VAE) → the new file is labelled as a composite and recorded with its
parent's hash (`finishing.lineage`).

`auto_fix` runs the checklist, maps failed items to regions (`ITEM_REGIONS`), fixes them,
re-checks, and stops when nothing fixable fails or after `max_tries` rounds. It keeps the best
image by the checklist score: a round that does not improve it is not kept, and when no round
improves on the original, the original stays the final image (and the report says so).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from ..catalog import estimate_cost, get_model
from ..errors import CapabilityError, StudioError
from ..labels import LabelInfo
from ..ledger import ImageRow
from ..records import InputImage, Request
from .composite import composite, feathered_alpha
from .defaults import DEFAULT_FIX_MODEL, FIX_DEFAULTS, cue_for
from .lineage import derived_path, ensure_recorded, file_sha256, record_derived
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
    from ..files import atomic_save_image

    atomic_save_image(mask.mask, mask_path, "PNG")

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
    run_id: str | None = None
    warnings: tuple[str, ...] = ()


def _open_rgb(path: Path) -> Image.Image:
    from ..imaging import open_image

    im = open_image(path, mode=None)
    return im if im.mode in ("RGB", "RGBA", "L") else im.convert("RGB")


# --- one region: plan → engine → composite ----------------------------------------------------------


def fix_plan(engine: Any, image_path: str | Path, region: str, *, model: str = DEFAULT_FIX_MODEL,
             provider: str | None = None, denoise: float | None = None, prompt_add: str | None = None,
             seed: int | None = None, steps: int | None = None, out: str | Path | None = None,
             weights: str | None = None, analysis: Any = None) -> Any:
    """The engine's plan for one region fix of the image at `image_path` (recorded as its child)."""
    from ..engine import Plan, Step

    image_path = Path(image_path)
    out = engine.check_out(out) if out is not None else None
    parent = ensure_recorded(engine.ledger, image_path, engine.images_dir)
    request, mask, path = _fix_request(engine, parent, region, model=model, provider=provider, denoise=denoise,
                                       prompt_add=prompt_add, seed=seed, steps=steps, out=out, weights=weights,
                                       analysis=analysis, named_after=image_path)
    return Plan(
        kind="fix", name=f"fix {region} of {image_path.name}", requests=(request,),
        steps=(Step(name="composite", args={"request_id": request.request_id, "path": str(path)}),),
        details={"region": region, "model": model, "parent_sha256": parent.image_sha256, "source": str(image_path)},
    )


def _fix_request(engine: Any, parent: ImageRow, region: str, *, model: str, provider: str | None,
                 denoise: float | None, prompt_add: str | None, seed: int | None, steps: int | None,
                 out: str | Path | None, weights: str | None, analysis: Any, named_after: Path) -> tuple[Request, Any, Path]:
    """The inpaint request for `region` of the ledger image `parent`, its mask, and where the fix goes."""
    request, mask = plan_fix(parent.path, region, model=model, provider=provider, denoise=denoise,
                             prompt_add=prompt_add, analysis=analysis, seed=seed, steps=steps,
                             mask_dir=engine.work_path("masks"), weights=weights)
    path = derived_path(named_after, f"fix-{region}", out)
    details = {"region": region, "mask_area": mask.area, "feather_px": mask.feather_px,
               "mask_box": list(mask.box or ()), "parent_sha256": parent.image_sha256}
    request = request.model_copy(update={
        "parent_id": parent.id,
        "options": {**request.options, "record_as": "raw", "fix": details},
    })
    return request, mask, path


def composite_fix(engine: Any, request_id: str, path: str | Path) -> ImageRow | None:
    """Paste the finished inpaint of `request_id` back onto its original, label it, record it.

    Idempotent: a fix already composited is returned as it is (its delivered copy repaired)."""
    from ..imaging import open_image_bytes

    ledger = engine.ledger
    row = ledger.request(request_id)
    request = row.request
    made = ledger.derived_from_request(request_id, "fix")
    if made is not None:
        engine.deliver(made, info=_fix_label(engine, request, made, ledger.image(request.parent_id or "")),
                       kind="fix", parent_path=None)
        return made
    raw = ledger.result_for_request(request_id)
    if raw is None:
        return None
    details = dict(request.options.get("fix") or {})
    parent = ledger.image(request.parent_id or "")
    original = _open_rgb(Path(parent.path))
    generated = open_image_bytes(Path(raw.path).read_bytes(), name="the inpaint result")
    mask = Image.open(request.mask.path) if request.mask else None  # type: ignore[union-attr]
    if mask is None:
        raise StudioError(f"the mask of fix request {request_id} is missing", hint="run the fix again")
    with mask:
        mask.load()
        feather = int(details.get("feather_px", 0))
        fixed = composite(original, generated, mask, feather)
        alpha = feathered_alpha(mask.resize(original.size, Image.Resampling.NEAREST) if mask.size != original.size else mask,
                                feather)
    diff = np.asarray(fixed) != np.asarray(original)
    if diff.ndim == 3:
        diff = np.any(diff, axis=-1)
    details.update(
        denoise=request.denoise, model=request.model, provider=request.provider, prompt=request.prompt,
        seed=request.seed, cost_usd=raw.cost_usd, warnings=list(request.warnings),
        changed_pixels=int(np.count_nonzero(diff & (alpha > 0))),
        outside_changed=int(np.count_nonzero(diff & (alpha == 0))),
    )
    buffer = BytesIO()
    params: dict[str, Any] = {}
    if original.info.get("icc_profile"):
        params["icc_profile"] = original.info["icc_profile"]
    fixed.save(buffer, "PNG", **params)
    info = _fix_label(engine, request, None, parent, size=fixed.size)
    return record_derived(
        engine, buffer.getvalue(), parent=parent, operation="fix", details=details, info=info, path=Path(path),
        run_id=row.run_id, request_id=request_id, provider=raw.provider or request.provider,
        model=raw.model or request.model, cost_usd=raw.cost_usd, seed=request.seed, sandbox=raw.sandbox,
        timings=raw.timings, versions=raw.versions,
    )


def _fix_label(engine: Any, request: Request, made: ImageRow | None, parent: ImageRow,
               size: tuple[int, int] | None = None) -> LabelInfo:
    region = (request.options.get("fix") or {}).get("region", "a region")
    denoise_text = f" at denoise {request.denoise:g}" if request.denoise is not None else ""
    width, height = size or ((made.width, made.height) if made else (None, None))
    labels = engine.labels
    return LabelInfo.from_request(
        request, is_composite=True, parent_sha256=parent.image_sha256, width=width, height=height,
        edit=f"{region} repainted by masked inpaint{denoise_text}, composited onto the original",
        creator=getattr(labels, "creator", None), credit=getattr(labels, "credit", None),
        sandbox=bool(made.sandbox if made else parent.sandbox) or engine.ledger.request(request.request_id).sandbox,
    )


def _outcome(engine: Any, made: ImageRow) -> FixOutcome:
    d = made.operation_details or {}
    parent = engine.ledger.image(made.parent_sha256 or "")
    return FixOutcome(
        region=str(d.get("region")), path=str(made.out_path or made.path), image=made, parent=parent,
        model=str(d.get("model")), provider=str(d.get("provider")), denoise=d.get("denoise"),
        seed=int(d.get("seed") or 0), cost_usd=float(d.get("cost_usd") or 0.0), mask_area=int(d.get("mask_area") or 0),
        feather_px=int(d.get("feather_px") or 0), changed_pixels=int(d.get("changed_pixels") or 0),
        outside_changed=int(d.get("outside_changed") or 0), sandbox=made.sandbox, run_id=made.run_id,
        warnings=tuple(d.get("warnings") or ()),
    )


def _composite_step(ctx: Any) -> None:
    composite_fix(ctx.engine, ctx.args["request_id"], ctx.args["path"])


async def fix_region(engine: Any, image_path: str | Path, region: str, *, budget_usd: float | None = None,
                     out: str | Path | None = None, **options: Any) -> FixOutcome:
    """Repair `region` of the image: record, pay once, composite it back, label and record the new image."""
    from ..engine import failure_summary

    plan = fix_plan(engine, image_path, region, out=out, **options)
    run_id = engine.record(plan, budget_usd=budget_usd)
    report = await engine.execute(run_id, budget_usd=budget_usd)
    made = engine.ledger.derived_from_request(plan.requests[0].request_id, "fix")
    if made is None:
        raise failure_summary(report) or StudioError("the fix did not finish", hint=f"'portrait resume {run_id}'")
    return _outcome(engine, made)


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
    kept: bool = True
    """Whether this round's result improved the checklist score (only then can it be the final image)."""
    errors: list[str] = []


class AutoFixReport(BaseModel):
    """Per round: which regions were fixed, what failed before and after; and how it ended."""

    model_config = ConfigDict(frozen=True)

    run_id: str | None = None
    start: str
    final: str
    final_sha256: str
    kept_original: bool = False
    rounds: list[FixRound]
    resolved: list[str]
    remaining: list[str]
    unfixable: list[str]
    spent_usd: float
    sandbox_usd: float = 0.0
    stopped: str


def autofix_plan(engine: Any, image_path: str | Path, *, model: str = DEFAULT_FIX_MODEL, max_tries: int = 2,
                 brief: dict[str, Any] | None = None, provider: str | None = None, out: str | Path | None = None,
                 **options: Any) -> Any:
    """An auto-fix run: no request up front; its `autofix` step plans each round from the checklist."""
    from ..engine import Plan, Step

    if max_tries < 1:
        raise CapabilityError(f"--max-tries {max_tries} must be at least 1", hint="use 1-3")
    image_path = Path(image_path)
    out = engine.check_out(out) if out is not None else None
    parent = ensure_recorded(engine.ledger, image_path, engine.images_dir)
    args = {"parent_id": parent.id, "source": str(image_path), "model": model, "provider": provider or default_provider(model),
            "max_tries": max_tries, "out": str(out) if out else None, "options": options}
    return Plan(kind="autofix", name=f"auto-fix {image_path.name}", brief=brief, steps=(Step(name="autofix", args=args),),
                details={"model": model, "parent_sha256": parent.image_sha256, "source": str(image_path),
                         "providers": [args["provider"]]})


async def _autofix_step(ctx: Any) -> None:
    engine, run = ctx.engine, ctx.run
    report = await _drive_autofix(engine, run.id, ctx.args, ctx.budget_usd)
    engine.ledger.set_run_plan(run.id, {**(engine.ledger.run(run.id).plan or {}), "autofix": report.model_dump(mode="json"),
                                        "stopped": None if report.stopped in ("passed", "max_tries", "no_improvement",
                                                                               "nothing_fixable") else report.stopped})


async def _drive_autofix(engine: Any, run_id: str, args: dict[str, Any], budget_usd: float | None,
                         on_round: Callable[[FixRound], None] | None = None) -> AutoFixReport:
    """The rounds, replayable: every request goes through `engine.make` (memoised in the ledger)."""
    import asyncio

    from ..analysis import analyze
    from ..checks import CheckContext, run_checklist
    from ..quiet import native_quiet

    ledger = engine.ledger
    run = ledger.run(run_id)
    context = CheckContext.from_brief(_brief_of(run.brief)) if run.brief else None
    start = ledger.image(args["parent_id"])
    source = Path(args["source"])
    options = dict(args.get("options") or {})

    def measure(image: ImageRow) -> tuple[Any, Any]:
        with native_quiet():
            analysis = analyze(Path(image.path))
            checklist = run_checklist(Path(image.path), context, analysis=analysis)
        ledger.record_checks(image.image_sha256, checklist.overall, checklist.score, checklist.model_dump(mode="json"))
        return analysis, checklist

    current = start
    analysis, checklist = await asyncio.to_thread(measure, current)
    best, best_score = start, float(checklist.score)
    first_failed = [i.item for i in checklist.failed]
    rounds: list[FixRound] = []
    stopped = "max_tries"
    for n in range(1, int(args["max_tries"]) + 1):
        regions, _ = regions_for(checklist, analysis)
        if not regions:
            stopped = "passed" if not checklist.failed else "nothing_fixable"
            break
        fixes: list[FixOutcome] = []
        errors: list[str] = []
        round_start = current
        for region in regions:
            try:
                request, _mask, path = _fix_request(
                    engine, current, region, model=args["model"], provider=args["provider"],
                    denoise=options.get("denoise"), prompt_add=options.get("prompt_add"),
                    seed=None if n == 1 else _seed(f"{current.image_sha256}:{n}", region), steps=options.get("steps"),
                    out=args.get("out"), weights=options.get("weights"), analysis=analysis, named_after=source,
                )
            except StudioError as exc:
                errors.append(f"{region}: {exc.message}")
                continue
            outcome = await engine.make(run_id, request, budget_usd=budget_usd)
            if outcome.status != "done":
                errors.append(f"{region}: {outcome.error or outcome.status}")
                if outcome.error_type == "BudgetExceeded":
                    stopped = "budget"
                    break
                continue
            made = composite_fix(engine, outcome.request_id, path)
            if made is None:
                continue
            fixes.append(_outcome(engine, made))
            current = made
            analysis = await asyncio.to_thread(analyze, Path(current.path))
        before = checklist
        if current.image_sha256 != round_start.image_sha256:
            analysis, checklist = await asyncio.to_thread(measure, current)
        improved = float(checklist.score) > best_score + 1e-9
        if improved:
            best, best_score = current, float(checklist.score)
        done = FixRound(round=n, regions=regions, fixes=fixes, failed_before=[i.item for i in before.failed],
                        failed_after=[i.item for i in checklist.failed], score_before=float(before.score),
                        score_after=float(checklist.score), kept=improved, errors=errors)
        rounds.append(done)
        if on_round is not None:
            on_round(done)
        if stopped == "budget":
            break
        if not fixes:
            stopped = "fixes_failed"
            break
        if not improved:
            stopped = "no_improvement"
            break
    final_checks = ledger.checks(best.image_sha256) or {}
    remaining = [i["item"] for i in final_checks.get("items", []) if i.get("status") == "fail"] if final_checks else []
    if not final_checks:
        remaining = [i.item for i in checklist.failed]
    return AutoFixReport(
        run_id=run_id, start=str(source), final=str(best.out_path or best.path), final_sha256=best.image_sha256,
        kept_original=best.image_sha256 == start.image_sha256, rounds=rounds,
        resolved=[i for i in first_failed if i not in remaining], remaining=remaining,
        unfixable=[i for i in remaining if i not in ITEM_REGIONS], spent_usd=ledger.spent(run_id).usd,
        sandbox_usd=ledger.spent(run_id, sandbox=True).usd, stopped=stopped,
    )


def _brief_of(data: dict[str, Any]) -> Any:
    from ..brief import parse_brief

    return parse_brief(data, source="auto-fix brief")


async def auto_fix(engine: Any, image_path: str | Path, *, budget_usd: float | None = None,
                   on_round: Callable[[FixRound], None] | None = None, **options: Any) -> AutoFixReport:
    """Fix the regions whose checks failed, re-check, repeat (at most `max_tries` rounds); keep the
    best-scoring image — the original when no round improved the checklist."""
    plan = autofix_plan(engine, image_path, **options)
    run_id = engine.record(plan, budget_usd=budget_usd)
    run = engine.ledger.run(run_id)
    step_args = run.steps[0]["args"]
    holder = engine.ledger.claim_run(run_id, engine.owner)
    if holder is not None:  # pragma: no cover - a fresh run cannot be held
        raise StudioError(f"run {run_id} is held by {holder}")
    try:
        report = await _drive_autofix(engine, run_id, step_args, engine.budget(budget_usd), on_round=on_round)
        engine.ledger.set_run_plan(run_id, {**(run.plan or {}), "autofix": report.model_dump(mode="json")})
    finally:
        engine._settle_status(run_id)
        engine.ledger.release_run(run_id, engine.owner)
        engine.write_run_json(run_id)
    return report


def _register() -> None:
    from ..engine import register_step

    register_step("composite")(_composite_step)
    register_step("autofix")(_autofix_step)


_register()
