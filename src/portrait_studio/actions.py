"""Finishing actions on one ledger image for the web studio and scripts, each an engine run with its
lineage and labels:

    upscale_image   upscale (finishing.upscaling) → a new ledger image, parent = the source, labelled
    fix_region      a masked inpaint of one region (finishing.fix), composited and labelled
    export_labelled a copy in <home>/exports/ with XMP/IPTC, parameters, caption and C2PA (signed last)

Nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import Studio
from .errors import LimitError
from .finishing.masks import FIX_REGIONS
from .jobs import run_on_engine
from .ledger import ImageRow, Ledger
from .providers import SandboxStarter

__all__ = ["FIX_REGIONS", "edit_image", "export_labelled", "fix_region", "upscale_image"]


def _file_of(image: ImageRow) -> str:
    """The file to work on: the labelled copy the studio delivered, else the stored original."""
    return image.out_path if image.out_path and Path(image.out_path).is_file() else image.path


def upscale_image(
    studio: Studio, ledger: Ledger, image_id: str, scale: float = 2.0,
    progress: Callable[..., None] | None = None, *, start_sandbox: SandboxStarter | None = None,
) -> ImageRow:
    """Upscale 1.5–4x; the result is a new, labelled image whose parent is the source."""
    if not 1.0 < scale <= 4.0:
        raise LimitError(f"scale {scale:g} is outside 1–4", field="scale", hint="upscale 1.5–2x for portraits")
    from .finishing.upscaling import upscale_image as run_upscale

    source = ledger.image(image_id)

    async def work(engine: Any) -> ImageRow:
        engine.progress = progress
        outcome = await run_upscale(engine, _file_of(source), scale)  # next to the source, in its run folder
        return outcome.image

    return run_on_engine(studio, [], work, start_sandbox=start_sandbox, checker=None)


def fix_region(studio: Studio, ledger: Ledger, image_id: str, region: str, *, model: str = "flux-fill-pro",
               provider: str | None = None, sandbox: str = "auto", start_sandbox: SandboxStarter | None = None,
               budget_usd: float | None = None, **options: Any) -> ImageRow:
    """Inpaint one region (eyes, mouth, hands, skin …) of an image; the fix is its labelled child."""
    if region not in FIX_REGIONS:
        raise LimitError(f"unknown region '{region}'", field="region", hint=f"choose one of: {', '.join(FIX_REGIONS)}")
    source = ledger.image(image_id)  # a missing image is a 404, whatever else is installed
    from .finishing.fix import default_provider
    from .finishing.fix import fix_region as run_fix

    pid = provider or default_provider(model)

    async def work(engine: Any) -> ImageRow:
        outcome = await run_fix(engine, _file_of(source), region, model=model, provider=pid, budget_usd=budget_usd,
                                **options)
        return outcome.image

    return run_on_engine(studio, [pid], work, sandbox=sandbox, start_sandbox=start_sandbox)  # type: ignore[arg-type]


def edit_image(studio: Studio, ledger: Ledger, image_id: str, *, instruction: str | None = None,
               looks: tuple[str, ...] = (), model: str = "flux-2-pro", seed: int | None = None, sandbox: str = "auto",
               start_sandbox: SandboxStarter | None = None, budget_usd: float | None = None) -> Any:
    """One instruction edit, or a restyle to one or more looks: labelled children with identity and checks."""
    import random

    from .catalog import parse_model_ref
    from .edit import run_edit

    source = ledger.image(image_id)
    route = parse_model_ref(model)

    async def work(engine: Any) -> Any:
        return await run_edit(engine, _file_of(source), instruction=instruction, looks=looks, model=route.model,
                              provider=route.provider, seed=seed if seed is not None else random.randrange(2**32),
                              budget_usd=budget_usd)

    return run_on_engine(studio, [route.provider], work, sandbox=sandbox, start_sandbox=start_sandbox)  # type: ignore[arg-type]


def export_labelled(studio: Studio, ledger: Ledger, image_id: str, folder: Path | None = None) -> tuple[Path, str]:
    """Copy the image out and label it honestly (signed when configured); returns (file, C2PA status)."""
    from .engine import Engine
    from .finishing.lineage import LabelSettings
    from .labels import verify

    image = ledger.image(image_id)
    folder = folder or (studio.home / "exports")
    name = f"{image.model or 'image'}-seed{image.seed}-{image.image_sha256[:10]}{Path(image.path).suffix}"
    dest = folder / name
    engine = Engine(ledger=ledger, images_dir=studio.images_dir, runs_dir=studio.runs_dir, providers={},
                    labels=LabelSettings.from_studio(studio), secrets=studio.secrets())
    info = _label_for(engine, image)
    parent = None
    if image.parent_sha256:
        p = ledger.image(image.parent_sha256)
        parent = _file_of(p)
    engine.deliver(image, path=dest, info=info, kind="export", parent_path=parent)
    status = verify(dest, studio.config.c2pa.trust_anchors).c2pa.status
    return dest, status


def _label_for(engine: Any, image: ImageRow) -> Any:
    """What the label says: the image's own request, else its origin's, marked as edited."""
    import json

    from .labels import LabelInfo

    request = None
    for row in engine.ledger.lineage(image.image_sha256):  # a fix or upscale's origin has the request
        if row.request_id:
            request = engine.ledger.request(row.request_id).request
            break
    edited = image.operation not in ("generate",)
    overrides: dict[str, Any] = {
        "creator": getattr(engine.labels, "creator", None), "credit": getattr(engine.labels, "credit", None),
        "is_composite": edited, "edit": f"{image.operation} {json.dumps(image.operation_details)}" if edited else None,
        "parent_sha256": image.parent_sha256, "width": image.width, "height": image.height, "sandbox": image.sandbox,
    }
    if request is not None:
        return LabelInfo.from_request(request, **overrides)
    return LabelInfo(model=image.model or "unknown", prompt="(not recorded)", seed=image.seed, **overrides)
