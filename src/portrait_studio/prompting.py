"""Compile a Brief into the Request one model needs. Pure: same input, same output.

The portrait workflow's rules live here, each announced in `Request.warnings` (a note
the user sees) when it changes something:

- baseline 28–36 steps (30), the guide's CFG 4.5–6.0 (5.0) mapped onto each model's native
  guidance (catalog `cfg_map`; FLUX.1 [dev]'s distilled guidance is not classic CFG), and
  768×1024 portrait / 1024×1024 square at 1MP;
- hands visible → at least 36 steps and at most the equivalent of CFG 5.5, hand-pose phrase;
- teeth visible → "even teeth, no gaps, natural shade"; no teeth → "closed-mouth smile";
- skin realism cues always present; the plastic-skin recipe lowers guidance by the
  equivalent of CFG 0.5 and moves to Rembrandt light with soft fill;
- the avoid list becomes positive cues (reported), as the guide calls it "light"; on local models
  that support it, `quality.true_cfg: true` sends it as a true-CFG negative prompt instead, at
  twice the transformer calls per step (said in the plan);
- anything outside a model's limits is a LimitError naming the limit; only snapping to the
  size multiple is done silently-but-reported;
- the brief's sampler reaches local FLUX pipelines that can run it (`options["sampler"]`);
  hosted APIs and pipelines that cannot take it get a note instead;
- a delivery plan (`--deliver 4k`) replaces the brief's size with the model's best native
  size for the delivery; the engine upscales to the exact size afterwards.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .brief import Brief, preset
from .catalog import ModelSpec, estimate_cost, get_model, megapixels, parse_aspect
from .delivery import DeliveryPlan
from .errors import BriefError, CapabilityError, LimitError, UsageError
from .records import InputImage, Mode, Request
from .samplers import DEFAULT_SAMPLER, SAMPLERS

__all__ = [
    "BASELINE_CFG",
    "BASELINE_STEPS",
    "HANDS_MAX_CFG",
    "HANDS_MIN_STEPS",
    "at_native_size",
    "compile_brief",
    "plastic_skin_recipe",
    "resolve_size",
    "sampler_options",
]

BASELINE_CFG = 5.0  # middle of the guide's 4.5–6.0
BASELINE_STEPS = 30  # middle of the guide's 28–36
HANDS_MIN_STEPS = 36
HANDS_MAX_CFG = 5.5
PLASTIC_SKIN_CFG_DROP = 0.5
TEETH_CUE = "even teeth, no gaps, natural shade"
PORTRAIT_LENS_MM = (85, 105)
LONG_SIDE_1MP = 1024


def plastic_skin_recipe(brief: Brief) -> Brief:
    """The plastic-skin remedy: guidance −0.5 (CFG scale), Rembrandt light, soft fill."""
    quality = brief.quality.model_copy(update={"cfg": max(1.0, brief.quality.cfg - PLASTIC_SKIN_CFG_DROP)})
    lighting = brief.lighting.model_copy(update={"pattern": "rembrandt", "fill": "soft fill from the camera axis"})
    return brief.model_copy(update={"quality": quality, "lighting": lighting})


# --- size --------------------------------------------------------------------------------


def _snap(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def resolve_size(
    brief: Brief, spec: ModelSpec, notes: list[str], provider: str | None = None
) -> tuple[int | None, int | None, str | None]:
    """(width, height, aspect_ratio) for this model, or a LimitError naming the limit."""
    rules = spec.size_on(provider or spec.default_provider)
    out = brief.output
    aspect = out.aspect_ratio or preset("compositions")[brief.composition.framing]["aspect_ratio"]
    if rules.kind == "input":
        return None, None, None
    if rules.kind == "aspect":
        _check_aspect(aspect, spec)
        if out.width:
            notes.append(f"{spec.name} takes an aspect ratio, not a size: {out.width}×{out.height} sent as {aspect}")
        wanted = {"1MP": 1.0, "2MP": 2.0, "4MP": 4.0}[out.resolution]
        if rules.fixed_mp and wanted > rules.fixed_mp:
            raise LimitError(
                f"{spec.name} renders about {rules.fixed_mp:g}MP; {out.resolution} is beyond it",
                field="output.resolution",
                hint=f"choose resolution {rules.fixed_mp:g}MP and upscale with 'portrait upscale', or use flux-1.1-pro-ultra",
            )
        if rules.fixed_mp and wanted < rules.fixed_mp:
            notes.append(f"{spec.name} always renders about {rules.fixed_mp:g}MP (asked {out.resolution})")
        return None, None, aspect

    if out.width and out.height:
        exact_w, exact_h = float(out.width), float(out.height)
    else:
        ratio = parse_aspect(aspect)
        long_side = LONG_SIDE_1MP * math.sqrt({"1MP": 1, "2MP": 2, "4MP": 4}[out.resolution])
        exact_w, exact_h = (long_side * ratio, long_side) if ratio < 1 else (long_side, long_side / ratio)
    width, height = _snap(exact_w, rules.multiple), _snap(exact_h, rules.multiple)
    if (width, height) != (round(exact_w), round(exact_h)):
        notes.append(f"size {round(exact_w)}×{round(exact_h)} snapped to {width}×{height} (multiples of {rules.multiple})")
    for side, value in (("width", width), ("height", height)):
        if value < rules.min_side:
            raise LimitError(f"{value} px is below {spec.name}'s minimum of {rules.min_side} px", field=f"output.{side}")
        if rules.max_side and value > rules.max_side:
            raise LimitError(
                f"{value} px exceeds {spec.name}'s maximum of {rules.max_side} px per side",
                field=f"output.{side}" if out.width else "output.resolution",
                hint="choose a lower resolution, or a model with larger outputs (flux-1.1-pro-ultra, flux-2-pro)",
            )
    if rules.max_mp and megapixels(width, height) > rules.max_mp + 1e-9:
        raise LimitError(
            f"{width}×{height} is {megapixels(width, height):.2f}MP, over {spec.name}'s {rules.max_mp:g}MP",
            field="output.resolution",
            hint="choose a lower resolution and upscale afterwards",
        )
    return width, height, None


def _check_aspect(aspect: str, spec: ModelSpec) -> None:
    ratio = parse_aspect(aspect)
    lo = parse_aspect(spec.size.aspect_min or "1:100")
    hi = parse_aspect(spec.size.aspect_max or "100:1")
    if not lo - 1e-9 <= ratio <= hi + 1e-9:
        raise LimitError(
            f"aspect ratio {aspect} is outside {spec.name}'s range {spec.size.aspect_min} … {spec.size.aspect_max}",
            field="output.aspect_ratio",
        )


# --- steps and guidance --------------------------------------------------------------------


def _steps(brief: Brief, spec: ModelSpec, notes: list[str]) -> int | None:
    if spec.steps is None:
        if brief.quality.steps:
            notes.append(f"{spec.name} takes no step count; quality.steps={brief.quality.steps} not sent")
        elif brief.hands.visible:
            notes.append(f"hands visible, but {spec.name} takes no step count to raise")
        return None
    limits = spec.steps
    if brief.quality.steps is not None:
        steps = brief.quality.steps
    elif limits.default < 28:
        steps = limits.default
        notes.append(f"{spec.name} is step-distilled: {steps} steps (the 28–36 baseline does not apply)")
    else:
        steps = BASELINE_STEPS
    if brief.hands.visible and steps < HANDS_MIN_STEPS and limits.max >= HANDS_MIN_STEPS and limits.default >= 28:
        notes.append(f"hands visible: steps raised {steps} → {HANDS_MIN_STEPS} so fingers resolve")
        steps = HANDS_MIN_STEPS
    if not limits.min <= steps <= limits.max:
        raise LimitError(
            f"{steps} steps is outside {spec.name}'s range {limits.min}–{limits.max}", field="quality.steps"
        )
    return steps


def _guidance(brief: Brief, spec: ModelSpec, notes: list[str]) -> float | None:
    cfg = brief.quality.cfg
    if not 4.5 <= cfg <= 6.0:
        notes.append(f"CFG {cfg:g} is outside the portrait guide's 4.5–6.0")
    if brief.hands.visible and cfg > HANDS_MAX_CFG:
        notes.append(f"hands visible: CFG {cfg:g} lowered to {HANDS_MAX_CFG:g} (less over-sharpened, splayed fingers)")
        cfg = HANDS_MAX_CFG
    if brief.quality.plastic_skin_remedy:  # plastic_skin_recipe already lowered cfg
        notes.append(
            f"plastic-skin recipe: guidance lowered by the equivalent of CFG {PLASTIC_SKIN_CFG_DROP}, "
            "Rembrandt light with soft fill"
        )
    if spec.guidance is None:
        if cfg != 5.0 or brief.quality.plastic_skin_remedy or brief.hands.visible:
            notes.append(f"{spec.name} takes no guidance; CFG {cfg:g} not sent")
        return None
    native = spec.guidance.from_cfg(cfg)
    if not spec.guidance.min <= native <= spec.guidance.max:
        raise LimitError(
            f"CFG {cfg:g} maps to guidance {native:g}, outside {spec.name}'s {spec.guidance.min:g}–{spec.guidance.max:g}",
            field="quality.cfg",
            hint="use a CFG between 4.5 and 6.0",
        )
    if spec.guidance.kind == "distilled":
        notes.append(f"CFG {cfg:g} → distilled guidance {native:g} ({spec.name} has embedded, not classic, guidance)")
    return native


# --- prompt text -----------------------------------------------------------------------------


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:] + "." if text else ""


def _subject_phrase(brief: Brief) -> str:
    s = brief.subject
    who = s.description or "a person"
    traits = [t for t in (s.ethnicity, f"{s.skin_tone} skin" if s.skin_tone else None) if t]
    if not s.description and (s.age or s.gender_expression):
        noun = {"feminine": "woman", "masculine": "man"}.get((s.gender_expression or "").lower(), "person")
        who = f"a {s.age}-year-old {noun}" if s.age else f"a {noun}"
    phrase = who + (f", {', '.join(traits)}" if traits else "")
    if s.anchors:
        anchors = list(s.anchors)
        joined = anchors[0] if len(anchors) == 1 else ", ".join(anchors[:-1]) + " and " + anchors[-1]
        phrase += f", with {joined}"
    return phrase


def _mouth_phrase(brief: Brief) -> str:
    mouth = brief.expression.mouth
    if brief.expression.teeth_visible:
        base = "a wide laugh" if mouth == "laughing" else "a smile showing teeth"
        return f"{base}, {TEETH_CUE}"
    return {
        "closed-mouth-smile": "a closed-mouth smile",
        "subtle-smile-no-teeth": "a subtle closed-mouth smile, lips together",
        "neutral": "a relaxed neutral expression, lips closed",
    }[mouth]


def _lighting_phrase(brief: Brief) -> str:
    light = brief.lighting
    entry = preset("lighting")[light.pattern]
    side = "camera left" if light.key_side == "left" else "camera right"
    text = str(entry["phrase"]).replace("{key_side}", side)
    fill = light.fill or entry.get("fill")
    if fill:
        text += f", {fill}"
    if light.time_of_day:
        text += f", {light.time_of_day}"
    return text


def _camera_phrase(brief: Brief) -> str:
    lens = brief.lens
    parts = [str(preset("angles")[brief.composition.angle])]
    shot = f"shot on {lens.camera + ' with ' if lens.camera else ''}an {lens.focal_length_mm}mm lens at f/{lens.f_stop:g}"
    parts.append(shot)
    if lens.distance:
        parts.append(lens.distance)
    parts.append("shallow depth of field" if lens.f_stop <= 2.8 else "moderate depth of field")
    if lens.film:
        parts.append(f"on {lens.film}")
    return ", ".join(parts)


def _avoid(brief: Brief, spec: ModelSpec, provider: str, notes: list[str]) -> tuple[list[str], str | None]:
    """(positive cues, negative prompt). Never drops a term without saying so."""
    if not brief.avoid:
        return [], None
    local_cfg = spec.negative_prompt == "true_cfg" and provider == "local"
    if local_cfg and brief.quality.true_cfg:
        notes.append(
            f"avoid list sent as a true-CFG negative prompt (scale {brief.quality.true_cfg_scale:g}): "
            "×2 transformer calls per step (about twice the time per image)"
        )
        return [], ", ".join(brief.avoid)
    if local_cfg:
        notes.append("avoid list rewritten as positive cues, like the hosted models; quality.true_cfg: true sends it "
                     "as a true-CFG negative prompt instead, at ×2 transformer calls per step")
    rewrites: dict[str, str] = preset("avoid")["rewrites"]
    cues: list[str] = []
    done: list[str] = []
    for term in brief.avoid:
        cue = rewrites.get(term.lower().strip())
        if cue is None:
            notes.append(
                f"avoid '{term}': {spec.name} takes no negative prompt and no positive rewrite is known; "
                "not sent — add a positive cue to quality.cues"
            )
            continue
        if cue not in cues:
            cues.append(cue)
        done.append(f"avoid '{term}' → '{cue}'")
    if done:
        why = "by default" if local_cfg else "takes no negative prompt, so"
        notes.append(f"{spec.name} {why} the avoid list became positive cues: " + "; ".join(done))
    return cues, None


def _prose(brief: Brief, avoid_cues: list[str]) -> str:
    framing = preset("compositions")[brief.composition.framing]["phrase"]
    first = f"Photorealistic {framing} of {_subject_phrase(brief)}"
    style = [p for p in (brief.styling.hair, brief.styling.makeup) if p]
    if brief.styling.wardrobe:
        style.append(f"wearing {brief.styling.wardrobe}")
    mood = f"{brief.expression.mood}, " if brief.expression.mood else ""
    hands = (
        (brief.hands.pose or "relaxed hands with five natural fingers each, no finger splay")
        if brief.hands.visible
        else "hands out of frame"
    )
    quality = list(dict.fromkeys([*brief.quality.cues, *preset("quality")["skin_realism"], *avoid_cues]))
    sentences = [
        first,
        "; ".join(style),
        f"{mood}{_mouth_phrase(brief)}, {hands}",
        _lighting_phrase(brief),
        _camera_phrase(brief),
        f"Background: {brief.background.phrase}",
        ", ".join(quality),
    ]
    return " ".join(_sentence(s) for s in sentences if s)


def _structured(brief: Brief, avoid_cues: list[str]) -> dict[str, Any]:
    """FLUX.2's JSON prompt schema (scene, subjects, style, lighting, mood, background, composition, camera)."""
    framing = preset("compositions")[brief.composition.framing]["phrase"]
    hands = brief.hands.pose if brief.hands.visible else "hands out of frame"
    return {
        "scene": f"photorealistic {framing}",
        "subjects": [
            {
                "description": _subject_phrase(brief)
                + "".join(f"; {p}" for p in (brief.styling.hair, brief.styling.makeup) if p)
                + (f"; wearing {brief.styling.wardrobe}" if brief.styling.wardrobe else ""),
                "position": "centered, facing the camera",
                "action": f"{_mouth_phrase(brief)}; {hands}",
            }
        ],
        "style": ", ".join([*brief.quality.cues, *preset("quality")["skin_realism"], *avoid_cues]),
        "lighting": _lighting_phrase(brief),
        "mood": brief.expression.mood or "natural",
        "background": brief.background.phrase,
        "composition": f"{framing}, {brief.composition.angle}",
        "camera": {
            "angle": brief.composition.angle,
            "lens": f"{brief.lens.focal_length_mm}mm f/{brief.lens.f_stop:g}",
            "depth_of_field": "shallow" if brief.lens.f_stop <= 2.8 else "moderate",
        },
    }


# --- references ------------------------------------------------------------------------------


def _references(
    brief: Brief, spec: ModelSpec, notes: list[str]
) -> tuple[Mode, tuple[InputImage, ...], float | None, float | None]:
    """(mode, input images, denoise, reference_weight) for the brief's references on this model."""
    if not brief.references:
        return "text-to-image", (), None, None
    refs = brief.references
    if "reference" in spec.modes and spec.family != "dev":
        if len(refs) > spec.max_references:
            raise LimitError(
                f"{len(refs)} reference images, but {spec.name} takes at most {spec.max_references}",
                field="references",
            )
        images = tuple(InputImage.from_path(r.path, role=r.role) for r in refs)
        return "reference", images, None, refs[0].weight
    if "image-to-image" in spec.modes:
        if len(refs) > 1:
            raise LimitError(f"{spec.name} conditions on one init image; {len(refs)} given", field="references")
        denoise = round(min(1.0, max(0.05, 1.0 - refs[0].weight)), 3)
        notes.append(
            f"{spec.name} takes no reference input: the reference is sent as the init image at denoise "
            f"{denoise:g} (1 − weight {refs[0].weight:g})"
        )
        return "image-to-image", (InputImage.from_path(refs[0].path, role="init"),), denoise, None
    raise CapabilityError(f"{spec.name} cannot take reference images", hint="remove references, or pick flux-1.1-pro-ultra, flux-2-pro or flux-kontext-pro")


# --- sampler and delivery ---------------------------------------------------------------------


def sampler_options(sampler: str | None, spec: ModelSpec, provider: str, mode: Mode, notes: list[str]) -> dict[str, Any]:
    """`{"sampler": id}` for a local pipeline that can run it; otherwise {} and a note saying why.

    Euler is FLUX's own sampler and the default everywhere, so it is never sent.
    """
    if sampler is None:
        return {}
    chosen = SAMPLERS[sampler]
    route = spec.route(provider)
    if not route.samplers:
        notes.append(f"the {provider} API takes no sampler: '{chosen.label}' not sent (the service runs its own)")
        return {}
    if sampler == DEFAULT_SAMPLER:
        return {}
    if sampler not in route.samplers:
        why = f" ({route.sampler_note})" if route.sampler_note else ""
        runs = ", ".join(SAMPLERS[s].label for s in route.samplers)
        notes.append(f"the local {spec.name} pipeline runs only the {runs} sampler: '{chosen.label}' not sent{why}")
        return {}
    if mode in ("image-to-image", "inpaint"):
        notes.append(f"'{chosen.label}' cannot start from a partly noised init image in diffusers "
                     f"(the DPM-Solver has no scale_noise); this {mode} runs with Euler")
        return {}
    karras = (" Karras spacing is used where the installed diffusers computes it on flow sigmas "
              "(0.42.1 does not; the run records the sigmas it used)." if chosen.karras else "")
    notes.append(f"sampler '{chosen.label}' → diffusers {chosen.scheduler} (DPM-Solver++, order 2) "
                 f"on flow-matching sigmas with FLUX's resolution shift.{karras}")
    return {"sampler": sampler}


def at_native_size(brief: Brief, spec: ModelSpec, provider: str, plan: DeliveryPlan) -> Brief:
    """The brief with its size replaced by the delivery plan's native render size."""
    if (plan.model, plan.provider) != (spec.id, provider):
        raise UsageError(f"the delivery plan is for {plan.model}@{plan.provider}, not {spec.id}@{provider}",
                         field="--deliver", hint="plan the delivery for each model and provider")
    if spec.size_on(provider).kind == "aspect":
        fixed = spec.size_on(provider).fixed_mp or 1.0
        output = brief.output.model_copy(update={"aspect_ratio": plan.aspect_ratio, "width": None, "height": None,
                                                 "resolution": f"{fixed:g}MP"})
    else:
        output = brief.output.model_copy(update={"aspect_ratio": plan.aspect_ratio, "width": plan.native_w,
                                                 "height": plan.native_h})
    return brief.model_copy(update={"output": output})


# --- compile ----------------------------------------------------------------------------------


def compile_brief(
    brief: Brief,
    model: str,
    *,
    provider: str | None = None,
    seed: int | None = None,
    structured: bool | None = None,
    delivery: DeliveryPlan | None = None,
) -> Request:
    """Brief + model → Request. `seed` overrides the brief's; one of them must be a number.

    With `delivery` (from `delivery.plan_delivery`), the image is rendered at the plan's
    native size instead of the brief's; the engine upscales it to the delivery size.
    """
    spec = get_model(model)
    provider = provider or spec.default_provider
    spec.route(provider)
    if "text-to-image" not in spec.modes and not brief.references:
        raise CapabilityError(
            f"{spec.name} does not make images from a prompt alone ({', '.join(spec.modes)})",
            hint="use it through 'portrait fix' (inpaint) or pick a text-to-image model",
        )
    if seed is None:
        if brief.output.seed == "random":
            raise BriefError("is 'random'; pass an explicit seed to compile", field="output.seed", hint="use --seed N")
        seed = int(brief.output.seed)
    if brief.quality.plastic_skin_remedy:
        brief = plastic_skin_recipe(brief)

    notes: list[str] = []
    if delivery is not None:
        brief = at_native_size(brief, spec, provider, delivery)
        notes.extend(delivery.notes)
    mode, images, denoise, reference_weight = _references(brief, spec, notes)
    width, height, aspect = resolve_size(brief, spec, notes, provider)
    steps = _steps(brief, spec, notes)
    guidance = _guidance(brief, spec, notes)
    avoid_cues, negative = _avoid(brief, spec, provider, notes)
    options = sampler_options(brief.quality.sampler, spec, provider, mode, notes)

    lo, hi = PORTRAIT_LENS_MM
    if not lo <= brief.lens.focal_length_mm <= hi:
        notes.append(f"{brief.lens.focal_length_mm}mm is outside the {lo}–{hi}mm portrait range (perspective changes)")
    if len(brief.subject.anchors) and len(brief.subject.anchors) < 3:
        notes.append("identity anchors: 3–4 traits hold a face best across a series")
    raw = brief.output.raw
    if raw and "raw" not in spec.variants:
        notes.append(f"raw is an Ultra option; {spec.name} has no raw mode, not sent")
        raw = False

    safety = brief.output.safety_tolerance
    if spec.safety_tolerance:
        if safety is None:
            safety = spec.safety_tolerance.default
        elif not spec.safety_tolerance.min <= safety <= spec.safety_tolerance.max:
            raise LimitError(
                f"{safety} is outside {spec.name}'s {spec.safety_tolerance.min}–{spec.safety_tolerance.max}",
                field="output.safety_tolerance",
            )
    elif safety is not None:
        notes.append(f"{spec.name} has no safety tolerance setting; not sent")
        safety = None

    use_json = structured if structured is not None else brief.output.prompt_format == "json"
    if use_json and not spec.structured_prompt:
        notes.append(f"{spec.name} takes prose, not a JSON prompt; prose sent")
        use_json = False
    structured_prompt = _structured(brief, avoid_cues) if use_json else None
    prompt = json.dumps(structured_prompt, ensure_ascii=False) if structured_prompt else _prose(brief, avoid_cues)

    input_mp = sum(_image_mp(i) for i in images)
    return Request(
        model=spec.id,
        provider=provider,
        mode=mode,
        prompt=prompt,
        structured_prompt=structured_prompt,
        negative_prompt=negative,
        true_cfg_scale=brief.quality.true_cfg_scale if negative else None,
        width=width,
        height=height,
        aspect_ratio=aspect,
        steps=steps,
        guidance=guidance,
        seed=seed,
        output_format=brief.output.format,
        safety_tolerance=safety,
        raw=raw,
        images=images,
        denoise=denoise,
        reference_weight=reference_weight,
        options=options,
        warnings=tuple(notes),
        estimated_cost=estimate_cost(spec, provider, width, height, input_mp),
    )


def _image_mp(image: InputImage) -> float:
    from PIL import Image

    with Image.open(image.path) as im:
        return megapixels(*im.size)
