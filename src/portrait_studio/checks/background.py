"""Background: smooth gradients without banding, no stray blobs, no text, logos or watermarks."""

from __future__ import annotations

import re
import threading
from functools import cache
from typing import Any

import numpy as np

from ..analysis import Analysis
from ._pixels import box_of, luma
from .base import CheckContext, CheckResult, Status

__all__ = ["check_background", "find_text"]

BANDING_MAX = 0.004
"""Share of the smooth background that is a 1-6 level step between perfectly flat plateaus.
Natural gradients (with grain) measure ~0; a gradient posterised to 24 bands measures 0.01+."""
ARTIFACTS_MAX = 0
"""Isolated, saturated blobs allowed on plain background."""
PLAIN_STD_MAX = 6.0
"""Luma standard deviation (median-filtered, ~41 px window) below which background counts as plain."""
TEXT_MIN_SCORE = 0.8
"""OCR confidence above which a detected string counts as text (3+ letters or digits)."""
OCR_SIDE = 640
"""Longest side the OCR detector sees: 640 finds a 40%-opaque watermark; 480 missed it."""


def check_background(image: np.ndarray, analysis: Analysis, context: CheckContext) -> list[CheckResult]:
    import cv2

    person = analysis.person_mask > 0.3
    pad = max(5, int(0.02 * max(analysis.shape)))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pad + 1, 2 * pad + 1))
    background = ~cv2.dilate(person.astype(np.uint8), k).astype(bool)
    return [_banding(image, background), _artifacts(image, background), _text(image)]


def _banding(image: np.ndarray, background: np.ndarray) -> CheckResult:
    import cv2

    y = np.round(luma(image)).astype(np.int16)
    smooth = cv2.GaussianBlur(y.astype(np.float32), (0, 0), 2.0)
    gx, gy = cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    smooth_bg = background & (np.hypot(gx, gy) < 12) & (y > 3) & (y < 252)
    n = int(smooth_bg.sum())
    if n < 0.02 * y.size:
        return CheckResult(item="background.banding", status="not_applicable",
                           explanation="There is too little smooth background to show banding.")
    steps = np.zeros(y.shape, bool)
    for axis in (0, 1):
        d = np.diff(y, axis=axis)
        flat = d == 0
        # a step pixel: a 1-6 level jump with 5 flat pixels on each side along the same axis
        before = _run_ok(flat, axis, -1, 5)
        after = _run_ok(flat, axis, 1, 5)
        st = (np.abs(d) >= 1) & (np.abs(d) <= 6) & before & after
        # JPEG's 8x8 blocks make flat tiles with steps on the block grid; those are not banding
        idx = [slice(None)] * 2
        idx[axis] = slice(7, None, 8)
        st[tuple(idx)] = False
        # a band edge is a contour: the step continues in the neighbouring rows/columns
        other = 1 - axis
        ksize = (1, 7) if axis == 1 else (7, 1)
        near = cv2.dilate(st.astype(np.uint8), np.ones(ksize, np.uint8)).astype(bool)
        st &= np.roll(near, 1, axis=other) & np.roll(near, -1, axis=other)
        pad = [(0, 0), (0, 0)]
        pad[axis] = (0, 1)
        steps |= np.pad(st, pad)
    steps &= smooth_bg
    share = float(steps.sum()) / n
    status: Status = "fail" if share > BANDING_MAX else "pass"
    return CheckResult(
        item="background.banding", status=status, measured=round(share, 5), threshold=BANDING_MAX,
        region=box_of(steps) if status == "fail" else box_of(smooth_bg),
        explanation=(f"{share * 100:.2f}% of the smooth background is a hard step between flat bands; "
                     + ("the gradient is banded (posterised): add grain or re-render in 16 bit." if status == "fail"
                        else "gradients are smooth.")))


def _run_ok(flat: np.ndarray, axis: int, direction: int, length: int) -> np.ndarray:
    """True where the `length` diffs before (direction -1) or after (+1) a diff are all flat."""
    out = np.ones(flat.shape, bool)
    for k in range(1, length + 1):
        shifted = np.roll(flat, k * -direction, axis=axis)
        if direction < 0:
            idx = [slice(None)] * 2
            idx[axis] = slice(0, k)
            shifted[tuple(idx)] = False
        else:
            idx = [slice(None)] * 2
            idx[axis] = slice(flat.shape[axis] - k, None)
            shifted[tuple(idx)] = False
        out &= shifted
    return out


def _artifacts(image: np.ndarray, background: np.ndarray) -> CheckResult:
    import cv2

    shrink = min(1.0, 640.0 / max(image.shape[:2]))  # blobs that matter survive 640 px; 3x faster
    if shrink < 1.0:
        image = cv2.resize(image, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        background = cv2.resize(background.astype(np.uint8), (image.shape[1], image.shape[0]),
                                interpolation=cv2.INTER_NEAREST).astype(bool)
    y = luma(image)
    scale = max(image.shape[:2]) / 512.0
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    sat = hsv[..., 1].astype(np.float32)
    ksize = max(9, int(15 * scale) | 1)
    med_y = cv2.medianBlur(np.clip(y, 0, 255).astype(np.uint8), ksize).astype(np.float32)
    med_s = cv2.medianBlur(hsv[..., 1], ksize).astype(np.float32)
    outlier = ((np.abs(y - med_y) > 45) | (sat - med_s > 90)) & background
    # texture around each blob: a blob on busy background is detail, on a plain one it is debris
    win = max(15, int(41 * scale) | 1)
    mean = cv2.blur(med_y, (win, win))
    tex = np.sqrt(np.maximum(cv2.blur(med_y * med_y, (win, win)) - mean * mean, 0))
    n, _labels, stats, cent = cv2.connectedComponentsWithStats(outlier.astype(np.uint8), connectivity=8)
    lo, hi = max(4, int(6 * scale * scale)), int(900 * scale * scale)
    blobs = []
    for i in range(1, n):
        a = stats[i, cv2.CC_STAT_AREA]
        if not lo <= a <= hi:
            continue
        cx, cy = int(cent[i][0]), int(cent[i][1])
        if tex[cy, cx] < PLAIN_STD_MAX:
            x, y0, w, h = stats[i, :4]
            blobs.append([int(x / shrink), int(y0 / shrink), int((x + w) / shrink), int((y0 + h) / shrink)])
    count = len(blobs)
    region = ([min(b[0] for b in blobs), min(b[1] for b in blobs), max(b[2] for b in blobs), max(b[3] for b in blobs)]
              if blobs else None)
    # A single blob is as often a real detail (a patch, a flag) as debris: warn, don't fail.
    status: Status = "pass" if count <= ARTIFACTS_MAX else ("warn" if count == ARTIFACTS_MAX + 1 else "fail")
    return CheckResult(
        item="background.artifacts", status=status, measured=float(count), threshold=float(ARTIFACTS_MAX),
        region=region,
        explanation=(f"{count} isolated blob(s) stand out from a plain background (generation debris or dust)."
                     if count else "No stray blobs on the plain background."))


_ocr_lock = threading.Lock()


@cache
def _ocr() -> Any:
    from rapidocr import RapidOCR

    return RapidOCR(params={
        "Global.log_level": "error",
        "Global.use_cls": False,
        "Det.limit_type": "max",
        "Det.limit_side_len": OCR_SIDE,
        "EngineConfig.onnxruntime.intra_op_num_threads": 1,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    })


def find_text(image: np.ndarray) -> list[tuple[str, float, list[int]]]:
    """Readable strings in the image: (text, confidence, [x0, y0, x1, y1]) for each line found."""
    with _ocr_lock:
        res = _ocr()(np.ascontiguousarray(image[..., ::-1]))
    if res.txts is None or res.boxes is None:
        return []
    out = []
    for txt, score, box in zip(res.txts, res.scores, res.boxes):
        b = np.asarray(box)
        out.append((str(txt), float(score), [int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 0].max()), int(b[:, 1].max())]))
    return out


def _text(image: np.ndarray) -> CheckResult:
    found = [(t, s, b) for t, s, b in find_text(image)
             if s >= TEXT_MIN_SCORE and len(re.findall(r"[0-9A-Za-z]", t)) >= 3]
    if not found:
        return CheckResult(item="background.text", status="pass", measured=0.0, threshold=TEXT_MIN_SCORE,
                           explanation="No readable text, logo lettering or watermark was found.")
    best = max(found, key=lambda f: f[1])
    boxes = [f[2] for f in found]
    region = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    shown = ", ".join(f"'{t}'" for t, _, _ in found[:3])
    return CheckResult(item="background.text", status="fail", measured=round(best[1], 3), threshold=TEXT_MIN_SCORE,
                       region=region, explanation=f"Text or a watermark is visible ({shown}); remove it before export.")
