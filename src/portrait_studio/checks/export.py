"""Export: the size the brief asked for, a sane upscale, the AI label and the prompt/seed record."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import Analysis
from .base import CheckContext, CheckResult, Status

__all__ = ["check_export", "estimate_upscale", "halo_measure", "read_metadata"]

UPSCALE_RANGE = (1.5, 2.0)
"""Finishing should upscale 1.5-2x: less leaves the generator's softness, more invents detail."""
SPECTRAL_DROP = 0.8
"""Drop in log10 power across 1/f of Nyquist that marks an f-times upscale."""
AI_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia")
SEED_RE = re.compile(r"\bSeed:\s*\d+", re.IGNORECASE)


def check_export(image: np.ndarray, analysis: Analysis, context: CheckContext) -> list[CheckResult]:
    meta = read_metadata(analysis.source, analysis.info)
    return [_resolution(analysis, context), _upscale(image, context), _sharpening(image, analysis),
            _label(meta, context), _record(meta, context)]


def read_metadata(path: Path | None, info: dict[str, Any] | None = None) -> dict[str, str]:
    """DigitalSourceType, description and PNG `parameters` from XMP (pyexiv2) and PNG text chunks."""
    meta: dict[str, str] = {}
    info = info or {}
    if isinstance(info.get("parameters"), str):
        meta["parameters"] = info["parameters"]
    xmp_text = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if isinstance(xmp_text, bytes):
        xmp_text = xmp_text.decode("utf-8", "replace")
    if path is not None and path.exists():
        try:
            import pyexiv2

            with pyexiv2.Image(str(path)) as img:
                xmp = img.read_xmp()
        except Exception:  # unreadable metadata is reported as missing, not as a crash
            xmp = {}
        dst = xmp.get("Xmp.Iptc4xmpExt.DigitalSourceType")
        if dst:
            meta["digital_source_type"] = str(dst)
        desc = xmp.get("Xmp.dc.description")
        if isinstance(desc, dict):
            desc = next(iter(desc.values()), "")
        if desc:
            meta["description"] = str(desc)
    if "digital_source_type" not in meta and isinstance(xmp_text, str):
        m = re.search(r'DigitalSourceType(?:="|>)([^"<]+)', xmp_text)
        if m:
            meta["digital_source_type"] = m.group(1)
    return meta


def _resolution(analysis: Analysis, context: CheckContext) -> CheckResult:
    h, w = analysis.shape
    tw, th = context.target_width, context.target_height
    if not tw and not th:
        return CheckResult(item="export.resolution", status="not_applicable", measured=float(w * h) / 1e6,
                           explanation=f"No target size was given; the image is {w}x{h}.")
    ok_w = tw is None or w == tw
    ok_h = th is None or h == th
    target = f"{tw or '?'}x{th or '?'}"
    status: Status = "pass" if ok_w and ok_h else "fail"
    return CheckResult(item="export.resolution", status=status, measured=float(w), threshold=float(tw or 0) or None,
                       explanation=f"The image is {w}x{h}; the target is {target}"
                       + ("." if status == "pass" else ": resize or re-export to the target size."))


def estimate_upscale(gray: np.ndarray) -> float:
    """Rough upscale factor from the spectrum: the largest f whose band above Nyquist/f is empty.

    An f-times upscale leaves almost no power above 1/f of the Nyquist frequency, so the
    radially averaged log spectrum drops there. Soft (defocused, denoised) images read as
    upscaled too, so treat it as evidence, not proof: ~1 for native pixels, 1.5-3 after a 2x upscale.
    """
    g = gray.astype(np.float32)
    n = min(512, min(g.shape) // 2 * 2)
    cy, cx = g.shape[0] // 2, g.shape[1] // 2
    g = g[cy - n // 2:cy + n // 2, cx - n // 2:cx + n // 2]
    window = np.hanning(n)[:, None] * np.hanning(n)[None, :]
    power = np.abs(np.fft.fftshift(np.fft.fft2((g - g.mean()) * window))) ** 2
    yy, xx = np.mgrid[:n, :n]
    radius = np.hypot(yy - n / 2, xx - n / 2) / (n / 2)
    bins = 40
    idx = np.clip((radius * bins).astype(int), 0, bins)
    sums = np.bincount(idx.ravel(), power.ravel(), bins + 1)[:bins]
    counts = np.maximum(np.bincount(idx.ravel(), None, bins + 1)[:bins], 1)
    log_power = np.log10(sums / counts + 1e-9)
    nu = (np.arange(bins) + 0.5) / bins
    best = 1.0
    for f in (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0):
        c = 1.0 / f
        above = log_power[(nu > c * 1.08) & (nu < min(1.0, c * 1.6))].mean()
        below = log_power[(nu > c * 0.75) & (nu < c * 0.95)].mean()
        if below - above > SPECTRAL_DROP:
            best = f
    return best


def _upscale(image: np.ndarray, context: CheckContext) -> CheckResult:
    from ._pixels import luma

    h, w = image.shape[:2]
    lo, hi = UPSCALE_RANGE
    if context.expected_upscale is None:  # nothing to compare with: skip the spectrum
        return CheckResult(item="export.upscale", status="not_applicable", threshold=hi,
                           explanation="No upscale was recorded, so there is nothing to compare.")
    n = min(512, min(h, w) // 2 * 2)
    cy, cx = h // 2, w // 2
    est = estimate_upscale(luma(image[cy - n // 2:cy + n // 2, cx - n // 2:cx + n // 2]))
    f = context.expected_upscale
    problems = []
    if not lo <= f <= hi:
        problems.append(f"the finishing upscale was {f:g}x, outside {lo:g}-{hi:g}x")
    status: Status = "fail" if problems else "pass"
    return CheckResult(item="export.upscale", status=status, measured=float(f), threshold=hi,
                       explanation=("Upscale problem: " + "; ".join(problems) + "." if problems else
                                    f"Upscaled {f:g}x (the pixels read as about {est:g}x), within {lo:g}-{hi:g}x."))


def _label(meta: dict[str, str], context: CheckContext) -> CheckResult:
    dst = meta.get("digital_source_type", "")
    ok = any(dst.endswith(t) for t in AI_SOURCE_TYPES)
    status: Status = "pass" if ok else ("fail" if context.require_label else "warn")
    return CheckResult(item="export.label", status=status, measured=1.0 if ok else 0.0, threshold=1.0,
                       explanation=(f"The XMP DigitalSourceType says {dst.rsplit('/', 1)[-1]}: labelled as AI-made."
                                    if ok else "No AI label (XMP Iptc4xmpExt:DigitalSourceType = trainedAlgorithmicMedia); "
                                    "run `portrait label` before publishing."))


def _record(meta: dict[str, str], context: CheckContext) -> CheckResult:
    text = meta.get("parameters", "") + "\n" + meta.get("description", "")
    has_seed = bool(SEED_RE.search(text))
    has_prompt = len(text.strip()) > 0
    ok = has_seed and has_prompt
    status: Status = "pass" if ok else ("fail" if context.require_label else "warn")
    where = "PNG 'parameters'" if "parameters" in meta else "XMP description"
    return CheckResult(item="export.record", status=status, measured=1.0 if ok else 0.0, threshold=1.0,
                       explanation=(f"The prompt and seed are recorded in the {where}: the image can be reproduced."
                                    if ok else "No prompt/seed record (PNG 'parameters' text or XMP description with "
                                    "'Seed: N'); the image cannot be reproduced from its file."))


HALO_MAX = 0.7
"""Median overshoot on both sides of the strongest edges, as a share of the edge's own contrast.
Natural and normally sharpened photos measure low; an overdone unsharp mask rings visibly."""


def halo_measure(image: np.ndarray, face_box: tuple[int, int, int, int] | None) -> tuple[float, list[int]]:
    """Overshoot ('halo') at strong edges on a native-resolution crop around the face (or centre)."""
    import cv2

    from ._pixels import clip_box, luma

    h, w = image.shape[:2]
    if face_box is not None:
        cx, cy = (face_box[0] + face_box[2]) // 2, (face_box[1] + face_box[3]) // 2
        half = max(64, int(1.2 * (face_box[2] - face_box[0])))
    else:
        cx, cy, half = w // 2, h // 2, 384
    half = min(half, 384)
    box = clip_box([cx - half, cy - half, cx + half, cy + half], w, h)
    g = luma(image[box[1]:box[3], box[0]:box[2]]).astype(np.float32)
    if min(g.shape) < 32:
        return 0.0, box
    sm = cv2.GaussianBlur(g, (0, 0), 1.0)
    gx, gy = cv2.Sobel(sm, cv2.CV_32F, 1, 0), cv2.Sobel(sm, cv2.CV_32F, 0, 1)
    mag = np.hypot(gx, gy)
    mag[:8], mag[-8:], mag[:, :8], mag[:, -8:] = 0, 0, 0, 0
    thr = np.percentile(mag, 98)
    ys, xs = np.nonzero(mag >= max(thr, 20.0))
    if len(xs) < 20:
        return 0.0, box
    if len(xs) > 4000:
        pick = np.linspace(0, len(xs) - 1, 4000).astype(int)
        ys, xs = ys[pick], xs[pick]
    nx, ny = gx[ys, xs] / mag[ys, xs], gy[ys, xs] / mag[ys, xs]
    ts = np.arange(-6, 7, dtype=np.float32)
    mx = (xs[:, None] + nx[:, None] * ts[None, :]).astype(np.float32)
    my = (ys[:, None] + ny[:, None] * ts[None, :]).astype(np.float32)
    prof = cv2.remap(g, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    hi_plateau = prof[:, 11:13].mean(1)
    lo_plateau = prof[:, 0:2].mean(1)
    over = np.maximum(0, prof[:, 7:10].max(1) - hi_plateau)
    under = np.maximum(0, lo_plateau - prof[:, 3:6].min(1))
    contrast = np.abs(hi_plateau - lo_plateau) + 4.0
    return float(np.median((over + under) / contrast)), box


def _sharpening(image: np.ndarray, analysis: Analysis) -> CheckResult:
    halo, box = halo_measure(image, analysis.face_box)
    status: Status = "fail" if halo > HALO_MAX else "pass"
    return CheckResult(
        item="export.sharpening", status=status, measured=round(halo, 3), threshold=HALO_MAX, region=box,
        explanation=(f"Edges overshoot by {halo * 100:.0f}% of their contrast on both sides; "
                     + ("the image is oversharpened (bright and dark halos): sharpen less." if status == "fail"
                        else "no sharpening halos.")))
