"""What a brief will become, before anything is paid for: per-model prompt, warnings, cost.

Used by the web studio's brief builder on every change, and by anything else that wants a
dry preview. Also the reverse direction (a Brief back to YAML) and reference-image intake
with its consent/rights record.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from .brief import Brief, Rights, load_brief, parse_brief
from .catalog import get_model
from .consent import file_sha256, require_rights
from .errors import BriefError, ConsentRequired, LedgerError, StudioError
from .files import atomic_write_text
from .imaging import ImageInputError, image_size, open_image_bytes
from .ledger import Ledger, store_image
from .prompting import compile_brief

__all__ = [
    "BriefPreview",
    "ModelPreview",
    "PREVIEW_SEED",
    "ReferenceUpload",
    "brief_yaml",
    "preview_brief",
    "safe_brief_name",
    "save_brief",
    "store_reference",
    "studio_references",
]

PREVIEW_SEED = 42  # compile needs a number; the preview only shows what the seed does not change


class ModelPreview(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    provider: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    warnings: list[str] = []
    size: str | None = None
    steps: int | None = None
    guidance: float | None = None
    cost_usd: float | None = None
    credits: float | None = None
    error: str | None = None
    hint: str | None = None


class BriefPreview(BaseModel):
    model_config = ConfigDict(frozen=True)

    ok: bool
    error: str | None = None
    hint: str | None = None
    field: str | None = None
    models: list[ModelPreview] = []
    total_usd_per_seed: float = 0.0
    yaml: str | None = None


def preview_brief(data: dict[str, Any], models: list[str],
                  check_references: Callable[[Brief], Brief] | None = None) -> BriefPreview:
    """Validate `data` as a brief and compile it for each model; problems become messages, not raises.

    `check_references` (e.g. `studio_references`) vets the brief's reference images first; what it
    raises is raised, so a caller can answer a bad reference as the error it is.
    """
    try:
        brief = parse_brief(data, source="brief builder")
    except BriefError as exc:
        return BriefPreview(ok=False, error=exc.message, hint=exc.hint, field=exc.field)
    if check_references is not None:
        brief = check_references(brief)
    seed = PREVIEW_SEED if brief.output.seed == "random" else int(brief.output.seed)
    previews = []
    for model in models:
        try:
            spec = get_model(model)
        except StudioError as exc:
            previews.append(ModelPreview(id=model, name=model, error=exc.message, hint=exc.hint))
            continue
        try:
            req = compile_brief(brief, model, seed=seed)
        except StudioError as exc:
            previews.append(ModelPreview(id=spec.id, name=spec.name, error=exc.message, hint=exc.hint))
            continue
        size = f"{req.width}×{req.height}" if req.width else (req.aspect_ratio or "from input")
        previews.append(ModelPreview(
            id=spec.id, name=spec.name, provider=req.provider, prompt=req.prompt, negative_prompt=req.negative_prompt,
            warnings=list(req.warnings), size=size, steps=req.steps, guidance=req.guidance,
            cost_usd=req.estimated_cost.usd, credits=req.estimated_cost.credits,
        ))
    total = sum(p.cost_usd or 0.0 for p in previews)
    return BriefPreview(ok=True, models=previews, total_usd_per_seed=round(total, 6), yaml=brief_yaml(brief))


def brief_yaml(brief: Brief) -> str:
    """The brief as YAML that `load_brief` reads back to the same Brief (defaults left out)."""
    data = brief.model_dump(mode="json", exclude_defaults=True)
    if brief.avoid != Brief.model_fields["avoid"].get_default(call_default_factory=True):
        data["avoid"] = list(brief.avoid)
    header = "# Portrait Studio brief — edit freely; see 'portrait brief presets' for names\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def safe_brief_name(name: str) -> str:
    """A file name for a saved brief: letters, digits, '.', '_', '-' only (no folders, no '..')."""
    stem = name.strip().removesuffix(".yaml").removesuffix(".yml")
    if not _NAME.fullmatch(stem) or ".." in stem:
        raise BriefError(
            f"'{name}' is not a usable brief name", field="name",
            hint="use letters, digits, '-', '_' or '.', without folders (e.g. 'ceo-headshot')",
        )
    return stem + ".yaml"


def save_brief(folder: Path, name: str, brief: Brief) -> Path:
    """Write `brief` as `<folder>/<name>.yaml` and prove it reads back identically."""
    path = folder / safe_brief_name(name)
    atomic_write_text(path, brief_yaml(brief))
    if load_brief(path) != brief:  # pragma: no cover - a YAML round-trip bug would land here
        raise StudioError(f"{path} does not read back as the same brief", hint="report this as a bug")
    return path


class ReferenceUpload(BaseModel):
    """A stored reference image and the rights record that allows its use."""

    model_config = ConfigDict(frozen=True)

    path: str
    sha256: str
    rights_id: str
    rights: Rights


def store_reference(ledger: Ledger, images_dir: Path, data: bytes, rights: Rights | None) -> ReferenceUpload:
    """Keep a reference photo (content-addressed) with its consent/rights record, or refuse it."""
    if rights is None or not all(v and v.strip() for v in (rights.who, rights.source, rights.permission)):
        raise ConsentRequired(
            "a reference image needs a consent/rights record",
            hint="say who is shown, where the image comes from, and what they agreed to",
        )
    try:
        with open_image_bytes(data, name="the upload", mode=None, orient=False) as im:  # decodes all of it; refuses bombs
            fmt = (im.format or "").lower()
    except ImageInputError as exc:
        raise BriefError(exc.message, field="references", hint=exc.hint or "upload a PNG, JPEG or WebP") from exc
    ext = {"jpeg": "jpg", "png": "png", "webp": "webp"}.get(fmt)
    if ext is None:
        raise BriefError(f"{fmt or 'unknown'} images are not supported", field="references", hint="upload a PNG, JPEG or WebP")
    sha, path = store_image(images_dir, data, ext)
    rights_id = ledger.record_rights(sha, rights.who, rights.source, rights.permission, rights.recorded_by)
    return ReferenceUpload(path=str(path), sha256=sha, rights_id=rights_id, rights=rights)


_SHA = re.compile(r"[0-9a-f]{64}")


def _studio_image_sha(ledger: Ledger, images_dir: Path, path: Path) -> str | None:
    """The sha256 of `path` if it is one of the studio's images (stored, uploaded or a run's copy)."""
    if path.is_relative_to(images_dir.resolve()) and _SHA.fullmatch(path.stem) and path.parent.name == path.stem[:2]:
        return path.stem
    try:
        image = ledger.image(str(path))
    except LedgerError:
        return None
    recorded = {Path(p).resolve() for p in (image.path, image.out_path) if p}
    return image.image_sha256 if path in recorded else None


def studio_references(ledger: Ledger, images_dir: Path, brief: Brief, *, record: bool = False) -> Brief:
    """`brief` with every reference vetted for a surface that must not read arbitrary files (the web).

    A reference must be an image the studio holds: a photo uploaded with its rights record
    (`store_reference`) or an image the studio made. It must still be that image (same bytes)
    and readable. A person's photo (role identity) needs a rights record: the ledger's, or the
    one stated in the brief (recorded when `record`, i.e. when the brief is about to be shot).
    The returned brief points at the stored original and carries the recorded rights.
    Errors name the field (`references.N.path` / `references.N.rights`) and the fix.
    """
    checked = []
    for n, ref in enumerate(brief.references):
        field = f"references.{n}.path"
        try:
            path = Path(ref.path).expanduser().resolve()
        except (OSError, RuntimeError, ValueError) as exc:
            raise BriefError(f"'{ref.path}' is not a usable path ({exc})", field=field,
                             hint="upload the photo with its consent record, or pick an image from the gallery") from exc
        sha = _studio_image_sha(ledger, images_dir, path)
        made = False
        if sha is not None:
            try:
                made = ledger.image(sha).image_sha256 == sha
            except LedgerError:
                made = False
        rights = ledger.rights_for(sha) if sha else None
        if sha is None or not (made or rights):
            raise BriefError(f"'{ref.path}' is not an image uploaded to or made by this studio", field=field,
                             hint="upload the photo with its consent record (Reference photo → Add), "
                                  "or use an image from the gallery")
        stored = Path(ledger.image(sha).path) if made else path
        try:
            image_size(stored)
            if file_sha256(stored) != sha:
                raise ImageInputError(f"'{ref.path}' changed since the studio stored it",
                                      hint="upload the photo again with its consent record")
        except ImageInputError as exc:
            raise BriefError(exc.message, field=field, hint=exc.hint) from exc
        if rights is None and ref.role == "identity":
            if ref.rights is None:
                raise ConsentRequired(
                    f"references.{n}.rights: the identity reference {path.name} has no consent/rights record; "
                    "nothing was sent",
                    hint="say who is shown, where the image comes from and what they agreed to "
                         "(for a face the studio generated: who 'synthetic')",
                )
            if record:
                require_rights(ledger, stored, ref.rights, what="reference")
                rights = ledger.rights_for(sha)
        stated = ref.rights if rights is None else Rights(
            who=rights["who"], source=rights["source"], permission=rights["permission"], recorded_by=rights["recorded_by"])
        checked.append(ref.model_copy(update={"path": str(stored), "rights": stated}))
    return brief.model_copy(update={"references": tuple(checked)})
