"""The gallery's view of the ledger: filtered pages, one image in detail, run progress, thumbnails.

Thumbnails are small JPEGs made once per image into `<home>/thumbs/ab/<sha256>-<px>.jpg`
(content-addressed, so a cached one never goes stale); the gallery never ships full images.
Queries are plain SQL over the ledger so the first page stays fast with 10,000 images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import LedgerError
from .ledger import ImageRow, Ledger, RunRow

__all__ = [
    "CHECK_STATUSES",
    "GalleryFilter",
    "GalleryPage",
    "ImageDetail",
    "RunProgress",
    "THUMB_PX",
    "gallery_page",
    "image_detail",
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
    page: int = Field(default=1, ge=1)
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


def thumbnail_path(home: Path, sha256: str, px: int = THUMB_PX) -> Path:
    if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        raise LedgerError(f"'{sha256}' is not an image hash")
    return home / "thumbs" / sha256[:2] / f"{sha256}-{px}.jpg"


def thumbnail(home: Path, image: ImageRow, px: int = THUMB_PX) -> Path:
    """The cached thumbnail of `image` (made on first use): a JPEG whose long side is `px`."""
    path = thumbnail_path(home, image.image_sha256, px)
    if path.exists():
        return path
    from PIL import Image, ImageOps

    source = Path(image.path)
    if not source.exists():
        raise LedgerError(f"the file of image {image.id} is missing: {source}", hint="restore the studio's images/ folder")
    with Image.open(source) as im:
        im.draft("RGB", (px, px))  # JPEG sources decode at reduced size
        small = ImageOps.exif_transpose(im).convert("RGB")
        small.thumbnail((px, px), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    small.save(tmp, "JPEG", quality=82, optimize=True)
    tmp.replace(path)
    return path
