"""Sandbox result images: real photos, deterministic per request.

A text-to-image answer is built from scikit-image's public-domain astronaut portrait
(Eileen Collins), cropped around her face, maybe mirrored and colour graded by a
generator seeded with (seed, prompt). Face checks downstream therefore find a real
face, the same request always gives the same pixels, and different seeds differ.

A request that sends an image gets an answer *derived from that image*, the way a
user would see it (`render_task` picks by the fields each API uses):
- edit (Kontext `input_image`, FLUX.2 `input_image*` / `image_urls` / `input_images`):
  the first image, same framing, with a look keyed on the instruction's words (warm,
  cool, black-and-white, cinematic, film, soft light, dramatic, bright, editorial; any
  other instruction gets a subtle generic change);
- fill (an image and a mask, white = repaint): changed inside the mask only;
- img2img and image prompts: the image re-graded (by `strength`) or gently re-framed;
- upscale: the image enlarged to the requested size, with a little sharpening.
The file says it is sandbox output in its metadata (PNG text / JPEG comment / WebP
XMP), never painted over the face.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import random
from functools import cache
from typing import Any

from PIL import Image, ImageChops, ImageEnhance, ImageFilter, ImageOps, PngImagePlugin

from ..providers._hosted import SANDBOX_MARK, carries_sandbox_mark

__all__ = [
    "SANDBOX_MARK",
    "apply_look",
    "corrupt",
    "decode_input",
    "is_sandbox_image",
    "render",
    "render_derived",
    "render_task",
    "size_for_aspect",
]

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
    return carries_sandbox_mark(img)


def corrupt(data: bytes) -> bytes:
    """The first part of an image file: it starts like an image but does not decode."""
    return data[: max(64, len(data) // 3)]


# --- answers derived from the submitted image ---------------------------------------------
def decode_input(value: Any) -> Image.Image | None:
    """An input image as the APIs take it: a data URI (fal, Replicate), raw base64 (BFL) or an
    https URL (which the sandbox never fetches: the astronaut stands in). None if unreadable."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith(("http://", "https://")):
        return _photo().resize((1024, 1024), Image.Resampling.BICUBIC)
    payload = value.split(";base64,", 1)[1] if value.startswith("data:") and ";base64," in value else value
    try:
        img = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        img.load()
        return img
    except (binascii.Error, ValueError, OSError):
        return None


_EDIT_FIELDS = ("input_image", "input_images", "image_urls")


def _inputs(model: str, body: dict[str, Any]) -> tuple[str, Any, Any, float | None]:
    """(kind, source value, mask value, strength) from a request body, by each API's field names."""
    mask = body.get("mask") or body.get("mask_url")
    for name in _EDIT_FIELDS:
        value = body.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        if value:
            return ("fill" if mask else "edit"), value, mask, None
    if "upscale" in model or "esrgan" in model or "aura-sr" in model:
        return "upscale", body.get("image_url") or body.get("image"), None, None
    image_url = body.get("image_url")
    if mask and (body.get("image") or image_url):
        return "fill", body.get("image") or image_url, mask, None
    if image_url and "kontext" in model:
        return "edit", image_url, None, None
    if body.get("image") or (image_url and "image-to-image" in model):
        strength = body.get("prompt_strength", body.get("strength"))
        return "img2img", body.get("image") or image_url, None, float(strength) if strength is not None else 0.8
    if body.get("image_prompt") or image_url:
        strength = body.get("image_prompt_strength")
        return "reference", body.get("image_prompt") or image_url, None, float(strength) if strength is not None else 0.1
    return "generate", None, None, None


def render_task(task: Any, *, blank: bool = False) -> bytes:
    """The result image of a sandbox task: derived from its input image when it sent one."""
    kind, source, mask, strength = _inputs(task.model, task.body)
    src = decode_input(source) if source is not None else None
    if src is None:
        return render(seed=task.seed, prompt=task.prompt, width=task.width, height=task.height,
                      output_format=task.output_format, blank=blank)
    return render_derived(src, kind=kind, mask=decode_input(mask) if mask is not None else None,
                          strength=strength, seed=task.seed, prompt=task.prompt, width=task.width,
                          height=task.height, output_format=task.output_format, blank=blank)


def render_derived(source: Image.Image, *, kind: str, seed: int, prompt: str, width: int, height: int,
                   output_format: str = "png", mask: Image.Image | None = None, strength: float | None = None,
                   blank: bool = False) -> bytes:
    """What a FLUX edit/fill/reference/upscale would plausibly return for `source`. Pure:
    the same inputs give the same pixels."""
    digest = hashlib.sha256(f"{kind}\x00{seed}\x00{prompt}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    base = ImageOps.exif_transpose(source).convert("RGB")
    if kind == "fill":
        img = _fill(base, mask, prompt, rng)
        img = img.resize((width, height), Image.Resampling.LANCZOS) if img.size != (width, height) else img
    elif kind == "upscale":
        img = base.resize((width, height), Image.Resampling.LANCZOS)
        img = img.filter(ImageFilter.UnsharpMask(radius=2, percent=60, threshold=2))
    elif kind == "reference":  # a remix: same person, gently re-framed and re-graded
        img = _reframe(base, width / height, rng, max_shift=0.04).resize((width, height), Image.Resampling.LANCZOS)
        img = apply_look(img, prompt, rng, amount=0.6)
    elif kind == "img2img":  # how far it moves from the input follows the denoise strength
        img = ImageOps.fit(base, (width, height), Image.Resampling.LANCZOS)
        looked = apply_look(img, prompt, rng, amount=1.0)
        img = Image.blend(img, looked, max(0.15, min(1.0, strength if strength is not None else 0.8)))
    else:  # edit: same framing, the instruction's look
        img = ImageOps.fit(base, (width, height), Image.Resampling.LANCZOS)
        img = apply_look(img, prompt, rng, amount=1.0)
    if blank:
        img = Image.new("RGB", (width, height))
    return _encode(img, output_format, seed)


def _reframe(img: Image.Image, aspect: float, rng: random.Random, max_shift: float) -> Image.Image:
    """A crop of `img` with `aspect`, shifted and zoomed by at most `max_shift` of its size."""
    w, h = img.size
    cw, ch = (w, w / aspect) if w / h <= aspect else (h * aspect, h)
    zoom = 1 - rng.uniform(0, max_shift)
    cw, ch = cw * zoom, ch * zoom
    x0 = (w - cw) / 2 + rng.uniform(-1, 1) * max_shift * w / 2
    y0 = (h - ch) / 2 + rng.uniform(-1, 1) * max_shift * h / 2
    x0, y0 = min(max(0.0, x0), w - cw), min(max(0.0, y0), h - ch)
    return img.crop((round(x0), round(y0), round(x0 + cw), round(y0 + ch)))


def _fill(base: Image.Image, mask: Image.Image | None, prompt: str, rng: random.Random) -> Image.Image:
    """Repaint where the mask is white: the region cleaned (small specks smoothed away), its
    edges crisped and its tone shifted, so it visibly changes (and a soft region comes back
    sharper, as a real inpaint would redraw it) while everything outside stays as it was."""
    if mask is None:
        if base.mode != "RGBA":
            return apply_look(base, prompt, rng, amount=0.5)
        mask = ImageOps.invert(base.getchannel("A"))
    region = mask.convert("L").resize(base.size, Image.Resampling.NEAREST)
    repainted = base.filter(ImageFilter.MedianFilter(3))
    repainted = repainted.filter(ImageFilter.UnsharpMask(radius=max(1.5, min(base.size) / 256), percent=180,
                                                         threshold=1))
    repainted = apply_look(repainted, prompt, rng, amount=1.0, generic_strength=2.0)
    repainted = ImageEnhance.Brightness(repainted).enhance(rng.choice((0.9, 1.1)))
    feather = region.filter(ImageFilter.GaussianBlur(radius=1.5))
    feather = ImageChops.multiply(feather, region.filter(ImageFilter.MaxFilter(5)))  # no spill outside the mask
    return Image.composite(repainted, base, feather)


_LOOKS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("black-and-white", "black and white", "monochrome", "b&w", "grayscale", "greyscale", "noir"), "mono"),
    (("cinematic", "teal", "blockbuster", "anamorphic"), "cinematic"),
    (("film", "portra", "kodak", "fuji", "analog", "grain", "35mm film"), "film"),
    (("warm", "golden", "sunset", "tungsten", "amber"), "warm"),
    (("cool", "cold", "blue hour", "icy", "winter"), "cool"),
    (("soft light", "soften", "softer", "soft", "diffuse", "dreamy"), "soft"),
    (("dramatic", "high contrast", "moody", "low key", "low-key", "chiaroscuro"), "dramatic"),
    (("bright", "airy", "high key", "high-key", "lifestyle", "sunny"), "bright"),
    (("editorial", "magazine", "fashion", "vivid", "punchy"), "editorial"),
)


def look_of(prompt: str) -> str:
    """The look an instruction asks for, by its words ('generic' when none is named)."""
    import re

    text = prompt.lower()
    for words, look in _LOOKS:
        if any(re.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", text) for w in words):
            return look
    return "generic"


def apply_look(img: Image.Image, prompt: str, rng: random.Random, *, amount: float = 1.0,
               generic_strength: float = 1.0) -> Image.Image:
    """`img` graded the way `prompt` asks, blended in by `amount` (0 = unchanged)."""
    look = look_of(prompt)
    out = img.convert("RGB")
    if look == "mono":
        out = ImageOps.grayscale(out).convert("RGB")
        out = ImageEnhance.Contrast(out).enhance(1.15)
    elif look == "cinematic":
        out = _tint(ImageEnhance.Contrast(out).enhance(1.2), (1.08, 1.0, 0.9), shadows=(0.85, 1.0, 1.12))
        out = _vignette(out, 0.35)
    elif look == "film":
        out = ImageEnhance.Contrast(out).enhance(0.85)
        out = out.point(lambda v: int(24 + v * (255 - 36) / 255))  # lifted blacks, rolled-off whites
        out = _tint(out, (1.04, 1.0, 0.94))
        out = _grain(out, rng, 10)
    elif look == "warm":
        out = _tint(out, (1.12, 1.02, 0.85))
    elif look == "cool":
        out = _tint(out, (0.88, 0.98, 1.14))
    elif look == "soft":
        glow = out.filter(ImageFilter.GaussianBlur(radius=max(1.5, min(out.size) / 200)))
        out = Image.blend(ImageEnhance.Contrast(out).enhance(0.8), glow, 0.25)
        out = ImageEnhance.Brightness(out).enhance(1.05)
    elif look == "dramatic":
        out = ImageEnhance.Brightness(ImageEnhance.Contrast(out).enhance(1.35)).enhance(0.88)
        out = _vignette(out, 0.45)
    elif look == "bright":
        out = ImageEnhance.Contrast(ImageEnhance.Brightness(out).enhance(1.15)).enhance(0.88)
    elif look == "editorial":
        out = ImageEnhance.Color(ImageEnhance.Contrast(out).enhance(1.15)).enhance(1.12)
    else:  # "remove the stray hair", "change the sweater to navy": a subtle, seeded change
        gains = tuple(1 + rng.choice((-1, 1)) * rng.uniform(0.03, 0.06) * generic_strength for _ in range(3))
        out = _tint(ImageEnhance.Contrast(out).enhance(1 + 0.06 * generic_strength), gains)  # type: ignore[arg-type]
        out = out.filter(ImageFilter.UnsharpMask(radius=2, percent=40, threshold=3))
    return out if amount >= 1 else Image.blend(img.convert("RGB"), out, max(0.0, amount))


def _tint(img: Image.Image, gains: tuple[float, float, float],
          shadows: tuple[float, float, float] | None = None) -> Image.Image:
    """Per-channel gains (on the highlights when `shadows` gives other gains for the darks)."""
    bands = []
    for band, hi, lo in zip(img.split(), gains, shadows or gains, strict=True):
        bands.append(band.point(lambda v, hi=hi, lo=lo: min(255, int(v * (lo + (hi - lo) * v / 255)))))
    return Image.merge("RGB", bands)


def _vignette(img: Image.Image, strength: float) -> Image.Image:
    w, h = img.size
    small = Image.radial_gradient("L").resize((w, h), Image.Resampling.BILINEAR)  # 0 centre → 255 corners
    dark = ImageEnhance.Brightness(img).enhance(1 - strength)
    return Image.composite(dark, img, small.point(lambda v: min(255, int(max(0, v - 110) * 1.8))))


def _grain(img: Image.Image, rng: random.Random, sigma: float) -> Image.Image:
    """Film grain from a seeded generator (the same request always gets the same grain)."""
    import numpy as np

    pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0.0, sigma, pixels.shape[:2])[..., None]
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
