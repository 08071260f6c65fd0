"""Skin: visible texture (not waxy) and one tone across face and neck."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..analysis import CHEEK_L_IDX, CHEEK_R_IDX, CHIN, FACE_OVAL_IDX, FOREHEAD_IDX, Analysis
from ._face import face_view
from ._pixels import box_of, channel_max, clip_box, lab, luma, points_box, poly_mask
from .base import CheckContext, CheckResult, Status

__all__ = ["check_skin"]

TEXTURE_FAIL = 0.2
"""Texture index below which the skin fails as waxy. The index is the skin's fine detail (median
absolute luma minus a 1 px Gaussian on the cheeks and forehead, face scaled to at most 200 px)
times its ratio to what the same photo shows around the face where it has as much mid-scale
structure as the skin (hair, clothes, backdrop), raised to the power 1.5: smoothing lowers both,
a soft or compressed photo lowers only the first. Clean training portraits measure 0.24 and up
(stock photos whose skin was already retouched are the lowest); smoothed skin 0.02-0.3."""
TEXTURE_WARN = 0.35
"""Below this (and above `TEXTURE_FAIL`) the skin may be retouched: warn, do not fail."""
RELATIVE_POWER = 1.5
"""Weight of the relative part of the index (fitted on the training split: log-linear model of
clean vs smoothed skin with the two measures as inputs)."""
TEXTURE_BODY_MIN = 0.5
"""The skin's fine detail relative to the person's other skin (neck, chest, arms, hands: pixels
coloured like the cheeks, outside the face) at the same scale. A face retouched on its own is
smoother than its body; below this, a borderline index fails. Judged when at least 200 such
pixels are visible and the face is at least `SMALL_FACE` wide."""
SMALL_FACE = 120
"""Faces narrower than this (pixels) barely resolve pores: a borderline index there warns that the
face is too small to judge rather than failing (a clearly waxy one still fails)."""
SMOOTHED_SHAPE = 2.75
"""Mid-scale structure (1 px minus 2.5 px Gaussian) over fine detail (luma minus 1 px) on the skin,
medians. Skin and sensor grain carry at least as much fine detail as mid-scale shading; every
smoothing filter takes the finest detail first and leaves the shading, so the ratio rises. Clean
faces at least `SHAPE_FULL_WIDTH` wide measure 0.5-2.2 (the 35 corpus photos, also re-saved as
JPEG q55-75 and downscaled), smoothed ones up to 5. An index below `SHAPE_INDEX_MAX` with a ratio
at or above this fails."""
SHAPE_FULL_WIDTH = 100
"""On narrower faces the threshold grows as 1/width: a pore spans less than a pixel there and the
face's own shading dominates, so clean faces reach 2.6 at 80 px and 3.6 at 66 px (corpus photos
downscaled)."""
SHAPE_INDEX_MAX = 0.4
"""Index below which a smoothed shape (`SMOOTHED_SHAPE`) fails: a little above `TEXTURE_WARN`, for
mild smoothing of small faces that keep grain from the rest of the photo (clean faces with an index
under 0.4 measure 2.3 at most)."""
TEXTURE_BODY_CLEAR = 0.42
"""The skin's fine detail under this share of the person's other skin (`TEXTURE_BODY_MIN`) fails
up to an index of `BODY_INDEX_MAX`: a face retouched on its own while the neck and hands keep
their grain. Clean faces at least `SMALL_FACE` wide measure 0.54 and up."""
BODY_INDEX_MAX = 0.5
"""Above this index the skin keeps more detail than many clean faces; the other skin (a few
hundred pixels that an overlay or a blown highlight can change) may not fail it alone."""
SLOPE_FAIL = 0.5
"""Fail below this: the skin's fine detail relative to the photo (`rel` times the detail, as in the
index, but with `rel` to the first power) times fine over mid-scale detail times coarse shading
(2.5 px minus 6 px Gaussian) over mid-scale detail. Smoothing lowers the first factor and steepens
the skin's spectrum from the finest scale down, so the two ratios fall with it, while the coarse
shading it keeps anchors them; a soft or small clean face lowers the first factor but keeps its
spectrum flat. Clean training faces, native and downscaled to 70-150 px (re-saved as JPEG q80),
measure 0.64 and up (a face under 70 px or re-saved at q60 can reach 0.43: heavy compression
smooths flat skin too); mild smoothing of the same faces 0.1-1.5, mostly under 0.6."""
SLOPE_CLIPPED_MAX = 0.3
"""The spectrum measure is not judged when more than this share of the skin has a colour channel at
250 or more: a clipped channel is flat whatever the retouch (an orange tint clips 76-88% of light
skin and halves the measure; clean faces 0-11%). Clipping is `lighting.highlights`' to report."""
TEXTURE_MIN_FACE_WIDTH = 64
"""Below this face width (pixels) skin texture is not judged at all."""
TONE_DELTA_MAX = 20.0
"""Chroma difference (a*, b*) between face and neck skin, CIE76 without lightness. Real portraits
measure 6-17 (the neck is shaded); a face tinted towards orange measures 27 or more."""


def check_skin(image: np.ndarray, analysis: Analysis, context: CheckContext) -> list[CheckResult]:
    face = analysis.face
    if face is None or face.landmarks is None:
        return [CheckResult(item=i, status="not_applicable", explanation="No face with landmarks was found.")
                for i in ("skin.texture", "skin.tone")]
    return [_texture(image, analysis), _tone(image, analysis)]


def _texture(image: np.ndarray, analysis: Analysis) -> CheckResult:
    face = analysis.face
    assert face is not None and face.landmarks is not None
    region = points_box(face.points(FACE_OVAL_IDX), analysis.shape[1], analysis.shape[0])
    width = float(np.ptp(face.points(FACE_OVAL_IDX)[:, 0]))
    if width < TEXTURE_MIN_FACE_WIDTH:
        return CheckResult(item="skin.texture", status="not_applicable", region=region,
                           explanation=f"The face is {width:.0f} px wide, too small to resolve skin texture.")
    view = face_view(image, face)
    patches = view.mask(CHEEK_L_IDX) | view.mask(CHEEK_R_IDX) | view.mask(FOREHEAD_IDX)
    patches &= ~_hands_over(view, analysis)  # a hand on the forehead or cheek is not the face's skin
    # highlights and deep shadows carry little texture whatever the skin; weigh mid-tones
    skin = patches & (view.gray > 40) & (view.gray < 235)
    if skin.sum() < 50:
        return CheckResult(item="skin.texture", status="not_applicable", region=region,
                           explanation="Too little plain skin is visible on the cheeks and forehead.")
    m = _measures(image, analysis, view, skin)
    detail, rel, index, body_rel, shape, expected = m.detail, m.rel, m.texture_index, m.body_rel, m.shape, m.expected
    parts = [f"Fine skin detail on the cheeks and forehead is {detail:.2f} at a standard face size"]
    if expected:
        parts.append(f"{rel:.2f}x what the photo shows around the face at the same structure")
    if body_rel is not None:
        parts.append(f"{body_rel:.2f}x the person's other skin")
    measured = f"{', '.join(parts)} (texture index {index:.2f}; waxy below {TEXTURE_FAIL})"
    status: Status
    # on a small face the other skin is a few dozen colour-matched pixels (hair, wood and fabric
    # coloured like skin among them): it may not turn a borderline index into a fail there
    smoother_than_body = body_rel is not None and body_rel < TEXTURE_BODY_MIN and width >= SMALL_FACE
    # retouched alone: far smoother than the person's other skin (a reliable comparison on a face
    # of at least SMALL_FACE only)
    retouched_alone = (body_rel is not None and body_rel < TEXTURE_BODY_CLEAR and width >= SMALL_FACE
                       and index < BODY_INDEX_MAX)
    finest_gone = index < SHAPE_INDEX_MAX and shape >= SMOOTHED_SHAPE * max(1.0, SHAPE_FULL_WIDTH / width)
    if finest_gone:
        parts.append(f"mid-scale shading {shape:.1f}x the fine detail (the finest detail is gone)")
    steep = m.slope < SLOPE_FAIL and float((channel_max(view.rgb) >= 250)[skin].mean()) <= SLOPE_CLIPPED_MAX
    if steep and not finest_gone:
        parts.append(f"detail falls off from the coarse shading to the finest scale ({m.slope:.2f}; "
                     f"smoothed below {SLOPE_FAIL})")
    measured = f"{', '.join(parts)} (texture index {index:.2f}; waxy below {TEXTURE_FAIL})"
    if (index < TEXTURE_FAIL or finest_gone or retouched_alone or steep
            or (index < TEXTURE_WARN and smoother_than_body)):
        status, why = "fail", "the skin looks waxy or plastic: restore texture."
    elif index < TEXTURE_WARN:
        status = "warn"
        why = (f"the face is only {width:.0f} px wide, too small to judge texture reliably; check the skin at full size."
               if width < SMALL_FACE else "the skin is smoother than the rest of the photo: check it is not retouched.")
    else:
        status, why = "pass", "pores and texture are visible."
    return CheckResult(item="skin.texture", status=status, measured=round(index, 3), threshold=TEXTURE_FAIL,
                       region=region, explanation=f"{measured}; {why}")


class _Measures(NamedTuple):
    detail: float  # fine detail (luma minus 1 px Gaussian), median over the skin
    expected: float | None  # the same in structure-matched blocks around the face
    rel: float  # detail / expected
    texture_index: float
    body_rel: float | None  # detail / the person's other skin
    shape: float  # mid-scale shading over fine detail
    slope: float  # the spectrum measure (`SLOPE_FAIL`)


def _measures(image: np.ndarray, analysis: Analysis, view: Any, skin: np.ndarray) -> _Measures:
    """The texture measures of the main face's skin (`skin`: mask on `view`)."""
    import cv2

    face = analysis.face
    assert face is not None
    fine, band = _bands(view.gray)
    detail = float(np.median(fine[skin]))
    structure = float(np.median(band[skin]))
    coarse = np.abs(cv2.GaussianBlur(view.gray, (0, 0), 2.5) - cv2.GaussianBlur(view.gray, (0, 0), 6.0))
    shading = float(np.median(coarse[skin]))
    cheeks = view.mask(CHEEK_L_IDX) | view.mask(CHEEK_R_IDX)
    expected, body = _surroundings(image, face, view.scale, view.rgb[cheeks], structure)
    rel = detail / expected if expected else 1.0
    mid = max(structure, 1e-3)
    return _Measures(
        detail=detail, expected=expected, rel=rel, texture_index=detail * min(rel, 2.0) ** RELATIVE_POWER,
        body_rel=detail / max(body, 0.3) if body is not None else None, shape=structure / max(detail, 1e-3),
        slope=detail * min(rel, 2.0) * (detail / mid) * (shading / mid),
    )


def _hands_over(view: Any, analysis: Analysis) -> np.ndarray:
    """The hands' outlines (convex hull of the 21 points, grown by a tenth of the palm) on the view."""
    import cv2

    out: np.ndarray = np.zeros(view.gray.shape, np.uint8)
    for hand in analysis.hands:
        pts = (hand.landmarks[:, :2] - np.array(view.origin, np.float32)) * view.scale
        hull = cv2.convexHull(np.round(pts).astype(np.int32))
        cv2.fillConvexPoly(out, hull, (1,))
        grow = max(1, int(0.1 * hand.palm_size * view.scale))
        out = cv2.dilate(out, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return out.astype(bool)


def _bands(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute fine detail (luma minus a 1 px Gaussian) and mid-scale structure (1 px minus 2.5 px)."""
    import cv2

    b1 = cv2.GaussianBlur(gray, (0, 0), 1.0)
    return np.abs(gray - b1), np.abs(b1 - cv2.GaussianBlur(gray, (0, 0), 2.5))


def _surroundings(image: np.ndarray, face: Any, scale: float, cheek_rgb: np.ndarray,
                  structure: float) -> tuple[float | None, float | None]:
    """Around the face, outside it, at the face view's scale: the fine detail the photo shows in
    8 px blocks whose mid-scale structure matches the skin's (median; None when fewer than 8 such
    blocks), and the fine detail of the person's other skin (None when fewer than 200 pixels)."""
    import cv2

    x0, y0, x1, y1 = face.box
    fw = x1 - x0
    h, w = image.shape[:2]
    box = [max(0, int(x0 - 1.2 * fw)), max(0, int(y0 - 0.8 * fw)), min(w, int(x1 + 1.2 * fw)), min(h, int(y1 + 1.6 * fw))]
    crop = image[box[1]:box[3], box[0]:box[2]]
    if scale < 1:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    g = luma(crop)
    oval = poly_mask(face.points(FACE_OVAL_IDX), box, scale)
    oval = oval[:g.shape[0], :g.shape[1]]
    if oval.shape != g.shape:
        oval = np.pad(oval, ((0, g.shape[0] - oval.shape[0]), (0, g.shape[1] - oval.shape[1])))
    oval = cv2.dilate(oval.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    fine, band = _bands(g)
    body = _body_skin(crop, cheek_rgb, oval)
    body_mad = float(np.median(fine[body])) if body.sum() >= 200 else None
    ok = ~oval & (g > 15) & (g < 240)
    bs = 8
    hh, ww = (g.shape[0] // bs) * bs, (g.shape[1] // bs) * bs
    if hh == 0 or ww == 0:
        return None, body_mad

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[:hh, :ww].reshape(hh // bs, bs, ww // bs, bs).transpose(0, 2, 1, 3).reshape(hh // bs, ww // bs, -1)

    valid = blocks(ok).all(-1)
    bf = _row_median(blocks(fine)[valid])  # only the blocks that count
    bb = _row_median(blocks(band)[valid])
    for lo, hi in ((0.7, 1.4), (0.5, 2.0)):
        sel = (bb >= structure * lo) & (bb <= structure * hi)
        if sel.sum() >= 8:
            return float(np.median(bf[sel])), body_mad
    return None, body_mad


def _row_median(rows: np.ndarray) -> np.ndarray:
    """`np.median(rows, -1)`, the same float32 values (no NaN here), by a full sort: numpy's vectorised
    sort of a block's 64 values is 8x faster than the partition `np.median` runs row by row."""
    s = np.sort(rows, axis=-1)
    n = s.shape[-1]
    return np.asarray((s[..., (n - 1) // 2] + s[..., n // 2]) / np.float32(2))


def _body_skin(crop: np.ndarray, cheek_rgb: np.ndarray, oval: np.ndarray) -> np.ndarray:
    """Pixels of `crop` coloured like the cheeks (YCrCb chroma within 2 sigma, similar lightness),
    away from the face oval, eroded so no edge of them counts."""
    import cv2

    if len(cheek_rgb) < 30:
        return np.zeros(crop.shape[:2], bool)
    ref = cv2.cvtColor(cheek_rgb.reshape(-1, 1, 3).astype(np.uint8), cv2.COLOR_RGB2YCrCb).reshape(-1, 3).astype(np.float32)
    # one plane at a time, in place: the same float32 operations as on the interleaved array, 3x faster
    luma_, cr, cb = (p.astype(np.float32) for p in cv2.split(cv2.cvtColor(crop, cv2.COLOR_RGB2YCrCb)))
    mu = ref[:, 1:].mean(0)
    inv = np.linalg.inv(np.cov(ref[:, 1:].T) + np.eye(2) * 4.0).astype(np.float32)
    cr -= mu[0]
    cb -= mu[1]
    dist = cr * cr
    dist *= inv[0, 0]
    cross = 2 * cr
    cross *= cb
    cross *= inv[0, 1]
    dist += cross
    cb *= cb
    cb *= inv[1, 1]
    dist += cb
    lo, hi = np.percentile(ref[:, 0], 5), np.percentile(ref[:, 0], 95)
    away = ~cv2.dilate(oval.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=4).astype(bool)
    body = (dist < 4) & (luma_ > lo * 0.8) & (luma_ < min(245.0, hi * 1.1)) & away
    return cv2.erode(body.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)


def _tone(image: np.ndarray, analysis: Analysis) -> CheckResult:
    import cv2

    face = analysis.face
    assert face is not None and face.landmarks is not None
    h, w = analysis.shape
    chin_y = float(face.landmarks[CHIN, 1])
    oval_pts = face.points(FACE_OVAL_IDX)
    xs = oval_pts[:, 0]
    fw = float(xs.max() - xs.min())
    cx = float(face.landmarks[CHIN, 0])
    # work on a crop around face and neck, scaled so the face is at most 240 px wide
    box = clip_box([int(min(xs.min(), cx - 0.25 * fw)) - 2, int(oval_pts[:, 1].min()) - 2,
                    int(max(xs.max(), cx + 0.25 * fw)) + 3, int(chin_y + 0.45 * fw) + 3], w, h)
    s = min(1.0, 240.0 / max(1.0, fw))
    crop = image[box[1]:box[3], box[0]:box[2]]
    if s < 1.0:
        crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    shape = crop.shape[:2]

    def poly(group: tuple[int, ...]) -> np.ndarray:
        m = poly_mask(face.points(group), box, s)
        return m[:shape[0], :shape[1]] if m.shape == shape else cv2.resize(
            m.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)

    cheeks = poly(CHEEK_L_IDX) | poly(CHEEK_R_IDX)
    oval = poly(FACE_OVAL_IDX)
    y0, y1 = int((chin_y + 0.08 * fw - box[1]) * s), int((chin_y + 0.45 * fw - box[1]) * s)
    x0, x1 = int((cx - 0.25 * fw - box[0]) * s), int((cx + 0.25 * fw - box[0]) * s)
    neck = np.zeros(shape, bool)
    neck[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    # the neck is whatever below the chin has skin-like colour (a looser model than the face's own)
    L = lab(crop)
    neck &= ~oval & _skin_hue(L)
    both = box_of(neck | cheeks)
    region = None if both is None else [box[0] + int(both[0] / s), box[1] + int(both[1] / s),
                                        box[0] + int(both[2] / s), box[1] + int(both[3] / s)]
    if neck.sum() < max(30, 0.02 * (fw * s) ** 2) or cheeks.sum() < 20:
        return CheckResult(item="skin.tone", status="not_applicable", region=region,
                           explanation="Not enough neck skin is visible to compare with the face.")
    face_ab = np.median(L[cheeks][:, 1:], axis=0)
    neck_ab = np.median(L[neck][:, 1:], axis=0)
    delta = float(np.linalg.norm(face_ab - neck_ab))
    status: Status = "pass" if delta <= TONE_DELTA_MAX else "fail"
    return CheckResult(
        item="skin.tone", status=status, measured=round(delta, 2), threshold=TONE_DELTA_MAX, region=region,
        explanation=(f"Face and neck skin differ in colour by ΔE(ab) {delta:.1f}; "
                     + ("they read as the same skin." if status == "pass"
                        else "the face looks pasted on or colour-shifted against the neck.")))


def _skin_hue(L: np.ndarray) -> np.ndarray:
    """Skin by hue and chroma alone (any skin tone, lit or shaded): excludes white shirts and dark suits,
    and stays independent of the face's own colour so a tinted face is still compared."""
    a, b = L[..., 1], L[..., 2]
    hue = np.degrees(np.arctan2(b, a))
    chroma = np.hypot(a, b)
    return (hue > 15) & (hue < 85) & (chroma > 7) & (L[..., 0] > 12) & (L[..., 0] < 95)
