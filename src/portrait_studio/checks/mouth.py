"""Mouth: when teeth show, no gaps or lopsided rows that the pixels reveal; else not applicable."""

from __future__ import annotations

import numpy as np

from ..analysis import INNER_MOUTH_IDX, LIPS_OUTER_IDX, Analysis
from ._pixels import clip_box, lab, points_box, poly_mask
from .base import CheckContext, CheckResult, Status

__all__ = ["check_mouth"]

TEETH_MIN_SHARE = 0.15
"""Teeth are 'visible' when this share of the mouth opening is bright, low-chroma pixels."""
GAP_MAX = 0.05
"""Widest dark gap inside the row of teeth, as a share of the mouth opening's width."""
GAP_MIN_PX = 3.0
"""...and at least this many native pixels wide: on a small mouth (a 22 px child's mouth in a group
photo) 5% is one pixel, and a one- or two-pixel dark run is the mesh's and the demosaic's noise,
not a missing tooth (an incisor is about an eighth of the mouth's width)."""
OPEN_MIN = 0.06
"""Closed lips: an opening whose mean height is under this share of its width is the lip line, and
any bright pixels in it are lip highlights, not teeth (training photos: closed 0.01-0.04, teeth 0.14+)."""
LIP_CONTRAST = 1.22
"""Where colour cannot tell teeth from a tongue, the upper quartile of the 'teeth' lightness over the
lips' median lightness: teeth are far lighter than the lips (the training photos with teeth turned
grey, their tooth gaps included: 1.31-2.3), a tongue or the lip line shares the lips' colour and
lightness (grey training photos: 1.03-1.14)."""
COLOUR_TELLS = 5.0
"""Chroma by which the lips must exceed the 'teeth' for colour to tell teeth from a tongue (training
colour photos: 10-35; black-and-white: 0)."""
SHADED_TOOTH = 0.7
"""A column whose mean lightness in the teeth's rows is this share of the teeth's can bound a gap:
the tooth beside a missing one is often a side tooth in the mouth's shade, duller and warmer than
the front teeth, yet far brighter than the gap (under 0.55 of the teeth)."""
CORNER_TOOTH = 0.3
"""A column at this share of the teeth's lightness or more may be a side tooth in the mouth's shade
and bound a slot (with `STEP_BACK`): a gap beside the dark corner has no front-tooth-bright column
beyond it, only such a side tooth."""
STEP_BACK = 2.0
"""A slot's bounding columns are at least this multiple of its lightest column. Training split, the
bench's seeds and four more per photo and severity (200 generated gaps): of the 15 that only this
rule catches, 13 measure 2.6 or more, one 2.0, one 1.2; the mouth's shade on the clean photos and
on their 480 other defects (a stop brighter, tinted, blurred eyes...) measures 1.8 once, 1.4 or
less otherwise, over a slot wide enough to fail."""
ASYMMETRY_MAX = 0.18
"""Offset of the teeth's centre from the mouth's centre, as a share of the mouth width."""


def check_mouth(image: np.ndarray, analysis: Analysis, context: CheckContext) -> CheckResult:
    face = analysis.face
    if face is None or face.landmarks is None:
        return CheckResult(item="mouth.teeth", status="not_applicable", explanation="No face with landmarks was found.")
    pts = face.points(INNER_MOUTH_IDX)
    h, w = image.shape[:2]
    box = points_box(pts, w, h, pad=0.05)
    region = clip_box([box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3], w, h)
    outer = face.points(LIPS_OUTER_IDX)
    box = points_box(np.vstack([pts, outer]), w, h, pad=0.05)
    image = image[box[1]:box[3], box[0]:box[2]]
    inner = poly_mask(pts, box)
    lips = poly_mask(outer, box) & ~inner
    pts = pts - np.array(box[:2], np.float32)
    opening = int(inner.sum())
    width = float(np.ptp(pts[:, 0]))
    if opening < 40 or width < 12 or opening < OPEN_MIN * width * width:
        teeth_share = 0.0
    else:
        L = lab(image)
        chroma = np.hypot(L[..., 1], L[..., 2])
        mouth_l = L[..., 0][inner]
        teeth = inner & (L[..., 0] > max(45.0, float(np.percentile(mouth_l, 40)))) & (chroma < 28)
        teeth_share = float(teeth.sum()) / opening
        if lips.sum() >= 20 and teeth.any() and _tongue_or_lips(L, chroma, teeth, lips):
            teeth_share = 0.0
    if teeth_share < TEETH_MIN_SHARE:
        if context.teeth_expected:
            return CheckResult(item="mouth.teeth", status="warn", measured=round(teeth_share, 3),
                               threshold=TEETH_MIN_SHARE, region=region,
                               explanation="The brief asks for a smile with teeth, but no teeth are visible.")
        return CheckResult(item="mouth.teeth", status="not_applicable", measured=round(teeth_share, 3),
                           threshold=TEETH_MIN_SHARE, region=region,
                           explanation="No teeth are visible, so there is nothing to check in the mouth.")
    gap_px = _gap(teeth, inner, L[..., 0], pts)
    gap = gap_px / width
    gapped = gap > GAP_MAX and gap_px >= GAP_MIN_PX  # narrower runs are the mesh's and demosaic's noise
    xs = np.nonzero(teeth)[1]
    offset = abs(float(xs.mean()) - float(pts[:, 0].mean())) / width
    problems = []
    if gapped:
        problems.append(f"a dark gap {gap * 100:.0f}% of the mouth wide splits the teeth (missing or malformed tooth)")
    if offset > ASYMMETRY_MAX:
        problems.append(f"the teeth sit {offset * 100:.0f}% off the mouth's centre")
    status: Status = "fail" if gapped else ("warn" if problems else "pass")
    narrow = (f" (a dark run of {gap_px} px, {gap * 100:.0f}% of this small mouth, is too narrow to tell from noise)"
              if gap > GAP_MAX and not gapped else "")
    return CheckResult(
        item="mouth.teeth", status=status, measured=round(gap, 4), threshold=GAP_MAX, region=region,
        explanation=("Teeth are visible and " + " and ".join(problems) + "." if problems else
                     f"Teeth are visible ({teeth_share * 100:.0f}% of the mouth opening) with no gaps or lopsided "
                     f"row{narrow}."))


def _tongue_or_lips(L: np.ndarray, chroma: np.ndarray, teeth: np.ndarray, lips: np.ndarray) -> bool:
    """Where colour cannot tell teeth from a tongue (lips hardly more colourful than the 'teeth': a
    black-and-white or toned photo), the 'teeth' must be lighter than the lips, as teeth are."""
    if float(np.median(chroma[lips])) - float(np.median(chroma[teeth])) >= COLOUR_TELLS:
        return False
    return float(np.percentile(L[..., 0][teeth], 75)) < LIP_CONTRAST * float(np.median(L[..., 0][lips]))


def _gap(teeth: np.ndarray, inner: np.ndarray, lightness: np.ndarray, pts: np.ndarray) -> int:
    """Widest run of dark, toothless columns between tooth columns (bright ones, or shaded side teeth),
    in the rows the teeth fill and in the middle of the mouth (incisors; the row's ends fall into
    shadow in every smile)."""
    x0, x1 = int(pts[:, 0].min()), int(np.ceil(pts[:, 0].max())) + 1
    t, m, lum = teeth[:, x0:x1], inner[:, x0:x1], lightness[:, x0:x1]
    row_inner = m.sum(1)
    rows = (row_inner > 0) & (t.sum(1) >= 0.3 * np.maximum(row_inner, 1))
    if rows.sum() < 2:
        rows = row_inner > 0
    t, m, lum = t[rows], m[rows], lum[rows]
    col_inner = m.sum(0)
    frac = np.where(col_inner > 0, t.sum(0) / np.maximum(col_inner, 1), 0.0)
    tooth_l = float(np.median(lightness[teeth])) if teeth.any() else 100.0
    dark = np.where(col_inner > 0, ((lum < 0.55 * tooth_l) & m).sum(0) / np.maximum(col_inner, 1), 0.0)
    mean_l = np.where(col_inner > 0, (lum * m).sum(0) / np.maximum(col_inner, 1), 0.0)
    toothy = (frac >= 0.35) | (mean_l >= SHADED_TOOTH * tooth_l)
    gapcol = (frac < 0.15) & (dark > 0.6)
    n = len(frac)
    gapcol[: int(0.15 * n)] = False
    gapcol[int(np.ceil(0.85 * n)):] = False
    lit = mean_l >= CORNER_TOOTH * tooth_l
    lit[: int(0.15 * n)] = False
    lit[int(np.ceil(0.85 * n)):] = False
    return max(_widest_inner_run(gapcol, toothy), _widest_slot(gapcol, lit, mean_l))


def _widest_inner_run(flag: np.ndarray, support: np.ndarray) -> int:
    """Longest run of `flag` that has `support` on both sides (a gap between teeth, not the corners)."""
    idx = np.nonzero(support)[0]
    if len(idx) < 2:
        return 0
    best = run = 0
    for v in flag[idx[0]:idx[-1] + 1]:  # a run of flags (bounded by support on both sides)
        run = run + 1 if v else 0
        best = max(best, run)
    return best


def _widest_slot(flag: np.ndarray, lit: np.ndarray, level: np.ndarray) -> int:
    """Widest run of `flag` columns with a `lit` column on each side (within one column of it, for a
    soft edge) at least `STEP_BACK` times as light as the run's lightest column: a slot in a row of
    shaded side teeth. The mouth's corner is no such slot: its shade deepens gradually from the
    last tooth, so no column beside its darkest part is that much lighter."""
    best = 0
    n = len(level)
    bright = np.where(lit, level, 0.0)
    for a in range(1, n):
        if not flag[a]:
            continue
        before = float(bright[max(0, a - 2):a].max())
        top = 0.0
        for b in range(a, n - 1):
            if not flag[b]:
                break
            top = max(top, float(level[b]))
            if STEP_BACK * top > before:
                break
            if b + 1 - a > best and float(bright[b + 1:b + 3].max()) >= STEP_BACK * top:
                best = b + 1 - a
    return best
