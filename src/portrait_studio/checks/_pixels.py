"""Small pixel measurements shared by the checks (pure numpy/OpenCV functions)."""

from __future__ import annotations

import numpy as np

__all__ = ["box_of", "channel_max", "channel_min", "clip_box", "disk_mask", "lab", "laplacian_rms", "luma", "points_box",
           "poly_mask", "rect_crop"]


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma as float32 0..255."""
    return rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114)


def channel_min(rgb: np.ndarray) -> np.ndarray:
    """`rgb.min(-1)` for three channels, taken pairwise: numpy reduces over a last axis of three
    twenty times slower."""
    return np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])


def channel_max(rgb: np.ndarray) -> np.ndarray:
    """`rgb.max(-1)` for three channels (see `channel_min`)."""
    return np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])


def lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* as float32 (L 0..100)."""
    import cv2

    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def box_of(mask: np.ndarray, pad: int = 0) -> list[int] | None:
    """[x0, y0, x1, y1] of the True pixels of `mask` (padded and clipped), None if empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    h, w = mask.shape[:2]
    return clip_box([int(xs.min()) - pad, int(ys.min()) - pad, int(xs.max()) + 1 + pad, int(ys.max()) + 1 + pad], w, h)


def clip_box(box: list[int] | tuple[int, ...], w: int, h: int) -> list[int]:
    x0, y0, x1, y1 = (int(v) for v in box)
    return [max(0, x0), max(0, y0), min(w, x1), min(h, y1)]


def rect_crop(img: np.ndarray, box: list[int] | tuple[int, ...]) -> np.ndarray:
    x0, y0, x1, y1 = clip_box(box, img.shape[1], img.shape[0])
    return img[y0:y1, x0:x1]


def disk_mask(shape: tuple[int, int], center: np.ndarray, radius: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (xx - float(center[0])) ** 2 + (yy - float(center[1])) ** 2 <= radius**2


def laplacian_rms(gray: np.ndarray, mask: np.ndarray) -> float:
    """Root-mean-square Laplacian inside `mask`: edge energy, the classic focus measure."""
    import cv2

    lap = cv2.Laplacian(gray.astype(np.float32), cv2.CV_32F, ksize=3)
    vals = lap[mask]
    return float(np.sqrt(np.mean(vals**2))) if vals.size else 0.0


def poly_mask(points: np.ndarray, box: list[int] | tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """Filled polygon of image-pixel `points` on the canvas of `box` ([x0, y0, x1, y1]) at `scale`."""
    import cv2

    h = max(1, round((box[3] - box[1]) * scale))
    w = max(1, round((box[2] - box[0]) * scale))
    m = np.zeros((h, w), np.uint8)
    pts = (np.asarray(points, np.float32)[:, :2] - np.array(box[:2], np.float32)) * scale
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], (1,))
    return m.astype(bool)


def points_box(points: np.ndarray, w: int, h: int, pad: float = 0.0) -> list[int]:
    """Clipped [x0, y0, x1, y1] around image-pixel `points`, grown by `pad` times their extent."""
    p = np.asarray(points, np.float32)[:, :2]
    x0, y0 = p.min(0)
    x1, y1 = p.max(0)
    dx, dy = (x1 - x0) * pad, (y1 - y0) * pad
    return clip_box([int(np.floor(x0 - dx)), int(np.floor(y0 - dy)), int(np.ceil(x1 + dx)) + 1, int(np.ceil(y1 + dy)) + 1], w, h)
