"""Finishing actions on one ledger image, each recorded with its lineage.

    upscale_image   SPAN super-resolution (finishing.upscale) → a new ledger image, parent = the source
    export_labelled a copy in <home>/exports/ with XMP/IPTC, parameters, caption and C2PA (signed last)
    fix_region      a masked inpaint of one region, through the finishing module when installed

The web studio and scripts call these; nothing here knows about HTTP.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import Studio
from .errors import LimitError
from .ledger import ImageRow, Ledger
from .records import Result

__all__ = ["FIX_REGIONS", "export_labelled", "fix_region", "upscale_image"]

from .finishing.masks import FIX_REGIONS


def _request_of(ledger: Ledger, image: ImageRow) -> dict[str, Any] | None:
    ref = image
    for row in ledger.lineage(image.image_sha256):  # a fix or upscale has no request; its origin does
        if row.request_id:
            ref = row
            break
    if not ref.request_id:
        return None
    found = ledger.db.execute("SELECT request_json FROM requests WHERE id=?", (ref.request_id,)).fetchone()
    return json.loads(found[0]) if found else None


def upscale_image(
    studio: Studio, ledger: Ledger, image_id: str, scale: float = 2.0,
    progress: Callable[[int, int], None] | None = None,
) -> ImageRow:
    """Upscale 1.5–4x (finishing.upscale); the result is a new image whose parent is the source."""
    if not 1.0 < scale <= 4.0:
        raise LimitError(f"scale {scale:g} is outside 1–4", field="scale", hint="upscale 1.5–2x for portraits")
    from .finishing.upscale import DEFAULT_METHOD, model_for, upscale_file

    source = ledger.image(image_id)
    ext = Path(source.path).suffix or ".png"
    tmp = studio.home / "tmp" / f"{source.image_sha256}-x{scale:g}{ext}"
    upscale_file(source.path, tmp, scale, progress=progress)
    data = tmp.read_bytes()
    tmp.unlink()
    network = model_for(DEFAULT_METHOD, scale)
    engine = network.name if network else "lanczos"
    media = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}[ext.lower()]
    result = Result(
        request_id=source.request_id or source.id, provider="local", model=engine, image=data,
        media_type=media, seed=source.seed, versions={"upscaler": engine},
    )
    return ledger.record_image(
        result, images_dir=studio.images_dir, run_id=source.run_id, request_id=None,
        parent_sha256=source.image_sha256, operation="upscale", operation_details={"scale": scale},
    )


def export_labelled(studio: Studio, ledger: Ledger, image_id: str, folder: Path | None = None) -> tuple[Path, str]:
    """Copy the image out and label it honestly; returns (file, C2PA status) and records the label."""
    from .labels import LabelInfo, label_image, verify

    image = ledger.image(image_id)
    request = _request_of(ledger, image)
    folder = folder or (studio.home / "exports")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{image.model or 'image'}-seed{image.seed}-{image.image_sha256[:10]}{Path(image.path).suffix}"
    dest = folder / name
    shutil.copyfile(image.path, dest)
    edited = image.operation != "generate"
    overrides: dict[str, Any] = {
        "creator": studio.config.creator, "credit": studio.config.credit, "is_composite": edited,
        "edit": f"{image.operation} {json.dumps(image.operation_details)}" if edited else None,
        "parent_sha256": image.parent_sha256,
        "width": image.width, "height": image.height,
    }
    if request is not None:
        from .records import Request

        info = LabelInfo.from_request(Request.model_validate(request), **overrides)
    else:
        info = LabelInfo(model=image.model or "unknown", prompt="(not recorded)", seed=image.seed, **overrides)
    parent = None
    if image.parent_sha256:
        parent = ledger.image(image.parent_sha256).path
    label_image(dest, info, studio.config.c2pa, ingredient_from=parent, sidecar=True, secrets=studio.secrets())
    report = verify(dest, studio.config.c2pa.trust_anchors)
    status = report.c2pa.status
    ledger.record_label(image.image_sha256, {**info.model_dump(mode="json"), "file": str(dest)}, status)
    return dest, status


def fix_region(studio: Studio, ledger: Ledger, image_id: str, region: str, **options: Any) -> ImageRow:
    """Inpaint one region (eyes, mouth, hands, skin, background) of an image; the fix is its child."""
    if region not in FIX_REGIONS:
        raise LimitError(f"unknown region '{region}'", field="region", hint=f"choose one of: {', '.join(FIX_REGIONS)}")
    ledger.image(image_id)  # a missing image is a 404, whatever else is installed
    from .finishing.fix import fix_image

    made: ImageRow = fix_image(studio, ledger, image_id, region, **options)
    return made
