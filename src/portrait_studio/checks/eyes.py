"""Eyes: the nearest eye is sharp, catchlights are there, one pupil per iris, a plausible pair."""

from __future__ import annotations

import numpy as np

from ..analysis import Analysis, Face
from ._face import face_view
from ._pixels import clip_box, disk_mask, lab, laplacian_rms, luma, points_box, poly_mask
from .base import CheckContext, CheckResult, Status

__all__ = ["check_eyes"]

SHARPNESS_MIN = 0.8
"""Nearest eye's edge energy / the face skin's edge energy. Sharp eyes measure 1.2-3.6 on the
real calibration portraits; eyes blurred by a Gaussian of 2% of the face width measure 0.1-0.45."""
CATCHLIGHT_MIN = 40.0
"""Brightest small spot in the iris (white top-hat, luma 0-255) for a visible catchlight."""
IRIS_MIN_RADIUS = 3.5
"""Irises smaller than this (pixels) are too small to judge catchlights."""
PUPIL_MIN_RADIUS = 6.0
"""Irises smaller than this (pixels) are too small to separate two pupils."""
PUPIL_ABSENT_MIN_RADIUS = 8.0
"""A missing pupil is only judged on irises at least this big (pixels) and not too dark (median luma 60)."""
PUPIL_MIN_AREA = 0.04
"""A dark blob counts as a pupil when it covers at least this share of the iris disk."""
PUPIL_ELONGATION_MAX = 2.5
"""A single dark blob longer than this ratio (and than the iris radius) is two pupils merged."""
IRIS_SIZE_RATIO_MAX = 1.6
"""Ratio of the irises' heights. Their widths differ by up to ~2x on turned heads; their heights by
at most ~1.45x on real training photos (a squint, a mesh slightly off)."""
IRIS_COLOUR_DELTA_MAX = 17.0
"""Chroma difference (a*, b*; lightness left out, since one eye is often in shade) between the two
irises' ring colours: the smaller of the plain difference and the difference of each iris against
the skin around its own eye (one eye in coloured shade shifts iris and skin alike)."""
PAIR_MIN_RADIUS = 3.0
"""Irises smaller than this (pixels) are too small to compare colours (a 3 px iris still shows a
recoloured ring; at 2 px it is a few pixels of lid and lash)."""
PUPIL_SHARE = 0.35
"""The centre of the iris disk (this share of its radius) is the pupil, left out of the colour."""
PAIR_VISIBLE_MIN = 0.45
"""An iris with less of its disk inside the lids than this (squint, laugh, mesh misplaced onto the
lid) samples lid skin and lashes: its colour is not compared."""
PAIR_CENTRE_LOW = 0.2
"""The iris centre lies between the lids, at least this share of the opening's height from either
lid (clean training photos: 0.29-0.64). A centre on or beyond a lid is a mesh that slid onto it
(squint, laugh, deep shade): the disk samples skin and lashes, so colours are not compared."""
PAIR_SHADE_DL = 40.0
"""Skin around one eye darker than around the other by more than this (L*): that eye is in deep
shade, where colour casts and noise swamp the iris's own colour (clean training photos differ by at
most 28; a subject half in shadow by 64)."""
PAIR_SKIN_L = (8.0, 97.0)
"""Skin around an eye outside this L* range is crushed or blown: the eye's colour is not read."""
PAIR_IRIS_LUMA_MIN = 10.0
"""An iris ring whose median luma is under this is crushed near black (a levels move, deep shadow):
8-bit values that low hold a few levels per channel, so its chroma is quantisation noise, not a
colour (clean photos: 14 and up, dark irises in shade included)."""
PAIR_TURNED_RATIO = 1.5
"""Eyes whose widths on screen differ more than this: the head is turned so far that the far iris
is foreshortened and mixed with the nose or a glasses frame; colours are not compared."""

SIDES = ("left", "right")


def check_eyes(image: np.ndarray, analysis: Analysis, context: CheckContext) -> list[CheckResult]:
    face = analysis.face
    items = ("eyes.sharpness", "eyes.catchlights", "eyes.pupils", "eyes.pair")
    if face is None or face.landmarks is None:
        return [CheckResult(item=i, status="not_applicable", explanation="No face with landmarks was found.")
                for i in items]
    return [_sharpness(image, face), _catchlights(image, face), _pupils(image, face), _pair(image, face)]


def _eye_box(face: Face, side: str, shape: tuple[int, int]) -> list[int]:
    x0, y0, x1, y1 = face.group_box(face.eye(side), pad=0.35)
    return [max(0, x0), max(0, y0), min(shape[1], x1), min(shape[0], y1)]


def _nearest_side(face: Face) -> str:
    """The eye nearer the camera: the wider one on screen (z breaks near-ties)."""
    widths = {s: float(np.ptp(face.points(face.eye(s))[:, 0])) for s in SIDES}
    if abs(widths["left"] - widths["right"]) > 0.08 * max(widths.values()):
        return max(widths, key=lambda s: widths[s])
    z = {s: float(face.landmarks[list(face.eye(s)), 2].mean()) for s in SIDES}  # type: ignore[index]
    return min(z, key=lambda s: z[s])


def _sharpness(image: np.ndarray, face: Face) -> CheckResult:
    import cv2

    view = face_view(image, face)
    skin = view.mask(_oval())
    k = np.ones((3, 3), np.uint8)
    eyes = {}
    for s in SIDES:
        em = cv2.dilate(view.mask(face.eye(s)).astype(np.uint8), k, iterations=max(1, round(view.gray.shape[1] / 100)))
        eyes[s] = em.astype(bool)
        skin &= ~cv2.dilate(em, k, iterations=3).astype(bool)
    skin &= ~view.mask(_lips())
    base = max(laplacian_rms(view.gray, skin), 1.0)
    ratios = {s: laplacian_rms(view.gray, eyes[s]) / base for s in SIDES}
    skin_luma = float(np.median(view.gray[skin])) if skin.any() else 128.0
    calm = cv2.medianBlur(np.clip(view.gray, 0, 255).astype(np.uint8), 3).astype(np.float32)
    hidden = {s for s in SIDES if _hidden(calm, view.mask(face.eye(s)), skin_luma)}
    region = _eye_box(face, _nearest_side(face), (image.shape[0], image.shape[1]))
    if len(hidden) == 2:
        return CheckResult(item="eyes.sharpness", status="not_applicable", region=region,
                           explanation="Both eyes are hidden (sunglasses, deep shadow or a hand), so their focus "
                                       "cannot be judged.")
    near = _nearest_side(face)
    if near in hidden:
        near = "right" if near == "left" else "left"
    elif _frontal(face) and not hidden:
        near = min(SIDES, key=lambda s: ratios[s])  # both eyes are in the focal plane: the softer one
    far = "right" if near == "left" else "left"
    ratio = ratios[near]
    status: Status = "pass" if ratio >= SHARPNESS_MIN else "fail"
    region = _eye_box(face, near, (image.shape[0], image.shape[1]))
    other = "hidden" if far in hidden else f"{ratios[far]:.2f}x"
    return CheckResult(
        item="eyes.sharpness",
        status=status,
        measured=round(ratio, 3),
        threshold=SHARPNESS_MIN,
        explanation=(
            f"The eye judged (subject's {near}) has {ratio:.2f}x the edge detail of the face's skin "
            f"(the other eye {other}); "
            + ("it is in focus." if status == "pass" else "it is soft: focus should be on the nearest eye.")
        ),
        region=region,
    )


HIDDEN_LUMA = 0.3
"""An eye whose lid opening is darker than this share of the face's skin (median luma) and shows no
sclera (`HIDDEN_SCLERA`) is behind sunglasses, in deep shadow or covered: its focus is not judged.
Every blurred eye on the training photos measures at least 0.28 (blur mixes in the lids)."""
HIDDEN_SCLERA = 0.5
"""...and whose brightest tenth (90th percentile) stays under this share of the skin's luma: no
white of the eye. A share of the skin, not a number of levels, so +1 stop, a tint or
oversharpening (which stretch a dark lens's spread past any fixed number of levels) do not turn a
hidden eye into a soft one. On the training photos and their defects, hidden eyes measure
0.09-0.46 and dark visible eyes mostly 0.5-0.9 (a narrow dark eye showing little white can read as
hidden; the other eye is then judged)."""
HIDDEN_BLOWN = 250.0
"""An opening whose median luma is at least this is blown to white: nothing to judge."""
HIDDEN_CRUSHED = 8.0
"""An opening whose brightest tenth is at most this is crushed to black (a levels move, a black
shadow): no detail is left to judge, even where the skin beside it is crushed too (so the shares
of the skin above cannot tell)."""
FRONTAL_WIDTH_RATIO = 1.15
"""Eyes whose widths on screen differ by less than this are at the same distance: judge the softer."""


def _hidden(calm: np.ndarray, opening: np.ndarray, skin_luma: float) -> bool:
    """Sunglasses, deep shadow or a hand: the lid opening is dark next to the skin and shows no
    sclera, or it is blown to white or crushed to black. `calm` is the luma after a 3x3 median, which removes specks
    (a lens's glints, catchlights, sharpening halos) so they cannot pass for an eye."""
    v = calm[opening]
    if v.size < 6:
        return True
    if np.median(v) >= HIDDEN_BLOWN or np.percentile(v, 90) <= HIDDEN_CRUSHED:
        return True
    return bool(np.median(v) < HIDDEN_LUMA * skin_luma and np.percentile(v, 90) < HIDDEN_SCLERA * skin_luma)


def _eye_widths(face: Face) -> list[float]:
    """Each eye's width on screen (subject's left, right): a turned head narrows the far one."""
    return [float(np.ptp(face.points(face.eye(s))[:, 0])) for s in SIDES]


def _frontal(face: Face) -> bool:
    widths = _eye_widths(face)
    return max(widths) < FRONTAL_WIDTH_RATIO * max(1e-3, min(widths))


def _iris_pixels(
    image: np.ndarray, face: Face, side: str, inner: float = 0.8
) -> tuple[np.ndarray, np.ndarray, float, list[int]]:
    """Mask of the visible inner iris (disk of `inner` x radius inside the eroded lids), centre, radius, box.

    The rim is left out because the mesh's iris circle often overlaps the white of the eye
    and the lashes, which would read as catchlights and pupils."""
    import cv2

    c, r = face.iris(side)
    x0, y0 = int(c[0] - r - 2), int(c[1] - r - 2)
    box = [max(0, x0), max(0, y0), min(image.shape[1], int(c[0] + r + 3)), min(image.shape[0], int(c[1] + r + 3))]
    sub_shape = (box[3] - box[1], box[2] - box[0])
    local_c: np.ndarray = c - np.array(box[:2], np.float32)
    disk = disk_mask(sub_shape, local_c, r * inner)
    lids = poly_mask(face.points(face.eye(side)), box)
    e = max(1, round(r * 0.2))
    lids = cv2.erode(lids.astype(np.uint8), np.ones((2 * e + 1, 2 * e + 1), np.uint8)).astype(bool)
    return disk & lids, local_c, r, box


def _catchlights(image: np.ndarray, face: Face) -> CheckResult:

    found = {}
    measured = {}
    boxes = []
    for s in SIDES:
        m, _, r, box = _iris_pixels(image, face, s)
        if r < IRIS_MIN_RADIUS or m.sum() < 12:
            continue
        spot = float(np.max(_tophat(image, box, r)[m]))
        measured[s] = spot
        found[s] = spot >= CATCHLIGHT_MIN
        boxes.append(box)
    if not measured:
        return CheckResult(item="eyes.catchlights", status="not_applicable",
                           explanation="The irises are too small or closed to judge catchlights.")
    best = max(measured.values())
    region = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    status: Status
    if all(found.values()):
        status, why = "pass", "both visible irises show a bright catchlight, so the eyes look alive."
    elif any(found.values()):
        status, why = "warn", "only one iris shows a catchlight; check that the light reads in both eyes."
    else:
        status, why = "fail", "no iris shows a catchlight, so the eyes look dull or dead."
    return CheckResult(item="eyes.catchlights", status=status, measured=round(best, 1), threshold=CATCHLIGHT_MIN,
                       explanation=f"Brightest iris spot is {best:.0f} levels above the iris; {why}", region=region)


def _tophat(image: np.ndarray, box: list[int], r: float) -> np.ndarray:
    """White top-hat of the luma: small bright spots, not the large bright sclera."""
    import cv2

    y = luma(image[box[1]:box[3], box[0]:box[2]])
    d = max(3, int(r * 1.1) | 1)
    return cv2.morphologyEx(y, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d)))


def _pupils(image: np.ndarray, face: Face) -> CheckResult:
    import cv2

    counts = {}
    boxes = []
    for s in SIDES:
        m, _, r, box = _iris_pixels(image, face, s)
        if r < PUPIL_MIN_RADIUS or m.sum() < 12:
            continue
        y = luma(image[box[1]:box[3], box[0]:box[2]])
        med = float(np.median(y[m]))
        d = max(3, int(r * 0.6) | 1)  # opening removes the catchlight, which would split the pupil in two
        y = cv2.morphologyEx(y, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d)))
        dark = (y < min(0.55 * med, med - 10)) & m
        n, _, stats, _ = cv2.connectedComponentsWithStats(dark.astype(np.uint8), connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        largest = float(areas.max()) if len(areas) else 0.0
        big = [i + 1 for i, a in enumerate(areas) if a >= max(PUPIL_MIN_AREA * m.sum(), 0.25 * largest)]
        count = len(big)
        if count == 1:  # one blob that is far from round: pupils run together
            i = big[0]
            bw, bh = stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT]
            if max(bw, bh) / max(1, min(bw, bh)) > PUPIL_ELONGATION_MAX and max(bw, bh) > 1.3 * r:
                count = 2
        if count == 0 and (med < 60 or r < PUPIL_ABSENT_MIN_RADIUS):
            continue  # a dark or small iris hides its pupil: absence proves nothing
        counts[s] = count
        boxes.append(box)
    if not counts:
        return CheckResult(item="eyes.pupils", status="not_applicable",
                           explanation="The irises are too small or closed to judge the pupils.")
    worst_side = max(counts, key=lambda s: counts[s])
    n = counts[worst_side]
    if n <= 1 and all(c == 0 for c in counts.values()):
        worst_side = next(iter(counts))
    region = boxes[list(counts).index(worst_side)]
    status: Status = "fail" if n > 1 or all(c == 0 for c in counts.values()) else "pass"
    if n > 1:
        why = "a double pupil or malformed iris."
    elif n == 0:
        why = "no dark pupil in a light iris: a blank, painted-over eye."
    else:
        why = "one pupil per iris, as it should be."
    return CheckResult(
        item="eyes.pupils", status=status, measured=float(n), threshold=1.0,
        explanation=f"The subject's {worst_side} iris holds {n} separate dark pupil blobs; {why}",
        region=region)


def _pair(image: np.ndarray, face: Face) -> CheckResult:
    size_ratio = _iris_height_ratio(face)
    eyes = np.concatenate([face.points(face.eye("left")), face.points(face.eye("right"))])
    b = points_box(eyes, image.shape[1], image.shape[0])
    region = clip_box([b[0] - 4, b[1] - 4, b[2] + 4, b[3] + 4], image.shape[1], image.shape[0])
    widths = _eye_widths(face)
    turned = max(widths) > PAIR_TURNED_RATIO * max(1e-3, min(widths))
    left, right = (None, None) if turned else (_iris_sample(image, face, "left"), _iris_sample(image, face, "right"))
    shaded = judged = False
    delta = 0.0
    if left is not None and right is not None:
        (li, ls), (ri, rs) = left, right
        shaded = abs(float(ls[0] - rs[0])) > PAIR_SHADE_DL
        judged = not shaded
    if judged:
        plain = float(np.linalg.norm(li[1:] - ri[1:]))
        against_skin = float(np.linalg.norm((li[1:] - ls[1:]) - (ri[1:] - rs[1:])))
        delta = min(plain, against_skin)
    problems = []
    if size_ratio > IRIS_SIZE_RATIO_MAX:
        problems.append(f"one iris is {size_ratio:.2f}x the height of the other")
    if delta > IRIS_COLOUR_DELTA_MAX:
        problems.append(f"the irises differ in colour by ΔE {delta:.0f}")
    status: Status = "fail" if problems else "pass"
    if not problems and not judged:
        why = ("the head is turned too far to compare them" if turned else
               "one eye is in deep shade, so their colours cannot be compared" if shaded else
               "the irises are too small, closed, hidden or crushed to black to compare their colour")
        return CheckResult(item="eyes.pair", status="not_applicable", measured=None, threshold=IRIS_COLOUR_DELTA_MAX,
                           region=region, explanation=f"The iris sizes match (ratio {size_ratio:.2f}); {why}.")
    explanation = ("The eyes do not match: " + " and ".join(problems) + "." if problems else
                   f"The two irises match in size (ratio {size_ratio:.2f}) and colour (ΔE {delta:.0f}).")
    return CheckResult(item="eyes.pair", status=status, measured=round(delta, 1), threshold=IRIS_COLOUR_DELTA_MAX,
                       explanation=explanation, region=region)


def _iris_height_ratio(face: Face) -> float:
    """Ratio of the two irises' vertical diameters (top to bottom rim point): turning the head
    foreshortens an iris's width, not its height."""
    from ..analysis import LEFT_IRIS_IDX, RIGHT_IRIS_IDX

    heights = [float(np.ptp(face.points(idx)[:, 1])) for idx in (LEFT_IRIS_IDX, RIGHT_IRIS_IDX)]
    return max(heights) / max(1e-3, min(heights))


def _iris_sample(image: np.ndarray, face: Face, side: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Median L*a*b* of the iris ring and of the skin around the same eye, or None when the iris
    is too small or too hidden (squint, laugh, a lid the mesh misplaced) to sample.

    The ring leaves out the pupil (the centre) and the catchlight and lashes (the brightest and
    darkest pixels); the skin is a band just outside the lids, so both are in the same light."""
    import cv2

    m, c, r, box = _iris_pixels(image, face, side, inner=0.9)
    if r < PAIR_MIN_RADIUS or m.sum() < 8:
        return None
    lids = face.points(face.eye(side))
    opening = poly_mask(lids, box)
    shape = (m.shape[0], m.shape[1])
    full = disk_mask(shape, c, r)
    if (full & opening).sum() < PAIR_VISIBLE_MIN * full.sum():
        return None
    column = opening[:, min(shape[1] - 1, max(0, round(float(c[0]))))]
    if not column.any():
        return None
    rows = np.nonzero(column)[0]
    if not PAIR_CENTRE_LOW <= (c[1] - rows.min()) / max(1, rows.max() - rows.min()) <= 1 - PAIR_CENTRE_LOW:
        return None
    ring = m & ~disk_mask(shape, c, r * PUPIL_SHARE)
    if ring.sum() >= 8:
        m = ring
    sub = image[box[1]:box[3], box[0]:box[2]]
    y = luma(sub)[m]
    if float(np.median(y)) < PAIR_IRIS_LUMA_MIN:
        return None  # crushed to near black: no colour to read
    lo, hi = np.percentile(y, (10, 85))
    keep = (y >= lo) & (y <= hi)
    iris = np.median(lab(sub)[m][keep if keep.sum() >= 4 else slice(None)], axis=0)
    pad = int(np.ceil(r * 1.2)) + 2
    sbox = clip_box([int(lids[:, 0].min()) - pad, int(lids[:, 1].min()) - pad, int(lids[:, 0].max()) + pad + 1,
                     int(lids[:, 1].max()) + pad + 1], image.shape[1], image.shape[0])
    around = poly_mask(lids, sbox).astype(np.uint8)
    k = np.ones((3, 3), np.uint8)
    near = cv2.dilate(around, k, iterations=max(1, round(r * 0.3)))
    far = cv2.dilate(around, k, iterations=max(2, round(r * 0.9)))
    band = far.astype(bool) & ~near.astype(bool)
    if band.sum() < 8:
        return None
    skin = np.median(lab(image[sbox[1]:sbox[3], sbox[0]:sbox[2]])[band], axis=0)
    if not PAIR_SKIN_L[0] <= skin[0] <= PAIR_SKIN_L[1]:
        return None  # crushed or blown light around the eye: no colour to read
    return iris, skin


def _oval() -> tuple[int, ...]:
    from ..analysis import FACE_OVAL_IDX

    return FACE_OVAL_IDX


def _lips() -> tuple[int, ...]:
    from ..analysis import LIPS_OUTER_IDX

    return LIPS_OUTER_IDX
