"""Plan instruction edits and restyles of a finished portrait: pure functions, no provider calls.

    request = compile_edit("pick.png", "soften the fill light", "flux-2-pro", "bfl", seed=7)
    request = compile_restyle("pick.png", "flux-kontext-pro", "bfl", seed=7, look="cinematic")

The engine runs the Request (recording it first, checking consent for reference images,
measuring identity before and after); this module only decides what to send.

How an instruction is phrased (BFL's editing guidance): say what to change, then say what
must not change — "Keep the person's face, identity, expression, pose and framing unchanged,
and change nothing else." A kept item the instruction itself asks to change ("make her
smile" changes the expression) is left out of that sentence, and the note says so. With
several input images (FLUX.2, Kontext multi-reference) the photo being edited is image 1
and the references follow it; the prompt names them by number as FLUX.2 expects.

Models: every catalog model with an `edit` mode — FLUX.1 Kontext [pro]/[max], FLUX.2
[pro]/[flex]/[max]/[klein]/[dev] hosted, and the local diffusers `FluxKontextPipeline`
(Kontext [dev]) and FLUX.2 pipelines. Other models are refused with the list of those that can.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict

from .catalog import ModelSpec, estimate_cost, get_model, megapixels, parse_aspect
from .delivery import DeliveryPlan, max_native_mp
from .errors import BriefError, CapabilityError, LimitError, UsageError
from .looks import Look, load_look
from .prompting import sampler_options
from .records import InputImage, Request

__all__ = [
    "IDENTITY_KEEP",
    "MAX_INSTRUCTION_CHARS",
    "check_instruction",
    "EditReport",
    "EditResult",
    "compile_edit",
    "compile_restyle",
    "edit_plan",
    "edit_report",
    "run_edit",
    "edit_size",
    "keep_sentence",
]

MAX_INSTRUCTION_CHARS = 1000
"""About 200 words: enough for any edit; Kontext's T5 encoder reads 512 tokens in all."""

IDENTITY_KEEP = ("face", "identity", "expression", "pose", "framing")
"""What an edit keeps unless the instruction itself changes it (face and identity always stay)."""

# An instruction that mentions one of these changes that item on purpose.
_CHANGES = {
    "expression": r"smil\w*|laugh\w*|grin\w*|frown\w*|expression|mouth|teeth|lips|wink\w*|eyes? (?:closed|open)"
                  r"|close (?:his|her|their) eyes|serious|pout\w*",
    "pose": r"pose|posture|turn\w*|tilt\w*|lean\w*|head|arms?|hands?|shoulders?|sit\w*|stand\w*|look(?:ing)? at",
    "framing": r"crop\w*|fram\w*|zoom\w*|wider|closer|tighter|extend\w*|outpaint\w*|aspect|composition|recompose",
}
_ImageArg = str | Path | InputImage


def check_instruction(text: str, *, field: str = "instruction") -> str:
    """The instruction, tidied; BriefError naming the field when it cannot be sent.

    This is the one place every edit instruction passes before it is compiled: the content
    screens (no minors, no secrets in prompts) belong here, next to the length check.
    """
    if not isinstance(text, str):
        raise BriefError("must be text", field=field, hint='write what to change, e.g. "soften the fill light"')
    tidy = " ".join(text.split())
    if not tidy:
        raise BriefError("is empty", field=field, hint='say what to change, e.g. "change the sweater to navy"')
    if len(tidy) > MAX_INSTRUCTION_CHARS:
        raise BriefError(f"is {len(tidy)} characters, over {MAX_INSTRUCTION_CHARS}", field=field,
                         hint="one change per round: edits work best as one short instruction")
    from .minors import refuse_minor
    from .redaction import refuse_keys

    refuse_minor(tidy, field=field)
    refuse_keys({field: tidy})
    return tidy


def keep_sentence(instruction: str, keep: Sequence[str] = IDENTITY_KEEP, change_only: str | None = None,
                  subject: str = "the person") -> tuple[str, list[str]]:
    """("Keep the person's face, … unchanged, and change nothing else.", items the instruction changes)."""
    lowered = instruction.lower()
    changed = [item for item in keep
               if item in _CHANGES and re.search(rf"\b(?:{_CHANGES[item]})\b", lowered)]
    kept = [item for item in keep if item not in changed]
    listed = kept[0] if len(kept) == 1 else ", ".join(kept[:-1]) + " and " + kept[-1]
    tail = f"change only {change_only}" if change_only else "change nothing else"
    whose = f"{subject}'s {listed}" if subject == "the person" else f"the {listed} of {subject}"
    return f"Keep {whose} unchanged, and {tail}.", changed


def compile_edit(
    image: _ImageArg,
    instruction: str,
    model: str,
    provider: str | None = None,
    *,
    seed: int,
    references: Sequence[_ImageArg] = (),
    delivery: DeliveryPlan | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    safety_tolerance: int | None = None,
    output_format: Literal["png", "jpeg", "webp"] = "png",
) -> Request:
    """One instruction edit of `image` (mode `edit`): the photo first in `images`, references after it."""
    spec, provider = _edit_model(model, provider)
    text = check_instruction(instruction)
    photo = _input(image, "edit")
    refs = tuple(_input(r, "reference") for r in references)
    notes: list[str] = []
    images = _within_limit(spec, photo, refs)
    keep, changed = keep_sentence(text, subject="the person in image 1" if refs else "the person")
    if changed:
        notes.append(f"the instruction changes the {' and '.join(changed)}, so the edit is not told to keep "
                     f"{'it' if len(changed) == 1 else 'them'}")
    what = _sentence(text)
    prompt = f"Edit image 1: {what} {keep}" if refs else f"{what} {keep}"
    return _request(spec, provider, images, prompt, notes, seed=seed, delivery=delivery, sampler=sampler,
                    steps=steps, guidance=guidance, safety_tolerance=safety_tolerance, output_format=output_format)


def compile_restyle(
    image: _ImageArg,
    model: str,
    provider: str | None = None,
    *,
    seed: int,
    look: str | Path | Look | None = None,
    style_ref: _ImageArg | None = None,
    delivery: DeliveryPlan | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    safety_tolerance: int | None = None,
    output_format: Literal["png", "jpeg", "webp"] = "png",
) -> Request:
    """Move `image` into a look (a preset id, a look file or a `Look`) and/or the look of a style image.

    A look becomes an edit instruction on any edit model; a style reference needs a model that
    takes several images (FLUX.2, Kontext [pro]/[max]) and travels as image 2 (role `style`).
    `Request.options["look"]` records the look's id for the ledger and the checklist.
    """
    if look is None and style_ref is None:
        raise UsageError("nothing to restyle to", field="--look",
                         hint="give --look editorial|cinematic|… or --style-ref IMAGE (or both)")
    spec, provider = _edit_model(model, provider)
    chosen = look if isinstance(look, Look) or look is None else load_look(look)
    photo = _input(image, "edit")
    refs = () if style_ref is None else (_input(style_ref, "style"),)
    if refs and spec.max_references < 2:
        raise CapabilityError(f"{spec.name} edits one image; a style reference needs a model that takes several",
                              hint=f"use --look instead, or one of: {_several_image_models()}")
    images = _within_limit(spec, photo, refs)
    keep, _ = keep_sentence("", (*IDENTITY_KEEP[:4], "clothing", "framing"),
                            change_only="the colour grade, the light and the photographic rendering",
                            subject="the person in image 1" if refs else "the person")
    sentences: list[str] = []
    if refs:
        sentences.append("Restyle image 1 to match the look of image 2: its colour grade, light, contrast and mood. "
                         "Take only the look from image 2, not its person, clothing or scene.")
        if chosen is not None:
            sentences.append(chosen.instruction().replace("Restyle the photo as", "Aim for", 1))
    else:
        assert chosen is not None
        sentences.append(chosen.instruction())
    notes = [f"look '{chosen.id or chosen.name}' compiled into an edit instruction for {spec.name}"] if chosen else []
    if refs:
        notes.append(f"style reference {Path(refs[0].path).name} sent as image 2 (its look only, not its person)")
    request = _request(spec, provider, images, " ".join([*sentences, keep]), notes, seed=seed, delivery=delivery,
                       sampler=sampler, steps=steps, guidance=guidance, safety_tolerance=safety_tolerance,
                       output_format=output_format)
    if chosen is None:
        return request
    return request.model_copy(update={"options": {**request.options, "look": chosen.id or chosen.name,
                                                  "monochrome": chosen.monochrome}})


# --- size ------------------------------------------------------------------------------------


def edit_size(spec: ModelSpec, provider: str, width: int, height: int,
              notes: list[str]) -> tuple[int | None, int | None, str | None]:
    """(width, height, aspect_ratio) of the edited image: the photo's own, within the model's limits.

    Kontext [pro]/[max] take an aspect ratio and render about 1MP; the others keep the photo's
    size up to their largest megapixel mode (4MP FLUX.2, 1MP Kontext [dev]), on their grid.
    """
    rules = spec.size_on(provider)
    if rules.kind == "aspect":
        aspect = _aspect_text(width, height)
        lo, hi = parse_aspect(rules.aspect_min or "1:100"), parse_aspect(rules.aspect_max or "100:1")
        if not lo - 1e-9 <= parse_aspect(aspect) <= hi + 1e-9:
            raise LimitError(f"the photo's aspect ratio {aspect} is outside {spec.name}'s {rules.aspect_min} … "
                             f"{rules.aspect_max}", field="image", hint="crop the photo first, or edit with flux-2-pro")
        if megapixels(width, height) > (rules.fixed_mp or 1.0) * 1.1:
            notes.append(f"{spec.name} renders about {rules.fixed_mp or 1:g}MP: the {width}×{height} photo comes back "
                         f"smaller at {aspect}; add a delivery size to upscale it")
        return None, None, aspect
    if rules.kind == "input":
        return None, None, None
    cap = max_native_mp(spec, provider)
    m = rules.multiple
    scale = min(1.0, (cap / megapixels(width, height)) ** 0.5)
    if rules.max_side:
        scale = min(scale, rules.max_side / max(width, height))
    out_w, out_h = max(m, int(width * scale) // m * m), max(m, int(height * scale) // m * m)
    if scale < 1.0:
        notes.append(f"{spec.name} edits at most {cap:g}MP: the {width}×{height} photo is edited at {out_w}×{out_h}")
    elif (out_w, out_h) != (width, height):
        notes.append(f"{width}×{height} edited at {out_w}×{out_h} (multiples of {m})")
    if min(out_w, out_h) < rules.min_side:
        raise LimitError(f"the photo is {width}×{height}, below {spec.name}'s minimum of {rules.min_side} px",
                         field="image", hint="upscale the photo first")
    return out_w, out_h, None


# --- helpers ------------------------------------------------------------------------------------


def _edit_model(model: str, provider: str | None) -> tuple[ModelSpec, str]:
    spec = get_model(model)
    if "edit" not in spec.modes:
        raise CapabilityError(f"{spec.name} has no edit mode", hint=f"edit with one of: {_edit_routes()}")
    provider = provider or spec.default_provider
    spec.route(provider)
    return spec, provider


def _edit_routes(several: bool = False) -> str:
    from .catalog import all_models

    return "; ".join(f"{m.id} ({', '.join(m.routes)})" for m in all_models()
                     if "edit" in m.modes and (not several or m.max_references >= 2))


def _several_image_models() -> str:
    return _edit_routes(several=True)


def _input(image: _ImageArg, role: str) -> InputImage:
    if isinstance(image, InputImage):
        keeps_role = role == "reference" and image.role in ("reference", "identity", "style")
        return image if keeps_role or image.role == role else image.model_copy(update={"role": role})
    path = Path(image)
    if not path.is_file():
        raise BriefError(f"image not found: {path}", field="image" if role == "edit" else "references",
                         hint="check the path")
    return InputImage.from_path(path, role=role)


def _within_limit(spec: ModelSpec, photo: InputImage,
                  refs: tuple[InputImage, ...]) -> tuple[InputImage, ...]:
    limit = max(1, spec.max_references)
    if 1 + len(refs) > limit:
        raise LimitError(f"{spec.name} takes {limit} input image{'s' if limit > 1 else ''}: the photo"
                         + (f" and at most {limit - 1} reference{'s' if limit > 2 else ''}" if limit > 1 else " only")
                         + f"; {len(refs)} reference{'s' if len(refs) != 1 else ''} given",
                         field="references", hint=f"use fewer references, or one of: {_several_image_models()}")
    return (photo, *refs)


def _request(spec: ModelSpec, provider: str, images: tuple[InputImage, ...], prompt: str, notes: list[str], *,
             seed: int, delivery: DeliveryPlan | None, sampler: str | None, steps: int | None,
             guidance: float | None, safety_tolerance: int | None, output_format: str) -> Request:
    if len(images) > 1:
        numbering = "; ".join(f"image {n} = {Path(i.path).name} ({'the photo' if n == 1 else i.role})"
                              for n, i in enumerate(images, 1))
        notes.append(f"input images in order: {numbering}")
    with Image.open(images[0].path) as im:
        photo_w, photo_h = im.size
    if delivery is not None:
        width, height, aspect = _delivery_size(spec, provider, delivery, notes)
    else:
        width, height, aspect = edit_size(spec, provider, photo_w, photo_h, notes)
    options = {}
    if sampler is not None:
        from .samplers import sampler_id

        try:
            options = sampler_options(sampler_id(sampler), spec, provider, "edit", notes)
        except ValueError as exc:
            raise UsageError(str(exc), field="--sampler") from None
    input_mp = sum(_mp(i) for i in images)
    return Request(
        model=spec.id, provider=provider, mode="edit", prompt=prompt, width=width, height=height,
        aspect_ratio=aspect, steps=_steps(spec, steps), guidance=_guidance(spec, guidance), seed=seed,
        output_format=output_format,  # type: ignore[arg-type]
        safety_tolerance=_safety(spec, safety_tolerance), images=images, options=options, warnings=tuple(notes),
        estimated_cost=estimate_cost(spec, provider, width, height, input_mp),
    )


def _delivery_size(spec: ModelSpec, provider: str, plan: DeliveryPlan,
                   notes: list[str]) -> tuple[int | None, int | None, str | None]:
    if (plan.model, plan.provider) != (spec.id, provider):
        raise UsageError(f"the delivery plan is for {plan.model}@{plan.provider}, not {spec.id}@{provider}",
                         field="--deliver", hint="plan the delivery with the edit's model and provider")
    notes.extend(plan.notes)
    if spec.size_on(provider).kind == "aspect":
        return None, None, plan.aspect_ratio
    return plan.native_w, plan.native_h, None


def _steps(spec: ModelSpec, steps: int | None) -> int | None:
    if spec.steps is None:
        if steps is not None:
            raise LimitError(f"{spec.name} takes no step count", field="steps", hint="leave --steps out")
        return None
    value = spec.steps.default if steps is None else steps
    if not spec.steps.min <= value <= spec.steps.max:
        raise LimitError(f"{value} steps is outside {spec.name}'s {spec.steps.min}–{spec.steps.max}", field="steps")
    return value


def _guidance(spec: ModelSpec, guidance: float | None) -> float | None:
    if spec.guidance is None:
        if guidance is not None:
            raise LimitError(f"{spec.name} takes no guidance", field="guidance", hint="leave --guidance out")
        return None
    value = spec.guidance.default if guidance is None else guidance
    if not spec.guidance.min <= value <= spec.guidance.max:
        raise LimitError(f"guidance {value:g} is outside {spec.name}'s {spec.guidance.min:g}–{spec.guidance.max:g}",
                         field="guidance")
    return value


def _safety(spec: ModelSpec, value: int | None) -> int | None:
    limits = spec.safety_tolerance
    if limits is None:
        return None
    if value is None:
        return limits.default
    if not limits.min <= value <= limits.max:
        raise LimitError(f"{value} is outside {spec.name}'s {limits.min}–{limits.max}", field="safety_tolerance")
    return value


def _aspect_text(width: int, height: int) -> str:
    ratio = Fraction(width, height).limit_denominator(21)
    return f"{ratio.numerator}:{ratio.denominator}"


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _mp(image: InputImage) -> float:
    with Image.open(image.path) as im:
        return megapixels(*im.size)


# --- on the engine: plan, then the `edit` finishing step ---------------------------------------------


def edit_plan(
    engine: Any,
    image_path: str | Path,
    *,
    model: str,
    provider: str | None = None,
    instruction: str | None = None,
    looks: Sequence[str] = (),
    style_ref: str | Path | None = None,
    references: Sequence[str | Path] = (),
    seed: int = 0,
    deliver: str | None = None,
    sampler: str | None = None,
    thresholds: Any = None,
) -> Any:
    """The engine's plan for one edit round (an instruction) or a restyle (one request per look, or
    one to a style reference): each result is a child of the image, labelled as edited, its
    identity measured against the image and its checklist run by the `edit` step."""
    from .engine import Plan, Step
    from .finishing.lineage import ensure_recorded
    from .identity import DEFAULT_THRESHOLDS

    if (instruction is None) == (not looks and style_ref is None):
        raise UsageError("give an instruction, or looks / a style reference to restyle to", field="instruction",
                         hint='portrait edit IMG "soften the fill light" · portrait restyle IMG --look cinematic')
    image_path = Path(image_path)
    parent = ensure_recorded(engine.ledger, image_path, engine.images_dir)
    photo = InputImage(path=parent.path, sha256=parent.image_sha256, role="edit")
    spec, provider = _edit_model(model, provider)
    delivery = None
    if deliver:
        from .delivery import plan_delivery

        delivery = plan_delivery(spec.id, provider, deliver, (parent.width or 1) / (parent.height or 1))
    refs = tuple(InputImage.from_path(r, role="reference") for r in references)
    style = InputImage.from_path(style_ref, role="style") if style_ref is not None else None
    if instruction is not None:
        requests = [compile_edit(photo, instruction, spec.id, provider, seed=seed, references=refs, delivery=delivery,
                                 sampler=sampler)]
        what: dict[str, Any] = {"instruction": " ".join(instruction.split())}
        kind = "edit"
    else:
        chosen: list[str | None] = list(looks) or [None]
        requests = [compile_restyle(photo, spec.id, provider, seed=seed, look=look, style_ref=style, delivery=delivery,
                                    sampler=sampler) for look in chosen]
        what = {"looks": [look for look in chosen if look], "style_ref": str(style_ref) if style_ref else None}
        kind = "restyle"
    requests = [r.model_copy(update={"parent_id": parent.id, "options": {**r.options, "record_as": "edit",
                                                                            "edit_of": parent.image_sha256}})
                for r in requests]
    steps = [Step(name="edit", args={"kind": kind,
                                      "thresholds": (thresholds or DEFAULT_THRESHOLDS).model_dump()})]
    if delivery is not None:
        steps.append(Step(name="deliver_size", args={"deliver": delivery.deliver, "operations": ["edit"]}))
    return Plan(kind=kind, name=f"{kind} {image_path.name}", requests=tuple(requests), steps=tuple(steps),
                details={**what, "parent_sha256": parent.image_sha256, "source": str(image_path), "model": spec.id,
                         "deliver": delivery.model_dump() if delivery else None})


class EditResult(BaseModel):
    """One edited or restyled image, with what the edit step measured."""

    model_config = ConfigDict(frozen=True)

    image_id: str
    path: str
    look: str | None
    distance: float | None
    identity: str
    """pass | warn | fail | no_face — fail: the person is lost (flagged, never kept as the pick)."""
    check: str | None
    score: float | None
    picked: bool = False
    sandbox: bool = False


class EditReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    kind: str
    parent_sha256: str
    results: list[EditResult]
    sheet: str | None = None
    spent_usd: float = 0.0
    sandbox_usd: float = 0.0

    @property
    def flagged(self) -> list[EditResult]:
        return [r for r in self.results if r.identity in ("fail", "no_face")]


def _edit_label(engine: Any, image: Any, request: Request, parent: Any) -> Any:
    from .labels import LabelInfo

    look = request.options.get("look")
    what = f"restyled to the '{look}' look" if look else (
        "restyled to a style reference" if any(i.role == "style" for i in request.images) else
        f"instruction edit: {request.prompt.split(' Keep ')[0]}")
    return LabelInfo.from_request(
        request, is_composite=True, parent_sha256=parent.image_sha256, edit=what, width=image.width,
        height=image.height, sandbox=image.sandbox or parent.sandbox,
        creator=getattr(engine.labels, "creator", None), credit=getattr(engine.labels, "credit", None),
    )


async def _edit_step(ctx: Any) -> None:
    import asyncio

    engine, run = ctx.engine, ctx.run
    ledger = engine.ledger
    from .identity import IdentityThresholds, face_embedding, measure_shot

    thresholds = IdentityThresholds.model_validate(ctx.args["thresholds"])
    edited = _edited(ledger, run.id)
    if not edited:
        return
    parent = ledger.image(edited[0].parent_sha256 or "")
    anchor = await asyncio.to_thread(face_embedding, Path(parent.path))
    brief = _parent_brief(ledger, parent)
    for n, image in enumerate(edited):
        request = ledger.request(image.request_id or "").request
        parent_file = parent.out_path if parent.out_path and Path(parent.out_path).is_file() else parent.path
        engine.deliver(image, request, info=_edit_label(engine, image, request, parent), kind="edit",
                       parent_path=parent_file)
        if not ledger.has_identity(run.id, n, image.image_sha256, "edit"):
            if anchor is None:
                distance, status = None, "no_face"
            else:
                shot = await asyncio.to_thread(measure_shot, anchor, Path(image.path), n, thresholds)
                distance, status = shot.distance, shot.status
            ledger.record_identity(run.id, n, image.image_sha256, distance, status, details={
                "step": "edit", "parent_sha256": parent.image_sha256, "look": request.options.get("look"),
                "kept": status in ("pass", "warn")})
        if engine.checker is not None and brief is not None and ledger.checks(image.image_sha256) is None:
            path = Path(image.out_path) if image.out_path and Path(image.out_path).is_file() else Path(image.path)
            overall, score, data = await asyncio.to_thread(engine.checker, path, brief)
            ledger.record_checks(image.image_sha256, overall, score, data)
    report = edit_report(ledger, run.id)
    keep = [r for r in report.results if r.identity in ("pass", "warn")]
    if keep and ctx.args.get("kind") == "restyle":
        best = max(keep, key=lambda r: ((r.score if r.score is not None else -1), -(r.distance or 0)))
        ledger.pick(run.id, best.image_id)
    if ctx.args.get("kind") == "restyle":
        _restyle_sheet(ledger, run.id, ctx.out_dir)


def _edited(ledger: Any, run_id: str) -> list[Any]:
    """The run's edited images in the order they were planned (looks as the user listed them)."""
    found = [i for i in ledger.images(run_id=run_id, limit=1000) if i.operation == "edit" and i.request_id]
    return sorted(found, key=lambda i: ledger.request(i.request_id).position)


def _parent_brief(ledger: Any, parent: Any) -> Any:
    """The brief the image was shot from (for the checklist's lighting and expression targets)."""
    from .brief import parse_brief

    for row in ledger.lineage(parent.image_sha256):
        if row.run_id:
            run = ledger.run(row.run_id)
            if run.brief:
                return parse_brief(run.brief, source=f"run {run.id}")
    return parse_brief({"subject": {"description": "portrait"}}, source="edit")


def edit_report(ledger: Any, run_id: str) -> EditReport:
    run = ledger.run(run_id)
    rows = {r["image_sha256"]: r for r in ledger.identity(run_id) if (r.get("details") or {}).get("step") == "edit"}
    results = []
    for image in _edited(ledger, run_id):
        request = ledger.request(image.request_id or "").request
        ident = rows.get(image.image_sha256) or {}
        results.append(EditResult(
            image_id=image.id, path=str(image.out_path or image.path), look=request.options.get("look"),
            distance=ident.get("distance"), identity=str(ident.get("status", "unmeasured")),
            check=image.check_overall, score=image.check_score, picked=image.picked, sandbox=image.sandbox,
        ))
    out = Path(run.out_dir or "")
    sheet = out / "restyle-sheet.png"
    return EditReport(run_id=run_id, kind=run.kind, parent_sha256=str((run.plan or {}).get("parent_sha256")),
                      results=results, sheet=str(sheet) if sheet.is_file() else None,
                      spent_usd=ledger.spent(run_id).usd, sandbox_usd=ledger.spent(run_id, sandbox=True).usd)


def _restyle_sheet(ledger: Any, run_id: str, out: Path) -> Path | None:
    """The restyle sheet: the original, then each look with its identity distance and checklist."""
    from .grids import Tile, contact_sheet

    report = edit_report(ledger, run_id)
    parent = ledger.image(report.parent_sha256)
    tiles = [Tile(path=parent.out_path if parent.out_path and Path(parent.out_path).is_file() else parent.path,
                  lines=("original", f"{parent.model or 'photo'} · seed {parent.seed}"), status=parent.check_overall,
                  badge="SANDBOX" if parent.sandbox else None)]
    for r in report.results:
        flag = "  PERSON LOST" if r.identity in ("fail", "no_face") else ("  (the pick)" if r.picked else "")
        tiles.append(Tile(path=r.path, lines=(f"{r.look or 'style reference'}{flag}",
                                              f"identity {r.distance if r.distance is not None else 'no face'} ({r.identity})"
                                              f" · check {r.check or 'n/a'}"),
                          status="fail" if r.identity in ("fail", "no_face") else r.check,
                          badge="SANDBOX" if r.sandbox else None))
    return contact_sheet(tiles, out / "restyle-sheet.png", title=f"restyle · {run_id}")


async def run_edit(engine: Any, image_path: str | Path, *, budget_usd: float | None = None,
                   out_dir: Path | None = None, **options: Any) -> EditReport:
    """Plan, record, pay once, label, measure: one edit round or one restyle."""
    from .engine import failure_summary

    plan = edit_plan(engine, image_path, **options)
    run_id = engine.record(plan, budget_usd=budget_usd, out_dir=out_dir)
    report = await engine.execute(run_id, budget_usd=budget_usd)
    result = edit_report(engine.ledger, run_id)
    if not result.results:
        raise failure_summary(report) or BriefError("the edit did not finish", hint=f"'portrait resume {run_id}'")
    return result


def _register() -> None:
    from .engine import register_step

    register_step("edit")(_edit_step)


_register()
