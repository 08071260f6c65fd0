"""The model catalog: one table (`models.toml`) of what every FLUX model can do.

Everything that needs to know a model's limits, modes, prices or provider ids reads it
here, so there is no `if model == ...` scattered through the code.
"""

from __future__ import annotations

import math
import tomllib
from functools import cache
from importlib import resources
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import CapabilityError, StudioError, UsageError
from .records import Cost, Mode

__all__ = [
    "model_summary",
    "GuidanceRange",
    "ModelRoute",
    "ModelSpec",
    "Price",
    "Route",
    "SizeRules",
    "all_models",
    "edit_models",
    "estimate_cost",
    "get_model",
    "megapixels",
    "parse_aspect",
    "parse_model_ref",
    "parse_model_refs",
    "providers",
]

Family = Literal["pro11", "ultra", "flux2", "flux2-flex", "klein", "kontext", "fill", "dev", "schnell", "upscale"]
USD_PER_CREDIT = 0.01


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Price(_Spec):
    """per_image: `credits` each. per_mp: FLUX.2's formula in cents. usd_per_mp: open-weight hosting."""

    kind: Literal["per_image", "per_mp", "usd_per_mp"]
    credits: float = 0.0
    first_mp_cents: float = 0.0
    extra_mp_cents: float = 0.0
    input_mp_cents: float = 0.0
    usd: float = 0.0

    def cost(self, output_mp: float, input_mp: float = 0.0) -> Cost:
        if self.kind == "per_image":
            return Cost(credits=self.credits, usd=round(self.credits * USD_PER_CREDIT, 6))
        if self.kind == "per_mp":
            # BFL: cents = first MP + (outMP − 1)·mpPrice + inMP·mpPrice; each started MP counts.
            out_mp = max(1, math.ceil(round(output_mp, 3)))
            in_mp = math.ceil(round(input_mp, 3)) if input_mp else 0
            cents = self.first_mp_cents + (out_mp - 1) * self.extra_mp_cents + in_mp * self.input_mp_cents
            return Cost(credits=round(cents, 4), usd=round(cents * USD_PER_CREDIT, 6))
        usd = round(self.usd * max(output_mp, 0.01), 6)
        return Cost(credits=round(usd / USD_PER_CREDIT, 4), usd=usd)

    def describe(self) -> str:
        if self.kind == "per_image":
            return f"${self.credits * USD_PER_CREDIT:.3f}/image ({self.credits:g} credits)"
        if self.kind == "per_mp":
            return (
                f"${self.first_mp_cents / 100:.3f} first MP + ${self.extra_mp_cents / 100:.3f}/extra MP"
                f" + ${self.input_mp_cents / 100:.3f}/input MP"
            )
        return f"${self.usd:.3f}/MP" if self.usd else "free (your hardware)"


class SizeRules(_Spec):
    kind: Literal["wh", "aspect", "mp", "input"]
    min_side: int = 64
    max_side: int | None = None
    multiple: int = 16
    max_mp: float | None = None
    fixed_mp: float | None = None
    aspect_min: str | None = None
    aspect_max: str | None = None


class Route(_Spec):
    """How one provider serves a model."""

    provider: str
    model_id: str
    edit_model_id: str | None = None
    pipeline: str | None = None
    max_active: int | None = None
    price: Price | None = None
    size: SizeRules | None = None
    samplers: tuple[str, ...] = ()
    """Samplers this route can run (local diffusers only; see samplers.py). Empty: the service picks."""
    sampler_note: str | None = None
    """Why a route runs fewer samplers than the others (shown when a brief asks for one)."""

    @field_validator("samplers")
    @classmethod
    def _known_samplers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from .samplers import SAMPLERS

        unknown = [s for s in value if s not in SAMPLERS]
        if unknown:
            raise ValueError(f"unknown samplers {unknown}; known: {', '.join(SAMPLERS)}")
        return value


class IntRange(_Spec):
    min: int
    max: int
    default: int


class GuidanceRange(_Spec):
    """`kind`: distilled (FLUX.1 dev's embedded guidance), cfg (classic), fill (Fill's own scale).

    `cfg_map` = [native value at CFG 4.5, native value at CFG 6.0]; in between it is linear.
    """

    min: float
    max: float
    default: float
    kind: Literal["distilled", "cfg", "fill"]
    cfg_map: tuple[float, float]

    def from_cfg(self, cfg: float) -> float:
        lo, hi = self.cfg_map
        return round(lo + (cfg - 4.5) * (hi - lo) / 1.5, 3)

    def cfg_step(self, cfg_delta: float) -> float:
        """How much native guidance one `cfg_delta` of the guide's scale is worth."""
        lo, hi = self.cfg_map
        return cfg_delta * (hi - lo) / 1.5


class ModelSpec(_Spec):
    id: str
    name: str
    family: Family
    modes: tuple[Mode, ...]
    max_references: int = 0
    reference_note: str | None = None
    lora: bool = False
    finetune: bool = False
    negative_prompt: Literal["none", "true_cfg"] = "none"
    structured_prompt: bool = False
    size: SizeRules
    resolution_modes: tuple[str, ...] = ()
    max_resolution: str = ""
    aspect_ratios: str = ""
    steps: IntRange | None = None
    guidance: GuidanceRange | None = None
    safety_tolerance: IntRange | None = None
    price: Price
    variants: tuple[str, ...] = ()
    licence: str = ""
    note: str | None = None
    routes: dict[str, Route] = Field(default_factory=dict)

    def route(self, provider: str) -> Route:
        if provider not in self.routes:
            raise CapabilityError(
                f"{self.name} is not served by provider '{provider}'",
                hint=f"choose --provider {' or '.join(self.routes)}",
            )
        return self.routes[provider]

    def size_on(self, provider: str) -> SizeRules:
        """The size rules on this provider (BFL's flux-dev snaps to 32 px up to 1440)."""
        return self.route(provider).size or self.size

    def price_on(self, provider: str) -> Price:
        route = self.route(provider)
        if provider == "local":
            return Price(kind="usd_per_mp", usd=0.0)
        return route.price or self.price

    @property
    def default_provider(self) -> str:
        for provider in ("bfl", "fal", "replicate", "local"):
            if provider in self.routes:
                return provider
        raise CapabilityError(f"{self.name} has no provider")


def _parse(raw: dict) -> ModelSpec:  # type: ignore[type-arg]
    routes = {name: {"provider": name, **route} for name, route in raw.pop("routes", {}).items()}
    return ModelSpec.model_validate({**raw, "routes": routes})


@cache
def _catalog() -> dict[str, ModelSpec]:
    text = resources.files("portrait_studio").joinpath("models.toml").read_text(encoding="utf-8")
    specs = [_parse(dict(entry)) for entry in tomllib.loads(text)["model"]]
    return {spec.id: spec for spec in specs}


def all_models() -> list[ModelSpec]:
    return list(_catalog().values())


def get_model(model_id: str) -> ModelSpec:
    try:
        return _catalog()[model_id]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(model_id, _catalog(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "run 'portrait models' to list them"
        raise CapabilityError(f"unknown model '{model_id}'", hint=hint) from None


MEGAPIXEL = 1024 * 1024
"""BFL counts 1024×1024 as one megapixel ("max 4MP, e.g. 2048²"); so do we, everywhere."""


def megapixels(width: int, height: int) -> float:
    return width * height / MEGAPIXEL


def parse_aspect(text: str) -> float:
    """'3:4' -> 0.75 (width / height)."""
    try:
        w, h = (float(x) for x in text.split(":"))
        if w <= 0 or h <= 0:
            raise ValueError
        return w / h
    except ValueError:
        raise CapabilityError(f"aspect ratio '{text}' is not W:H", hint="write it like 3:4 or 16:9") from None


def estimate_cost(spec: ModelSpec, provider: str, width: int | None, height: int | None, input_mp: float = 0.0) -> Cost:
    mp = megapixels(width, height) if width and height else (spec.size.fixed_mp or 1.0)
    return spec.price_on(provider).cost(mp, input_mp)


def model_summary(spec: ModelSpec) -> dict[str, Any]:
    """One catalog row in the shape comparison pages show."""
    provider = spec.default_provider
    return {
        "id": spec.id,
        "name": spec.name,
        "providers": list(spec.routes),
        "modes": list(spec.modes) + (["lora"] if spec.lora else []) + (["finetune"] if spec.finetune else []),
        "references": spec.max_references,
        "max_resolution": spec.max_resolution,
        "resolution_modes": list(spec.resolution_modes),
        "aspect_ratios": spec.aspect_ratios,
        "steps": spec.steps.model_dump() if spec.steps else None,
        "guidance": spec.guidance.model_dump() if spec.guidance else None,
        "negative_prompt": spec.negative_prompt,
        "safety_tolerance": spec.safety_tolerance.model_dump() if spec.safety_tolerance else None,
        "variants": list(spec.variants),
        "price": spec.price_on(provider).describe(),
        "price_by_provider": {p: spec.price_on(p).describe() for p in spec.routes},
        "licence": spec.licence,
    }


def edit_models() -> list[str]:
    """Every model with an instruction-edit mode, as 'model@provider' routes (for error hints)."""
    return [f"{m.id}@{p}" for m in all_models() if "edit" in m.modes for p in m.routes]


def providers() -> list[str]:
    """Every provider some catalog model is served by, in the order routes are preferred."""
    seen = {p for m in all_models() for p in m.routes}
    order = ["bfl", "fal", "replicate", "local"]
    return [p for p in order if p in seen] + sorted(seen - set(order))


class ModelRoute(NamedTuple):
    """One model on one provider: what `-m flux-1-dev@local` names."""

    model: str
    provider: str

    def __str__(self) -> str:
        return f"{self.model}@{self.provider}"


def _routes_of(spec: ModelSpec) -> str:
    return ", ".join(f"{spec.id}@{p}" for p in spec.routes)


def parse_model_ref(text: str, default_provider: str | None = None) -> ModelRoute:
    """'flux-1-dev@local' → ModelRoute('flux-1-dev', 'local'); 'flux-2-pro' → its default provider.

    `default_provider` (a global `--provider`) applies to refs without '@'. Errors name the
    unknown model or provider and list the routes that exist.
    """
    ref = text.strip()
    model, sep, provider = ref.partition("@")
    model, provider = model.strip(), provider.strip()
    if not model or (sep and not provider) or "@" in provider:
        raise UsageError(f"'{text}' is not MODEL or MODEL@PROVIDER", field="--model",
                         hint="write it like flux-1-dev@local or flux-2-pro@fal")
    spec = get_model(model)
    provider = provider or default_provider or spec.default_provider
    if provider not in providers():
        import difflib

        close = difflib.get_close_matches(provider, providers(), n=1)
        maybe = f"did you mean {close[0]}? " if close else ""
        raise CapabilityError(f"unknown provider '{provider}' in '{ref}'",
                              hint=f"{maybe}providers: {', '.join(providers())}; {spec.name} runs on {_routes_of(spec)}")
    if provider not in spec.routes:
        raise CapabilityError(f"{spec.name} is not served by provider '{provider}'",
                              hint=f"its routes: {_routes_of(spec)}")
    return ModelRoute(spec.id, provider)


def parse_model_refs(texts: list[str] | tuple[str, ...], default_provider: str | None = None) -> list[ModelRoute]:
    """Every `-m` of a mixed comparison, validated together: one error lists every bad ref."""
    routes: list[ModelRoute] = []
    errors: list[StudioError] = []
    for text in texts:
        try:
            route = parse_model_ref(text, default_provider)
        except (CapabilityError, UsageError) as err:
            errors.append(err)
            continue
        if route in routes:
            errors.append(UsageError(f"{route} is listed twice", field="--model",
                                     hint="compare a model on two providers as MODEL@one and MODEL@other"))
            continue
        routes.append(route)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise CapabilityError(f"{len(errors)} of the --model choices cannot be used: "
                              + "; ".join(str(e) for e in errors),
                              hint="write MODEL@PROVIDER; 'portrait models' lists every model and its providers")
    return routes
