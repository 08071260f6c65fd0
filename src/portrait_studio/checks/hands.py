"""Hands: five fingers, no extra protrusions, a relaxed pose.

The 21-point hand model always returns five fingers, so it cannot see a sixth one. The
finger count therefore looks at the pixels: the hand's skin (coloured like the hand's own
palm) is sampled on circles around the palm, each run of skin crossing a circle is a finger
(or the wrist), and a finger-like run that none of the five tracked fingers explains is an
extra finger.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..analysis import HAND_FINGERS, Analysis, Hand
from ._pixels import clip_box
from .base import CheckContext, CheckResult, Status

__all__ = ["check_hands"]

EXTRA_MAX = 0
RADII = (1.05, 1.2, 1.35)
"""Sampling circles around the palm centre, in palm sizes (wrist to middle knuckle)."""
MATCH_DEG = 22.0
"""A run of skin is explained by a tracked finger crossing the circle within this many degrees."""
BEND_MAX_DEG = 135.0
"""A finger joint bent more than this (in the image plane, 0 = straight) reads as strained or broken.
Curled fingers holding cards measure up to ~122° on the calibration photo."""


def check_hands(image: np.ndarray, analysis: Analysis, context: CheckContext) -> list[CheckResult]:
    if not analysis.hands:
        if context.hands_expected:
            return [CheckResult(item=i, status="warn", explanation="The brief shows hands, but none were found.")
                    for i in ("hands.fingers", "hands.pose")]
        return [CheckResult(item=i, status="not_applicable", explanation="No hands are visible.")
                for i in ("hands.fingers", "hands.pose")]
    return [_fingers(image, analysis), _pose(analysis)]


PALM_STANDARD = 60.0
"""Hands whose palm is larger than this (pixels) are measured on a downscaled crop."""


def _hand_skin(image: np.ndarray, hand: Hand) -> tuple[np.ndarray, list[int], float]:
    """Skin mask around one hand, coloured like its own palm (robust to warm backgrounds), on a crop
    scaled by the returned factor so the palm is at most `PALM_STANDARD` pixels."""
    import cv2

    s = hand.palm_size
    c = hand.palm_center
    box = clip_box([c[0] - 2.2 * s, c[1] - 2.2 * s, c[0] + 2.2 * s, c[1] + 2.2 * s], image.shape[1], image.shape[0])
    crop = image[box[1]:box[3], box[0]:box[2]]
    k = min(1.0, PALM_STANDARD / max(1.0, s))
    if k < 1.0:
        crop = cv2.resize(crop, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(np.float32)
    palm = np.zeros(crop.shape[:2], np.uint8)
    pts = np.multiply(hand.landmarks[[0, 1, 5, 9, 13, 17], :2] - np.array(box[:2], np.float32), k)
    cv2.fillConvexPoly(palm, np.round(pts).astype(np.int32), (1,))
    sample = lab[palm.astype(bool)]
    if len(sample) < 20:
        return np.zeros(crop.shape[:2], bool), box, k
    mean = np.median(sample, axis=0)
    spread = np.maximum(np.percentile(np.abs(sample - mean), 85, axis=0), [18.0, 6.0, 6.0])
    d = np.abs(lab - mean) / (spread * 1.8)
    mask = (d.max(-1) <= 1.0).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    # keep the component(s) touching the palm
    _, labels = cv2.connectedComponents(mask)
    keep = np.unique(labels[palm.astype(bool) & (mask > 0)])
    return np.isin(labels, keep[keep > 0]), box, k


def _runs(samples: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of True runs on a circular sample."""
    n = len(samples)
    if samples.all() or not samples.any():
        return []
    start = int(np.argmin(samples))  # begin on a False sample
    rolled = np.roll(samples, -start)
    out, i = [], 0
    while i < n:
        if rolled[i]:
            j = i
            while j < n and rolled[j]:
                j += 1
            out.append(((i + start) % n, j - i))
            i = j
        else:
            i += 1
    return out


def _crossing_angles(hand: Hand, center: np.ndarray, radius: float) -> list[float]:
    """Angles (degrees) where each tracked finger's polyline crosses the circle."""
    p = hand.landmarks[:, :2]
    angles = []
    for chain in HAND_FINGERS.values():
        pts = [p[0]] + [p[i] for i in chain] if chain[0] == 1 else [p[i] for i in chain]
        for a, b in itertools.pairwise(pts):
            da, db = np.linalg.norm(a - center), np.linalg.norm(b - center)
            if (da - radius) * (db - radius) <= 0 and da != db:
                t = (radius - da) / (db - da)
                q = a + t * (b - a)
                angles.append(math.degrees(math.atan2(q[1] - center[1], q[0] - center[0])))
        tip = p[chain[-1]]
        if np.linalg.norm(tip - center) < radius:  # a curled finger: it ends inside the circle
            angles.append(math.degrees(math.atan2(tip[1] - center[1], tip[0] - center[0])))
    return angles


def _extra_fingers(image: np.ndarray, hand: Hand) -> int:
    mask, box, k = _hand_skin(image, hand)
    if not mask.any():
        return 0
    s = hand.palm_size * k
    c = np.multiply(hand.palm_center - np.array(box[:2], np.float32), k)
    wrist = np.multiply(hand.landmarks[0, :2] - np.array(box[:2], np.float32), k)
    wrist_angle = math.degrees(math.atan2(wrist[1] - c[1], wrist[0] - c[0]))
    extras = []
    for k in RADII:
        r = k * s
        n = max(90, int(2 * math.pi * r))
        th = np.linspace(0, 2 * math.pi, n, endpoint=False)
        xs = np.clip(np.round(c[0] + r * np.cos(th)).astype(int), 0, mask.shape[1] - 1)
        ys = np.clip(np.round(c[1] + r * np.sin(th)).astype(int), 0, mask.shape[0] - 1)
        inside = (c[0] + r * np.cos(th) >= 0) & (c[0] + r * np.cos(th) < mask.shape[1])
        inside &= (c[1] + r * np.sin(th) >= 0) & (c[1] + r * np.sin(th) < mask.shape[0])
        samples = mask[ys, xs] & inside
        crossings = _crossing_angles(hand, hand.palm_center, r / k)
        extra = 0
        for start, length in _runs(samples):
            width_px = length * 2 * math.pi * r / n
            if not 0.08 * s <= width_px <= 0.4 * s:  # finger-wide only
                continue
            mid = math.degrees(th[(start + length // 2) % n])
            half = 180.0 * length / n
            if abs((mid - wrist_angle + 180) % 360 - 180) < 50:
                continue
            if any(abs((a - mid + 180) % 360 - 180) <= half + MATCH_DEG for a in crossings):
                continue
            if _skin_beyond(mask, c, math.radians(mid), r, s) > 0.85:  # an arm or face, not a fingertip
                continue
            extra += 1
        extras.append(extra)
    return int(min(extras))  # a finger crosses every circle; clutter rarely does


def _skin_beyond(mask: np.ndarray, c: np.ndarray, angle: float, r: float, s: float) -> float:
    """Share of skin along the ray from r + 0.6 to r + 1.2 palm sizes: fingers end, arms do not."""
    radii = np.linspace(r + 0.6 * s, r + 1.2 * s, 12)
    xs = np.round(c[0] + radii * math.cos(angle)).astype(int)
    ys = np.round(c[1] + radii * math.sin(angle)).astype(int)
    ok = (xs >= 0) & (xs < mask.shape[1]) & (ys >= 0) & (ys < mask.shape[0])
    return float(mask[ys[ok], xs[ok]].mean()) if ok.any() else 0.0


def _fingers(image: np.ndarray, analysis: Analysis) -> CheckResult:
    counts = [_extra_fingers(image, h) for h in analysis.hands]
    worst = int(np.argmax(counts))
    n = counts[worst]
    hand = analysis.hands[worst]
    s = hand.palm_size
    c = hand.palm_center
    region = clip_box([c[0] - 1.6 * s, c[1] - 1.6 * s, c[0] + 1.6 * s, c[1] + 1.6 * s], *analysis.shape[::-1])
    status: Status = "fail" if n > EXTRA_MAX else "pass"
    return CheckResult(
        item="hands.fingers", status=status, measured=float(5 + n), threshold=5.0, region=region,
        explanation=(f"Hand {worst + 1} of {len(counts)} shows {n} finger-like protrusion(s) beyond the five tracked "
                     "fingers: an extra or fused finger." if n else
                     f"All {len(counts)} hand(s) show no more than five fingers."))


def _angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Bend at b in degrees (0 = straight)."""
    u, v = b - a, c - b
    cos = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-6))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def _pose(analysis: Analysis) -> CheckResult:
    worst_bend, where = 0.0, (0, "")
    for i, hand in enumerate(analysis.hands):
        p = hand.landmarks[:, :3]
        for name, chain in HAND_FINGERS.items():
            pts = [p[0]] + [p[j] for j in chain]
            for a, b, c in zip(pts[:-2], pts[1:-1], pts[2:]):
                bend = _angle(a, b, c)
                if bend > worst_bend:
                    worst_bend, where = bend, (i, name)
    i, name = where
    status: Status = "fail" if worst_bend > BEND_MAX_DEG else "pass"
    return CheckResult(
        item="hands.pose", status=status, measured=round(worst_bend, 1), threshold=BEND_MAX_DEG,
        region=list(analysis.hands[i].box),
        explanation=(f"Hand {i + 1}'s {name} finger bends {worst_bend:.0f}° at one joint: strained or broken-looking."
                     if status == "fail" else f"Finger joints bend at most {worst_bend:.0f}°: a relaxed, natural pose."))
