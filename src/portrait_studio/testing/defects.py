"""Synthetic defects made from real photos, for calibrating and testing the checklist.

Each builder takes a clean RGB array and its `Analysis` and returns a new RGB array with one
defect a retoucher would reject. Builders take a `severity` ('mild' or 'obvious') and an
`rng`: the parameters (strength, radius, method details, placement, colours, fonts) are drawn
from ranges, so the calibration does not learn one fixed recipe. `DEFECTS` maps a name to the
builder and the check item it must fail; `SCENE` lists changes that are *not* defects (text that
belongs to the scene) and must not fail anything. Tests and `bench/bench_checks.py` share them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..analysis import (
    FACE_OVAL_IDX,
    HAND_FINGERS,
    INNER_MOUTH_IDX,
    Analysis,
    Face,
)

__all__ = [
    "DEFECTS",
    "SCENE",
    "UNSCORED",
    "SEVERITIES",
    "Defect",
    "banded_background",
    "banded_sky",
    "blow_highlights",
    "blur_eyes",
    "blur_nearest_eye",
    "clip_shadows",
    "double_pupil",
    "extra_finger",
    "extra_incisor",
    "logo_mark",
    "merged_fingers",
    "mismatched_irises",
    "missing_pupil",
    "missing_tooth",
    "name_tag",
    "overlay_text",
    "oversharpen",
    "posterise_background",
    "relight_from_side",
    "remove_catchlights",
    "stray_artifacts",
    "tiled_watermark",
    "tint_face",
    "tooth_gap",
    "watermark",
    "waxy_beauty",
    "waxy_bilateral",
    "waxy_blur",
    "waxy_frequency_separation",
    "waxy_guided",
    "waxy_skin",
]

SEVERITIES = ("mild", "obvious")
Rng = np.random.Generator


def _rng(rng: Rng | None) -> Rng:
    return rng if rng is not None else np.random.default_rng(7)


def _pick(rng: Rng, severity: str, mild: tuple[float, float], obvious: tuple[float, float]) -> float:
    lo, hi = mild if severity == "mild" else obvious
    return float(rng.uniform(lo, hi))


def _face(an: Analysis) -> Face:
    f = an.face
    if f is None or f.landmarks is None:
        raise ValueError("this defect needs a face with landmarks")
    return f


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(0.5, sigma))[..., None]


def _blend(a: np.ndarray, b: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    return np.clip(a.astype(np.float32) * (1 - alpha) + np.asarray(b, np.float32) * alpha, 0, 255).astype(np.uint8)


# --- eyes -------------------------------------------------------------------------------------
def _eye_mask(an: Analysis, f: Face, sides: tuple[str, ...], pad: float = 0.45) -> np.ndarray:
    m = np.zeros(an.shape, bool)
    for s in sides:
        x0, y0, x1, y1 = f.group_box(f.eye(s), pad=pad)
        m[max(0, y0):y1, max(0, x0):x1] = True
    return m


def blur_eyes(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Both eyes out of focus (Gaussian of about 2% of the face width), the rest untouched."""
    import cv2

    f = _face(an)
    sigma = f.width * (0.02 if rng is None else _pick(rng, severity, (0.012, 0.016), (0.02, 0.03)))
    blurred = cv2.GaussianBlur(rgb, (0, 0), max(1.2, sigma))
    return _blend(rgb, blurred, _feather(_eye_mask(an, f, ("left", "right")), f.width * 0.01))


def blur_nearest_eye(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Only the eye nearer the camera is soft (focus missed by a few centimetres)."""
    import cv2

    from ..checks.eyes import _nearest_side

    rng = _rng(rng)
    f = _face(an)
    sigma = f.width * _pick(rng, severity, (0.012, 0.016), (0.02, 0.03))
    blurred = cv2.GaussianBlur(rgb, (0, 0), max(1.2, sigma))
    return _blend(rgb, blurred, _feather(_eye_mask(an, f, (_nearest_side(f),)), f.width * 0.01))


def _iris_disk(an: Analysis, f: Face, side: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, float]:
    c, r = f.iris(side)
    yy, xx = np.mgrid[: an.shape[0], : an.shape[1]]
    disk = ((xx - c[0]) ** 2 + (yy - c[1]) ** 2 <= (r * scale) ** 2) & f.mask(f.eye(side), an.shape)
    return disk, c, r


def remove_catchlights(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Paint the irises' bright spots out with the iris's own median colour (mild: mostly out)."""
    import cv2

    f = _face(an)
    out = rgb.copy()
    lum = out.astype(np.float32).mean(-1)
    keep = 0.0 if severity == "obvious" else 0.25
    for s in ("left", "right"):
        disk, c, r = _iris_disk(an, f, s)
        if not disk.any():
            continue
        d = max(3, int(r * 1.1) | 1)
        spots = cv2.morphologyEx(lum, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d)))
        bright = cv2.dilate((disk & (spots > 10)).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & disk
        if (disk & ~bright).any():
            med = np.median(out[disk & ~bright], axis=0)
            out[bright] = _blend(med[None, :].repeat(int(bright.sum()), 0), out[bright], keep)
    return out


def double_pupil(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """A second dark pupil beside the real one in the iris (both irises when obvious)."""
    import cv2

    seeded = rng is not None
    rng = _rng(rng)
    f = _face(an)
    out = rgb.copy()
    sides = ("left", "right") if severity == "obvious" or not seeded else (str(rng.choice(["left", "right"])),)
    for s in sides:
        c, r = f.iris(s)
        off = _pick(rng, severity, (0.5, 0.6), (0.52, 0.62)) if seeded else 0.55
        angle = rng.uniform(-0.5, 0.5) if seeded else 0.0
        rad = max(1, round(r * (_pick(rng, severity, (0.2, 0.24), (0.2, 0.25)) if seeded else 0.22)))
        for sign in (-1, 1):
            x = c[0] + sign * off * r * np.cos(angle)
            y = c[1] + sign * off * r * np.sin(angle)
            cv2.circle(out, (round(x), round(y)), rad, (8, 6, 6), -1, cv2.LINE_AA)
    return out


def missing_pupil(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """The pupil is painted over with the iris's own colour: a blank, doll-like iris."""
    f = _face(an)
    out = rgb.copy()
    for s in ("left", "right"):
        disk, c, r = _iris_disk(an, f, s, 0.95)
        if not disk.any():
            continue
        colour = np.percentile(out[disk], 70, axis=0)
        yy, xx = np.mgrid[: an.shape[0], : an.shape[1]]
        pupil = disk & ((xx - c[0]) ** 2 + (yy - c[1]) ** 2 <= (r * 0.6) ** 2)
        out[pupil] = _blend(out[pupil], colour[None, :].repeat(int(pupil.sum()), 0), 0.85 if severity == "mild" else 1.0)
    return out


def mismatched_irises(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Recolour the subject's left iris (pale blue or green), as generators sometimes do."""
    rng = _rng(rng)
    f = _face(an)
    disk, _, _ = _iris_disk(an, f, "left", 0.95)
    other, _, _ = _iris_disk(an, f, "right", 0.95)
    out = rgb.copy()
    lum = out[disk].astype(np.float32).mean(-1, keepdims=True)
    palette = np.array([[70, 130, 200], [80, 170, 110], [150, 95, 45], [120, 140, 150]], np.float32)
    # a colour unlike the other eye's (recolouring blue eyes blue is no mismatch)
    ref = np.median(out[other], axis=0).astype(np.float32) if other.any() else np.array([90, 70, 50], np.float32)
    ref_chroma = ref - ref.mean()
    far = np.argsort([-float(np.linalg.norm((c - c.mean()) - ref_chroma)) for c in palette])[:2]
    colour = palette[int(far[int(rng.integers(2))])]
    k = _pick(rng, severity, (0.55, 0.6), (0.7, 0.8))
    out[disk] = np.clip(lum * (1.3 - k) + colour * k, 0, 255).astype(np.uint8)
    return out


# --- skin -------------------------------------------------------------------------------------
def _skin_blend(rgb: np.ndarray, smooth: np.ndarray, an: Analysis, f: Face, amount: float = 1.0) -> np.ndarray:
    m = an.face_skin_mask(f)
    return _blend(rgb, smooth, _feather(m, f.width * 0.01) * amount)


def waxy_bilateral(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Plastic skin: repeated edge-preserving (bilateral) smoothing on the face's skin only."""
    import cv2

    rng = _rng(rng)
    f = _face(an)
    d = max(5, int(f.width * _pick(rng, severity, (0.03, 0.045), (0.05, 0.07))))
    passes = int(rng.integers(2, 4)) if severity == "mild" else int(rng.integers(4, 7))
    sigma_c = _pick(rng, severity, (30, 50), (60, 90))
    smooth = rgb.copy()
    for _ in range(passes):
        smooth = cv2.bilateralFilter(smooth, d, sigma_c, d)
    return _skin_blend(rgb, smooth, an, f)


def waxy_skin(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """The original recipe: six bilateral passes (kept for the existing tests)."""
    return waxy_bilateral(rgb, an, severity, rng)


def _guided(img: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with the image as its own guide (per channel, box filters)."""
    import cv2

    x = img.astype(np.float32) / 255.0
    k = (2 * radius + 1, 2 * radius + 1)
    mean = cv2.blur(x, k)
    var = cv2.blur(x * x, k) - mean * mean
    a = var / (var + eps)
    b = mean - a * mean
    return np.clip((cv2.blur(a, k) * x + cv2.blur(b, k)) * 255.0, 0, 255)


def waxy_guided(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Guided / 'surface blur' smoothing: flattens low-contrast texture, keeps strong edges.

    The threshold (eps) is set relative to the skin's own local contrast, as a retoucher sets a
    surface blur's threshold by eye: a fixed eps flattens a soft face and leaves a weathered one
    almost untouched."""
    import cv2

    rng = _rng(rng)
    f = _face(an)
    radius = max(2, int(f.width * _pick(rng, severity, (0.015, 0.025), (0.03, 0.05))))
    x = rgb.astype(np.float32) / 255.0
    k = (2 * radius + 1, 2 * radius + 1)
    mean = cv2.blur(x, k)
    var = (cv2.blur(x * x, k) - mean * mean).mean(-1)
    skin = an.face_skin_mask(f)
    local = float(np.median(var[skin])) if skin.any() else 0.001
    eps = max(3e-4, local * _pick(rng, severity, (1.0, 2.0), (3.0, 8.0)))
    return _skin_blend(rgb, _guided(rgb, radius, eps), an, f)


def waxy_frequency_separation(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Frequency-separation retouch overdone: the fine (high-pass) layer turned down on the skin."""
    import cv2

    rng = _rng(rng)
    f = _face(an)
    sigma = max(1.0, f.width * _pick(rng, severity, (0.008, 0.012), (0.01, 0.02)))
    x = rgb.astype(np.float32)
    low = cv2.GaussianBlur(x, (0, 0), sigma)
    keep = _pick(rng, severity, (0.3, 0.4), (0.0, 0.15))
    return _skin_blend(rgb, low + (x - low) * keep, an, f)


def waxy_blur(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Plain blur of the face skin with the eyes, brows and mouth left sharp."""
    import cv2

    rng = _rng(rng)
    f = _face(an)
    sigma = max(1.0, f.width * _pick(rng, severity, (0.006, 0.009), (0.012, 0.02)))
    return _skin_blend(rgb, cv2.GaussianBlur(rgb, (0, 0), sigma), an, f)


def waxy_beauty(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """A phone 'beauty' filter: smoothing, a brighter, pinker, lower-contrast face."""
    import cv2

    rng = _rng(rng)
    f = _face(an)
    d = max(5, int(f.width * _pick(rng, severity, (0.03, 0.04), (0.05, 0.06))))
    smooth = cv2.bilateralFilter(rgb, d, _pick(rng, severity, (30, 45), (50, 80)), d).astype(np.float32)
    soft = cv2.GaussianBlur(smooth, (0, 0), max(0.8, f.width * _pick(rng, severity, (0.003, 0.005), (0.006, 0.01))))
    glow = _pick(rng, severity, (1.03, 1.06), (1.06, 1.12))
    return _skin_blend(rgb, soft * np.array([glow * 1.02, glow, glow * 0.99], np.float32) + 6, an, f)


def tint_face(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """A face that does not match its neck: the face oval shifted towards orange, pink or yellow."""
    f = _face(an)
    m = f.mask(FACE_OVAL_IDX, an.shape)
    gain: np.ndarray
    add: np.ndarray
    if rng is None:
        gain, add = np.array([1.18, 0.92, 0.78]), np.array([18.0, 0.0, 0.0])
    else:
        k = _pick(rng, severity, (0.6, 0.75), (1.0, 1.3))
        gain, add = [
            (np.array([1.18, 0.92, 0.78]), np.array([18.0, 0.0, 0.0])),   # orange
            (np.array([1.15, 0.85, 0.95]), np.array([15.0, 0.0, 5.0])),   # pink
            (np.array([1.08, 1.02, 0.72]), np.array([8.0, 6.0, 0.0])),    # yellow
        ][int(rng.integers(3))]
        gain, add = 1 + (gain - 1) * k, add * k
    tinted = np.clip(rgb.astype(np.float32) * gain + add, 0, 255)
    return _blend(rgb, tinted, _feather(m, f.width * 0.02))


def oversharpen(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """An overdone unsharp mask on the whole frame: bright and dark halos along every edge."""
    import cv2

    rng = _rng(rng)
    scale = max(an.shape) / 1000
    radius = max(1.0, scale * _pick(rng, severity, (1.5, 2.5), (2.5, 4.0)))
    amount = _pick(rng, severity, (1.2, 1.8), (2.5, 4.0))
    x = rgb.astype(np.float32)
    return np.clip(x + amount * (x - cv2.GaussianBlur(x, (0, 0), radius)), 0, 255).astype(np.uint8)


# --- mouth ------------------------------------------------------------------------------------
def tooth_gap(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """A dark gap (missing tooth) in the visible teeth, off the mouth's centre line."""
    f = _face(an)
    inner = f.mask(INNER_MOUTH_IDX, an.shape)
    pts = f.points(INNER_MOUTH_IDX)
    x0, x1 = pts[:, 0].min(), pts[:, 0].max()
    if rng is None:
        where, width = 0.62, 0.045
    else:
        where = float(rng.choice([rng.uniform(0.3, 0.4), rng.uniform(0.6, 0.7)]))
        width = _pick(rng, severity, (0.06, 0.07), (0.08, 0.1)) / 2
    cx = x0 + (x1 - x0) * where
    half = max(1.5, (x1 - x0) * width)
    out = rgb.copy()
    xx = np.arange(an.shape[1])[None, :]
    band = inner & (np.abs(xx - cx) <= half)
    out[band] = (35, 20, 20)
    return out


def _teeth_rows(rgb: np.ndarray, an: Analysis, f: Face) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The mouth opening, its bright low-chroma (tooth) pixels, and the opening's x extent."""
    from ..checks._pixels import lab

    inner = f.mask(INNER_MOUTH_IDX, an.shape)
    pts = f.points(INNER_MOUTH_IDX)
    x0, x1 = float(pts[:, 0].min()), float(pts[:, 0].max())
    L = lab(rgb)
    chroma = np.hypot(L[..., 1], L[..., 2])
    light = L[..., 0][inner]
    if light.size < 40:
        raise ValueError("no visible teeth")
    teeth = inner & (L[..., 0] > max(45.0, float(np.percentile(light, 40)))) & (chroma < 28)
    if teeth.sum() < 0.2 * inner.sum():
        raise ValueError("no visible teeth")
    return inner, teeth, x0, x1


def missing_tooth(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """One tooth gone: a tooth-wide slot of the visible teeth shows the mouth's own dark interior
    (its darkest tenth, shaded darker towards the top, soft-edged), beside the front teeth."""
    import cv2

    rng = _rng(rng)
    f = _face(an)
    inner, teeth, x0, x1 = _teeth_rows(rgb, an, f)
    w = x1 - x0
    cx = x0 + w * float(rng.choice([rng.uniform(0.3, 0.42), rng.uniform(0.58, 0.7)]))
    half = max(1.5, w * _pick(rng, severity, (0.03, 0.04), (0.045, 0.06)))
    xx = np.arange(an.shape[1])[None, :]
    # the slot spans the teeth's rows (not the lips): the rows where teeth are near that column
    cols = teeth[:, max(0, int(cx - 3 * half)):int(cx + 3 * half) + 1]
    rows = np.nonzero(cols.any(1))[0]
    if len(rows) < 3:
        raise ValueError("no visible teeth")
    slot = inner & (np.abs(xx - cx) <= half) & (np.arange(an.shape[0])[:, None] >= rows.min()) & (
        np.arange(an.shape[0])[:, None] <= rows.max())
    dark = np.percentile(rgb[inner & ~teeth] if (inner & ~teeth).sum() >= 10 else rgb[inner], 10, axis=0)
    yy = np.linspace(0.7, 1.0, an.shape[0], dtype=np.float32)[:, None, None]  # shade: darker at the top
    fill = np.clip(dark[None, None, :] * yy * rng.uniform(0.8, 1.1) + rng.normal(0, 2, rgb.shape), 0, 255)
    alpha = cv2.GaussianBlur(slot.astype(np.float32), (0, 0), max(0.6, half * 0.15))[..., None] * inner[..., None]
    return _blend(rgb, fill, alpha)


def extra_incisor(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """A fifth front tooth: the tooth left of the mouth's centre line is drawn twice, pushing the
    teeth on the right outwards (the last one disappears into the corner), as generators do."""
    rng = _rng(rng)
    f = _face(an)
    inner, teeth, x0, x1 = _teeth_rows(rgb, an, f)
    w = x1 - x0
    mid = float(f.landmarks[0, 0]) if f.landmarks is not None else (x0 + x1) / 2  # philtrum above the lip
    tooth = max(2, round(w * _pick(rng, severity, (0.09, 0.11), (0.11, 0.13))))
    out = rgb.copy()
    ys, xs = np.nonzero(inner)
    m = round(mid)
    for y in np.unique(ys):
        row = xs[ys == y]
        lo, hi = int(row.min()), int(row.max())
        if not lo < m < hi:
            continue
        src = rgb[y, lo:hi + 1].copy()
        k = m - lo
        shifted = np.concatenate([src[:k], src[max(0, k - tooth):k], src[k:]])[: hi - lo + 1]
        out[y, lo:hi + 1] = shifted
    return np.where(inner[..., None], out, rgb).astype(np.uint8)


# --- lighting ---------------------------------------------------------------------------------
def clip_shadows(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Crushed blacks: a levels move that sends the darker tones (a third to a half) to 0."""
    black = 100.0 if rng is None else _pick(rng, severity, (70, 85), (95, 120))
    x = rgb.astype(np.float32)
    return np.clip((x - black) * 255 / (255 - black), 0, 255).astype(np.uint8)


def blow_highlights(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Blown highlights: about +1 stop, so lit skin and whites clip at 255."""
    gain = 1.9 if rng is None else _pick(rng, severity, (1.5, 1.65), (1.8, 2.2))
    return np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def relight_from_side(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Light falls off hard towards the image's right: a key from camera left, no fill."""
    f = _face(an)
    x0, _, x1, _ = f.box
    xx = np.arange(an.shape[1], dtype=np.float32)
    t = np.clip((xx - x0) / max(1, x1 - x0), 0, 1)
    drop = 0.85 if rng is None else _pick(rng, severity, (0.6, 0.7), (0.8, 0.9))
    gain = (1.15 - drop * t)[None, :, None]
    return np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)


# --- background -------------------------------------------------------------------------------
def _background(an: Analysis) -> np.ndarray:
    import cv2

    person = an.person_mask > 0.3
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (25, 25))
    return ~cv2.dilate(person.astype(np.uint8), k).astype(bool)


def banded_background(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Replace the background with a smooth studio gradient posterised into visible bands."""
    h, w = an.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    if rng is None:
        t, bands = 0.6 * yy / h + 0.4 * xx / w, 24.0
        lo, span = np.array([70, 90, 120], np.float32), np.array([110, 100, 80], np.float32)
    else:
        a = rng.uniform(0, np.pi)
        t = np.cos(a) * yy / h + np.sin(a) * xx / w
        t = (t - t.min()) / max(1e-6, float(np.ptp(t)))
        bands = _pick(rng, severity, (36, 48), (16, 28))
        lo = rng.uniform(40, 120, 3).astype(np.float32)
        span = rng.uniform(50, 110, 3).astype(np.float32)
    levels = np.floor(t * bands) / bands
    grad = lo + levels[..., None] * span
    bg = _background(an)
    return _blend(rgb, grad, _feather(bg, 1.5) * bg[..., None])


def banded_sky(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """A blue sky (deep at the top, pale at the horizon) that an 8-bit pipeline posterised into bands."""
    rng = _rng(rng)
    h, w = an.shape
    yy = np.mgrid[:h, :w][0].astype(np.float32) / h
    t = np.clip(yy * rng.uniform(0.9, 1.3), 0, 1) ** rng.uniform(0.7, 1.3)
    top = np.array([rng.uniform(30, 70), rng.uniform(80, 120), rng.uniform(160, 210)], np.float32)
    bottom = np.array([rng.uniform(170, 210), rng.uniform(200, 225), rng.uniform(225, 245)], np.float32)
    sky = top + t[..., None] * (bottom - top)
    step = _pick(rng, severity, (3, 4), (6, 10))
    sky = np.floor(sky / step) * step
    bg = _background(an)
    return _blend(rgb, sky, _feather(bg, 1.5) * bg[..., None])


def posterise_background(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """The photo's own background smoothed and then posterised, as heavy compression or 8-bit edits do."""
    import cv2

    rng = _rng(rng)
    bg = _background(an)
    smooth = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), max(an.shape) * rng.uniform(0.02, 0.04))
    step = _pick(rng, severity, (4, 5), (7, 12))
    poster = np.floor(smooth / step) * step + step / 2
    return _blend(rgb, poster, _feather(bg, 1.5) * bg[..., None])


def stray_artifacts(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Small blobs, like generation debris, on the plainest parts of the background."""
    import cv2

    seeded = rng is not None
    rng = _rng(rng)
    out = rgb.copy()
    bg = _background(an)
    h, w = an.shape
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    local = cv2.blur(gray * gray, (31, 31)) - cv2.blur(gray, (31, 31)) ** 2
    r = max(3, int((0.008 if not seeded else _pick(rng, severity, (0.005, 0.007), (0.008, 0.012))) * max(h, w)))
    cand = bg & (local < np.percentile(local[bg], 30) if bg.any() else bg)
    cand[: 3 * r] = cand[-3 * r:] = False
    cand[:, : 3 * r] = cand[:, -3 * r:] = False
    ys, xs = np.nonzero(cand)
    count = 3 if not seeded else (int(rng.integers(2, 4)) if severity == "mild" else int(rng.integers(3, 6)))
    palette = [(230, 20, 200), (20, 240, 60), (250, 250, 40), (20, 20, 20), (240, 240, 240), (200, 40, 30)]
    for k in range(count):
        if len(xs) == 0:
            break
        col = palette[k % len(palette)] if not seeded else palette[int(rng.integers(len(palette)))]
        i = int(rng.integers(len(xs)))
        cv2.circle(out, (int(xs[i]), int(ys[i])), r, col, -1, cv2.LINE_AA)
        cv2.circle(out, (int(xs[i]) + r, int(ys[i]) - r // 2), max(1, r // 2), col, -1, cv2.LINE_AA)
    return out


# --- text -------------------------------------------------------------------------------------
@cache
def _font_path(kind: int) -> str | None:
    from pathlib import Path

    try:
        import matplotlib
    except ImportError:
        return None
    names = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf"]
    p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / names[kind % len(names)]
    return str(p) if p.exists() else None


def _font(size: int, kind: int = 0) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = _font_path(kind)
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)


CAPTIONS = ("(c) studio 2024", "© Lumen Photo", "PREVIEW ONLY", "www.portraitpro.net", "SAMPLE", "draft v3")
MARKS = ("shutterstock", "gettyimages", "iStock", "Adobe Stock", "WATERMARK", "alamy")


def overlay_text(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """A caption burnt into a corner or along the bottom of the image."""
    im = Image.fromarray(rgb).convert("RGBA")
    h, w = an.shape
    if rng is None:
        text, size, pos, alpha, kind = "(c) studio 2024", max(14, int(min(h, w) * 0.05)), (int(w * 0.05), int(h * 0.88)), 255, 0
    else:
        text = str(rng.choice(CAPTIONS))
        size = max(12, int(min(h, w) * _pick(rng, severity, (0.035, 0.045), (0.05, 0.07))))
        kind = int(rng.integers(4))
        tw = int(_font(size, kind).getlength(text))
        corner = int(rng.integers(4))
        x = int(w * 0.04) if corner in (0, 2) else max(0, w - tw - int(w * 0.04))
        y = int(h * 0.04) if corner in (0, 1) else int(h * 0.96) - size
        pos, alpha = (x, y), int(_pick(rng, severity, (170, 220), (230, 255)))
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
    colour = (255, 255, 255) if rng is None or rng.random() < 0.6 else (20, 20, 20)
    ImageDraw.Draw(layer).text(pos, text, fill=(*colour, alpha), font=_font(size, kind))
    return np.asarray(Image.alpha_composite(im, layer).convert("RGB"))


def watermark(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """A big semi-transparent stock watermark across the middle (over the subject)."""
    im = Image.fromarray(rgb).convert("RGBA")
    h, w = an.shape
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    if rng is None:
        text, size, alpha, pos, kind = "shutterstock", max(16, int(w * 0.11)), 110, (int(w * 0.12), int(h * 0.45)), 0
    else:
        text = str(rng.choice(MARKS))
        kind = int(rng.integers(4))
        size = max(16, int(w * rng.uniform(0.08, 0.12)))
        tw = int(_font(size, kind).getlength(text))
        alpha = int(_pick(rng, severity, (80, 100), (110, 160)))
        pos = (max(0, (w - tw) // 2 + int(rng.integers(-w // 10, w // 10 + 1))), int(h * rng.uniform(0.35, 0.6)))
    d.text(pos, text, fill=(255, 255, 255, alpha), font=_font(size, kind))
    return np.asarray(Image.alpha_composite(im, layer).convert("RGB"))


def tiled_watermark(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """A stock-photo pattern: the same faint mark repeated on a diagonal grid over everything."""
    rng = _rng(rng)
    im = Image.fromarray(rgb).convert("RGBA")
    h, w = an.shape
    text = str(rng.choice(MARKS))
    size = max(14, int(min(h, w) * rng.uniform(0.05, 0.08)))
    kind = int(rng.integers(4))
    font = _font(size, kind)
    alpha = int(_pick(rng, severity, (60, 80), (90, 130)))
    tile = Image.new("RGBA", (int(font.getlength(text)) + size, size * 2), (0, 0, 0, 0))
    ImageDraw.Draw(tile).text((size // 2, size // 2), text, fill=(255, 255, 255, alpha), font=font)
    tile = tile.rotate(float(rng.uniform(15, 35)), expand=True)
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
    step_x, step_y = int(tile.width * 1.2), int(tile.height * 1.1)
    for j, y in enumerate(range(-step_y // 2, h, step_y)):
        for x in range(-step_x // 2 + (j % 2) * step_x // 2, w, step_x):
            layer.alpha_composite(tile, (max(0, x), max(0, y)))
    return np.asarray(Image.alpha_composite(im, layer).convert("RGB"))


def logo_mark(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """A studio logo in a corner: a coloured badge with lettering."""
    rng = _rng(rng)
    im = Image.fromarray(rgb).convert("RGBA")
    h, w = an.shape
    size = max(12, int(min(h, w) * _pick(rng, severity, (0.035, 0.045), (0.05, 0.07))))
    text = str(rng.choice(["LUMEN", "NOVA STUDIO", "PHOTO+", "FOTOLAB"]))
    font = _font(size, 1)
    tw = int(font.getlength(text))
    pad = size // 3
    corner = int(rng.integers(4))
    x = int(w * 0.03) if corner in (0, 2) else w - tw - 2 * pad - int(w * 0.03)
    y = int(h * 0.03) if corner in (0, 1) else h - size - 2 * pad - int(h * 0.03)
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    badge = tuple(int(v) for v in rng.integers(30, 220, 3))
    alpha = int(_pick(rng, severity, (160, 200), (220, 255)))
    d.rounded_rectangle((x, y, x + tw + 2 * pad, y + size + 2 * pad), radius=pad, fill=(*badge, alpha))
    d.text((x + pad, y + pad // 2), text, fill=(255, 255, 255, alpha), font=font)
    return np.asarray(Image.alpha_composite(im, layer).convert("RGB"))


def name_tag(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Not a defect: a name tag pinned on the subject's chest (text that belongs to the scene)."""
    rng = _rng(rng)
    f = _face(an)
    h, w = an.shape
    fw = f.width
    cx = (f.box[0] + f.box[2]) / 2 + fw * rng.uniform(-0.6, 0.6)
    cy = f.box[3] + fw * rng.uniform(0.9, 1.3)
    size = max(10, int(fw * rng.uniform(0.09, 0.13)))
    text = str(rng.choice(["HOPPER", "J. SMITH", "Dr. Lee", "NASA", "STAFF", "M. GARCIA"]))
    font = _font(size, int(rng.integers(4)))
    tw = int(font.getlength(text))
    x0, y0 = int(cx - tw / 2 - size * 0.4), int(cy)
    if y0 + size * 2 > h or x0 < 0 or x0 + tw + size > w or an.person_mask[min(h - 1, y0), min(w - 1, max(0, int(cx)))] < 0.5:
        raise ValueError("no visible chest for a name tag")
    tag = Image.new("RGBA", (tw + int(size * 0.8), int(size * 1.6)), (0, 0, 0, 0))
    d = ImageDraw.Draw(tag)
    plate = (250, 250, 245, 255) if rng.random() < 0.6 else (20, 30, 60, 255)
    ink = (20, 20, 30, 255) if plate[0] > 128 else (235, 235, 235, 255)
    d.rectangle((0, 0, tag.width - 1, tag.height - 1), fill=plate)
    d.text((int(size * 0.4), int(size * 0.2)), text, fill=ink, font=font)
    tag = tag.rotate(float(rng.uniform(-8, 8)), expand=True, resample=Image.Resampling.BICUBIC)
    im = Image.fromarray(rgb).convert("RGBA")
    im.alpha_composite(tag, (max(0, x0), max(0, y0)))
    # the tag is in the scene: it takes the scene's light and softness
    import cv2

    out = np.asarray(im.convert("RGB")).astype(np.float32)
    region = np.zeros(an.shape, np.float32)
    region[y0:y0 + tag.height, max(0, x0):x0 + tag.width] = 1
    shade = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), fw * 0.2).mean(-1, keepdims=True) / 160
    lit = out * np.clip(shade, 0.5, 1.1)
    lit = cv2.GaussianBlur(lit, (0, 0), 0.7)
    return _blend(rgb, lit, region[..., None]) if region.any() else rgb


# --- hands ------------------------------------------------------------------------------------
def extra_finger(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """A sixth finger: a finger-shaped, palm-coloured, softly shaded capsule growing out beside the
    little finger of the clearest hand, pointing away from the other fingers."""
    import cv2

    if not an.hands:
        raise ValueError("this defect needs a hand")
    hand = max(an.hands, key=lambda hd: (hd.palm_size >= 16, hd.score))
    p = hand.landmarks[:, :2]
    s = hand.palm_size
    base = p[HAND_FINGERS["pinky"][0]]
    centre = hand.palm_center
    out_dir = (base - centre) / (np.linalg.norm(base - centre) + 1e-6)
    fingers_dir = (p[9] - p[0]) / (np.linalg.norm(p[9] - p[0]) + 1e-6)
    direction = out_dir + fingers_dir
    direction /= np.linalg.norm(direction) + 1e-6
    length = 1.15 if rng is None else _pick(rng, severity, (0.95, 1.05), (1.1, 1.3))
    tip = base + direction * length * s
    width = max(3, round(s * 0.2))
    palm = np.zeros(an.shape, np.uint8)
    cv2.fillConvexPoly(palm, np.round(p[[0, 1, 5, 9, 13, 17]]).astype(np.int32), 1)  # type: ignore[call-overload]
    colour = np.median(rgb[palm.astype(bool)], axis=0)
    mask = np.zeros(an.shape, np.float32)
    cv2.line(mask, tuple(int(v) for v in base), tuple(int(v) for v in tip), 1.0, width, cv2.LINE_AA)  # type: ignore[call-overload]
    cv2.circle(mask, tuple(int(v) for v in tip), width // 2, 1.0, -1, cv2.LINE_AA)  # type: ignore[call-overload]
    shade = cv2.GaussianBlur(mask, (0, 0), max(1.0, width / 3))[..., None]
    finger = np.clip(colour[None, None, :] * (0.75 + 0.35 * shade), 0, 255)
    return _blend(rgb, finger, cv2.GaussianBlur(mask, (0, 0), 0.8)[..., None])


def merged_fingers(rgb: np.ndarray, an: Analysis, severity: str = "obvious", rng: Rng | None = None) -> np.ndarray:
    """Two neighbouring fingers of the clearest hand fused: the gap between them, from the knuckles
    to the shorter finger's middle joint (obvious: to its tip), filled with the hand's own skin,
    shaded like a finger."""
    import cv2

    if not an.hands:
        raise ValueError("this defect needs a hand")
    rng = _rng(rng)
    hand = max(an.hands, key=lambda hd: (hd.palm_size >= 16, hd.score))
    p = hand.landmarks[:, :2]
    pairs = [("index", "middle"), ("middle", "ring"), ("ring", "pinky")]
    a, b = pairs[int(rng.integers(len(pairs)))]
    fa, fb = HAND_FINGERS[a], HAND_FINGERS[b]
    upto = 2 if severity == "mild" else 3  # middle joint or fingertip
    poly = np.concatenate([p[list(fa[: upto + 1])], p[list(fb[: upto + 1])][::-1]])
    mask = np.zeros(an.shape, np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], (1,))
    width = max(2, round(hand.palm_size * 0.12))
    for chain in (fa, fb):
        for i, j in itertools.pairwise(chain[: upto + 1]):
            cv2.line(mask, tuple(int(v) for v in p[i]), tuple(int(v) for v in p[j]), (1,), width)  # type: ignore[call-overload]
    if mask.sum() < 20:
        raise ValueError("the hand is too small")
    palm = np.zeros(an.shape, np.uint8)
    cv2.fillConvexPoly(palm, np.round(p[[0, 1, 5, 9, 13, 17]]).astype(np.int32), 1)  # type: ignore[call-overload]
    colour = np.median(rgb[palm.astype(bool)], axis=0)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(1.0, width / 2))[..., None]
    skin = np.clip(colour[None, None, :] * (0.8 + 0.25 * soft), 0, 255)
    return _blend(rgb, skin, cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.8)[..., None])


Builder = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Defect:
    build: Builder
    """`build(rgb, analysis, severity='obvious', rng=None)`: the defective copy."""
    target: str
    """The checklist item this defect must fail ('' for scene changes that must fail nothing)."""
    needs: str = "face"
    """'face', 'iris', 'teeth', 'hand', 'skin' or 'any': what the source photo must show."""
    context: dict[str, Any] | None = None
    """CheckContext fields the defect is judged against (e.g. the brief's lighting)."""
    family: str = ""


DEFECTS: dict[str, Defect] = {
    "blurred_eyes": Defect(blur_eyes, "eyes.sharpness", family="blurred eye"),
    "blurred_nearest_eye": Defect(blur_nearest_eye, "eyes.sharpness", family="blurred eye"),
    "no_catchlights": Defect(remove_catchlights, "eyes.catchlights", needs="iris", family="catchlights"),
    "double_pupil": Defect(double_pupil, "eyes.pupils", needs="iris", family="pupils"),
    "missing_pupil": Defect(missing_pupil, "eyes.pupils", needs="iris", family="pupils"),
    "mismatched_irises": Defect(mismatched_irises, "eyes.pair", needs="iris", family="iris pair"),
    "waxy_skin": Defect(waxy_bilateral, "skin.texture", needs="skin", family="waxy skin"),
    "waxy_guided": Defect(waxy_guided, "skin.texture", needs="skin", family="waxy skin"),
    "waxy_frequency_separation": Defect(waxy_frequency_separation, "skin.texture", needs="skin", family="waxy skin"),
    "waxy_blur": Defect(waxy_blur, "skin.texture", needs="skin", family="waxy skin"),
    "waxy_beauty": Defect(waxy_beauty, "skin.texture", needs="skin", family="waxy skin"),
    "oversharpened": Defect(oversharpen, "export.sharpening", needs="any", family="oversharpening"),
    "tinted_face": Defect(tint_face, "skin.tone", family="face/neck tone"),
    "tooth_gap": Defect(tooth_gap, "mouth.teeth", needs="teeth", family="teeth"),
    "missing_tooth": Defect(missing_tooth, "mouth.teeth", needs="teeth", family="teeth"),
    "clipped_shadows": Defect(clip_shadows, "lighting.shadows", needs="any", family="clipping"),
    "blown_highlights": Defect(blow_highlights, "lighting.highlights", needs="any", family="clipping"),
    "wrong_key_side": Defect(relight_from_side, "lighting.pattern", context={"lighting_pattern": "loop", "key_side": "right"},
                             family="key side"),
    "banded_background": Defect(banded_background, "background.banding", needs="any", family="banding"),
    "banded_sky": Defect(banded_sky, "background.banding", needs="any", family="banding"),
    "posterised_background": Defect(posterise_background, "background.banding", needs="any", family="banding"),
    "stray_artifacts": Defect(stray_artifacts, "background.artifacts", needs="any", family="debris"),
    "overlaid_text": Defect(overlay_text, "background.text", needs="any", family="overlay text"),
    "watermark": Defect(watermark, "background.text", needs="any", family="overlay text"),
    "tiled_watermark": Defect(tiled_watermark, "background.text", needs="any", family="overlay text"),
    "logo": Defect(logo_mark, "background.text", needs="any", family="overlay text"),
    "extra_finger": Defect(extra_finger, "hands.fingers", needs="hand", family="fingers"),
}

UNSCORED: dict[str, Defect] = {
    "extra_incisor": Defect(extra_incisor, "mouth.teeth", needs="teeth", family="teeth"),
    "merged_fingers": Defect(merged_fingers, "hands.fingers", needs="hand", family="fingers"),
}
"""Defects the checklist does not detect yet: the bench reports how many it flags, apart from
the precision and recall of the items they target."""

SCENE: dict[str, Defect] = {
    "name_tag": Defect(name_tag, "", family="scene text"),
}
"""Changes that are part of a real scene, not defects: nothing may fail because of them."""
