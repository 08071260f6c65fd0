"""The audit bundle: a zip a studio can hand to a client to show how every image was made.

    bundle.zip
      images/<file>            every image of the run, with its fixes and upscales — the labelled
                               copies the studio delivered (never the raw store copies)
      records/<image id>.json  brief, compiled request, model/provider, provider task id, seed,
                               settings, cost, timings, checks, lineage, reference images with
                               their rights records, labels, library and model versions
      records.csv              one line per image
      summary.html             a readable page; what it says about labels is measured on the
                               files in the bundle (`labels.verify`), not asserted
      run.json                 the run as recorded

Secrets never enter it: before the zip is written every text member is scanned for the
studio's API keys, and the bundle is refused if one is found.
"""

from __future__ import annotations

import csv
import html
import io
import json
import platform
import zipfile
from pathlib import Path
from typing import Any

from . import __version__
from .errors import StudioError
from .ledger import ImageRow, Ledger

__all__ = ["build_audit_bundle", "image_record"]


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"portrait-studio": __version__, "python": platform.python_version()}
    for dist in ("pydantic", "httpx", "pillow", "numpy", "torch", "diffusers", "transformers", "mediapipe",
                 "dlib-bin", "pyexiv2", "c2pa-python", "rapidocr"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return found


def image_record(ledger: Ledger, image: ImageRow) -> dict[str, Any]:
    """Everything the ledger knows about one image, for an auditor."""
    request: dict[str, Any] | None = None
    sent: list[dict[str, Any]] = []
    if image.request_id:
        row = ledger.request(image.request_id)
        body = row.request.model_dump(mode="json")
        sent = list(body.get("images") or [])
        request = {"request": body, "provider_task_id": row.task_id, "status": row.status,
                   "charged_usd": row.charged_usd, "sandbox": row.sandbox}
    references = []
    for ref in sent:
        references.append({**ref, "rights": ledger.rights_for(ref["sha256"])})
    run = ledger.run(image.run_id) if image.run_id else None
    return {
        "image": {"id": image.id, "sha256": image.image_sha256, "width": image.width, "height": image.height,
                  "sandbox": image.sandbox, "picked": image.picked, "created_at": image.created_at},
        "run": {"id": run.id, "kind": run.kind, "name": run.name, "varied": run.varied, "forced": run.forced,
                "parent_run_id": run.parent_run_id} if run else None,
        "brief": run.brief if run else None,
        "request": request,
        "model": image.model,
        "provider": image.provider,
        "seed": image.seed,
        "operation": image.operation,
        "operation_details": image.operation_details,
        "cost": {"usd": image.cost_usd, "credits": image.cost_credits},
        "timings": image.timings,
        "provider_metadata": image.metadata,
        "versions": image.versions,
        "checks": ledger.checks(image.image_sha256),
        "labels": ledger.label(image.image_sha256),
        "lineage": [{"sha256": r.image_sha256, "operation": r.operation, "model": r.model}
                    for r in ledger.lineage(image.image_sha256)],
        "references": references,
    }


def _run_images(ledger: Ledger, run_id: str) -> list[ImageRow]:
    images = ledger.images(run_id=run_id, limit=100_000)
    seen = {i.image_sha256 for i in images}
    queue = list(images)
    while queue:  # fixes and upscales made from this run's images, even outside the run
        for child in ledger.children(queue.pop().image_sha256):
            if child.image_sha256 not in seen:
                seen.add(child.image_sha256)
                images.append(child)
                queue.append(child)
    return images


def _shipped_file(ledger: Ledger, image: ImageRow) -> tuple[Path, bool]:
    """The file to ship for `image`: its labelled delivered copy when it is intact, else the stored
    original (an imported photo, which the studio never labels as its own)."""
    import hashlib

    for f in ledger.files_for(image.id):
        path = Path(f["path"])
        if f["labelled"] and path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == f["sha256"]:
            return path, True
    return Path(image.path), False


def build_audit_bundle(ledger: Ledger, run_id: str, out: Path, *, secrets: list[str]) -> Path:
    """Write the audit bundle of `run_id` to `out` (a .zip). Run `Engine.deliver` on the run's images
    first (the CLI does) so every image the studio made ships labelled."""
    from .labels import verify

    run = ledger.run(run_id)
    images = [i for i in _run_images(ledger, run.id) if i.operation != "raw"]
    if not images:
        raise StudioError(f"run {run.id} has no images to audit", hint="finish it first with 'portrait resume'")
    members: dict[str, bytes] = {}
    records = []
    for img in images:
        record = image_record(ledger, img)
        record["libraries"] = _library_versions()
        source, _labelled = _shipped_file(ledger, img)
        name = f"images/{source.name}"
        if name in members:
            name = f"images/{img.image_sha256[:12]}-{source.name}"
        members[name] = source.read_bytes()
        record["file"] = name
        report = verify(source)
        record["label_check"] = {"labelled": report.labelled, "digital_source_type": report.digital_source_type,
                                 "c2pa": report.c2pa.status}
        members[f"records/{img.id}.json"] = json.dumps(record, indent=2, default=str).encode()
        records.append(record)
    members["records.csv"] = _csv(records).encode()
    members["summary.html"] = _summary(run.id, run.name, records).encode()
    run_json = Path(run.out_dir or "") / "run.json"
    if run_json.is_file():
        members["run.json"] = run_json.read_bytes()
    _refuse_secrets(members, secrets)
    from .files import atomic_replace

    with atomic_replace(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out


def _refuse_secrets(members: dict[str, bytes], secrets: list[str]) -> None:
    for name, data in members.items():
        for secret in secrets:
            if secret and len(secret) >= 6 and secret.encode() in data:
                raise StudioError(f"refusing to write the bundle: {name} contains an API key",
                                  hint="this is a bug; please report it without the key")


def _csv(records: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    fields = ["image_id", "sha256", "file", "operation", "model", "provider", "provider_task_id", "seed", "width",
              "height", "steps", "guidance", "cost_usd", "check", "parent_sha256", "sandbox", "prompt"]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in records:
        req = (r["request"] or {}).get("request", {})
        writer.writerow({
            "image_id": r["image"]["id"], "sha256": r["image"]["sha256"], "file": r["file"], "operation": r["operation"],
            "model": r["model"], "provider": r["provider"], "provider_task_id": (r["request"] or {}).get("provider_task_id"),
            "seed": r["seed"], "width": r["image"]["width"], "height": r["image"]["height"], "steps": req.get("steps"),
            "guidance": req.get("guidance"), "cost_usd": r["cost"]["usd"],
            "check": (r["checks"] or {}).get("overall"),
            "parent_sha256": r["lineage"][1]["sha256"] if len(r["lineage"]) > 1 else "",
            "sandbox": r["image"]["sandbox"], "prompt": req.get("prompt", ""),
        })
    return buf.getvalue()


def _summary(run_id: str, name: str | None, records: list[dict[str, Any]]) -> str:
    total = sum(r["cost"]["usd"] for r in records)
    labelled = sum(1 for r in records if r["label_check"]["labelled"])
    unlabelled = [r["file"] for r in records if not r["label_check"]["labelled"]]
    sandbox = any(r["image"]["sandbox"] for r in records)
    rows = []
    for r in records:
        req = (r["request"] or {}).get("request", {})
        refs = "; ".join(
            f"{html.escape(Path(ref['path']).name)} — {html.escape(str((ref.get('rights') or {}).get('who', 'NO RIGHTS RECORD')))}"
            for ref in r["references"]
        ) or "none"
        rows.append(
            f"<tr><td><img src='{html.escape(r['file'])}' width='160'></td><td>{html.escape(str(r['model']))}<br>"
            f"{html.escape(str(r['provider']))}{' (sandbox)' if r['image']['sandbox'] else ''}</td>"
            f"<td>{r['seed']}</td><td>{html.escape(r['operation'])}</td><td>${r['cost']['usd']:.3f}</td>"
            f"<td>{html.escape(str((r['checks'] or {}).get('overall', 'not checked')))}</td><td>{refs}</td>"
            f"<td><small>{html.escape(req.get('prompt', ''))}</small></td></tr>"
        )
    return (
        "<!doctype html><meta charset='utf-8'><title>Audit bundle</title>"
        "<style>body{font:14px system-ui;margin:2em}td,th{border:1px solid #ccc;padding:4px;vertical-align:top}"
        "table{border-collapse:collapse}</style>"
        f"<h1>Audit bundle · {html.escape(name or run_id)}</h1><p>Run {html.escape(run_id)} · {len(records)} images · "
        f"${total:.3f}{' (sandbox: no real money)' if sandbox else ''}. {labelled} of {len(records)} files in this bundle "
        "carry AI labels (IPTC digital source type, checked on the shipped files)"
        + (f"; not labelled: {html.escape(', '.join(unlabelled))}" if unlabelled else "") + ".</p>"
        "<table><tr><th>image</th><th>model</th><th>seed</th><th>operation</th><th>cost</th><th>checks</th>"
        f"<th>references &amp; rights</th><th>prompt</th></tr>{''.join(rows)}</table>"
    )
