"""Paste a repainted region back onto the original photo, touching nothing else.

Inpainting models (FLUX.1 inpaint/Fill, hosted fill endpoints) re-encode the whole
picture through the VAE, so even pixels outside the mask come back slightly changed.
A region fix must not do that: the face you approved stays byte for byte. `composite`
takes the original, the model's output and the mask, and blends them with a linear
feather that reaches at most `feather_px` pixels beyond the mask. Every pixel farther
than that from the mask is copied from the original unchanged.

Masks follow the inpaint convention: white (255) = repaint, black (0) = keep. Grey
values inside the mask are kept as partial blends.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["composite", "feathered_alpha"]


def feathered_alpha(mask: Image.Image, feather_px: int) -> np.ndarray:
    """The blend weight of the generated image per pixel, float32 in [0, 1], shape (H, W).

    1 inside the mask (its grey level where it is grey), falling linearly to 0 over
    `feather_px` pixels outside it, and exactly 0 beyond.
    """
    if feather_px < 0:
        raise ValueError(f"feather_px must be >= 0, got {feather_px}")
    base = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    inside = base > 0
    if feather_px == 0 or not inside.any():
        return base
    from scipy.ndimage import distance_transform_edt

    distance = distance_transform_edt(~inside)  # 0 inside, >= 1 outside
    ramp = np.clip(1.0 - distance / (feather_px + 1), 0.0, 1.0).astype(np.float32)
    return np.maximum(base, ramp)


def composite(
    original: Image.Image, generated: Image.Image, mask: Image.Image, feather_px: int = 0
) -> Image.Image:
    """`generated` inside the (feathered) `mask`, `original` byte-identical everywhere else.

    `generated` is resized to the original's size if they differ (models snap sizes to
    multiples of 16); `mask` is resized with nearest-neighbour. The result has the
    original's size and mode.
    """
    size, mode = original.size, original.mode
    if generated.size != size:
        generated = generated.resize(size, Image.Resampling.LANCZOS)
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    alpha = feathered_alpha(mask, feather_px)
    orig = np.asarray(original)
    gen = np.asarray(generated.convert(mode))
    a = alpha if orig.ndim == 2 else alpha[..., None]
    blended = np.rint(orig.astype(np.float32) * (1.0 - a) + gen.astype(np.float32) * a)
    out = np.clip(blended, 0, 255).astype(np.uint8)
    keep = alpha == 0.0
    out[keep] = orig[keep]  # the guarantee, stated in code rather than left to float rounding
    return Image.fromarray(out, mode=mode)
