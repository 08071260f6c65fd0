"""A series: the same person across many portraits, with identity measured after every shot.

    load_shots(SHOTS.yaml) ──► plan_series(brief, shots, method, anchor) ──► run_series
        shot 1 ─► image ─► distance to the anchor ─► ok? next shot
                                                  └► drifted (or no face): the reset rule

The method decides how identity is held, from light-touch to locked-down:

- `seed`: one seed for every shot and one prompt skeleton; a shot's compiled prompt differs
  from the skeleton only in the sentences of the elements it changes.
- `reference`: the anchor headshot conditions every shot at the user's reference weight (default
  0.3): FLUX1.1 Ultra `image_prompt` + `image_prompt_strength`, Kontext / FLUX.2 input
  images, locally img2img (or the Redux prior with `local_reference="redux"`).
- `anchors`: the brief's 3–4 descriptor anchors, verbatim in every compiled prompt (checked).
- `lora`: a LoRA file (local, `Request.loras`) or a BFL finetune id (FLUX1.1 Ultra finetuned).

With `reference`, `anchors` and `lora` the identity is held by the conditioning, so each shot
gets its own seed (series seed + shot index); `seed` keeps one seed everywhere.

The reset rule (the portrait workflow's): when a shot drifts past the threshold, or no face
is found, go back to the series seed and the exact prompt skeleton, then reintroduce the
shot's changes one element at a time, keeping each only if the face holds. Every attempt is
a ledger request and an identity row (`reset_applied`, with what was tried and kept).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .brief import VARIABLE_ELEMENTS, Brief, Reference, Rights, Subject, _line_for, parse_brief, read_yaml
from .catalog import get_model
from .consent import file_sha256, reference_rights, require_rights
from .errors import BriefError, CapabilityError, StudioError
from .identity import (
    DEFAULT_THRESHOLDS,
    FaceEmbedding,
    IdentityThresholds,
    ShotIdentity,
    anchor_embedding,
    measure_shot,
)
from .ledger import ImageRow, Ledger
from .prompting import compile_brief
from .records import Cost, LoraWeight, Request
from .shoot import ShootPlan, check_budget

__all__ = [
    "METHODS",
    "Method",
    "PlannedShot",
    "SeriesPlan",
    "SeriesReport",
    "SeriesShot",
    "Shot",
    "apply_changes",
    "example_shots_path",
    "load_shots",
    "parse_shots",
    "plan_series",
    "run_series",
]

Method = Literal["seed", "reference", "anchors", "lora"]
METHODS: tuple[str, ...] = ("seed", "reference", "anchors", "lora")

# A shot's element -> where it lives in the brief: the brief's one element table (VARIABLE_ELEMENTS),
# in the order the reset rule reintroduces them, plus `pose` (head and body), which joins the
# expression sentence (the brief has no body-pose slot; "head turned to camera left" reads naturally there).
_SHOT_ORDER = ("wardrobe", "hair", "makeup", "background", "lighting", "key-side", "framing", "angle", "pose",
               "expression", "mouth")
ELEMENTS: dict[str, tuple[str, ...]] = {
    name.replace("-", "_"): VARIABLE_ELEMENTS.get(name, ("expression", "mood")) for name in _SHOT_ORDER
}


# --- SHOTS.yaml -------------------------------------------------------------------------------


class Shot(BaseModel):
    """One portrait of the series: what changes from the brief (wardrobe, background, light, pose ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    wardrobe: str | None = None
    hair: str | None = None
    makeup: str | None = None
    background: str | None = None
    lighting: str | None = None
    key_side: Literal["left", "right"] | None = None
    framing: str | None = None
    angle: str | None = None
    pose: str | None = None
    expression: str | None = None
    mouth: str | None = None

    @model_validator(mode="after")
    def _no_minor(self) -> Shot:
        from .minors import refuse_minor_fields

        try:  # the shot's changes are screened as brief fields when applied; its name is screened here
            refuse_minor_fields({"name": self.name} if self.name else {})
        except BriefError as exc:  # located by parse_shots (file, line, field)
            raise ValueError(exc.message if not exc.hint else f"{exc.message} ({exc.hint})") from None
        return self

    @property
    def changes(self) -> dict[str, str]:
        """The changed elements, in a fixed order (the order the reset rule reintroduces them)."""
        return {k: v for k in ELEMENTS if (v := getattr(self, k)) is not None}

    @property
    def label(self) -> str:
        return self.name or ", ".join(f"{k} {v}" for k, v in self.changes.items()) or "skeleton"


class _ShotList(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    shots: tuple[Shot, ...] = Field(min_length=1, max_length=48)


def apply_changes(brief: Brief, changes: Mapping[str, str], *, source: str = "shot") -> Brief:
    """The brief with a shot's elements set (validated as a brief: unknown presets are named)."""
    data = brief.model_dump(mode="python")
    pose, mood = changes.get("pose"), changes.get("expression", brief.expression.mood)
    for element, value in changes.items():
        if element not in ELEMENTS:
            raise BriefError(f"cannot change '{element}' in a shot", field=element, hint=f"use one of: {', '.join(ELEMENTS)}")
        if element in ("pose", "expression"):
            continue
        section, key = ELEMENTS[element]
        data[section][key] = value
    if "pose" in changes or "expression" in changes:
        data["expression"]["mood"] = ", ".join(p for p in (pose, mood) if p) or None
    return parse_brief(data, source=source)


def parse_shots(data: Any, source: str = "<shots>", lines: dict[tuple[Any, ...], int] | None = None) -> tuple[Shot, ...]:
    """Validate SHOTS data: a list of shots, or a mapping with `shots:` (and an optional `name`)."""
    lines = lines or {}
    prefix: tuple[Any, ...] = ()
    if isinstance(data, list):
        data, prefix = {"shots": data}, ()
    elif isinstance(data, dict):
        prefix = ("shots",)
    else:
        raise BriefError("a shots file is a list of shots (each with wardrobe, background, lighting, pose ...)",
                         file=source, line=1)

    def loc_of(loc: tuple[Any, ...]) -> tuple[Any, ...]:
        # errors are located in {"shots": [...]}; in a bare-list file the list is the document
        return loc if prefix else loc[1:]

    try:
        shots = _ShotList.model_validate(data).shots
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        msg = str(first["msg"]).removeprefix("Value error, ")
        hint = None
        if first["type"] == "extra_forbidden":
            msg, hint = f"unknown field '{loc[-1]}'", f"a shot can change: name, {', '.join(ELEMENTS)}"
        field = ".".join(str(p) for p in loc)
        raise BriefError(msg, field=field, file=source, line=_line_for(loc_of(loc), lines), hint=hint) from None
    probe = Brief(subject=Subject(description="an adult"))
    for i, shot in enumerate(shots):
        try:
            apply_changes(probe, shot.changes)
        except BriefError as exc:
            element = next((k for k, path in ELEMENTS.items() if exc.field and exc.field.startswith(".".join(path))
                            and k in shot.changes), None)
            loc = loc_of(("shots", i, element) if element else ("shots", i))
            msg = exc.message.split(": ", 2)[-1]
            raise BriefError(msg, field=f"shots.{i}.{element}" if element else f"shots.{i}", file=source,
                             line=_line_for(loc, lines), hint=exc.hint) from None
    return shots


def load_shots(path: str | Path) -> tuple[Shot, ...]:
    """Load SHOTS.yaml; mistakes name the file, line and field."""
    path = Path(path)
    data, lines = read_yaml(path, missing_hint="see presets/series/ for an example")
    return parse_shots(data, source=str(path), lines=lines)


def example_shots_path(name: str = "six-looks") -> Path:
    from importlib import resources

    return Path(str(resources.files("portrait_studio").joinpath(f"presets/series/{name}.yaml")))


# --- planning --------------------------------------------------------------------------------


class PlannedShot(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    shot: Shot
    request: Request


class SeriesPlan(BaseModel):
    """Every shot's first request, and what it takes to compile a reset attempt. Pure."""

    model_config = ConfigDict(frozen=True)

    brief: Brief
    method: Method
    model: str
    provider: str
    anchor: str
    anchor_sha256: str
    seed: int
    reference_weight: float
    lora: LoraWeight | None = None
    finetune_id: str | None = None
    finetune_strength: float | None = None
    local_reference: Literal["img2img", "redux"] = "img2img"
    shots: tuple[PlannedShot, ...]

    @property
    def estimated(self) -> Cost:
        total = Cost()
        for s in self.shots:
            total = total + s.request.estimated_cost
        return total

    @property
    def shoot_plan(self) -> ShootPlan:
        return ShootPlan(kind="series", brief=self.brief, requests=tuple(s.request for s in self.shots))

    @property
    def provider_ids(self) -> list[str]:
        return [self.provider]

    def shot_seed(self, index: int) -> int:
        return self.seed if self.method == "seed" else (self.seed + index) % 2**32

    def request_for(self, changes: Mapping[str, str], seed: int) -> Request:
        """The request for the brief with `changes`, held by this plan's method, at `seed`."""
        return _compile(self.brief, changes, seed, method=self.method, model=self.model, provider=self.provider,
                        anchor=self.anchor, reference_weight=self.reference_weight, lora=self.lora, finetune_id=self.finetune_id,
                        finetune_strength=self.finetune_strength, local_reference=self.local_reference)

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method, "model": self.model, "provider": self.provider, "series_seed": self.seed,
            "anchor": {"path": self.anchor, "sha256": self.anchor_sha256},
            "reference_weight": self.reference_weight if self.method == "reference" else None,
            "lora": self.lora.model_dump() if self.lora else None, "finetune_id": self.finetune_id,
            "shots": [{"index": s.index, "name": s.shot.label, "changes": s.shot.changes} for s in self.shots],
            "estimated_usd": self.estimated.usd, "requests": len(self.shots),
        }


def _compile(
    brief: Brief, changes: Mapping[str, str], seed: int, *, method: Method, model: str, provider: str, anchor: str,
    reference_weight: float, lora: LoraWeight | None, finetune_id: str | None, finetune_strength: float | None,
    local_reference: str,
) -> Request:
    varied = apply_changes(brief, changes, source="series shot") if changes else brief
    spec = get_model(model)
    if method == "reference":
        others = tuple(r for r in varied.references if r.role != "identity")
        ref = Reference(path=anchor, role="identity", weight=reference_weight, rights=reference_rights(brief, anchor))
        varied = varied.model_copy(update={"references": (ref, *others)[: max(1, spec.max_references)]})
    request = compile_brief(varied, model, provider=provider, seed=seed)
    update: dict[str, Any] = {}
    if method == "reference" and provider == "local":
        if spec.family == "kontext":  # the local Kontext pipeline conditions on its image as an edit
            update["mode"] = "edit"
        elif spec.family == "dev" and local_reference == "redux":
            update.update(mode="reference", denoise=None, reference_weight=None,
                          images=tuple(i.model_copy(update={"role": "identity"}) for i in request.images))
    if method == "lora":
        if lora is not None:
            update["loras"] = (lora,)
        if finetune_id is not None:
            update.update(finetune_id=finetune_id, finetune_strength=finetune_strength)
    return request.model_copy(update=update) if update else request


def _check_method(brief: Brief, method: str, model: str, provider: str, lora: LoraWeight | None,
                  finetune_id: str | None) -> None:
    spec = get_model(model)
    if method not in METHODS:
        raise BriefError(f"unknown method '{method}'", field="--method", hint=f"choose one of: {', '.join(METHODS)}")
    if method == "anchors" and not 3 <= len(brief.subject.anchors) <= 4:
        raise BriefError(
            f"the anchors method needs 3–4 descriptor anchors; the brief has {len(brief.subject.anchors)}",
            field="subject.anchors", hint="add identity traits to subject.anchors, e.g. 'a small scar above the left brow'")
    if method == "reference" and "reference" not in spec.modes and "image-to-image" not in spec.modes:
        raise CapabilityError(f"{spec.name} cannot take a reference image",
                              hint="use flux-1.1-pro-ultra, flux-2-pro, flux-kontext-pro, or flux-1-dev locally")
    if method != "lora":
        if lora is not None or finetune_id is not None:
            raise BriefError("a LoRA or finetune id is given but the method is not 'lora'", field="--method",
                             hint="pass --method lora, or drop --lora / --finetune-id")
        return
    if (lora is None) == (finetune_id is None):
        raise BriefError("the lora method needs exactly one of a LoRA file or a BFL finetune id", field="--lora",
                         hint="--lora FILE.safetensors (local models) or --finetune-id ID (flux-1.1-pro-ultra on bfl)")
    if lora is not None:
        if provider != "local" or not spec.lora:
            raise CapabilityError(f"{spec.name} on '{provider}' takes no LoRA file",
                                  hint="LoRA files run locally: --provider local with flux-1-dev, flux-2-dev or klein; "
                                  "on BFL use a finetune id with flux-1.1-pro-ultra")
        if not Path(lora.path).is_file():
            raise BriefError(f"LoRA file not found: {lora.path}", field="--lora", hint="check the path")
    elif not spec.finetune or provider != "bfl" or "text-to-image" not in spec.modes:
        raise CapabilityError(f"{spec.name} on '{provider}' takes no BFL finetune id",
                              hint="use --model flux-1.1-pro-ultra --provider bfl")


def plan_series(
    brief: Brief,
    shots: Sequence[Shot],
    method: Method,
    anchor: str | Path,
    reference_weight: float = 0.3,
    lora: str | Path | LoraWeight | None = None,
    finetune_id: str | None = None,
    *,
    model: str = "flux-1.1-pro-ultra",
    provider: str | None = None,
    seed: int | None = None,
    lora_weight: float = 1.0,
    finetune_strength: float | None = None,
    local_reference: Literal["img2img", "redux"] = "img2img",
) -> SeriesPlan:
    """Plan a series: one request per shot, each held to the anchor by `method`. Spends nothing."""
    anchor_path = Path(anchor)
    if not anchor_path.is_file():
        raise BriefError(f"anchor image not found: {anchor}", field="--anchor", hint="give a clear, front-facing headshot")
    if not 0.0 <= reference_weight <= 1.0:
        raise BriefError(f"reference_weight {reference_weight} is outside 0–1", field="--reference-weight", hint="0.25–0.35 holds a face and lets the shot change")
    if not shots:
        raise BriefError("the series has no shots", field="shots", hint="list shots in SHOTS.yaml")
    spec = get_model(model)
    provider = provider or spec.default_provider
    spec.route(provider)
    if isinstance(lora, str | Path):
        path = Path(lora).expanduser()
        lora = LoraWeight(path=str(path), weight=lora_weight, name=path.stem,
                          sha256=file_sha256(path) if path.is_file() else None)
    _check_method(brief, method, model, provider, lora, finetune_id)
    if seed is None:
        if brief.output.seed == "random":
            raise BriefError("is 'random'; a series needs one series seed", field="output.seed", hint="use --seed N")
        seed = int(brief.output.seed)
    plan = SeriesPlan(
        brief=brief, method=method, model=spec.id, provider=provider, anchor=str(anchor_path.resolve()),
        anchor_sha256=file_sha256(anchor_path), seed=seed, reference_weight=reference_weight, lora=lora, finetune_id=finetune_id,
        finetune_strength=finetune_strength, local_reference=local_reference, shots=(),
    )
    planned = tuple(
        PlannedShot(index=i, shot=shot, request=plan.request_for(shot.changes, plan.shot_seed(i)))
        for i, shot in enumerate(shots)
    )
    if method == "anchors":
        for p in planned:
            missing = [a for a in brief.subject.anchors if a not in p.request.prompt]
            if missing:  # pragma: no cover - compile always writes them; this guards the promise
                raise BriefError(f"shot {p.index + 1} lost anchors {missing}", field="subject.anchors")
    return plan.model_copy(update={"shots": planned})


# --- running ---------------------------------------------------------------------------------


class Attempt(BaseModel):
    """One image made for a shot: the first try, or a step of the reset rule."""

    model_config = ConfigDict(frozen=True)

    step: str  # "shot" | "skeleton" | "+element"
    elements: tuple[str, ...]
    seed: int
    image_id: str
    image_sha256: str
    path: str
    distance: float | None
    status: str
    kept: bool


class SeriesShot(BaseModel):
    """The outcome of one shot: the image kept, its identity verdict, and whether the reset rule ran."""

    model_config = ConfigDict(frozen=True)

    index: int
    name: str
    changes: dict[str, str]
    image_id: str
    image_sha256: str
    path: str
    seed: int
    distance: float | None
    status: Literal["pass", "warn", "fail", "no_face"]
    reset_applied: bool
    held_back: tuple[str, ...] = ()
    attempts: tuple[Attempt, ...]
    sandbox: bool = False

    @field_validator("changes", mode="after")
    @classmethod
    def _in_element_order(cls, value: dict[str, str]) -> dict[str, str]:
        """The order the reset rule reintroduces elements (JSON storage may have sorted the keys)."""
        return {k: value[k] for k in sorted(value, key=lambda k: list(ELEMENTS).index(k) if k in ELEMENTS else 99)}

    @property
    def passed(self) -> bool:
        return self.status in ("pass", "warn")


class SeriesReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    out_dir: str
    method: Method
    anchor: str
    rights_id: str
    thresholds: IdentityThresholds
    shots: tuple[SeriesShot, ...]
    sheet: str | None = None
    plot: str | None = None
    spent_usd: float = 0.0
    stopped: str | None = None

    @property
    def resets(self) -> list[int]:
        return [s.index for s in self.shots if s.reset_applied]

    @property
    def all_passed(self) -> bool:
        return len(self.shots) > 0 and all(s.passed for s in self.shots) and self.stopped is None


class _SeriesStopped(StudioError):
    """A request of the series did not finish (provider error or budget): the series stops there."""


def _with_rights(request: Request, rights: Mapping[str, str]) -> Request:
    if not any(i.sha256 in rights for i in request.images):
        return request
    images = tuple(i.model_copy(update={"rights_id": rights.get(i.sha256, i.rights_id)}) for i in request.images)
    return request.model_copy(update={"images": images})


def series_consent(plan: SeriesPlan, ledger: Ledger, rights: Rights | None = None) -> dict[str, str]:
    """sha256 -> rights id for the anchor and every identity reference; ConsentRequired if one has none."""
    found = {plan.anchor_sha256: require_rights(ledger, plan.anchor, rights or reference_rights(plan.brief, plan.anchor))}
    for ref in plan.brief.references:
        if ref.role == "identity":
            found.setdefault(file_sha256(ref.path), require_rights(ledger, ref.path, ref.rights, what="reference"))
    return found


class _Maker:
    """Makes one image at a time through the engine (recorded, budgeted, memoised in the ledger, so a
    replay after a kill pays for nothing twice) and measures it."""

    def __init__(self, run_id: str, *, engine: Any, budget_usd: float | None, rights: Mapping[str, str],
                 anchor: FaceEmbedding, thresholds: IdentityThresholds) -> None:
        self.run_id, self.engine, self.ledger = run_id, engine, engine.ledger
        self.budget_usd = budget_usd
        self.rights, self.anchor, self.thresholds = rights, anchor, thresholds
        self.made: dict[str, tuple[ImageRow, ShotIdentity]] = {}

    async def make(self, request: Request, shot_index: int, parent_id: str | None = None) -> tuple[ImageRow, ShotIdentity]:
        request = _with_rights(request, self.rights).model_copy(update={"parent_id": parent_id})
        if request.idempotency_key in self.made:  # the same image again (a reset's skeleton): never pay twice
            return self.made[request.idempotency_key]
        outcome = await self.engine.make(self.run_id, request, budget_usd=self.budget_usd)
        if outcome.image is None or outcome.status != "done":
            raise _SeriesStopped(f"shot {shot_index + 1}: {outcome.error or outcome.status}")
        identity = await asyncio.to_thread(measure_shot, self.anchor, outcome.image.path, shot_index, self.thresholds)
        self.made[request.idempotency_key] = (outcome.image, identity)
        return outcome.image, identity

    def record(self, shot: int, image: ImageRow, identity: ShotIdentity, *, reset: bool, details: dict[str, Any]) -> None:
        """An identity row — once: a replayed series finds the rows it wrote before the kill."""
        if self.ledger.has_identity(self.run_id, shot, image.image_sha256, str(details.get("step"))):
            return
        self.ledger.record_identity(self.run_id, shot, image.image_sha256, identity.distance, identity.status,
                                    reset_applied=reset, details={**details, "rights_id": self.rights_id})

    @property
    def rights_id(self) -> str:
        return next(iter(self.rights.values()))


def _attempt(step: str, elements: Sequence[str], request: Request, image: ImageRow, identity: ShotIdentity,
             kept: bool) -> Attempt:
    return Attempt(step=step, elements=tuple(elements), seed=request.seed, image_id=image.id,
                   image_sha256=image.image_sha256, path=image.out_path or image.path, distance=identity.distance,
                   status=identity.status, kept=kept)


async def _run_shot(plan: SeriesPlan, planned: PlannedShot, maker: _Maker) -> SeriesShot:
    i, changes = planned.index, planned.shot.changes
    image, identity = await maker.make(planned.request, i)
    first = _attempt("shot", list(changes), planned.request, image, identity, identity.passed)
    maker.record(i, image, identity, reset=False,
                 details={"step": "shot", "elements": list(changes), "seed": planned.request.seed, "final": identity.passed})
    base: dict[str, Any] = {"index": i, "name": planned.shot.label, "changes": changes, "sandbox": image.sandbox}
    if identity.passed:
        return SeriesShot(**base, image_id=image.id, image_sha256=image.image_sha256, path=first.path,
                          seed=planned.request.seed, distance=identity.distance, status=identity.status,
                          reset_applied=False, attempts=(first,))

    # The reset rule: series seed, exact skeleton, then one element at a time.
    attempts, kept, held_back = [first], {}, []  # type: ignore[var-annotated]
    best: tuple[Attempt, ShotIdentity] | None = None
    last: tuple[Attempt, ShotIdentity] | None = None
    for element in [None, *changes]:
        trial = dict(kept) if element is None else {**kept, element: changes[element]}
        request = plan.request_for(trial, plan.seed)
        image, identity = await maker.make(request, i, parent_id=planned.request.request_id)
        step = "skeleton" if element is None else f"+{element}"
        attempt = _attempt(step, list(trial), request, image, identity, identity.passed)
        attempts.append(attempt)
        last = (attempt, identity)
        maker.record(i, image, identity, reset=True, details={
            "step": step, "elements": list(trial), "seed": plan.seed, "kept": identity.passed,
            "trigger": {"status": first.status, "distance": first.distance}})
        if identity.passed:
            kept, best = trial, (attempt, identity)
        elif element is None:
            held_back = list(changes)  # the skeleton itself drifts: this setup cannot hold the face
            break
        else:
            held_back.append(element)
    chosen, verdict = best or last  # type: ignore[misc]
    maker.record(i, maker.ledger.image(chosen.image_id), verdict, reset=True, details={
        "step": "final", "elements": list(chosen.elements), "held_back": held_back, "attempts": len(attempts),
        "final": True})
    return SeriesShot(**base, image_id=chosen.image_id, image_sha256=chosen.image_sha256, path=chosen.path,
                      seed=chosen.seed, distance=verdict.distance, status=verdict.status, reset_applied=True,
                      held_back=tuple(held_back), attempts=tuple(attempts))


def series_plan_for_engine(plan: SeriesPlan, rights_ids: Mapping[str, str], *, thresholds: IdentityThresholds,
                           brief_path: str | None = None) -> Any:
    """The engine's plan of a series: no request up front; the `series` step makes the shots one by
    one (each measured before the next is planned) and is replayed by `portrait resume`."""
    from .engine import Plan, Step

    summary = {**plan.summary(), "rights_id": rights_ids[plan.anchor_sha256], "thresholds": thresholds.model_dump()}
    args = {"plan": plan.model_dump(mode="json"), "rights": dict(rights_ids), "thresholds": thresholds.model_dump()}
    return Plan(kind="series", name=plan.brief.name, brief=plan.brief.model_dump(mode="json"), brief_path=brief_path,
                steps=(Step(name="deliver"), Step(name="series", args=args)),
                details={**summary, "providers": [plan.provider]})


async def run_series(
    engine: Any,
    plan: SeriesPlan,
    *,
    out_dir: Path | None = None,
    budget_usd: float | None = None,
    rights: Rights | None = None,
    thresholds: IdentityThresholds = DEFAULT_THRESHOLDS,
    brief_path: str | None = None,
    on_shot: Callable[[SeriesShot], None] | None = None,
) -> SeriesReport:
    """Run the series shot by shot on the engine, measuring identity and applying the reset rule;
    writes the sheet and plot.

    Refuses (before anything is spent) without consent for the anchor, without a face in the
    anchor, or when the planned shots alone exceed the budget.
    """
    anchor_embedding(plan.anchor)  # no face in the anchor: refused before anything is recorded
    rights_ids = series_consent(plan, engine.ledger, rights)
    limit = engine.budget(budget_usd)
    check_budget(plan.shoot_plan, limit)
    for planned in plan.shots:  # consent, capability, weights, licence: refused before anything is recorded
        engine.check_request(_with_rights(planned.request, rights_ids))
    run_id = engine.record(series_plan_for_engine(plan, rights_ids, thresholds=thresholds, brief_path=brief_path),
                           budget_usd=limit, out_dir=out_dir)
    engine.series_callbacks = {"on_shot": on_shot}
    await engine.execute(run_id, budget_usd=limit)
    return series_report(engine.ledger, run_id)


async def _series_step(ctx: Any) -> None:
    engine, run = ctx.engine, ctx.run
    plan = SeriesPlan.model_validate(ctx.args["plan"])
    thresholds = IdentityThresholds.model_validate(ctx.args["thresholds"])
    rights_ids: dict[str, str] = dict(ctx.args["rights"])
    on_shot = (getattr(engine, "series_callbacks", None) or {}).get("on_shot")
    anchor = await asyncio.to_thread(anchor_embedding, plan.anchor)
    maker = _Maker(run.id, engine=engine, budget_usd=ctx.budget_usd, rights=rights_ids, anchor=anchor,
                   thresholds=thresholds)
    shots: list[SeriesShot] = []
    stopped = None
    for planned in plan.shots:
        try:
            shot = await _run_shot(plan, planned, maker)
        except _SeriesStopped as exc:
            stopped = exc.message
            break
        shots.append(shot)
        if on_shot:
            on_shot(shot)
    out = ctx.out_dir
    sheet_path, plot_path = out / "series-sheet.png", out / "identity-plot.png"
    report = SeriesReport(run_id=run.id, out_dir=str(out), method=plan.method, anchor=plan.anchor,
                          rights_id=rights_ids[plan.anchor_sha256], thresholds=thresholds, shots=tuple(shots),
                          spent_usd=engine.ledger.spent(run.id, sandbox=None).usd, stopped=stopped)
    if shots:
        from .series_report import identity_plot, series_sheet

        title = f"{plan.brief.name or 'series'} · {plan.method} · {plan.model} · {run.id}"
        series_sheet(report, sheet_path, title=title)
        identity_plot(report, plot_path, title=title)
        report = report.model_copy(update={"sheet": str(sheet_path), "plot": str(plot_path)})
    engine.ledger.set_run_plan(run.id, {**(engine.ledger.run(run.id).plan or {}), "series": report.model_dump(mode="json"),
                                        "sheet": str(sheet_path), "plot": str(plot_path), "stopped": stopped})


def series_report(ledger: Ledger, run_id: str) -> SeriesReport:
    """The series' report as its last execution wrote it in the run's plan."""
    run = ledger.run(run_id)
    data = (run.plan or {}).get("series")
    if data is None:
        raise StudioError(f"series {run_id} has not finished a shot yet", hint=f"'portrait resume {run_id}' continues it")
    return SeriesReport.model_validate(data)


def _register() -> None:
    from .engine import register_step

    register_step("series")(_series_step)


_register()


def write_series_json(ledger: Ledger, report: SeriesReport, out: Path) -> Path:
    """run.json (as every run writes it) with a `series` block: per-shot identity, resets, sheet and plot."""
    from .files import atomic_write_text
    from .shoot import run_json

    data = run_json(ledger, report.run_id)
    data["series"] = report.model_dump(mode="json")
    data["identity"] = ledger.identity(report.run_id)
    for row in data["identity"]:
        row.pop("details_json", None)
    return atomic_write_text(out / "run.json", json.dumps(data, indent=2, default=str))
