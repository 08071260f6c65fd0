"""The one image loader: every file the studio reads as a picture goes through here.

Why one place: a decompression bomb (a tiny PNG that claims 50,000² pixels), a file that
is not an image, a folder passed where a file belongs and a phone photo stored sideways
(EXIF orientation) must be handled the same way by check, fix, upscale, masks, identity,
the web upload and the sandboxes. Errors name the file and the fix; nothing here decodes
more pixels than `MAX_PIXELS`.
"""

from __future__ import annotations

import os
import warnings
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import StudioError

__all__ = ["MAX_PIXELS", "ImageInputError", "image_size", "open_image", "open_image_bytes"]

MAX_PIXELS = 120_000_000
"""The largest picture the studio opens (about 11,000²): real cameras stay well below, bombs do not."""

# Pillow warns about pictures over 89 MP and refuses those over 179 MP. The studio applies its own
# limit (`max_pixels`, checked on the header before decoding) and says so in its own words, so
# Pillow's warning is silenced here once, for that category only. Not per call with
# `warnings.catch_warnings()`: that is not thread-safe — leaving it restores the whole filter list,
# dropping any filter another thread added meanwhile (the checklist opens images in worker threads
# while libraries load, and one of them lost requests' own "ignore" filter that way).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageInputError(StudioError):
    """A file given as an image cannot be used as one (missing, a folder, not an image, too large)."""


def _describe(source: str) -> str:
    return f"'{source}'"


def _check_path(path: Path) -> None:
    if not path.exists():
        raise ImageInputError(f"image {_describe(str(path))} does not exist", hint="check the path")
    if path.is_dir():
        raise ImageInputError(f"{_describe(str(path))} is a folder, not an image", hint="give an image file (PNG, JPEG or WebP)")
    if not os.access(path, os.R_OK):
        raise ImageInputError(f"image {_describe(str(path))} cannot be read", hint="check the file's permissions")


def _open(fp: str | BytesIO | Path, name: str, max_pixels: int) -> Image.Image:
    try:
        im = Image.open(fp)
        w, h = im.size
        if w * h > max_pixels:
            im.close()
            raise ImageInputError(
                f"image {_describe(name)} claims {w}×{h} pixels ({w * h / 1e6:.0f} MP), over the "
                f"{max_pixels / 1e6:.0f} MP the studio opens",
                hint="downscale it first; a file this large is either a decompression bomb or not a portrait",
            )
        im.load()
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageInputError(f"image {_describe(name)} claims more pixels than the {max_pixels / 1e6:.0f} MP the studio "
                              f"opens ({exc})", hint="downscale it first; a file this large is either a decompression "
                              "bomb or not a portrait") from exc
    except UnidentifiedImageError as exc:
        raise ImageInputError(f"{_describe(name)} is not an image the studio can read ({type(exc).__name__})",
                              hint="give a PNG, JPEG or WebP file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(f"image {_describe(name)} is damaged or truncated: {exc}",
                              hint="re-export or re-download the file") from exc
    return im


def open_image(path: str | os.PathLike[str], *, mode: str | None = "RGB", max_pixels: int = MAX_PIXELS,
               orient: bool = True) -> Image.Image:
    """Open, fully decode and (by default) upright and convert a picture; refuse bombs and non-images."""
    p = Path(path)
    _check_path(p)
    im = _open(p, str(p), max_pixels)
    return _finish(im, mode, orient)


def open_image_bytes(data: bytes, *, name: str = "upload", mode: str | None = "RGB",
                     max_pixels: int = MAX_PIXELS, orient: bool = True) -> Image.Image:
    """`open_image` for bytes already in memory (uploads, provider downloads)."""
    return _finish(_open(BytesIO(data), name, max_pixels), mode, orient)


def _finish(im: Image.Image, mode: str | None, orient: bool) -> Image.Image:
    if orient:
        im = ImageOps.exif_transpose(im) or im
    if mode is not None and im.mode != mode:
        if (mode == "RGB" and im.mode in ("RGBA", "LA", "PA")) or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            base = Image.new("RGB", rgba.size, (255, 255, 255))
            base.paste(rgba, mask=rgba.getchannel("A"))
            im = base if mode == "RGB" else base.convert(mode)
        else:
            im = im.convert(mode)
    return im


def image_size(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the header only, upright; same errors as `open_image`."""
    p = Path(path)
    _check_path(p)
    try:
        with Image.open(p) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    # a warning only where a caller's filter turns warnings into errors (pytest -W error)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageInputError(f"image {_describe(str(p))} claims more pixels than the {max_pixels / 1e6:.0f} MP the "
                              f"studio opens ({exc})", hint="downscale it first") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(f"{_describe(str(p))} is not an image the studio can read",
                              hint="give a PNG, JPEG or WebP file") from exc
    if w * h > max_pixels:
        raise ImageInputError(f"image {_describe(str(p))} claims {w}×{h} pixels, over the {max_pixels / 1e6:.0f} MP "
                              "the studio opens", hint="downscale it first")
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
