"""Sandbox result images: real photos, deterministic per seed and prompt.

Every sandbox answer is built from scikit-image's public-domain astronaut portrait
(Eileen Collins), cropped around her face, maybe mirrored and colour graded by a
generator seeded with (seed, prompt). Face checks downstream therefore find a real
face, the same request always gives the same pixels, and different seeds differ.
The file says it is sandbox output in its metadata (PNG text / JPEG comment / WebP
XMP), never painted over the face.
"""

from __future__ import annotations

import hashlib
import io
import random
from functools import cache

from PIL import Image, ImageEnhance, PngImagePlugin

__all__ = ["SANDBOX_MARK", "corrupt", "is_sandbox_image", "render", "size_for_aspect"]

SANDBOX_MARK = "SANDBOX: made by a Portrait Studio sandbox from a public-domain photo, not by FLUX"

# The astronaut's face lies inside this box of the 512x512 photo (x0, y0, x1, y1).
_FACE_BOX = (130, 20, 300, 230)


@cache
def _photo() -> Image.Image:
    from .photos import astronaut

    return astronaut().convert("RGB")


def size_for_aspect(aspect_ratio: str, megapixels: float = 1.0, multiple: int = 32) -> tuple[int, int]:
    """Width and height for 'W:H' at about `megapixels`, snapped to `multiple`."""
    w, h = (float(p) for p in aspect_ratio.split(":"))
    area = megapixels * 1_000_000
    width = (area * w / h) ** 0.5
    height = width * h / w
    return max(multiple, round(width / multiple) * multiple), max(multiple, round(height / multiple) * multiple)


def _crop_box(rng: random.Random, aspect: float) -> tuple[int, int, int, int]:
    """A crop of the photo with the requested aspect that keeps the whole face in frame."""
    fx0, fy0, fx1, fy1 = _FACE_BOX
    full = 512
    # largest box of this aspect that fits, then shrink by a seeded factor (never below the face)
    cw, ch = (full, full / aspect) if aspect >= 1 else (full * aspect, full)
    min_scale = max((fx1 - fx0) / cw, (fy1 - fy0) / ch, 0.0) + 0.05
    scale = rng.uniform(max(min_scale, 0.7), 1.0)
    cw, ch = cw * scale, ch * scale
    lo_x, hi_x = max(0.0, fx1 - cw), min(fx0, full - cw)
    lo_y, hi_y = max(0.0, fy1 - ch), min(fy0, full - ch)
    x0 = rng.uniform(lo_x, hi_x) if hi_x > lo_x else max(0.0, min(full - cw, (fx0 + fx1 - cw) / 2))
    y0 = rng.uniform(lo_y, hi_y) if hi_y > lo_y else max(0.0, min(full - ch, (fy0 + fy1 - ch) / 2))
    return round(x0), round(y0), round(x0 + cw), round(y0 + ch)


def render(
    *, seed: int, prompt: str, width: int, height: int, output_format: str = "png", blank: bool = False
) -> bytes:
    """The sandbox image for (seed, prompt) at width x height, encoded as `output_format`.

    `blank=True` gives a black frame (what fal returns for NSFW-flagged outputs).
    """
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    img = _photo().crop(_crop_box(rng, width / height))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = img.resize((width, height), Image.Resampling.BICUBIC)
    gains = [rng.uniform(0.85, 1.15) for _ in range(3)]
    channels = [band.point(lambda v, g=g: min(255, int(v * g))) for band, g in zip(img.split(), gains)]
    img = Image.merge("RGB", channels)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.9, 1.1))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.9, 1.15))
    if blank:
        img = Image.new("RGB", (width, height))
    return _encode(img, output_format, seed)


def _encode(img: Image.Image, output_format: str, seed: int) -> bytes:
    out = io.BytesIO()
    fmt = {"jpg": "jpeg"}.get(output_format, output_format)
    note = f"{SANDBOX_MARK}; seed={seed}"
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", note)
        info.add_text("Software", "portrait-studio sandbox")
        img.save(out, "PNG", pnginfo=info, compress_level=1)
    elif fmt == "jpeg":
        img.save(out, "JPEG", quality=92, comment=note.encode())
    elif fmt == "webp":
        xmp = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:description="{note}"/></rdf:RDF></x:xmpmeta>'
        img.save(out, "WEBP", quality=90, xmp=xmp.encode())
    else:
        raise ValueError(f"unknown output format {output_format!r}")
    return out.getvalue()


def is_sandbox_image(img: Image.Image) -> bool:
    """True when a decoded image carries the sandbox mark in its metadata."""
    for key in ("Comment", "comment", "xmp"):
        value = img.info.get(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and "SANDBOX" in value:
            return True
    return False


def corrupt(data: bytes) -> bytes:
    """The first part of an image file: it starts like an image but does not decode."""
    return data[: max(64, len(data) // 3)]
