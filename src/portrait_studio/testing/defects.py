"""Synthetic defects made from real photos, for calibrating and testing the checklist.

Each builder takes a clean RGB array and its `Analysis` and returns a new RGB array with
one defect a retoucher would reject. `DEFECTS` maps a name to the builder and the check
item it must fail; tests and `bench/bench_checks.py` share it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
    "Defect",
    "banded_background",
    "blow_highlights",
    "blur_eyes",
    "clip_shadows",
    "double_pupil",
    "extra_finger",
    "mismatched_irises",
    "overlay_text",
    "relight_from_side",
    "remove_catchlights",
    "stray_artifacts",
    "tint_face",
    "tooth_gap",
    "watermark",
    "waxy_skin",
]


def _face(an: Analysis) -> Face:
    f = an.face
    if f is None or f.landmarks is None:
        raise ValueError("this defect needs a face with landmarks")
    return f


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(0.5, sigma))[..., None]


def _blend(a: np.ndarray, b: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.clip(a.astype(np.float32) * (1 - alpha) + b.astype(np.float32) * alpha, 0, 255).astype(np.uint8)


def blur_eyes(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """Both eyes out of focus (Gaussian of 2% of the face width), the rest untouched."""
    import cv2

    f = _face(an)
    m = np.zeros(an.shape, bool)
    for s in ("left", "right"):
        x0, y0, x1, y1 = f.group_box(f.eye(s), pad=0.45)
        m[max(0, y0):y1, max(0, x0):x1] = True
    blurred = cv2.GaussianBlur(rgb, (0, 0), max(1.2, f.width * 0.02))
    return _blend(rgb, blurred, _feather(m, f.width * 0.01))


def remove_catchlights(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """Paint the irises' bright spots out with the iris's own median colour."""
    import cv2

    f = _face(an)
    out = rgb.copy()
    yy, xx = np.mgrid[: an.shape[0], : an.shape[1]]
    lum = out.astype(np.float32).mean(-1)
    for s in ("left", "right"):
        c, r = f.iris(s)
        disk = ((xx - c[0]) ** 2 + (yy - c[1]) ** 2 <= (r * 1.0) ** 2) & f.mask(f.eye(s), an.shape)
        if not disk.any():
            continue
        d = max(3, int(r * 1.1) | 1)
        spots = cv2.morphologyEx(lum, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d)))
        bright = cv2.dilate((disk & (spots > 10)).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & disk
        out[bright] = np.median(out[disk & ~bright], axis=0).astype(np.uint8) if (disk & ~bright).any() else out[bright]
    return out


def double_pupil(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """A second dark pupil beside the real one in each iris."""
    import cv2

    f = _face(an)
    out = rgb.copy()
    for s in ("left", "right"):
        c, r = f.iris(s)
        for dx in (-0.55, 0.55):
            cv2.circle(out, (round(c[0] + dx * r), round(c[1])), max(1, round(r * 0.22)), (8, 6, 6), -1, cv2.LINE_AA)
    return out


def mismatched_irises(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """Recolour the subject's left iris pale blue, as generators sometimes do."""
    f = _face(an)
    c, r = f.iris("left")
    yy, xx = np.mgrid[: an.shape[0], : an.shape[1]]
    disk = ((xx - c[0]) ** 2 + (yy - c[1]) ** 2 <= (r * 0.95) ** 2) & f.mask(f.eye("left"), an.shape)
    out = rgb.copy()
    lum = out[disk].astype(np.float32).mean(-1, keepdims=True)
    out[disk] = np.clip(lum * 0.6 + np.array([70, 130, 200]) * 0.7, 0, 255).astype(np.uint8)
    return out


def waxy_skin(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """Plastic skin: repeated edge-preserving smoothing on the face's skin only."""
    import cv2

    f = _face(an)
    m = an.face_skin_mask(f)
    smooth = rgb.copy()
    d = max(7, int(f.width * 0.06))
    for _ in range(6):
        smooth = cv2.bilateralFilter(smooth, d, 80, d)
    return _blend(rgb, smooth, _feather(m, f.width * 0.01))


def tint_face(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """A face that does not match its neck: the face oval shifted towards orange-pink."""
    f = _face(an)
    m = f.mask(FACE_OVAL_IDX, an.shape)
    tinted = np.clip(rgb.astype(np.float32) * np.array([1.18, 0.92, 0.78]) + np.array([18, 0, 0]), 0, 255)
    return _blend(rgb, tinted, _feather(m, f.width * 0.02))


def tooth_gap(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """A dark gap (missing tooth) in the visible teeth, off the mouth's centre line."""
    f = _face(an)
    inner = f.mask(INNER_MOUTH_IDX, an.shape)
    pts = f.points(INNER_MOUTH_IDX)
    x0, x1 = pts[:, 0].min(), pts[:, 0].max()
    cx = x0 + (x1 - x0) * 0.62
    half = max(1.5, (x1 - x0) * 0.045)
    out = rgb.copy()
    xx = np.arange(an.shape[1])[None, :]
    band = inner & (np.abs(xx - cx) <= half)
    out[band] = (35, 20, 20)
    return out


def clip_shadows(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """Crushed blacks: a levels move that sends the darker 40% of the tones to 0."""
    x = rgb.astype(np.float32)
    return np.clip((x - 100) * 255 / 155, 0, 255).astype(np.uint8)


def blow_highlights(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """Blown highlights: about +1 stop, so lit skin and whites clip at 255."""
    return np.clip(rgb.astype(np.float32) * 1.9, 0, 255).astype(np.uint8)


def relight_from_side(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """Light falls off hard towards the image's right: a key from camera left, no fill."""
    f = _face(an)
    x0, _, x1, _ = f.box
    xx = np.arange(an.shape[1], dtype=np.float32)
    t = np.clip((xx - x0) / max(1, x1 - x0), 0, 1)
    gain = (1.15 - 0.85 * t)[None, :, None]
    return np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _background(an: Analysis) -> np.ndarray:
    import cv2

    person = an.person_mask > 0.3
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (25, 25))
    return ~cv2.dilate(person.astype(np.uint8), k).astype(bool)


def banded_background(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """Replace the background with a smooth studio gradient posterised to 24 visible bands."""
    h, w = an.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    t = 0.6 * yy / h + 0.4 * xx / w
    levels = np.floor(t * 24) / 24
    grad = (np.array([70, 90, 120], np.float32) + levels[..., None] * np.array([110, 100, 80], np.float32))
    bg = _background(an)
    return _blend(rgb, grad, _feather(bg, 1.5) * bg[..., None])


def stray_artifacts(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """Three small saturated blobs, like generation debris, on the plain background."""
    import cv2

    out = rgb.copy()
    bg = _background(an)
    h, w = an.shape
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    local = cv2.blur(gray * gray, (31, 31)) - cv2.blur(gray, (31, 31)) ** 2
    r = max(3, int(0.008 * max(h, w)))
    cand = bg & (local < np.percentile(local[bg], 30) if bg.any() else bg)
    cand[: 3 * r] = cand[-3 * r :] = False
    cand[:, : 3 * r] = cand[:, -3 * r :] = False
    ys, xs = np.nonzero(cand)
    rng = np.random.default_rng(7)
    colours = [(230, 20, 200), (20, 240, 60), (250, 250, 40)]
    for col in colours:
        if len(xs) == 0:
            break
        i = int(rng.integers(len(xs)))
        cv2.circle(out, (int(xs[i]), int(ys[i])), r, col, -1, cv2.LINE_AA)
        cv2.circle(out, (int(xs[i]) + r, int(ys[i]) - r // 2), max(1, r // 2), col, -1, cv2.LINE_AA)
    return out


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def overlay_text(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """A caption burnt into the bottom of the image."""
    im = Image.fromarray(rgb)
    d = ImageDraw.Draw(im)
    h, w = an.shape
    size = max(14, int(min(h, w) * 0.05))
    d.text((int(w * 0.05), int(h * 0.88)), "(c) studio 2024", fill=(255, 255, 255), font=_font(size))
    return np.asarray(im)


def watermark(rgb: np.ndarray, an: Analysis) -> np.ndarray:
    """A big semi-transparent stock watermark across the middle."""
    im = Image.fromarray(rgb).convert("RGBA")
    h, w = an.shape
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    size = max(16, int(w * 0.11))
    d.text((int(w * 0.12), int(h * 0.45)), "shutterstock", fill=(255, 255, 255, 110), font=_font(size))
    return np.asarray(Image.alpha_composite(im, layer).convert("RGB"))


def extra_finger(rgb: np.ndarray, an: Analysis) -> np.ndarray:
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
    tip = base + direction * 1.15 * s
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


@dataclass(frozen=True)
class Defect:
    build: Callable[[np.ndarray, Analysis], np.ndarray]
    target: str
    """The checklist item this defect must fail."""
    needs: str = "face"
    """'face', 'iris', 'teeth', 'hand' or 'any': what the source photo must show."""
    context: dict[str, object] | None = None
    """CheckContext fields the defect is judged against (e.g. the brief's lighting)."""


DEFECTS: dict[str, Defect] = {
    "blurred_eyes": Defect(blur_eyes, "eyes.sharpness"),
    "no_catchlights": Defect(remove_catchlights, "eyes.catchlights", needs="iris"),
    "double_pupil": Defect(double_pupil, "eyes.pupils", needs="iris"),
    "mismatched_irises": Defect(mismatched_irises, "eyes.pair", needs="iris"),
    "waxy_skin": Defect(waxy_skin, "skin.texture"),
    "tinted_face": Defect(tint_face, "skin.tone"),
    "tooth_gap": Defect(tooth_gap, "mouth.teeth", needs="teeth"),
    "clipped_shadows": Defect(clip_shadows, "lighting.shadows", needs="any"),
    "blown_highlights": Defect(blow_highlights, "lighting.highlights", needs="any"),
    "wrong_key_side": Defect(relight_from_side, "lighting.pattern", context={"lighting_pattern": "loop", "key_side": "right"}),
    "banded_background": Defect(banded_background, "background.banding", needs="any"),
    "stray_artifacts": Defect(stray_artifacts, "background.artifacts", needs="any"),
    "overlaid_text": Defect(overlay_text, "background.text", needs="any"),
    "watermark": Defect(watermark, "background.text", needs="any"),
    "extra_finger": Defect(extra_finger, "hands.fingers", needs="hand"),
}

