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


_BASE = (
    "FROM results r JOIN images i ON i.sha256 = r.image_sha256"
    " LEFT JOIN (SELECT image_sha256, overall, score, MAX(created_at) FROM checks GROUP BY image_sha256) c"
    " ON c.image_sha256 = r.image_sha256"
)


def _where(f: GalleryFilter) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for clause, value in (("r.run_id=?", f.run), ("r.model=?", f.model), ("r.seed=?", f.seed)):
        if value is not None:
            where.append(clause)
            args.append(value)
    if f.picked is not None:
        where.append("r.picked=?")
        args.append(int(f.picked))
    if f.check == "unchecked":
        where.append("c.overall IS NULL")
    elif f.check is not None:
        where.append("c.overall=?")
        args.append(f.check)
    return (" WHERE " + " AND ".join(where)) if where else "", args


def gallery_page(ledger: Ledger, f: GalleryFilter) -> GalleryPage:
    """One page of images, newest first, with the total and the choices for the filters."""
    where, args = _where(f)
    db = ledger.db
    total = db.execute(f"SELECT COUNT(*) {_BASE}{where}", args).fetchone()[0]
    rows = db.execute(
        f"SELECT r.*, i.path AS path, i.width AS width, i.height AS height, c.overall AS check_overall,"
        f" c.score AS check_score {_BASE}{where} ORDER BY r.created_at DESC, r.id LIMIT ? OFFSET ?",
        (*args, f.per_page, (f.page - 1) * f.per_page),
    ).fetchall()
    runs = [
        (r[0], f"{r[2] or r[1]} · {r[0][-6:]}")
        for r in db.execute("SELECT id, kind, name FROM runs ORDER BY created_at DESC LIMIT 200")
    ]
    models = [r[0] for r in db.execute("SELECT DISTINCT model FROM requests ORDER BY model") if r[0]]
    return GalleryPage(images=[Ledger._image_row(r) for r in rows], total=total, filter=f, runs=runs, models=models)


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
        row = ledger.db.execute("SELECT request_json FROM requests WHERE id=?", (image.request_id,)).fetchone()
        if row:
            import json

            request = json.loads(row[0])
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
    counts: dict[str, int] = {}
    errors: list[str] = []
    for status, error in ledger.db.execute("SELECT status, error FROM requests WHERE run_id=?", (run.id,)):
        counts[status] = counts.get(status, 0) + 1
        if error and status in ("failed", "skipped"):
            errors.append(error)
    ids = [r[0] for r in ledger.db.execute("SELECT id FROM results WHERE run_id=? ORDER BY created_at", (run.id,))]
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
