"""Background: smooth gradients without banding, no stray blobs, no text, logos or watermarks."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..analysis import Analysis
from ._pixels import box_of, luma
from .base import CheckContext, CheckResult, Status

__all__ = ["check_background", "find_text"]

BANDING_MAX = 0.02
"""Band edges on the smooth backdrop (per colour channel, median-denoised): hard steps between flat
plateaus (`_hard_steps`) that continue along the edge and belong to a long contour, each weighted
by its height (`BAND_WEIGHT_MAX`), as a share of the smooth backdrop. Clean training photos measure
up to 0.012 (a stock photo's semi-transparent logos on a flat backdrop); posterised gradients,
skies and backdrops 0.022 and up."""
SMOOTH_SHARE = 0.7
"""Share of a 15 px neighbourhood that must change by at most a level per pixel for the backdrop
there to count as smooth (banding is judged only where it is)."""
BANDING_PIXELS = 0.55e6
"""Banding is looked for on every k-th native pixel, k chosen so at most this many are looked at
(area averaging would turn a step into a ramp; a band worth flagging is 8+ native pixels wide)."""
BAND_EDGE_MIN = 0.08
"""A step counts only as part of an edge at least this share of the image's short side long."""
BAND_WEIGHT_MAX = 8
"""A band edge counts at most this many times (a 24-level step), however hard."""
BAND_STEP = 3
"""Levels a band edge must jump (in one colour channel) between creeping plateaus; 2 levels count
only between plateaus that do not change at all."""
ARTIFACTS_MAX = 0
"""Isolated blobs allowed on the plain backdrop (one warns, two or more fail)."""
PLAIN_STD_MAX = 6.0
"""Luma standard deviation (median-filtered, ~41 px window) below which background counts as plain."""
TEXT_MIN_SCORE = 0.8
"""OCR confidence above which a detected string counts as text (3+ letters or digits)."""
OCR_PIXELS = 0.3e6
"""Pixels of the copy text is read on (640x480 for a 4:3 photo; by area, so a tall or wide photo's
captions are not shrunk more than a 4:3 one's): finds a 40%-opaque watermark and a caption 3.5% of
the short side tall."""
OCR_SIDE = 960
"""The OCR engine never shrinks what it is given below this longest side."""
MARGIN_BAND = 0.07
"""Text within this share of the frame's width (height) from a side (the top or bottom) is in the
margin: captions, credits and logos are laid there, on the subject or not; a name tag or a print
on clothing sits inside the frame."""
EDGE_BAND = 0.12
"""Text within this share of the frame from an edge, off the subject, sits where captions and marks go."""
CUT_REACH = 0.5
"""A text line beside the head whose box ends within this share of its own height from a side of the
frame (a letter the frame cuts in half is not read) and whose other end meets the subject runs behind
the person and out of the picture: a sign or banner in the scene (a press-wall sign read as 'WOOD',
'IGN', 'CIATION'), not a caption or logo laid whole inside the frame."""


def check_background(image: np.ndarray, analysis: Analysis, context: CheckContext) -> list[CheckResult]:
    import cv2

    work = analysis.work_rgb
    s = analysis.work_scale
    person_p = analysis.person_work
    person = person_p > 0.3
    pad = max(5, int(0.02 * max(work.shape[:2])))
    background = _farther_than(person, pad)
    # banding needs the exact pixel values (area averaging blurs a step into a ramp): decimate
    step = max(1, int(np.ceil((image.shape[0] * image.shape[1] / BANDING_PIXELS) ** 0.5)))
    native = image[::step, ::step]
    bg_native = cv2.resize(background.astype(np.uint8), (native.shape[1], native.shape[0]),
                           interpolation=cv2.INTER_NEAREST).astype(bool)
    return [_banding(native, bg_native, step), _artifacts(work, background, person_p, s, analysis),
            _text(work, person_p, s, analysis)]


BORDER_BAND = 0.05
BORDER_SPAN = 0.6
"""A band edge within `BORDER_BAND` of a side of the frame, parallel to it and along at least
`BORDER_SPAN` of it, is the picture's border, not banding."""


def _banding(image: np.ndarray, background: np.ndarray, step: int = 1) -> CheckResult:
    m = banding_measure(image, background, step)
    if m is None:
        return CheckResult(item="background.banding", status="not_applicable",
                           explanation="There is too little smooth background to show banding.")
    share, contours, box = m["share"], m["contours"], m["box"]
    status: Status = "fail" if share > BANDING_MAX else "pass"
    return CheckResult(
        item="background.banding", status=status, measured=round(share, 5), threshold=BANDING_MAX,
        region=None if box is None else [v * step for v in box],
        explanation=(f"{share * 100:.2f}% of the smooth background is a hard step between flat bands, along "
                     f"{contours} long band edge(s); "
                     + ("the gradient is banded (posterised): add grain or re-render in 16 bit." if status == "fail"
                        else "gradients are smooth.")))


def banding_measure(image: np.ndarray, background: np.ndarray, step: int = 1) -> dict[str, Any] | None:
    """Hard steps between flat plateaus on the smooth backdrop, per colour channel: their share of
    the smooth backdrop, how many long band edges (contours) they form, and where. None when there
    is too little smooth backdrop to tell."""
    import cv2

    y8 = np.clip(np.round(luma(image)), 0, 255).astype(np.uint8)
    y = cv2.medianBlur(y8, 3).astype(np.int16)  # JPEG and sensor noise off the plateaus, steps kept
    # smooth backdrop: where almost every pixel changes by at most a level from its neighbours. A
    # posterised gradient is that too, however hard its steps (a local standard deviation or
    # gradient would call a 30-level band edge texture and never look at it); foliage, hair,
    # crowds and fabric are not
    still = np.zeros(y.shape, np.uint8)
    still[:-1, :-1] = (np.abs(np.diff(y, axis=1))[:-1] <= 1) & (np.abs(np.diff(y, axis=0))[:, :-1] <= 1)
    calm = cv2.blur(still.astype(np.float32), (15, 15)) >= SMOOTH_SHARE
    smooth_bg = background & calm & (y > 3) & (y < 252)
    n = int(smooth_bg.sum())
    if n < 0.02 * y.size:
        return None
    steps = np.zeros(y.shape, bool)
    height = np.zeros(y.shape, np.int16)
    # each colour channel on its own: a band can step in hue with almost no step in luma
    for c in range(3):
        ch = cv2.medianBlur(np.ascontiguousarray(image[..., c]), 3).astype(np.int16)
        for axis in (0, 1):
            jump = _hard_steps(ch, axis)
            st = jump > 0
            # JPEG's 8x8 blocks make flat tiles with steps on the block grid; where steps crowd onto
            # that grid they are compression, not banding (a band edge crosses it like any column)
            # (the grid's phase is found, not assumed: a crop of a JPEG moves it)
            period = 8 // step if 8 % step == 0 else 0  # the block grid in decimated pixels
            if period >= 2 and st.any():
                per_line = st.sum(axis=1 - axis).astype(np.float64)
                nb = len(per_line) // period * period
                if nb >= 2 * period:
                    phase = per_line[:nb].reshape(-1, period).sum(0)
                    p = int(np.argmax(phase))
                    on_grid = per_line[p::period]
                    # compression: steps on many block boundaries; a few hard band edges that
                    # happen to fall on one phase are not a grid
                    many = (on_grid > 0).sum() >= max(4, 0.3 * len(on_grid))
                    if many and phase[p] > 3 * (phase.sum() - phase[p]) / (period - 1) + 2:
                        idx = [slice(None)] * 2
                        idx[axis] = slice(p, None, period)
                        st[tuple(idx)] = False
            # a band edge is a contour: the step continues in the neighbouring rows/columns
            other = 1 - axis
            ksize = (1, 7) if axis == 1 else (7, 1)
            near = cv2.dilate(st.astype(np.uint8), np.ones(ksize, np.uint8)).astype(bool)
            st &= np.roll(near, 1, axis=other) & np.roll(near, -1, axis=other)
            steps |= st
            np.maximum(height, np.where(st, jump, 0).astype(np.int16), out=height)
    steps &= smooth_bg
    # a band edge is long: it runs across the backdrop; compression specks and texture make short bits
    joined = cv2.dilate(steps.astype(np.uint8), np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    reach = max(20, int(BAND_EDGE_MIN * min(y.shape)))
    long_ids = [i for i in range(1, count)
                if max(stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT]) >= reach
                and not _frame_border(stats[i], y.shape)]
    steps &= np.isin(labels, long_ids)
    # each band edge counts by how hard it is: a 2-3 level step once, a 30-level step of a
    # sky posterised into a few bands up to `BAND_WEIGHT_MAX` times (few edges, each plainly seen)
    share = float(np.minimum(height[steps], 3 * BAND_WEIGHT_MAX).sum()) / 3.0 / n
    box = box_of(steps) if steps.any() else box_of(smooth_bg)
    return {"share": share, "contours": len(long_ids), "box": box}


def _frame_border(stat: np.ndarray, shape: tuple[int, ...]) -> bool:
    """A straight edge along most of one side of the frame, hugging it: a border, mat or letterbox
    laid around the picture (a stock preview's frame), not a band of the backdrop's gradient."""
    x, y, bw, bh = (int(v) for v in stat[:4])
    h, w = shape[:2]
    if bh >= BORDER_SPAN * h and bw <= BORDER_BAND * w:
        return x + bw <= BORDER_BAND * w or x >= (1 - BORDER_BAND) * w
    if bw >= BORDER_SPAN * w and bh <= BORDER_BAND * h:
        return y + bh <= BORDER_BAND * h or y >= (1 - BORDER_BAND) * h
    return False


def _farther_than(mask: np.ndarray, distance: int) -> np.ndarray:
    """Pixels more than `distance` pixels from every True pixel of `mask` (a distance transform:
    linear in the image, unlike a dilation with a large disk)."""
    import cv2

    if not mask.any():
        return np.ones(mask.shape, bool)
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
    return np.asarray(dist > distance)


def _hard_steps(ch: np.ndarray, axis: int) -> np.ndarray:
    """The step height (levels; 0 elsewhere) at pixels of `ch` (int16) where, along `axis`, the value jumps between two flat plateaus: by
    `BAND_STEP` to 120 levels between plateaus that drift by at most a level per pixel for 4 pixels
    on each side, or by 2 levels between plateaus that do not change at all for 3 pixels. Natural
    8-bit gradients climb a level at a time (a tone stretch of them: a level or two, with the
    plateaus still creeping), so neither counts."""
    import cv2

    d = np.diff(ch, axis=axis)
    a = np.abs(d)
    n = d.shape[axis]
    if n < 10:
        return np.zeros(ch.shape, np.int16)

    def window(mask: np.ndarray, k: int) -> np.ndarray:
        """Number of True in mask[i .. i+k-1] along the axis, at every i (zeros past the end)."""
        ksize = (k, 1) if axis == 1 else (1, k)
        return cv2.boxFilter(mask.astype(np.uint8), cv2.CV_16U, ksize, anchor=(0, 0), normalize=False,
                             borderType=cv2.BORDER_CONSTANT)

    def take(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(lo, hi)
        return x[tuple(idx)]

    # for diff i in 4..n-5: d[i-k..i-1] (the window starting at i-k) and d[i+1..i+k] (starting at i+1)
    m = n - 8
    wf, ws = window(a <= 1, 4), window(a == 0, 3)
    fb, fa = take(wf, 0, m) == 4, take(wf, 5, 5 + m) == 4
    sb, sa = take(ws, 1, 1 + m) == 3, take(ws, 5, 5 + m) == 3
    mid = take(a, 4, n - 4)
    hit = ((mid >= BAND_STEP) & (mid <= 120) & fb & fa) | ((mid == 2) & sb & sa)
    out = np.zeros(ch.shape, np.int16)
    idx = [slice(None)] * 2
    idx[axis] = slice(4, n - 4)  # diff i sits between pixels i and i+1: mark pixel i
    out[tuple(idx)] = np.where(hit, mid, 0)
    # a hard edge that compression made ring: flat plateaus (d[i-6..i-3], d[i+3..i+6]) on each
    # side, a jump of 6+ levels across the 5 pixels between, the centre diff its steepest part
    if n > 16:
        m2 = n - 12
        wide_before = take(wf, 0, m2) == 4
        wide_after = take(wf, 9, 9 + m2) == 4
        jump2 = np.abs(take(ch, 9, 9 + m2).astype(np.int32) - take(ch, 4, 4 + m2).astype(np.int32))
        centre = take(a, 6, 6 + m2).astype(np.int32)
        ring = (jump2 >= 6) & (jump2 <= 120) & wide_before & wide_after & (centre * 3 >= jump2)
        idx[axis] = slice(6, 6 + m2)
        out[tuple(idx)] = np.maximum(out[tuple(idx)], np.where(ring, jump2, 0).astype(np.int16))
    return out


def _artifacts(image: np.ndarray, background: np.ndarray, person_p: np.ndarray, s: float,
               analysis: Analysis) -> CheckResult:
    """Isolated blobs on the plain backdrop: not on or touching the subject (the person mask often
    misses a suit or hair at the frame's edge), not on the frame's edge, not part of a pattern."""
    import cv2

    shrink = min(1.0, 480.0 / max(image.shape[:2]))  # blobs that matter survive 480 px; 5x faster
    if shrink < 1.0:
        image = cv2.resize(image, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        background = cv2.resize(background.astype(np.uint8), (image.shape[1], image.shape[0]),
                                interpolation=cv2.INTER_NEAREST).astype(bool)
        person_p = cv2.resize(person_p, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    h, w = image.shape[:2]
    # the backdrop: far from anything the segmentation thinks might be the person
    near = max(3, int(0.04 * max(h, w)))
    backdrop = background & _farther_than(person_p > 0.1, near)
    y = luma(image)
    scale = max(image.shape[:2]) / 512.0
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    sat = hsv[..., 1].astype(np.float32)
    ksize = max(9, int(15 * scale) | 1)
    med_y = cv2.medianBlur(np.clip(y, 0, 255).astype(np.uint8), ksize).astype(np.float32)
    med_s = cv2.medianBlur(hsv[..., 1], ksize).astype(np.float32)
    outlier = ((np.abs(y - med_y) > 45) | (sat - med_s > 90)) & backdrop
    # texture around each blob: a blob on busy background is detail, on a plain one it is debris
    win = max(15, int(41 * scale) | 1)
    mean = cv2.blur(med_y, (win, win))
    tex = np.sqrt(np.maximum(cv2.blur(med_y * med_y, (win, win)) - mean * mean, 0))
    n, _labels, stats, cent = cv2.connectedComponentsWithStats(outlier.astype(np.uint8), connectivity=8)
    lo, hi = max(4, int(6 * scale * scale)), int(900 * scale * scale)
    margin = max(2, int(0.01 * max(h, w)))
    found = []
    for i in range(1, n):
        a = stats[i, cv2.CC_STAT_AREA]
        if not lo <= a <= hi:
            continue
        x, y0, bw, bh = (int(v) for v in stats[i, :4])
        if x <= margin or y0 <= margin or x + bw >= w - margin or y0 + bh >= h - margin:
            continue  # cut by the frame: part of something outside it
        cx, cy = int(cent[i][0]), int(cent[i][1])
        if tex[cy, cx] < PLAIN_STD_MAX:
            colour = image[_labels == i].mean(0) if a < 2000 else image[cy, cx].astype(np.float64)
            found.append((x, y0, bw, bh, float(a), colour))
    blobs = [b for b in found if not _in_pattern(b, found)]
    boxes = [[int(x / shrink / s), int(y0 / shrink / s), int((x + bw) / shrink / s), int((y0 + bh) / shrink / s)]
             for x, y0, bw, bh, _, _ in blobs]
    count = len(boxes)
    region = ([min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
              if boxes else None)
    # A single blob is as often a real detail (a button, a star) as debris: warn, don't fail.
    status: Status = "pass" if count <= ARTIFACTS_MAX else ("warn" if count == ARTIFACTS_MAX + 1 else "fail")
    pattern = len(found) - count
    return CheckResult(
        item="background.artifacts", status=status, measured=float(count), threshold=float(ARTIFACTS_MAX),
        region=region,
        explanation=(f"{count} isolated blob(s) stand out from the plain backdrop (generation debris or dust)."
                     if count else "No stray blobs on the plain backdrop"
                     + (f" ({pattern} small shapes repeat as a pattern, like stars or dots, and are left alone)."
                        if pattern else ".")))


def _in_pattern(b: tuple, found: list[tuple]) -> bool:
    """A blob with two or more look-alikes (size within 2x, similar colour) close by is part of a
    pattern (stars on a flag, dots on a print), which debris is not."""
    x, y, bw, bh, a, colour = b
    cx, cy = x + bw / 2, y + bh / 2
    reach = 8 * max(bw, bh, 3)
    alike = 0
    for o in found:
        if o is b:
            continue
        ox, oy, obw, obh, oa, ocol = o
        if (abs(ox + obw / 2 - cx) <= reach and abs(oy + obh / 2 - cy) <= reach
                and 0.5 <= oa / a <= 2.0 and float(np.abs(np.asarray(ocol) - np.asarray(colour)).max()) < 40):
            alike += 1
    return alike >= 2


OCR_COPIES = max(1, min(4, os.cpu_count() or 1))
"""OCR engines kept at most, one per core: checks in several threads (a run's images arriving together)
each read with their own instead of queueing for one (a rapidocr engine keeps per-call settings on
itself, so one engine reads one image at a time). A check finding them all busy waits for one: the
cores are busy reading then anyway. Each costs about 15 MB and 0.15 s to build; a process that
checks one photo at a time builds only the first."""

_ocr_pool = threading.Condition()
_ocr_free: list[Any] = []
_ocr_made = 0  # engines built or being built
_ocr_claims = 0  # callers holding or waiting for an engine


def ready_ocr(n: int = OCR_COPIES) -> None:
    """Build OCR engines until `n` exist (at most `OCR_COPIES`), their text detector loaded: the
    warm-up readies one per core, so images checked at once do not wait for an engine to be built.
    (An engine built on demand loads its detector in the check that uses it: loaded from another
    thread, it would keep 14 MB more of that thread's heap.)"""
    global _ocr_made
    while True:
        with _ocr_pool:
            if _ocr_made >= min(n, OCR_COPIES):
                return
            _ocr_made += 1
        engine = _make_ocr()
        try:
            with contextlib.suppress(AttributeError):  # another rapidocr: it loads on first use
                engine._load_det_model()  # every check runs the detector: load it now, not in the first check
        finally:
            _give_back(engine)


@contextlib.contextmanager
def _borrowed_ocr() -> Iterator[Any]:
    """An OCR engine for this caller alone: a free one; else the one being built when no other
    caller has claimed it (the warm-up's, loading while this photo's faces were analysed); else a
    new one while fewer than `OCR_COPIES` exist; else the next one another caller gives back."""
    global _ocr_made, _ocr_claims
    engine = None
    with _ocr_pool:
        _ocr_claims += 1
        while True:
            if _ocr_free:
                engine = _ocr_free.pop()
                break
            if _ocr_claims > _ocr_made and _ocr_made < OCR_COPIES:  # every engine made is spoken for
                _ocr_made += 1
                break
            _ocr_pool.wait()  # an engine in the making or in use comes back (or a failed build frees its place)
    try:
        if engine is None:
            engine = _make_ocr()
        yield engine
    finally:
        if engine is not None:
            _give_back(engine)
        with _ocr_pool:
            _ocr_claims -= 1
            _ocr_pool.notify_all()


def _make_ocr() -> Any:
    """A new engine for the pool, whose place the caller took; a failed build frees that place."""
    global _ocr_made
    from ..analysis import in_own_thread

    try:
        return in_own_thread(_new_ocr)
    except BaseException:
        with _ocr_pool:
            _ocr_made -= 1
            _ocr_pool.notify_all()  # whoever waited for this engine builds their own (and meets the error)
        raise


def _give_back(engine: Any) -> None:
    with _ocr_pool:
        _ocr_free.append(engine)
        _ocr_pool.notify()


_ROUTING_KEYS = ("model_routes", "lang_mapping")
"""What rapidocr's model router (`rapidocr.utils.model_resolver`) reads of its model registry: the routes
and the language table that pick a model. It only calls `.get`, `[]` and iterates on them."""
_REGISTRY_KEYS = ("onnxruntime",)
"""What its inference sessions (`InferSession.model_info`) read with the onnxruntime engine: that engine's
model files. The other engines' entries (OpenVINO, MNN, Paddle, torch) are 70% of the file."""
_rapidocr_lock = threading.Lock()


def _rapidocr() -> Any:
    """rapidocr's `RapidOCR`, imported with its model registry cut to what each reader of it uses.

    rapidocr loads its 85 KB registry (`default_models.yaml`) into an OmegaConf tree twice while it is
    imported, nearly all of it OmegaConf wrapping every node: part of every checking process's start,
    on the critical path when a result arrives before the checklist is ready (and of every
    `portrait check`). Parsed once (C YAML), the model router gets plain dicts of the routing tables
    (`_ROUTING_KEYS`: it reads them with `.get` and `[]` only) and the inference sessions an OmegaConf
    tree of the onnxruntime engine's models alone (`_REGISTRY_KEYS`: they look models up with
    `OmegaConf.select`). The import took 0.77 s with the whole registry, 0.56 s with it cut to those
    three tables in one tree each time, and 0.32 s now (side by side on the 2-core VM); rapidocr
    reads the same entries as before. Anything unexpected (another file layout, a missing key, another
    reader) loads the registry as rapidocr would."""
    with _rapidocr_lock:
        if "rapidocr.main" in sys.modules:
            from rapidocr import RapidOCR

            return RapidOCR
        from omegaconf import OmegaConf

        real_load = OmegaConf.load
        descriptor = OmegaConf.__dict__["load"]  # a staticmethod: put back exactly that
        parsed: dict[str, Any] = {}

        def load(file: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(file, "name", None) == "default_models.yaml" and not args and not kwargs:
                reader = sys._getframe(1).f_globals.get("__name__")
                try:
                    if not parsed:
                        import yaml

                        parsed.update(yaml.load(file.read_text(encoding="utf-8"),
                                                Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
                    if reader == "rapidocr.utils.model_resolver":
                        return {key: parsed[key] for key in _ROUTING_KEYS}
                    if reader == "rapidocr.inference_engine.base":
                        return OmegaConf.create({key: parsed[key] for key in _REGISTRY_KEYS})
                except Exception:  # rapidocr's own load, as if we were not here
                    pass
            return real_load(file, *args, **kwargs)

        OmegaConf.load = staticmethod(load)  # type: ignore[method-assign,assignment]
        try:
            from rapidocr import RapidOCR
        finally:
            setattr(OmegaConf, "load", descriptor)  # noqa: B010
        return RapidOCR


def _new_ocr() -> Any:
    from ..quiet import native_quiet

    with native_quiet():
        RapidOCR = _rapidocr()

        return RapidOCR(params={
            "Global.log_level": "error",
            "Global.use_cls": False,
            "Det.limit_type": "max",
            "Det.limit_side_len": OCR_SIDE,
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })


def find_text(image: np.ndarray) -> list[tuple[str, float, list[int]]]:
    """Readable strings in the image: (text, confidence, [x0, y0, x1, y1]) for each line found.

    The OCR detector's own response on a `PROPOSAL_PIXELS` copy (a third of the pixels) proposes
    where text may be; only those regions (with a margin) are read on the `OCR_PIXELS` copy. A photo
    without text costs one small detector pass; one covered in text costs what a full pass does."""
    import cv2

    from ..quiet import native_quiet

    h, w = image.shape[:2]
    k = min(1.0, (OCR_PIXELS / (h * w)) ** 0.5, OCR_SIDE / max(h, w))
    if k < 1.0:  # shrink first, then swap the channels of the small copy (area averaging is per channel)
        image = cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    out = []
    with _borrowed_ocr() as engine, native_quiet():
        for x0, y0, x1, y1 in _proposals(engine, bgr):
            res = engine(np.ascontiguousarray(bgr[y0:y1, x0:x1]))
            if res.txts is None or res.boxes is None:
                continue
            for txt, score, box in zip(res.txts, res.scores, res.boxes):
                b = np.asarray(box, np.float32) + np.array([x0, y0], np.float32)
                out.append((str(txt), float(score), [int(b[:, 0].min() / k), int(b[:, 1].min() / k),
                                                     int(np.ceil(b[:, 0].max() / k)), int(np.ceil(b[:, 1].max() / k))]))
    return out


PROPOSAL_PIXELS = 0.08e6
"""Pixels of the copy the OCR detector first looks at for where text may be."""
CAPTION_BAND = 0.12
"""Share of the height read at full size along the top and bottom edges, where captions go."""
PROPOSAL_MIN = 0.15
"""Detector probability (0-1) above which a spot of the small copy is read at full OCR size."""


def _proposals(engine: Any, bgr: np.ndarray) -> list[list[int]]:
    """Boxes of `bgr` worth reading: the top and bottom `CAPTION_BAND` strips, and spots where the
    text detector, run on a small copy, responds (grown by a margin); merged; the whole image when
    they cover most of it."""
    import cv2

    h, w = bgr.shape[:2]
    whole = [[0, 0, w, h]]
    try:
        from rapidocr.ch_ppocr_det.utils import DetPreProcess

        det = engine._load_det_model()
        q = min(1.0, (PROPOSAL_PIXELS / (h * w)) ** 0.5)
        side = max(32, round(max(h, w) * q))
        pre = DetPreProcess(side, "max", det.mean, det.std)(bgr)
        if pre is None:
            return whole
        prob = np.asarray(det.session(pre))[0, 0]
    except (AttributeError, ImportError, IndexError, TypeError):  # another rapidocr: read everything
        return whole
    sy = h / prob.shape[0]
    spots = cv2.dilate((prob > PROPOSAL_MIN).astype(np.uint8), np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(spots, connectivity=8)
    boxes = []
    for i in range(1, n):
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        # a line of text runs sideways and a faint one's ends may not respond yet (a watermark
        # shows over a dark suit, not over the pale backdrop beside it): read the whole row band
        my = max(0.06 * h, 1.5 * bh * sy)
        boxes.append([0, max(0, int(y * sy - my)), w, min(h, int((y + bh) * sy + my))])
    # captions, credits and corner logos are small and sit along the top and bottom: read those
    # strips at full OCR size whatever the small copy saw (the low copy misses text under ~15 px)
    band = max(32, int(CAPTION_BAND * h))
    boxes += [[0, 0, w, band], [0, h - band, w, h]]
    boxes = _merge_boxes(boxes)
    if sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes) > 0.6 * w * h:
        return whole
    return boxes


def _merge_boxes(boxes: list[list[int]]) -> list[list[int]]:
    """Merge overlapping boxes until none overlap."""
    boxes = [list(b) for b in boxes]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def _text(work: np.ndarray, person_p: np.ndarray, s: float, analysis: Analysis) -> CheckResult:
    found = [(t, sc, b) for t, sc, b in find_text(work)
             if sc >= TEXT_MIN_SCORE and len(re.findall(r"[0-9A-Za-z]", t)) >= 3]
    if not found:
        return CheckResult(item="background.text", status="pass", measured=0.0, threshold=TEXT_MIN_SCORE,
                           explanation="No readable text, logo lettering or watermark was found.")
    face = analysis.face
    overlays: list[tuple[str, float, list[int], str | None]] = []
    scene: list[tuple[str, float, list[int], str | None]] = []
    for t, sc, b in found:
        why = _overlay_reason(t, b, found, work.shape[:2], person_p, face, s)
        (overlays if why else scene).append((t, sc, b, why))
    chosen = overlays or scene
    best = max(chosen, key=lambda f: f[1])
    boxes = [[int(v / s) for v in f[2]] for f in chosen]
    region = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    shown = ", ".join(f"'{t}'" for t, _, _, _ in chosen[:3])
    if overlays:
        return CheckResult(item="background.text", status="fail", measured=round(best[1], 3), threshold=TEXT_MIN_SCORE,
                           region=region, parts=boxes, explanation=f"Overlay text or a watermark is visible ({shown}: {overlays[0][3]}); "
                           "remove it before export.")
    return CheckResult(item="background.text", status="warn", measured=round(best[1], 3), threshold=TEXT_MIN_SCORE,
                       region=region, explanation=f"Text is visible ({shown}) but it sits in the scene (on clothing or "
                       "an object), not over the picture; check it is wanted.")


def _runs_behind_and_out(box: list[int], h: int, w: int, person_p: np.ndarray, chin: float) -> bool:
    """Whether the text line beside the head has neither a visible start nor a visible end: one end of
    its box reaches a side of the frame and the other meets the subject (a sign that continues behind
    the person and outside the picture). Captions, credits and logos are laid whole in the corners:
    OCR pads a box, so one near the edge may reach it, and a bottom corner meets the subject's body,
    so lines in the top and bottom margin bands or below the chin never count."""
    x0, y0, x1, y1 = box
    if y0 < MARGIN_BAND * h or y1 > (1 - MARGIN_BAND) * h or y0 > chin:
        return False
    t = max(2.0, CUT_REACH * (y1 - y0))
    gap = max(3, int(0.3 * (y1 - y0)))
    rows = person_p[max(0, y0):max(y0 + 1, y1)] > 0.5
    if x1 >= w - 1 - t:  # runs out on the right: does it start at the subject on the left?
        strip = rows[:, max(0, x0 - gap):max(1, x0)]
    elif x0 <= t:
        strip = rows[:, min(w - 1, x1):min(w, x1 + gap)]
    else:
        return False
    return strip.size > 0 and float(strip.mean()) >= 0.5


def _overlay_reason(text: str, box: list[int], found: list, shape: tuple[int, ...], person_p: np.ndarray,
                    face: Any, s: float) -> str | None:
    """Why a line of text reads as laid over the picture rather than part of the scene (None: scene)."""
    h, w = shape[:2]
    x0, y0, x1, y1 = box
    norm = re.sub(r"[^0-9a-z]", "", text.lower())
    if sum(re.sub(r"[^0-9a-z]", "", t.lower()) == norm for t, _, _ in found) >= 2:
        return "the same mark repeats across the frame"
    if face is None or face.landmarks is None:
        return "there is no subject for it to belong to"
    fx0, fy0, fx1, fy1 = (v * s for v in face.box)
    fw = max(1.0, fx1 - fx0)
    on_person = float((person_p[max(0, y0):max(y0 + 1, y1), max(0, x0):max(x0 + 1, x1)] > 0.5).mean())
    # a line that starts behind the subject and runs out of the picture is a sign in the scene, not a
    # mark laid on it: its width and being near the frame's edge are no evidence then
    cut = _runs_behind_and_out(box, h, w, person_p, fy1)
    if x1 - x0 > 1.1 * fw and not cut:
        return "it is wider than the face, across the subject"
    if min(x1, fx1) - max(x0, fx0) > 0 and min(y1, fy1) - max(y0, fy0) > 0:
        return "it lies over the face"
    mx, my = MARGIN_BAND * w, MARGIN_BAND * h
    fcx = (fx0 + fx1) / 2
    on_chest = on_person >= 0.8 and y0 > fy1 and abs((x0 + x1) / 2 - fcx) < 0.8 * fw  # a name tag, a print
    side = x0 < mx or x1 > w - mx  # a corner or a side: where marks go, worn text is centred on the body
    if not cut and (side or ((y0 < my or y1 > h - my) and not on_chest)) and (y1 - y0) < 0.15 * h:
        return "it sits in the frame's margin, where captions, credits and logos are laid on"
    if 0.2 < on_person < 0.8:
        return "it crosses the subject's outline"
    edge = EDGE_BAND * max(h, w)
    if not cut and on_person <= 0.2 and (x0 < edge or y0 < edge or x1 > w - edge or y1 > h - edge):
        return "it sits off the subject near the frame's edge, where captions and marks go"
    return None


