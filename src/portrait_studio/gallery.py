"""The gallery's view of the ledger: filtered pages, one image in detail, run progress, thumbnails,
and which files on disk are the studio's outputs (the only ones the web studio serves).

Thumbnails are small JPEGs made once per image into `<home>/thumbs/ab/<sha256>-<px>.jpg`
(content-addressed, so a cached one never goes stale); the gallery never ships full images.
Each is written under a name of its own and moved into place, so any number of requests (or
processes) may make the same one at once. Queries are plain SQL over the ledger so the first
page stays fast with 10,000 images.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import LedgerError, UsageError
from .imaging import ImageInputError, image_size
from .ledger import ImageRow, Ledger, RunRow

__all__ = [
    "CHECK_STATUSES",
    "GalleryFilter",
    "GalleryPage",
    "ImageDetail",
    "RunProgress",
    "THUMB_PX",
    "RUN_FILES",
    "clean_thumbnail_parts",
    "gallery_page",
    "image_detail",
    "output_file",
    "run_file",
    "run_progress",
    "thumbnail",
    "thumbnail_path",
]

THUMB_PX = 320
CHECK_STATUSES = ("pass", "warn", "fail", "unchecked")


class GalleryFilter(BaseModel):
    """What the user narrowed the gallery to. `check='unchecked'` finds images with no checklist."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str | None = None
    model: str | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**32)
    check: Literal["pass", "warn", "fail", "unchecked"] | None = None
    picked: bool | None = None
    page: int = Field(default=1, ge=1, le=1_000_000)
    per_page: int = Field(default=48, ge=1, le=200)

    def query(self, **changes: Any) -> dict[str, Any]:
        """The filter as URL query parameters (for links), with `changes` applied."""
        data = {**self.model_dump(exclude_defaults=True), **changes}
        return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in data.items() if v is not None}


class GalleryPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    images: list[ImageRow]
    total: int
    filter: GalleryFilter
    runs: list[tuple[str, str]]  # (run id, label) for the run filter
    models: list[str]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.filter.per_page))


def gallery_page(ledger: Ledger, f: GalleryFilter) -> GalleryPage:
    """One page of images, newest first, with the total and the choices for the filters."""
    images, total = ledger.gallery(run_id=f.run, model=f.model, seed=f.seed, check=f.check, picked=f.picked,
                                   limit=f.per_page, offset=(f.page - 1) * f.per_page)
    return GalleryPage(images=images, total=total, filter=f, runs=ledger.run_choices(), models=ledger.models_used())


class ImageDetail(BaseModel):
    """Everything the detail view shows about one image."""

    model_config = ConfigDict(frozen=True)

    image: ImageRow
    run: RunRow | None
    request: dict[str, Any] | None
    checklist: dict[str, Any] | None
    lineage: list[ImageRow]  # the image and its ancestors, newest first
    children: list[ImageRow]  # fixes and upscales made from it
    label: dict[str, Any] | None
    rights: list[dict[str, Any]]


def image_detail(ledger: Ledger, image_id: str) -> ImageDetail:
    image = ledger.image(image_id)
    run = ledger.run(image.run_id) if image.run_id else None
    request = None
    if image.request_id:
        request = ledger.request(image.request_id).request.model_dump(mode="json")
    rights: list[dict[str, Any]] = []
    for ref in (request or {}).get("images", []):
        if ref.get("sha256") and (found := ledger.rights_for(ref["sha256"])):
            rights.append(found)
    return ImageDetail(
        image=image, run=run, request=request, checklist=ledger.checks(image.image_sha256),
        lineage=ledger.lineage(image.image_sha256), children=ledger.children(image.image_sha256),
        label=ledger.label(image.image_sha256), rights=rights,
    )


class RunProgress(BaseModel):
    """How far a run has got, read from the ledger (so it survives a page reload or a restart)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    kind: str
    status: str
    total: int
    done: int
    failed: int
    counts: dict[str, int]
    image_ids: list[str]
    errors: list[str]
    spent_usd: float

    @property
    def finished(self) -> bool:
        return self.status in ("done", "incomplete") or self.done + self.failed >= self.total > 0


def run_progress(ledger: Ledger, run_id: str) -> RunProgress:
    run = ledger.run(run_id)
    counts, errors = ledger.request_counts(run.id)
    ids = ledger.result_ids(run.id)
    failed = counts.get("failed", 0) + counts.get("skipped", 0)
    return RunProgress(
        run_id=run.id, kind=run.kind, status=run.status, total=sum(counts.values()), done=counts.get("done", 0),
        failed=failed, counts=counts, image_ids=ids, errors=errors[:5], spent_usd=ledger.spent(run.id).usd,
    )


# --- thumbnails --------------------------------------------------------------------------------

STALE_PART_S = 600.0
"""A `.part` file older than this was left by a writer that died; younger ones may still be written."""


def thumbnail_path(home: Path, sha256: str, px: int = THUMB_PX) -> Path:
    if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        raise LedgerError(f"'{sha256}' is not an image hash")
    return home / "thumbs" / sha256[:2] / f"{sha256}-{px}.jpg"


def thumbnail(home: Path, image: ImageRow, px: int = THUMB_PX) -> Path:
    """The cached thumbnail of `image` (made on first use): a JPEG whose long side is `px`."""
    path = thumbnail_path(home, image.image_sha256, px)
    if path.exists():
        return path
    from PIL import Image, ImageOps, UnidentifiedImageError

    source = Path(image.path)
    if not source.is_file():
        raise LedgerError(f"the file of image {image.id} is missing: {source}", hint="restore the studio's images/ folder")
    image_size(source)  # refuses a non-image or a decompression bomb by its header, before decoding
    try:
        with Image.open(source) as im:
            im.draft("RGB", (px, px))  # JPEG sources decode at reduced size
            small = ImageOps.exif_transpose(im).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(f"the file of image {image.id} is damaged: {exc}",
                              hint="restore it from a backup, or re-run the shoot") from exc
    small.thumbnail((px, px), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            small.save(fh, "JPEG", quality=82, optimize=True)
        os.replace(tmp, path)  # atomic: a reader sees no thumbnail or a whole one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def clean_thumbnail_parts(home: Path, older_than_s: float = STALE_PART_S) -> int:
    """Delete `.part` files that writers killed mid-way left in the thumbnail cache; returns how many."""
    folder = home / "thumbs"
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for part in folder.glob("*/*.part"):
        try:
            if part.stat().st_mtime < cutoff:
                part.unlink()
                removed += 1
        except FileNotFoundError:  # another process cleaned it, or its writer finished
            continue
    return removed


# --- files the web studio serves ---------------------------------------------------------------

RUN_FILES = re.compile(
    r"run\.json|contact-sheet\.png|compare-grid(-seed\d+)?\.png|comparison\.(md|html)|series-sheet\.png|identity-plot\.png"
)
"""The files a run writes into its folder besides its images (by exact name)."""

_PRIVATE = {"config.toml", "keys.json", "licences.json", "ledger.db", "ledger.db-wal", "ledger.db-shm", "ledger.db-journal"}
_BAD = re.compile(r"[\x00-\x1f\x7f\\]")


def _no_file(ref: str) -> LedgerError:
    return LedgerError(f"no studio file '{ref}'",
                       hint="the studio serves only its outputs: images, contact sheets, grids and run.json of a run")


def _plain_parts(ref: str) -> list[str]:
    if _BAD.search(ref):
        raise UsageError("contains a control character or a backslash", field="path",
                         hint="use the link the studio gave (e.g. /files/runs/RUN/run.json)")
    parts = ref.split("/")
    if not ref or ref.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise _no_file(ref)
    return parts


def _servable(path: Path, home: Path, ref: str) -> Path:
    """The resolved file, unless it is none, or one of the studio's own (config, keys, ledger)."""
    resolved = path.resolve()
    private = {(home / name).resolve() for name in _PRIVATE}
    if resolved in private or resolved.name in _PRIVATE or resolved.suffix in (".db", ".sqlite") or not resolved.is_file():
        raise _no_file(ref)
    return resolved


SERVED_KINDS = ("output", "export")
"""Kinds of recorded files the web serves: labelled run-folder copies and exports (not work files)."""


def _is_output(ledger: Ledger, target: Path) -> bool:
    """Whether the ledger lists `target` as an output: a recorded file of a served kind, or an image's
    stored original or run-folder copy, matched by exact resolved path."""
    resolved = target.resolve()
    record = ledger.file(resolved)
    if record is not None:
        return record["kind"] in SERVED_KINDS
    try:
        image = ledger.image(str(resolved))
    except LedgerError:
        return False
    return resolved in {Path(p).resolve() for p in (image.path, image.out_path) if p}


def run_file(ledger: Ledger, home: Path, run_id: str, name: str) -> Path:
    """A file of a run's folder, by name: one of its recorded images or one of `RUN_FILES`.

    Wherever `--out` put the folder, nothing else in it is served (not a file the user keeps
    there, and never the studio's own files if the folder holds them).
    """
    if len(_plain_parts(name)) != 1:
        raise _no_file(name)
    run = ledger.run(run_id)
    if run.id != run_id or not run.out_dir:  # exact ids only: no prefix or wildcard reaches a run here
        raise _no_file(f"{run_id}/{name}")
    target = Path(run.out_dir) / name
    if not RUN_FILES.fullmatch(name) and not _is_output(ledger, target):
        raise _no_file(f"{run_id}/{name}")
    return _servable(target, home, f"{run_id}/{name}")


def output_file(ledger: Ledger, home: Path, ref: str) -> Path:
    """The file `ref` (a path inside the studio folder) if the ledger lists it as an output.

    Outputs are run files (`runs/RUN/NAME`, see `run_file`), stored images, run-folder copies and
    labelled exports, matched by their exact recorded path. The config, the keys, the ledger and
    anything else in or around the studio folder are never served, whatever `--out` was.
    """
    parts = _plain_parts(ref)
    if parts[0] == "runs" and len(parts) == 3:
        found = run_file(ledger, home, parts[1], parts[2])
        if found != (home / ref).resolve():  # a run whose folder is elsewhere has no file here
            raise _no_file(ref)
        return found
    target = home / ref
    if not _is_output(ledger, target):
        raise _no_file(ref)
    return _servable(target, home, ref)
