"""Contact sheets and side-by-side compare grids: labelled images a photographer can scan.

Every tile is scaled to the same height (the same zoom for same-size images), and carries
a caption block under it, never over the face.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, ConfigDict

from .files import atomic_save_image

__all__ = ["Tile", "contact_sheet", "side_by_side"]

STATUS_COLOURS = {"pass": (46, 160, 67), "warn": (210, 153, 34), "fail": (218, 54, 51), None: (120, 120, 120)}


class Tile(BaseModel):
    """One image and the lines printed under it."""

    model_config = ConfigDict(frozen=True)

    path: str
    lines: tuple[str, ...]
    status: str | None = None
    badge: str | None = None


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _tile_image(tile: Tile, height: int) -> Image.Image:
    with Image.open(tile.path) as src:
        rgb = src.convert("RGB")
    width = max(1, round(rgb.width * height / rgb.height))
    return rgb.resize((width, height), Image.Resampling.LANCZOS)


def _render(tiles: Sequence[Tile], columns: int, tile_height: int, title: str | None) -> Image.Image:
    if not tiles:
        raise ValueError("no images to lay out")
    images = [_tile_image(t, tile_height) for t in tiles]
    cell_w = max(im.width for im in images)
    font = _font(max(12, tile_height // 28))
    line_h = int(font.size * 1.35) if hasattr(font, "size") else 14
    caption_h = line_h * max(len(t.lines) for t in tiles) + 12
    pad = 12
    title_h = (line_h * 2) if title else 0
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new(
        "RGB",
        (pad + columns * (cell_w + pad), pad + title_h + rows * (tile_height + caption_h + pad)),
        (250, 250, 248),
    )
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill=(20, 20, 20), font=_font(max(14, tile_height // 22)))
    for i, (tile, im) in enumerate(zip(tiles, images, strict=True)):
        col, row = i % columns, i // columns
        x = pad + col * (cell_w + pad) + (cell_w - im.width) // 2
        y = pad + title_h + row * (tile_height + caption_h + pad)
        sheet.paste(im, (x, y))
        colour = STATUS_COLOURS.get(tile.status, STATUS_COLOURS[None])
        draw.rectangle([x - 3, y - 3, x + im.width + 2, y + tile_height + 2], outline=colour, width=3)
        if tile.badge:
            bw = int(draw.textlength(tile.badge, font=font)) + 10
            draw.rectangle([x, y, x + bw, y + line_h + 4], fill=(20, 20, 20))
            draw.text((x + 5, y + 2), tile.badge, fill=(255, 255, 255), font=font)
        for j, line in enumerate(tile.lines):
            draw.text((x, y + tile_height + 6 + j * line_h), line, fill=(30, 30, 30) if j == 0 else (90, 90, 90), font=font)
    return sheet


def contact_sheet(tiles: Sequence[Tile], out: Path, *, columns: int | None = None, tile_height: int = 384,
                  title: str | None = None) -> Path:
    """A labelled grid of a shoot's candidates (seed, model, cost, time, check status)."""
    columns = columns or min(len(tiles), 5)
    atomic_save_image(_render(tiles, columns, tile_height, title), out)
    return out


def side_by_side(tiles: Sequence[Tile], out: Path, *, tile_height: int = 512, title: str | None = None) -> Path:
    """Models side by side in one row (a compare grid); 4 at most, like hosted compare pages."""
    if len(tiles) > 4:
        raise ValueError("a compare grid shows at most 4 models")
    atomic_save_image(_render(tiles, len(tiles), tile_height, title), out)
    return out
