"""Skin: visible texture (not waxy) and one tone across face and neck."""

from __future__ import annotations

import numpy as np

from ..analysis import CHEEK_L_IDX, CHEEK_R_IDX, CHIN, FACE_OVAL_IDX, FOREHEAD_IDX, Analysis
from ._face import face_view
from ._pixels import box_of, clip_box, lab, points_box, poly_mask
from .base import CheckContext, CheckResult, Status

__all__ = ["check_skin"]

TEXTURE_MIN = 1.25
"""RMS of the fine detail (luma minus a 1.5 px blur, face scaled to 200 px wide) in the cheeks and
forehead. Real skin measures 1.5-5.5 on the calibration photos; bilateral-smoothed skin 0.6-1.2."""
TEXTURE_MIN_FACE_WIDTH = 80
"""Below this face width (pixels) pores are not resolved, so texture is not judged."""
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
    import cv2

    face = analysis.face
    assert face is not None
    region = points_box(face.points(FACE_OVAL_IDX), analysis.shape[1], analysis.shape[0])
    if face.width < TEXTURE_MIN_FACE_WIDTH:
        return CheckResult(item="skin.texture", status="not_applicable", region=region,
                           explanation=f"The face is {face.width:.0f} px wide, too small to resolve skin texture.")
    view = face_view(image, face)
    patches = view.mask(CHEEK_L_IDX) | view.mask(CHEEK_R_IDX) | view.mask(FOREHEAD_IDX)
    detail = view.gray - cv2.GaussianBlur(view.gray, (0, 0), 1.5)
    # highlights and deep shadows carry little texture whatever the skin; weigh mid-tones
    mid = (view.gray > 40) & (view.gray < 235)
    vals = detail[patches & mid]
    if vals.size < 50:
        return CheckResult(item="skin.texture", status="not_applicable", region=region,
                           explanation="Too little plain skin is visible on the cheeks and forehead.")
    rms = float(np.sqrt(np.mean(vals**2)))
    status: Status = "pass" if rms >= TEXTURE_MIN else "fail"
    return CheckResult(
        item="skin.texture", status=status, measured=round(rms, 3), threshold=TEXTURE_MIN, region=region,
        explanation=(f"Fine skin detail on the cheeks and forehead measures {rms:.2f} (at a standard face size); "
                     + ("pores and texture are visible." if status == "pass"
                        else "the skin looks waxy or plastic: restore texture.")))


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
