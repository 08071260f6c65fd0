"""The review step of a team studio: approve or reject an image with a comment, and ship only what was
approved — each file labelled (XMP/IPTC, C2PA) and next to its audit record.

    export folder/
      <model>-seed<seed>-<sha>.png              the labelled copy (labels checked on the file, not assumed)
      <model>-seed<seed>-<sha>.png.audit.json   how it was made (audit.image_record) + every review
      manifest.json                             what was shipped, by whom, when; what was left out and why

An image is approved when its latest review says so; a later rejection withdraws it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .config import Studio
from .errors import NotApproved, StudioError
from .files import atomic_write_text
from .ledger import ImageRow, Ledger, ReviewRow

__all__ = ["ApprovedExport", "audit_record", "export_approved", "require_approved", "review_image"]


class ApprovedExport(BaseModel):
    model_config = ConfigDict(frozen=True)

    folder: Path
    files: list[Path]
    manifest: Path
    skipped: dict[str, str]
    """Approved images not shipped, with the reason (a label that did not verify)."""


def review_image(ledger: Ledger, image_ref: str, decision: str, comment: str | None = None) -> ReviewRow:
    """Approve or reject (with a reason) — reviewers and owners only, their own team's images only."""
    return ledger.review(image_ref, decision, comment)


def require_approved(ledger: Ledger, image: ImageRow) -> None:
    if not image.approved:
        state = "was rejected" if image.review == "rejected" else "has not been approved"
        raise NotApproved(f"image {image.id} {state}; a team studio ships only approved images",
                          hint="a reviewer approves it first (the image page, or 'portrait approve IMAGE')")


def audit_record(ledger: Ledger, image: ImageRow, shipped: Path) -> dict[str, Any]:
    """How the image was made (the audit bundle's record), its reviews, and the label measured on the file."""
    from .audit import image_record
    from .labels import verify

    report = verify(shipped)
    return {
        **image_record(ledger, image),
        "reviews": [r.model_dump(mode="json") for r in ledger.reviews(image.id)],
        "shipped": {"file": shipped.name, "labelled": report.labelled,
                    "digital_source_type": report.digital_source_type, "c2pa": report.c2pa.status},
    }


def _write_recorded(ledger: Ledger, path: Path, text: str, result_id: str) -> Path:
    """Write a file of the shipment and record it (with the image it belongs to), so the studio serves
    it to that image's team, and only to them."""
    import hashlib

    atomic_write_text(path, text)
    ledger.record_file(path, hashlib.sha256(text.encode()).hexdigest(), result_id, kind="export")
    return path


def export_approved(studio: Studio, ledger: Ledger, folder: Path, *, run_id: str | None = None,
                    secrets: list[str] | None = None) -> ApprovedExport:
    """Ship every approved image (of one run, or all the team's) to `folder`: labelled copies, one
    audit record each, and a manifest. An image whose written file does not verify as labelled is
    left out (and named in the manifest), never shipped unlabelled."""
    from .actions import export_labelled
    from .audit import _refuse_secrets

    if ledger.actor is not None:
        ledger.actor.require("review")
    approved = ledger.images(run_id=run_id, review="approved", limit=100_000)
    if not approved:
        where = f" in run {run_id}" if run_id else ""
        raise NotApproved(f"no approved images{where} to export",
                          hint="a reviewer approves images first (the image page, or 'portrait approve IMAGE')")
    folder.mkdir(parents=True, exist_ok=True)
    shipped: list[Path] = []
    skipped: dict[str, str] = {}
    entries = []
    for image in approved:
        path, _status = export_labelled(studio, ledger, image.id, folder)
        record = audit_record(ledger, image, path)
        if not record["shipped"]["labelled"]:
            path.unlink(missing_ok=True)
            skipped[image.id] = "its labels did not verify on the written file"
            continue
        text = json.dumps(record, indent=2, default=str)
        _refuse_secrets({path.name: text.encode()}, list(secrets or studio.secrets()))
        _write_recorded(ledger, path.with_name(path.name + ".audit.json"), text, image.id)
        shipped.append(path)
        entries.append({"image_id": image.id, "file": path.name, "audit": path.name + ".audit.json",
                        "approved_by": next((r.reviewer for r in ledger.reviews(image.id) if r.decision == "approved"), None)})
    manifest = folder / "manifest.json"
    who = ledger.actor.label if ledger.actor else None
    text = json.dumps({"exported_at": time.time(), "exported_by": who, "run_id": run_id, "images": entries,
                       "skipped": skipped}, indent=2)
    if not shipped:
        atomic_write_text(manifest, text)
        raise StudioError("no approved image could be shipped labelled", hint="see manifest.json for why")
    _write_recorded(ledger, manifest, text, str(entries[0]["image_id"]))
    return ApprovedExport(folder=folder, files=shipped, manifest=manifest, skipped=skipped)
