"""Recording a finished derivative (fix, upscale) as a new image with its parent.

Every fixed or upscaled image becomes its own ledger row: its parent's sha256, the operation
and its settings, model, provider and cost. It is relabelled as a composite (IPTC
`compositeWithTrainedAlgorithmicMedia`, the edit named in the caption, the parent kept as a
C2PA ingredient when signing is configured), and the ledger holds the hash of the labelled
file, so `Ledger.lineage(sha)` walks from the file on disk back to the generation.

A parent the ledger has never seen (a photo from elsewhere) is first recorded as an
"import", so every chain ends at a row.
"""

from __future__ import annotations

import hashlib
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict

from ..config import C2paConfig, Studio
from ..labels import LabelInfo
from ..ledger import ImageRow, Ledger
from ..records import Cost, Result

__all__ = ["LabelSettings", "derived_path", "describe_chain", "ensure_recorded", "file_sha256", "record_derived"]

_MEDIA = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class LabelSettings(BaseModel):
    """Who made it and how to sign it: read once from the studio at the edge, passed down."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    creator: str | None = None
    credit: str | None = None
    c2pa: C2paConfig | None = None
    secrets: tuple[str, ...] = ()

    @classmethod
    def from_studio(cls, studio: Studio, *, sign: bool = True) -> LabelSettings:
        cfg = studio.config
        return cls(creator=cfg.creator, credit=cfg.credit, c2pa=cfg.c2pa if sign else None,
                   secrets=tuple(studio.secrets()))


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def derived_path(src: str | Path, tag: str, out: str | Path | None = None) -> Path:
    """Where a derivative goes: `out` if it names a file, else `<out or src folder>/<stem>.<tag>.png`.

    An existing file is never overwritten: `-2`, `-3` ... are added.
    """
    src = Path(src)
    if out is not None and Path(out).suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
        return Path(out)
    folder = Path(out) if out is not None else src.parent
    folder.mkdir(parents=True, exist_ok=True)
    candidate = folder / f"{src.stem}.{tag}.png"
    n = 2
    while candidate.exists():
        candidate = folder / f"{src.stem}.{tag}-{n}.png"
        n += 1
    return candidate


def ensure_recorded(ledger: Ledger, path: str | Path, images_dir: Path) -> ImageRow:
    """The ledger row of the file at `path` — found by any path or hash the studio wrote it under,
    so a labelled run-folder copy leads back to its generation — or a new 'import' row for a
    file the studio never made (a photo from elsewhere: sending it needs a rights record)."""
    from ..imaging import open_image

    path = Path(path)
    open_image(path, mode=None).close()  # a clear error for folders, non-images and bombs
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    found = ledger.image_for_file(path, sha)
    if found is not None:
        return found
    with Image.open(BytesIO(data)) as im:
        media = _MEDIA.get(im.format or "", "image/png")
        size = im.size
    result = Result(request_id="", provider="file", model="import", image=data, media_type=media,
                    metadata={"source": str(path)})
    return ledger.record_image(result, images_dir=images_dir, run_id=None, request_id=None, operation="import",
                               operation_details={"source": str(path)}, out_path=path, width=size[0], height=size[1])


def record_derived(
    engine: Any,
    data: bytes,
    *,
    parent: ImageRow,
    operation: str,
    details: dict[str, Any],
    info: LabelInfo,
    path: Path,
    run_id: str | None = None,
    request_id: str | None = None,
    provider: str = "local",
    model: str = "",
    cost_usd: float = 0.0,
    seed: int | None = None,
    provider_task_id: str | None = None,
    sandbox: bool = False,
    timings: dict[str, float] | None = None,
    versions: dict[str, str] | None = None,
) -> ImageRow:
    """Record a derivative (fix, upscale, edit …) of `parent` and deliver its labelled copy at `path`.

    The ledger stores the derivative's pixels content-addressed (deterministic, so a replayed step
    finds them again) and the labelled file is written atomically and recorded as one of its files;
    its cost is the paid request's (settled by the runner), shown here for the lineage.
    """
    with Image.open(BytesIO(data)) as im:
        width, height = im.size
        media = _MEDIA.get(im.format or "", "image/png")
    result = Result(
        request_id=request_id or "", provider=provider, model=model, image=data, media_type=media, seed=seed,
        provider_task_id=provider_task_id, cost=Cost(usd=cost_usd), timings=timings or {}, versions=versions or {},
        sandbox=sandbox,
    )
    row = engine.ledger.record_image(
        result, images_dir=engine.images_dir, run_id=run_id, request_id=request_id, parent_sha256=parent.image_sha256,
        operation=operation, operation_details=details, out_path=path, width=width, height=height,
    )
    parent_file = parent.out_path if parent.out_path and Path(parent.out_path).is_file() else parent.path
    engine.deliver(row, path=path, info=info.model_copy(update={"sandbox": info.sandbox or sandbox}), kind=operation,
                   parent_path=parent_file)
    return row


def describe_chain(rows: list[ImageRow]) -> list[str]:
    """One line per image, oldest first: what made it from its parent."""
    lines = []
    for row in reversed(rows):
        d = row.operation_details or {}
        what = row.operation
        if row.operation == "fix":
            denoise = d.get("denoise", d.get("strength"))
            what += f" {d.get('region')}" + (f" @ denoise {denoise:g}" if isinstance(denoise, int | float) else "")
        elif row.operation == "upscale":
            what += f" ×{d.get('scale')}"
            if d.get("detail_model"):
                what += f" + detail {d['detail_model']} @ denoise {d.get('detail_denoise', d.get('detail_strength'))}"
        model = f" {row.model}" if row.model and row.model != "import" else ""
        cost = f" ${row.cost_usd:.3f}" if row.cost_usd else ""
        size = f" {row.width}×{row.height}" if row.width else ""
        where = row.out_path or row.path
        lines.append(f"{row.image_sha256[:12]} {what}{model}{size}{cost} {where}")
    return lines
