"""Delivery sizes: `--deliver 1080p|2k|4k` → generate at the model's best native size, then upscale.

The rule (photo delivery is specified by the long edge, and these tiers match the video
frames in landscape 16:9):

    1080p  long side 1920 px   (16:9 → 1920×1080, 9:16 → 1080×1920, 3:4 → 1440×1920)
    2k     long side 2048 px   (16:9 → 2048×1152, 1:1 → 2048×2048, 3:4 → 1536×2048)
    4k     long side 3840 px   (16:9 → 3840×2160 UHD, 3:4 → 2880×3840)

The short side is the long side divided by the aspect ratio, rounded to the nearest pixel.

Native size: if the model can render the delivery size itself (within its size rules and
its largest megapixel mode), it renders the smallest size on its grid that covers it
(no upscale; a few pixels are cropped to the exact size). Otherwise it renders the largest
size it allows at that aspect (up to 4 MP on FLUX.2 and Ultra) and the engine upscales by
`upscale_factor`, then centre-crops to the exact size. Models that take an aspect ratio
instead of a size (Ultra, Kontext) pick their own pixel size: the plan estimates it and the
engine recomputes the factor from the image it gets (`DeliveryPlan.scale_for`).

Everything here is pure and reads only the catalog's size rules and megapixel modes.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .catalog import MEGAPIXEL, ModelSpec, SizeRules, get_model, megapixels, parse_aspect
from .errors import CapabilityError, LimitError, UsageError

__all__ = [
    "DELIVERY_LONG_SIDE",
    "Delivery",
    "DeliveryPlan",
    "delivery_modes",
    "delivery_size",
    "max_native_mp",
    "native_size",
    "parse_delivery",
    "plan_delivery",
]

Delivery = Literal["1080p", "2k", "4k"]
DELIVERY_LONG_SIDE: dict[str, int] = {"1080p": 1920, "2k": 2048, "4k": 3840}
_MODE_MP = {"1MP": 1.0, "2MP": 2.0, "4MP": 4.0}


class DeliveryPlan(BaseModel):
    """What to render and what to hand over. The engine adds the upscale step when `needs_upscale`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deliver: Delivery
    model: str
    provider: str
    aspect_ratio: str
    native_w: int
    native_h: int
    native_estimated: bool = False
    """True when the provider picks the pixel size from an aspect ratio (Ultra, Kontext)."""
    final_w: int
    final_h: int
    upscale_factor: float
    """Scale the native image by this (cover), then centre-crop to final_w×final_h. ≤ 1: crop/downscale only."""
    notes: tuple[str, ...] = ()

    @property
    def needs_upscale(self) -> bool:
        return self.upscale_factor > 1.0 + 1e-6

    def scale_for(self, width: int, height: int) -> float:
        """The factor for the image actually rendered (its size may differ from the estimate)."""
        return _cover(width, height, self.final_w, self.final_h)


def parse_delivery(text: str) -> Delivery:
    """'1080p' | '2k' | '4k' (any case; '2K', '4K', 'UHD' accepted)."""
    value = text.strip().lower()
    value = {"uhd": "4k", "1080": "1080p", "fhd": "1080p"}.get(value, value)
    if value not in DELIVERY_LONG_SIDE:
        raise UsageError(f"unknown delivery size '{text}'", field="--deliver",
                         hint="choose 1080p (1920 px long side), 2k (2048) or 4k (3840)")
    return value  # type: ignore[return-value]


def delivery_size(deliver: str, aspect: str | float) -> tuple[int, int]:
    """The exact delivery size: the tier's long side, the short side from the aspect ratio."""
    long_side = DELIVERY_LONG_SIDE[parse_delivery(deliver)]
    ratio = _ratio(aspect)
    if ratio >= 1:
        return long_side, max(1, round(long_side / ratio))
    return max(1, round(long_side * ratio)), long_side


def native_size(spec: ModelSpec, provider: str, aspect: str | float,
                wanted: tuple[int, int] | None = None) -> tuple[int, int, bool]:
    """(width, height, estimated): the best size `spec` renders at `aspect` on `provider`.

    With `wanted`, the smallest size on the model's grid that covers it when the model can
    reach it, else the largest the model allows at that aspect.
    """
    rules = spec.size_on(provider)
    ratio = _ratio(aspect)
    if rules.kind == "input":
        raise CapabilityError(f"{spec.name} renders at its input image's size; it has no delivery size",
                              hint="deliver from a text-to-image or edit model and fix afterwards")
    if rules.kind == "aspect":
        _check_aspect_range(spec, rules, ratio)
        mp = rules.fixed_mp or 1.0
        width = math.sqrt(mp * MEGAPIXEL * ratio)
        return _snap(width, rules.multiple), _snap(width / ratio, rules.multiple), True
    cap = max_native_mp(spec, provider)
    if wanted is not None:
        m = rules.multiple
        cover = (math.ceil(wanted[0] / m) * m, math.ceil(wanted[1] / m) * m)
        if _fits(cover, rules, cap):
            return cover[0], cover[1], False
    return (*_largest(rules, cap, ratio), False)


def plan_delivery(model: str, provider: str | None, deliver: str, aspect: str | float) -> DeliveryPlan:
    """The native render size and the exact delivery size for `model` at `aspect`."""
    spec = get_model(model)
    provider = provider or spec.default_provider
    spec.route(provider)
    tier = parse_delivery(deliver)
    final_w, final_h = delivery_size(tier, aspect)
    native_w, native_h, estimated = native_size(spec, provider, aspect, (final_w, final_h))
    factor = _cover(native_w, native_h, final_w, final_h)
    aspect_text = aspect if isinstance(aspect, str) else _ratio_text(_ratio(aspect))
    notes = []
    if factor > 1.0 + 1e-6:
        notes.append(f"{tier}: {spec.name} renders at most {native_w}×{native_h} "
                     f"({megapixels(native_w, native_h):.1f}MP) at {aspect_text}; upscaled ×{factor:.2f} "
                     f"to {final_w}×{final_h}")
    else:
        notes.append(f"{tier}: rendered natively at {native_w}×{native_h}, cropped to {final_w}×{final_h}")
    if estimated:
        notes.append(f"{spec.name} picks its own pixel size for {aspect_text} (about "
                     f"{spec.size_on(provider).fixed_mp:g}MP); the factor is recomputed from the image")
    return DeliveryPlan(deliver=tier, model=spec.id, provider=provider, aspect_ratio=aspect_text,
                        native_w=native_w, native_h=native_h, native_estimated=estimated,
                        final_w=final_w, final_h=final_h, upscale_factor=round(factor, 4), notes=tuple(notes))


def delivery_modes(spec: ModelSpec, provider: str | None = None, aspect: str | float = "16:9") -> dict[str, str]:
    """The comparison table's "1080p", "2K mode" and "4K mode" cells: 'native' or 'upscale ×F'."""
    provider = provider or spec.default_provider
    if spec.size_on(provider).kind == "input":
        return dict.fromkeys(DELIVERY_LONG_SIDE, "-")
    cells = {}
    for tier in DELIVERY_LONG_SIDE:
        try:
            plan = plan_delivery(spec.id, provider, tier, aspect)
        except LimitError:
            cells[tier] = "-"
            continue
        cells[tier] = f"upscale ×{plan.upscale_factor:.2f}" if plan.needs_upscale else "native"
    return cells


# --- helpers ----------------------------------------------------------------------------


def _ratio(aspect: str | float) -> float:
    ratio = parse_aspect(aspect) if isinstance(aspect, str) else float(aspect)
    if not 0.1 <= ratio <= 10:
        raise LimitError(f"aspect ratio {aspect} is not a photo's", field="output.aspect_ratio",
                         hint="use a ratio between 1:10 and 10:1, like 3:4 or 16:9")
    return ratio


def _ratio_text(ratio: float) -> str:
    """0.75 → '3:4': the short form providers take (an edit's photo gives a float)."""
    from fractions import Fraction

    frac = Fraction(ratio).limit_denominator(21)
    return f"{frac.numerator}:{frac.denominator}"


def _cover(width: int, height: int, final_w: int, final_h: int) -> float:
    return max(final_w / width, final_h / height)


def _snap(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def max_native_mp(spec: ModelSpec, provider: str) -> float:
    """The model's largest megapixel mode, within its size rules (schnell: 2MP though 4MP fits the grid)."""
    rules = spec.size_on(provider)
    if rules.kind == "aspect":
        return rules.fixed_mp or 1.0
    modes = [_MODE_MP[m] for m in spec.resolution_modes if m in _MODE_MP]
    caps = [c for c in (rules.max_mp, max(modes) if modes else None) if c]
    return min(caps) if caps else 4.0


def _fits(size: tuple[int, int], rules: SizeRules, cap_mp: float) -> bool:
    w, h = size
    if min(w, h) < rules.min_side or (rules.max_side and max(w, h) > rules.max_side):
        return False
    return megapixels(w, h) <= cap_mp + 1e-9


def _largest(rules: SizeRules, cap_mp: float, ratio: float) -> tuple[int, int]:
    """The grid size that best covers the aspect: the largest min(w / ratio, h), then the fewest pixels."""
    m = rules.multiple
    max_side = rules.max_side or 1 << 16
    top = int(min(math.sqrt(cap_mp * MEGAPIXEL / ratio) + m, max_side) // m) * m
    best: tuple[float, int, tuple[int, int]] | None = None
    for h in range(top, rules.min_side - 1, -m):
        for w in {max(m, math.floor(ratio * h / m) * m), max(m, math.ceil(ratio * h / m) * m)}:
            if _fits((w, h), rules, cap_mp):
                key = (-min(w / ratio, h), w * h, (w, h))
                best = key if best is None or key < best else best
    if best is None:
        raise LimitError(f"no size at aspect {ratio:.3f} fits the model's limits", field="output.aspect_ratio")
    return best[2]


def _check_aspect_range(spec: ModelSpec, rules: SizeRules, ratio: float) -> None:
    lo = parse_aspect(rules.aspect_min or "1:100")
    hi = parse_aspect(rules.aspect_max or "100:1")
    if not lo - 1e-9 <= ratio <= hi + 1e-9:
        raise LimitError(f"aspect ratio {ratio:.3f} is outside {spec.name}'s range {rules.aspect_min} … {rules.aspect_max}",
                         field="output.aspect_ratio")
