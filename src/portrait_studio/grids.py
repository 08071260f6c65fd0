"""Contact sheets and side-by-side compare grids: labelled images a photographer can scan.

Every tile is scaled to the same height (the same zoom for same-size images), and carries
a caption block under it, never over the face. Text is set in DejaVu Sans, which matplotlib
(a dependency) ships, so "Café", "Zoë" or "→" render instead of empty boxes. A legend under
the grid says what the frame colours mean; a failed candidate says which checks failed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, ConfigDict

from . import ranking
from .files import atomic_save_image

__all__ = ["LEGEND", "STATUS_COLOURS", "Tile", "candidate_tile", "contact_sheet", "fail_reason", "font_path",
           "side_by_side"]

STATUS_COLOURS = {"pass": (46, 160, 67), "warn": (210, 153, 34), "fail": (218, 54, 51), None: (120, 120, 120)}
LEGEND = (("pass", "pass: checklist passed"), ("warn", "warn: passed with warnings"),
          ("fail", "fail: a check failed"), (None, "grey: not checked"))
RANK_NOTE = ranking.RULE

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


class Tile(BaseModel):
    """One image and the lines printed under it; `reason` says why it failed (drawn in red)."""

    model_config = ConfigDict(frozen=True)

    path: str
    lines: tuple[str, ...]
    status: str | None = None
    badge: str | None = None
    reason: str | None = None


@lru_cache(maxsize=4)
def font_path(bold: bool = False) -> Path | None:
    """DejaVu Sans from matplotlib's own data folder (it covers Latin, Greek, Cyrillic, arrows).

    Found from the package's location, not by importing matplotlib (a third of a second that every
    contact sheet would pay)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("matplotlib")
    except (ImportError, ValueError):  # pragma: no cover - matplotlib is a core dependency
        spec = None
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover
        return None
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    path = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf" / name
    return path if path.is_file() else None


@lru_cache(maxsize=32)
def _font(size: int, bold: bool = False) -> Font:
    path = font_path(bold)
    if path is not None:
        return ImageFont.truetype(str(path), size)
    try:  # pragma: no cover - only without matplotlib
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


_SHEET_ZLIB = 1
"""Sheets are previews made at every run's end: fast zlib (a fifth of the time, a somewhat larger file)."""


def warm_up() -> None:
    """Load the fonts a contact sheet and a compare grid use (their default tile heights)."""
    for height in (384, 512):
        _font(max(12, height // 28))
        _font(max(14, height // 22), bold=True)


def fail_reason(checklist: dict[str, Any] | None, limit: int = 3) -> str | None:
    """'failed: lighting.pattern, hands.count' from a stored checklist (None when nothing failed)."""
    if not checklist:
        return None
    failed = [str(it.get("item")) for it in checklist.get("items", []) if it.get("status") == "fail"]
    if not failed:
        return None
    more = f" +{len(failed) - limit}" if len(failed) > limit else ""
    return "failed: " + ", ".join(failed[:limit]) + more


def candidate_tile(image: Any, rank: int, checklist: dict[str, Any] | None = None) -> Tile:
    """The contact-sheet tile of a ranked candidate (an ImageRow): rank, model, seed, cost, time, verdict."""
    seconds = (image.timings or {}).get("total_s", 0)
    return Tile(
        path=image.out_path if image.out_path and Path(image.out_path).is_file() else image.path,
        lines=(f"#{rank} {image.model} · seed {image.seed}",
               f"${image.cost_usd:.3f} · {seconds:.1f}s · check {image.check_overall or 'n/a'}"),
        status=image.check_overall,
        badge="SANDBOX" if image.sandbox else None,
        reason=fail_reason(checklist),
    )


def _tile_image(tile: Tile, height: int) -> Image.Image:
    with Image.open(tile.path) as src:
        rgb = src.convert("RGB")
    width = max(1, round(rgb.width * height / rgb.height))
    return rgb.resize((width, height), Image.Resampling.LANCZOS)


def _tile_images(tiles: Sequence[Tile], height: int) -> list[Image.Image]:
    """Every tile's picture, decoded in threads (Pillow releases the GIL while it decodes and
    resizes): a 3-seed sheet of 0.8 MP PNGs is ready in 0.08 s instead of 0.13 s."""
    if len(tiles) < 2:
        return [_tile_image(t, height) for t in tiles]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(tiles), os.cpu_count() or 1, 4),
                            thread_name_prefix="portrait-sheet") as pool:
        return list(pool.map(lambda t: _tile_image(t, height), tiles))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels; a word longer than the line is split."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        trial = f"{current} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not current:
            current = trial
        else:
            lines.append(current)
            current = word
        while draw.textlength(current, font=font) > width and len(current) > 1:
            cut = len(current) - 1
            while cut > 1 and draw.textlength(current[:cut], font=font) > width:
                cut -= 1
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    return lines


def _caption(draw: ImageDraw.ImageDraw, tile: Tile, font: Font, width: int) -> list[tuple[str, tuple[int, int, int]]]:
    out: list[tuple[str, tuple[int, int, int]]] = []
    for j, line in enumerate(tile.lines):
        colour = (30, 30, 30) if j == 0 else (90, 90, 90)
        out += [(part, colour) for part in _wrap(draw, line, font, width)]
    if tile.reason:
        out += [(part, STATUS_COLOURS["fail"]) for part in _wrap(draw, tile.reason, font, width)]
    return out


Legend = Sequence[tuple[str | None, str]]


def _render(tiles: Sequence[Tile], columns: int, tile_height: int, title: str | None, legend: Legend | None,
            note: str | None) -> Image.Image:
    if not tiles:
        raise ValueError("no images to lay out")
    images = _tile_images(tiles, tile_height)
    cell_w = max(im.width for im in images)
    font = _font(max(12, tile_height // 28))
    size = getattr(font, "size", 12)
    line_h = int(size * 1.35)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    captions = [_caption(scratch, t, font, max(cell_w, 8 * size)) for t in tiles]
    caption_h = line_h * max(len(c) for c in captions) + 12
    pad = 12
    title_font = _font(max(14, tile_height // 22), bold=True)
    title_h = int(getattr(title_font, "size", 14) * 2) if title else 0
    legend_h = line_h * (bool(legend) + bool(note)) + pad if (legend or note) else 0
    rows = math.ceil(len(tiles) / columns)
    texts = [(title, title_font)] if title else []
    texts += [(note, font)] if note else []
    texts += [("    ".join(m for st, m in legend if st in {t.status for t in tiles}), font)] if legend else []
    widest = max((int(scratch.textlength(t, font=f)) + 6 * size for t, f in texts), default=0)
    sheet_w = max(pad + columns * (cell_w + pad), widest + 2 * pad)
    sheet = Image.new("RGB", (sheet_w, pad + title_h + rows * (tile_height + caption_h + pad) + legend_h),
                      (250, 250, 248))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill=(20, 20, 20), font=title_font)
    for i, (tile, im, caption) in enumerate(zip(tiles, images, captions, strict=True)):
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
        for j, (line, fill) in enumerate(caption):
            draw.text((x, y + tile_height + 6 + j * line_h), line, fill=fill, font=font)
    if legend or note:
        _legend(draw, (pad, sheet.height - legend_h), font, line_h, legend or (), note,
                {t.status for t in tiles})
    return sheet


def _legend(draw: ImageDraw.ImageDraw, origin: tuple[int, int], font: Font, line_h: int, legend: Legend,
            note: str | None, shown: set[str | None]) -> None:
    """Frame colour → meaning for the colours on this sheet, then a note (how the rank was decided)."""
    x, y = origin
    box = line_h - 6
    for status, meaning in legend:
        if status not in shown:
            continue
        draw.rectangle([x, y + 3, x + box, y + 3 + box], outline=STATUS_COLOURS.get(status, STATUS_COLOURS[None]),
                       width=3)
        x += box + 6
        draw.text((x, y), meaning, fill=(60, 60, 60), font=font)
        x += int(draw.textlength(meaning, font=font)) + 18
    if note:
        draw.text((origin[0], y + (line_h if legend else 0)), note, fill=(90, 90, 90), font=font)


def contact_sheet(tiles: Sequence[Tile], out: Path, *, columns: int | None = None, tile_height: int = 384,
                  title: str | None = None, legend: Legend | None = LEGEND, note: str | None = RANK_NOTE) -> Path:
    """A labelled grid of a shoot's candidates (seed, model, cost, time, check status) with a legend."""
    columns = columns or min(len(tiles), 5)
    atomic_save_image(_render(tiles, columns, tile_height, title, legend, note), out, compress_level=_SHEET_ZLIB)
    return out


def side_by_side(tiles: Sequence[Tile], out: Path, *, tile_height: int = 512, title: str | None = None,
                 legend: Legend | None = LEGEND) -> Path:
    """Models side by side in one row (a compare grid); 4 at most, like hosted compare pages."""
    if len(tiles) > 4:
        raise ValueError("a compare grid shows at most 4 models")
    atomic_save_image(_render(tiles, len(tiles), tile_height, title, legend, None), out, compress_level=_SHEET_ZLIB)
    return out
