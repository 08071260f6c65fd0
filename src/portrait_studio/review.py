"""Representation review of a set of portraits: what was declared, and how faces were lit.

Two halves, kept apart on purpose:

- **Declared** attributes (age, skin tone, gender expression, ethnicity) come from the
  brief, never from pixels. The report compares their mix with the user's target mix.
- **Measured** face exposure comes from face skin pixels: mean/median L*, clipped shadows
  and highlights, contrast, and the individual typology angle ITA° = atan((L*−50)/b*),
  grouped by the standard ITA bins. A measured ITA bin is a lighting/skin-tone
  measurement of the photo, not a statement about the person.

Darker skin *should* measure lower L*, so a single set-wide mean would flag every darker
face. Each ITA bin is instead held to its own lightness range (`BIN_TARGET_L`); ITA far
below anything skin measures (`ITA_FLOOR`) and crushed shadows are exposure problems in
any bin. Where the brief declared a skin tone, the measured bin is also compared with it:
a face measuring several bins darker than declared was lit (or drawn) too dark.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .errors import CheckError

__all__ = [
    "ATTRIBUTES",
    "BIN_TARGET_L",
    "DECLARED_TONE_L",
    "ITA_BINS",
    "DeclaredAttributes",
    "FaceExposure",
    "GroupExposure",
    "MixRow",
    "ReviewItem",
    "ReviewReport",
    "diversify",
    "face_exposure",
    "ita_bin",
    "load_declared",
    "review_set",
    "rgb_to_lab",
]

ItaBin = Literal["very light", "light", "intermediate", "tan", "brown", "dark"]
ITA_BINS: tuple[tuple[ItaBin, float], ...] = (
    ("very light", 55.0),
    ("light", 41.0),
    ("intermediate", 28.0),
    ("tan", 10.0),
    ("brown", -30.0),
    ("dark", -math.inf),
)
"""(bin, lower bound of ITA°), lightest first: the standard Chardon/Del Bino typology."""

BIN_TARGET_L: dict[str, tuple[float, float]] = {
    "very light": (60.0, 88.0),
    "light": (52.0, 80.0),
    "intermediate": (45.0, 72.0),
    "tan": (38.0, 66.0),
    "brown": (28.0, 58.0),
    "dark": (20.0, 48.0),
}
"""Median face-skin L* that a well-exposed face of each ITA bin falls in (photographs, not
colorimeter readings; overridable). Below the range: under-exposed; above: over-exposed."""

ITA_FLOOR = -60.0
"""Measured skin reaches about −50° at the darkest; much lower means the face is in shadow."""

SHADOW_L = 6.0  # L* below this is crushed black: no skin detail left
HIGHLIGHT_CHANNEL = 250  # any 8-bit channel at or above this is clipped
CLIPPED_LIMIT = 0.02  # more than 2% of face skin clipped is a problem
BIN_ORDER = [name for name, _ in ITA_BINS]

ATTRIBUTES = ("age", "skin_tone", "gender_expression", "ethnicity")

DECLARED_TONE_L: dict[str, float] = {
    "very light": 74.0,
    "very fair": 74.0,
    "fair": 72.0,
    "pale": 72.0,
    "light": 68.0,
    "light medium": 63.0,
    "medium": 60.0,
    "olive": 58.0,
    "intermediate": 60.0,
    "tan": 54.0,
    "medium brown": 52.0,
    "brown": 45.0,
    "dark": 38.0,
    "dark brown": 38.0,
    "deep": 33.0,
    "deep brown": 33.0,
    "black": 33.0,
}
"""Declared skin-tone words → the median face L* of a well-lit face of that tone. Used only
to compare each image with *its own* expectation; unknown words are not compared."""

DECLARED_TOLERANCE_L = 20.0  # one face this far from its declared expectation is mis-exposed
GROUP_GAP_L = 10.0  # a declared group lit this much darker/lighter than the rest of the set


# --- colour -------------------------------------------------------------------------------


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (uint8 or 0–1 floats, …×3) → CIE L*a*b* (D65). Pure numpy."""
    x = rgb.astype(np.float64)
    if rgb.dtype == np.uint8:
        x = x / 255.0
    lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    eps = 216 / 24389
    f = np.where(xyz > eps, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def ita_bin(ita: float) -> ItaBin:
    for name, lower in ITA_BINS:
        if ita > lower:
            return name
    return "dark"


def _ita(lightness: float, b: float) -> float:
    """ITA° = atan((L*−50)/b*)·180/π, with atan2 so b* ≤ 0 stays defined."""
    return math.degrees(math.atan2(lightness - 50.0, max(b, 1e-6)))


# --- finding face skin ----------------------------------------------------------------------


def _load_rgb(image: Any) -> np.ndarray:
    from PIL import Image

    if isinstance(image, np.ndarray):
        arr = image
    else:
        img = image if isinstance(image, Image.Image) else Image.open(image)
        arr = np.asarray(img.convert("RGB"))
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise CheckError("expected an RGB image")
    return np.ascontiguousarray(arr[..., :3]).astype(np.uint8)


def _native_stderr_silenced() -> contextlib.AbstractContextManager[None]:
    """MediaPipe's C++ side logs straight to fd 2; `quiet.native_quiet` hides it (shared, re-entrant)."""
    from .quiet import native_quiet

    return native_quiet()


def _mesh_skin_mask(rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """Face skin from MediaPipe's 478-point mesh: the face hull minus eyes, brows and lips."""
    import cv2
    import mediapipe as mp

    fm = mp.solutions.face_mesh
    h, w = rgb.shape[:2]
    scale = min(1.0, 1280 / max(h, w))  # the mesh needs no more; big photos are slow
    small = (
        cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        if scale < 1
        else rgb
    )
    with _native_stderr_silenced(), fm.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        found = mesh.process(small)
    if not found.multi_face_landmarks:
        return None
    pts = np.array([(p.x * w, p.y * h) for p in found.multi_face_landmarks[0].landmark], dtype=np.float64)

    def hull(indices: Iterable[int]) -> np.ndarray:
        return cv2.convexHull(pts[sorted(set(indices))].astype(np.int32))

    def idx(connections: Iterable[tuple[int, int]]) -> set[int]:
        return {i for pair in connections for i in pair}

    mask: Any = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, hull(idx(fm.FACEMESH_FACE_OVAL)), (255,))
    for part in (
        fm.FACEMESH_LEFT_EYE,
        fm.FACEMESH_RIGHT_EYE,
        fm.FACEMESH_LEFT_EYEBROW,
        fm.FACEMESH_RIGHT_EYEBROW,
        fm.FACEMESH_LIPS,
    ):
        region: Any = np.zeros_like(mask)
        cv2.fillConvexPoly(region, hull(idx(part)), (255,))
        region = cv2.dilate(region, np.ones((5, 5), np.uint8), iterations=max(1, w // 400))
        mask[region > 0] = 0
    # keep off the hairline and jaw edge, where background and hair creep in
    mask = cv2.erode(mask, np.ones((5, 5), np.uint8), iterations=max(1, w // 300))
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return mask > 0, (int(x0), int(y0), int(x1 - x0), int(y1 - y0))


def _box_skin_mask(shape: tuple[int, ...], box: tuple[int, int, int, int]) -> np.ndarray:
    """Central ellipse of a face box: cheeks, nose, forehead, little hair or background."""
    h, w = shape[:2]
    x, y, bw, bh = box
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = x + bw / 2, y + bh * 0.55
    return ((xx - cx) / (bw * 0.35)) ** 2 + ((yy - cy) / (bh * 0.4)) ** 2 <= 1.0


# --- measurement --------------------------------------------------------------------------


class FaceExposure(BaseModel):
    """Exposure of one face, measured on its skin pixels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    face_found: bool
    method: Literal["mesh", "box", "mask", "none"]
    face_box: tuple[int, int, int, int] | None = None
    skin_pixels: int = 0
    mean_l: float | None = None
    median_l: float | None = None
    median_b: float | None = None
    contrast: float | None = None  # standard deviation of L* over the skin (RMS contrast)
    clipped_shadows: float | None = None  # share of skin pixels at L* < SHADOW_L
    clipped_highlights: float | None = None  # share with any channel ≥ HIGHLIGHT_CHANNEL
    ita: float | None = None
    ita_bin: ItaBin | None = None


def face_exposure(
    image: Any,
    *,
    face_box: tuple[int, int, int, int] | None = None,
    skin_mask: np.ndarray | None = None,
) -> FaceExposure:
    """Measure face exposure of `image` (path, PIL image or RGB array).

    Pass `skin_mask` (bool H×W) or `face_box` (x, y, w, h) when the shared face analysis
    already found the face; otherwise MediaPipe's face mesh finds it here.
    """
    rgb = _load_rgb(image)
    box = face_box
    if skin_mask is not None:
        mask, method = np.asarray(skin_mask, dtype=bool), "mask"
    elif face_box is not None:
        mask, method = _box_skin_mask(rgb.shape, face_box), "box"
    else:
        found = _mesh_skin_mask(rgb)
        if found is None:
            return FaceExposure(face_found=False, method="none")
        (mask, box), method = found, "mesh"
    pixels = rgb[mask]
    if len(pixels) < 50:
        return FaceExposure(face_found=False, method=method, face_box=box, skin_pixels=len(pixels))  # type: ignore[arg-type]
    lab = rgb_to_lab(pixels)
    lightness = lab[:, 0]
    # ITA from the central band of lightness: ignores stray hair, nostrils and specular spots
    lo, hi = np.percentile(lightness, [10, 90])
    core = lab[(lightness >= lo) & (lightness <= hi)]
    median_l = float(np.median(core[:, 0]))
    median_b = float(np.median(core[:, 2]))
    ita = _ita(median_l, median_b)
    return FaceExposure(
        face_found=True,
        method=method,  # type: ignore[arg-type]
        face_box=box,
        skin_pixels=len(pixels),
        mean_l=round(float(lightness.mean()), 2),
        median_l=round(median_l, 2),
        median_b=round(median_b, 2),
        contrast=round(float(lightness.std()), 2),
        clipped_shadows=round(float((lightness < SHADOW_L).mean()), 4),
        clipped_highlights=round(float((pixels >= HIGHLIGHT_CHANNEL).any(axis=1).mean()), 4),
        ita=round(ita, 2),
        ita_bin=ita_bin(ita),
    )


# --- the set review -------------------------------------------------------------------------


class DeclaredAttributes(BaseModel):
    """What the brief asked for. Free words; never filled in from pixels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    age: str | None = None
    skin_tone: str | None = None
    gender_expression: str | None = None
    ethnicity: str | None = None


class ReviewItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    declared: DeclaredAttributes = Field(default_factory=DeclaredAttributes)
    exposure: FaceExposure | None = None  # measured here when absent
    face_box: tuple[int, int, int, int] | None = None


class MixRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    attribute: str
    value: str
    count: int
    share: float
    target: float | None = None
    flagged: bool = False


class ImageExposure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    declared: DeclaredAttributes
    exposure: FaceExposure
    expected_l: float | None = None  # for the declared skin tone, when it is a known word
    residual_l: float | None = None  # measured − expected
    verdict: Literal["ok", "under", "over", "no face"]
    reasons: list[str] = Field(default_factory=list)


class GroupExposure(BaseModel):
    """Measured exposure of the faces in one group (an ITA bin, or a declared skin tone)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    by: Literal["ita_bin", "declared_skin_tone"]
    group: str
    n: int
    median_l: float
    target_l: tuple[float, float] | None = None  # ITA bins: the well-exposed range
    mean_residual_l: float | None = None  # declared tones: measured − expected, averaged
    clipped_shadows: float
    clipped_highlights: float
    contrast: float
    under: int
    over: int
    flag: Literal["under-exposed", "over-exposed"] | None = None
    note: str = ""


class ReviewReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    n_images: int
    mix: list[MixRow]
    images: list[ImageExposure]
    groups: list[GroupExposure]
    flags: list[str]
    method_note: str = (
        "Declared attributes come from the brief. Exposure and ITA° are measured on face skin "
        "pixels; an ITA bin describes the lit photo, not the person. Nobody's ethnicity or "
        "gender is inferred from pixels."
    )

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


def _tone(declared: DeclaredAttributes) -> str:
    return (declared.skin_tone or "").strip().lower()


def _judge(
    path: str, exp: FaceExposure, declared: DeclaredAttributes, targets: dict[str, tuple[float, float]]
) -> ImageExposure:
    if not exp.face_found or exp.median_l is None or exp.ita is None or exp.ita_bin is None:
        return ImageExposure(path=path, declared=declared, exposure=exp, verdict="no face")
    under: list[str] = []
    over: list[str] = []
    lo, hi = targets[exp.ita_bin]
    if exp.median_l < lo:
        under.append(f"face L* {exp.median_l:.0f} below {lo:.0f}, the floor for its ITA bin ({exp.ita_bin})")
    if exp.median_l > hi:
        over.append(f"face L* {exp.median_l:.0f} above {hi:.0f}, the ceiling for its ITA bin ({exp.ita_bin})")
    if exp.ita < ITA_FLOOR:
        under.append(f"ITA {exp.ita:.0f}° is below any skin ({ITA_FLOOR:.0f}°): the face is in shadow")
    if (exp.clipped_shadows or 0) > CLIPPED_LIMIT:
        under.append(f"{exp.clipped_shadows:.0%} of face skin crushed to black")
    if (exp.clipped_highlights or 0) > CLIPPED_LIMIT:
        over.append(f"{exp.clipped_highlights:.0%} of face skin clipped to white")
    expected = DECLARED_TONE_L.get(_tone(declared))
    residual = None if expected is None else round(exp.median_l - expected, 2)
    if residual is not None and residual < -DECLARED_TOLERANCE_L:
        under.append(
            f"face L* {exp.median_l:.0f}, {-residual:.0f} below a well-lit '{declared.skin_tone}' face"
        )
    if residual is not None and residual > DECLARED_TOLERANCE_L:
        over.append(
            f"face L* {exp.median_l:.0f}, {residual:.0f} above a well-lit '{declared.skin_tone}' face"
        )
    verdict: Literal["ok", "under", "over"] = "ok"
    if under or over:
        verdict = "under" if len(under) >= len(over) else "over"
    return ImageExposure(
        path=path, declared=declared, exposure=exp, expected_l=expected, residual_l=residual,
        verdict=verdict, reasons=under + over,
    )  # fmt: skip


def _group(
    by: Literal["ita_bin", "declared_skin_tone"],
    name: str,
    members: list[ImageExposure],
    target: tuple[float, float] | None = None,
) -> GroupExposure:
    exps = [m.exposure for m in members]
    under = sum(m.verdict == "under" for m in members)
    over = sum(m.verdict == "over" for m in members)
    residuals = [m.residual_l for m in members if m.residual_l is not None]
    flag: Literal["under-exposed", "over-exposed"] | None = None
    # systematic: at least two faces and at least half the group (one face is an image finding)
    if under >= 2 and under * 2 >= len(members) and under > over:
        flag = "under-exposed"
    elif over >= 2 and over * 2 >= len(members) and over > under:
        flag = "over-exposed"
    return GroupExposure(
        by=by,
        group=name,
        n=len(members),
        median_l=round(float(np.median([e.median_l for e in exps])), 2),
        target_l=target,
        mean_residual_l=round(float(np.mean(residuals)), 2) if residuals else None,
        clipped_shadows=round(float(np.mean([e.clipped_shadows or 0 for e in exps])), 4),
        clipped_highlights=round(float(np.mean([e.clipped_highlights or 0 for e in exps])), 4),
        contrast=round(float(np.mean([e.contrast or 0 for e in exps])), 2),
        under=under,
        over=over,
        flag=flag,
        note=f"{under} under, {over} over of {len(members)}",
    )


def _relative_to_set(group: GroupExposure, measured: list[ImageExposure]) -> GroupExposure:
    """A declared tone lit systematically darker (lighter) than the rest of the set, each face
    compared with its own declared expectation: the lighting treats groups differently."""
    others = [i.residual_l for i in measured if _tone(i.declared) != group.group and i.residual_l is not None]
    if group.mean_residual_l is None or not others:
        return group
    gap = group.mean_residual_l - float(np.mean(others))
    note = f"{group.note}; lit {abs(gap):.0f} L* {'darker' if gap < 0 else 'lighter'} than the rest, for its tone"
    flag = group.flag
    # the group must also miss its own expectation in that direction: with two groups, one
    # lit darker makes the other "lighter than the rest" without anything wrong with it
    if flag is None and gap <= -GROUP_GAP_L and group.mean_residual_l <= -GROUP_GAP_L / 2:
        flag = "under-exposed"
    elif flag is None and gap >= GROUP_GAP_L and group.mean_residual_l >= GROUP_GAP_L:
        flag = "over-exposed"
    return group.model_copy(update={"flag": flag, "note": note})


def _mix(declared: Sequence[DeclaredAttributes], target_mix: dict[str, dict[str, float]]) -> list[MixRow]:
    """Declared values per attribute against the target shares (normalised)."""
    rows: list[MixRow] = []
    n = len(declared)
    tolerance = max(0.1, 1.0 / max(n, 1))  # one image more or less is never a finding
    for attribute in ATTRIBUTES:
        values = [getattr(d, attribute) for d in declared]
        counts = Counter(v.strip().lower() for v in values if v)
        missing = sum(1 for v in values if not v)
        target = {k.strip().lower(): v for k, v in target_mix.get(attribute, {}).items()}
        total = sum(target.values()) or 1.0
        for value in sorted(set(counts) | set(target)):
            share = counts.get(value, 0) / n if n else 0.0
            t = target[value] / total if value in target else None
            rows.append(
                MixRow(
                    attribute=attribute,
                    value=value,
                    count=counts.get(value, 0),
                    share=round(share, 3),
                    target=None if t is None else round(t, 3),
                    flagged=t is not None and abs(share - t) > tolerance,
                )
            )
        if missing and (counts or target):
            rows.append(
                MixRow(
                    attribute=attribute, value="(not declared)", count=missing, share=round(missing / n, 3)
                )
            )
    return rows


def review_set(
    items: Sequence[ReviewItem],
    target_mix: dict[str, dict[str, float]] | None = None,
    *,
    bin_targets: dict[str, tuple[float, float]] | None = None,
) -> ReviewReport:
    """Compare the declared mix with `target_mix` and look for lighting that fails a group.

    `target_mix`: {attribute: {value: share}}, e.g. {"skin_tone": {"light": 1, "deep": 1}}
    (shares are normalised). `bin_targets` overrides `BIN_TARGET_L`. Faces are grouped by
    measured ITA bin (each bin against its own lightness range) and, where the brief
    declared skin tones, by declared tone (each face against its declared expectation,
    then each group against the rest of the set).
    """
    targets = {**BIN_TARGET_L, **(bin_targets or {})}
    images = [
        _judge(
            item.path,
            item.exposure or face_exposure(item.path, face_box=item.face_box),
            item.declared,
            targets,
        )
        for item in items
    ]
    mix = _mix([i.declared for i in items], target_mix or {})

    measured = [i for i in images if i.verdict != "no face"]
    groups: list[GroupExposure] = []
    for name in BIN_ORDER:
        members = [i for i in measured if i.exposure.ita_bin == name]
        if members:
            groups.append(_group("ita_bin", name, members, targets[name]))
    tones = sorted({_tone(i.declared) for i in measured} - {""})
    for tone in tones:
        members = [i for i in measured if _tone(i.declared) == tone]
        groups.append(_relative_to_set(_group("declared_skin_tone", tone, members), measured))

    flags: list[str] = []
    for g in groups:
        if g.flag is not None:
            label = f"ITA bin '{g.group}'" if g.by == "ita_bin" else f"declared skin tone '{g.group}'"
            flags.append(
                f"{label}: {g.flag} ({g.note}; median face L* {g.median_l:.0f}, "
                f"crushed shadows {g.clipped_shadows:.1%}, clipped highlights {g.clipped_highlights:.1%})"
            )
    for row in mix:
        if row.flagged and row.target is not None:
            flags.append(
                f"{row.attribute} '{row.value}': {row.share:.0%} of the set, target {row.target:.0%}"
            )
    no_face = [Path(i.path).name for i in images if i.verdict == "no face"]
    if no_face:
        flags.append(f"no face measured in {len(no_face)} image(s): {', '.join(no_face)}")
    return ReviewReport(n_images=len(items), mix=mix, images=images, groups=groups, flags=flags)


# --- spreading a brief ----------------------------------------------------------------------


def diversify(values: dict[str, list[str]], n: int) -> list[dict[str, str]]:
    """Spread `n` images across the listed values of each attribute, balanced and mixed.

    Greedy and deterministic: each image takes a least-used value of every attribute (so
    counts never differ by more than one), choosing among those the combination whose
    value pairs have appeared least, looking one image ahead. With 3 ages × 3 skin tones
    the first 9 images cover all 9 pairs (a Latin square) instead of repeating a diagonal.
    """
    attrs = [(k, list(dict.fromkeys(v))) for k, v in values.items() if v]
    if not attrs:
        return [{} for _ in range(max(n, 0))]
    counts = [dict.fromkeys(vals, 0) for _, vals in attrs]
    pairs: Counter[tuple[int, str, int, str]] = Counter()
    index_pairs = list(itertools.combinations(range(len(attrs)), 2))

    def candidates(cnts: list[dict[str, int]]) -> list[tuple[str, ...]]:
        least = [[v for v, c in cnt.items() if c == min(cnt.values())] for cnt in cnts]
        return list(itertools.islice(itertools.product(*least), 2000))

    def cost(combo: tuple[str, ...], used: Counter[tuple[int, str, int, str]]) -> int:
        return sum(used[(a, combo[a], b, combo[b])] for a, b in index_pairs)

    out: list[dict[str, str]] = []
    for _ in range(max(n, 0)):
        options = candidates(counts)
        lookahead = len(options) <= 200
        best, best_cost = options[0], (math.inf, math.inf)
        for combo in options:
            own = cost(combo, pairs)
            nxt = 0
            if lookahead and own <= best_cost[0]:
                after_counts = [{**cnt, combo[a]: cnt[combo[a]] + 1} for a, cnt in enumerate(counts)]
                after = pairs + Counter({(a, combo[a], b, combo[b]): 1 for a, b in index_pairs})
                nxt = min(cost(c, after) for c in candidates(after_counts))
            if (own, nxt) < best_cost:
                best, best_cost = combo, (own, nxt)
        for a, value in enumerate(best):
            counts[a][value] += 1
        for a, b in index_pairs:
            pairs[(a, best[a], b, best[b])] += 1
        out.append({k: v for (k, _), v in zip(attrs, best)})
    return out


def load_declared(path: str | os.PathLike[str]) -> dict[str, DeclaredAttributes]:
    """declared.json: {"image.png": {"skin_tone": "deep", ...}, ...} keyed by file name."""
    import json

    raw = json.loads(Path(path).read_text())
    return {Path(k).name: DeclaredAttributes.model_validate(v) for k, v in raw.items()}


def run_items(ledger: Any, run_id: str) -> list[ReviewItem]:
    """A run's images with the attributes their briefs *declared* (diversified shoots declare
    per image; otherwise the run's brief subject applies to every image)."""
    run = ledger.run(run_id)
    subject = ((run.brief or {}).get("subject") or {}) if run.brief else {}
    requests = {r.id: r.request for r in ledger.requests(run.id)}
    items = []
    for img in ledger.images(run_id=run.id, limit=100_000):
        attrs = {k: subject.get(k) for k in ("age", "skin_tone", "gender_expression", "ethnicity")}
        req = requests.get(img.request_id or "")
        if req is not None:
            attrs.update(req.options.get("declared", {}))
        declared = DeclaredAttributes(**{k: (str(v) if v is not None else None) for k, v in attrs.items()})
        items.append(ReviewItem(path=img.out_path or img.path, declared=declared))
    return items
