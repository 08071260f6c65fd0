"""What a brief will become, before anything is paid for: per-model prompt, warnings, cost.

Used by the web studio's brief builder on every change, and by anything else that wants a
dry preview. Also the reverse direction (a Brief back to YAML) and reference-image intake
with its consent/rights record.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from .brief import Brief, Rights, load_brief, parse_brief
from .catalog import get_model
from .errors import BriefError, ConsentRequired, StudioError
from .files import atomic_write_text
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


def preview_brief(data: dict[str, Any], models: list[str]) -> BriefPreview:
    """Validate `data` as a brief and compile it for each model; problems become messages, not raises."""
    try:
        brief = parse_brief(data, source="brief builder")
    except BriefError as exc:
        return BriefPreview(ok=False, error=exc.message, hint=exc.hint, field=exc.field)
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
    from io import BytesIO

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(BytesIO(data)) as im:
            fmt = (im.format or "").lower()
            im.verify()
    except (UnidentifiedImageError, OSError) as exc:
        raise BriefError("the upload is not an image", field="references", hint="upload a PNG, JPEG or WebP") from exc
    ext = {"jpeg": "jpg", "png": "png", "webp": "webp"}.get(fmt)
    if ext is None:
        raise BriefError(f"{fmt or 'unknown'} images are not supported", field="references", hint="upload a PNG, JPEG or WebP")
    sha, path = store_image(images_dir, data, ext)
    rights_id = ledger.record_rights(sha, rights.who, rights.source, rights.permission, rights.recorded_by)
    return ReferenceUpload(path=str(path), sha256=sha, rights_id=rights_id, rights=rights)
