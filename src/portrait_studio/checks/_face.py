"""A face seen at a standard scale, so measurements do not depend on how big the face is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..analysis import Face
from ._pixels import luma

__all__ = ["FaceView", "face_view"]

STANDARD_WIDTH = 200
"""Faces larger than this are downscaled to it (INTER_AREA) before texture measurements."""


@dataclass(frozen=True)
class FaceView:
    rgb: np.ndarray
    gray: np.ndarray
    scale: float
    origin: tuple[int, int]
    face: Face

    def mask(self, group: tuple[int, ...]) -> np.ndarray:
        import cv2

        pts = (self.face.points(group) - np.array(self.origin, np.float32)) * self.scale
        m = np.zeros(self.gray.shape, np.uint8)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], (1,))
        return m.astype(bool)

    def to_image(self, box: list[int]) -> list[int]:
        """Map a box in this view back to image pixels."""
        ox, oy = self.origin
        return [int(ox + box[0] / self.scale), int(oy + box[1] / self.scale),
                int(ox + box[2] / self.scale), int(oy + box[3] / self.scale)]


def face_view(rgb: np.ndarray, face: Face, width: int = STANDARD_WIDTH, pad: float = 0.15) -> FaceView:
    """Crop the face (mesh extent plus `pad`) and downscale it so it is at most `width` wide."""
    import cv2

    pts = face.landmarks[:, :2] if face.landmarks is not None else np.array([face.box[:2], face.box[2:]], np.float32)
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    dx, dy = (x1 - x0) * pad, (y1 - y0) * pad
    h, w = rgb.shape[:2]
    bx0, by0 = max(0, int(x0 - dx)), max(0, int(y0 - dy))
    bx1, by1 = min(w, int(x1 + dx) + 1), min(h, int(y1 + dy) + 1)
    crop = rgb[by0:by1, bx0:bx1]
    scale = min(1.0, width / max(1.0, float(x1 - x0)))
    if scale < 1.0:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    crop = np.ascontiguousarray(crop)
    return FaceView(rgb=crop, gray=luma(crop), scale=scale, origin=(bx0, by0), face=face)
