"""Region masks for fixing: which pixels a repair may touch, from the shared analysis.

Every mask is built from the face mesh or the hand landmarks of `analysis.analyze`, grown
(or shrunk) by a margin and feathered, with both sizes proportional to the face width (or,
for hands, to the palm size), so a mask covers the same anatomy at any resolution:

    region      polygon                                  grow          feather
    mouth       outer lip outline                        +0.04 face    0.03 face
    teeth       inner lip outline (the mouth opening)    +0.015 face   0.015 face
    eye_left    lid outline + iris circle (subject's L)   +0.04 face    0.03 face
    eye_right   lid outline + iris circle (subject's R)   +0.04 face    0.03 face
    eyes        both eyes
    face        face oval                                +0.03 face    0.04 face
    skin        face oval minus eyes, brows and mouth    -0.02 face    0.02 face
    hand_N      convex hull of hand N's 21 points        +0.3 palm     0.12 palm
    hands       every hand

Why these numbers: lip and lid outlines run along the coloured edge, so a few percent of
the face is needed to include the lip line and lashes; landmarks sit on the finger bones'
centre line, so a hand needs about a finger's width (a third of the palm) of margin. "palm"
is the longest side of the palm (wrist, index and pinky knuckles, middle knuckle), which
survives foreshortening better than the wrist-to-middle-knuckle `Hand.palm_size`.
Skin is *shrunk* before feathering so the blend never reaches into eyes, brows or lips.

A `RegionMask` holds the binary mask sent to the inpainting model (white = repaint) and
its feather, which `finishing.composite` adds outside it when pasting the repair back.
Everything farther than the feather from the mask is kept byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..analysis import (
    FACE_OVAL_IDX,
    INNER_MOUTH_IDX,
    LEFT_EYE_IDX,
    LIPS_OUTER_IDX,
    RIGHT_EYE_IDX,
    Analysis,
    Face,
    Hand,
)
from ..errors import CheckError
from ..files import atomic_save_image
from .composite import feathered_alpha

__all__ = [
    "FIX_REGIONS",
    "MASK_SPECS",
    "MaskSpec",
    "RegionMask",
    "region_mask",
    "hand_scale",
    "region_masks",
    "save_masks",
]

FIX_REGIONS = ("mouth", "teeth", "eyes", "face", "skin", "hands")
"""The regions `portrait fix --region` accepts (eye_left/eye_right/hand_N are finer choices)."""


@dataclass(frozen=True)
class MaskSpec:
    """Grow (negative: shrink) and feather, as fractions of the face width or palm size."""

    grow: float
    feather: float
    unit: str = "face"


MASK_SPECS: dict[str, MaskSpec] = {
    "mouth": MaskSpec(0.04, 0.03),
    "teeth": MaskSpec(0.015, 0.015),
    "eye": MaskSpec(0.04, 0.03),
    "face": MaskSpec(0.03, 0.04),
    "skin": MaskSpec(-0.02, 0.02),
    "hand": MaskSpec(0.3, 0.12, unit="palm"),
}


@dataclass(frozen=True)
class RegionMask:
    """A named repair region: `mask` (L, 0/255) is what the model repaints; `feather_px` the blend."""

    name: str
    mask: Image.Image
    feather_px: int

    @property
    def area(self) -> int:
        return int(np.count_nonzero(np.asarray(self.mask)))

    @property
    def empty(self) -> bool:
        return self.area == 0

    @property
    def feathered(self) -> Image.Image:
        """The blend weight of the repair per pixel (L): 255 inside, ramping to 0 over the feather."""
        alpha = feathered_alpha(self.mask, self.feather_px)
        return Image.fromarray(np.rint(alpha * 255).astype(np.uint8), mode="L")

    @property
    def box(self) -> tuple[int, int, int, int] | None:
        ys, xs = np.nonzero(np.asarray(self.mask))
        if len(xs) == 0:
            return None
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# --- geometry --------------------------------------------------------------------------------


def _grow(mask: np.ndarray, px: int) -> np.ndarray:
    import cv2

    if px == 0:
        return mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(px) + 1, 2 * abs(px) + 1))
    op = cv2.dilate if px > 0 else cv2.erode
    return op(mask.astype(np.uint8), k).astype(bool)


def _polygon(points: np.ndarray, shape: tuple[int, int], hull: bool = False) -> np.ndarray:
    import cv2

    m = np.zeros(shape, np.uint8)
    pts = np.round(points[:, :2]).astype(np.int32)
    if hull:
        pts = cv2.convexHull(pts)
    cv2.fillPoly(m, [pts.reshape(-1, 2)], (1,))
    return m.astype(bool)


def _disc(center: np.ndarray, radius: float, shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (xx - center[0]) ** 2 + (yy - center[1]) ** 2 <= radius**2


def _finish(name: str, core: np.ndarray, spec: MaskSpec, scale: float) -> RegionMask:
    grown = _grow(core, round(spec.grow * scale))
    feather = max(1, round(spec.feather * scale))
    return RegionMask(name, Image.fromarray(grown.astype(np.uint8) * 255, mode="L"), feather)


def _eye(face: Face, side: str, shape: tuple[int, int]) -> np.ndarray:
    lids = _polygon(face.points(LEFT_EYE_IDX if side == "left" else RIGHT_EYE_IDX), shape)
    center, radius = face.iris(side)
    return lids | _disc(center, radius, shape)


def _face_masks(an: Analysis, face: Face) -> list[RegionMask]:
    shape, fw = an.shape, face.width
    eye_l = _finish("eye_left", _eye(face, "left", shape), MASK_SPECS["eye"], fw)
    eye_r = _finish("eye_right", _eye(face, "right", shape), MASK_SPECS["eye"], fw)
    both = (np.asarray(eye_l.mask) > 0) | (np.asarray(eye_r.mask) > 0)  # bool: 255 * 255 overflows uint8 to 1
    return [
        _finish("mouth", _polygon(face.points(LIPS_OUTER_IDX), shape), MASK_SPECS["mouth"], fw),
        _finish("teeth", _polygon(face.points(INNER_MOUTH_IDX), shape), MASK_SPECS["teeth"], fw),
        eye_l,
        eye_r,
        RegionMask("eyes", Image.fromarray(both.astype(np.uint8) * 255, mode="L"), eye_l.feather_px),
        _finish("face", _polygon(face.points(FACE_OVAL_IDX), shape), MASK_SPECS["face"], fw),
        _finish("skin", an.face_skin_mask(face), MASK_SPECS["skin"], fw),
    ]


def hand_scale(hand: Hand) -> float:
    """The longest palm side in pixels: the hand's size for mask margins."""
    p = hand.landmarks[:, :2]
    return float(max(np.linalg.norm(p[a] - p[b]) for a, b in ((0, 5), (0, 17), (5, 17), (0, 9))))


def _hand_masks(an: Analysis, hands: list[Hand]) -> list[RegionMask]:
    spec = MASK_SPECS["hand"]
    out = [
        _finish(f"hand_{i}", _polygon(h.landmarks, an.shape, hull=True), spec, hand_scale(h))
        for i, h in enumerate(hands)
    ]
    if out:
        union = np.zeros(an.shape, bool)
        for m in out:
            union |= np.asarray(m.mask) > 0
        out.append(RegionMask("hands", Image.fromarray(union.astype(np.uint8) * 255, mode="L"),
                              max(m.feather_px for m in out)))
    return out


# --- public API ------------------------------------------------------------------------------


def region_masks(analysis: Analysis, face: Face | None = None) -> dict[str, RegionMask]:
    """Every region mask the analysis supports, keyed by name (face regions for the main face)."""
    face = face or analysis.face
    masks: list[RegionMask] = []
    if face is not None and face.landmarks is not None:
        masks += _face_masks(analysis, face)
    masks += _hand_masks(analysis, analysis.hands)
    return {m.name: m for m in masks}


def region_mask(analysis: Analysis, region: str) -> RegionMask:
    """One region's mask; raises `CheckError` naming what is missing when it cannot be built."""
    masks = region_masks(analysis)
    if region not in masks:
        face_regions = {"mouth", "teeth", "eyes", "eye_left", "eye_right", "face", "skin"}
        if region in face_regions:
            raise CheckError(f"no face with landmarks found, so there is no {region} mask",
                             hint="fix a portrait where the face is visible, or pass your own --mask")
        if region == "hands" or region.startswith("hand_"):
            found = sum(1 for k in masks if k.startswith("hand_"))
            raise CheckError(f"no {region} mask: {found} hand(s) found",
                             hint="choose a hand that was found (hand_0 ...) or another region")
        raise CheckError(f"unknown region '{region}'", hint=f"choose one of: {', '.join(FIX_REGIONS)}")
    mask = masks[region]
    if mask.empty:
        raise CheckError(f"the {region} mask is empty", hint="the landmarks are degenerate; pass your own --mask")
    return mask


def save_masks(analysis: Analysis, folder: str | Path) -> dict[str, Path]:
    """Write `<region>.png` (the feathered blend weight) per region and `overlay.png` to look at."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    masks = region_masks(analysis)
    paths: dict[str, Path] = {}
    for name, m in masks.items():
        paths[name] = folder / f"{name}.png"
        atomic_save_image(m.feathered, paths[name])
    paths["overlay"] = folder / "overlay.png"
    atomic_save_image(_overlay(analysis.rgb, masks), paths["overlay"])
    return paths


_COLOURS = {"mouth": (255, 60, 60), "teeth": (255, 255, 0), "eyes": (60, 160, 255), "skin": (60, 255, 120),
            "hands": (255, 0, 255), "face": (255, 160, 0)}


def _overlay(rgb: np.ndarray, masks: dict[str, RegionMask]) -> Image.Image:
    out: np.ndarray = rgb.astype(np.float32)
    for name in ("face", "skin", "mouth", "teeth", "eyes", "hands"):
        if name not in masks:
            continue
        a = np.asarray(masks[name].feathered, np.float32)[..., None] / 255 * 0.45
        out = out * (1 - a) + np.array(_COLOURS[name], np.float32) * a
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
