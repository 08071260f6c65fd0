"""Identity transfer: place the anchor's person into an existing portrait with a reference-editing model.

FLUX.2 (and Kontext's multi-reference input) takes several images and an instruction that
names them by position, so "the person from image 1 in the scene of image 2" keeps the
portrait's pose, light, wardrobe and background while taking the face from the anchor.
The anchor shows a real person: the same consent rule as a series applies, and the result's
identity distance to the anchor (and the portrait's before) is measured and recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, ConfigDict

from .brief import Rights
from .catalog import estimate_cost, get_model, megapixels
from .consent import require_rights
from .errors import BriefError, BudgetExceeded, CapabilityError, StudioError
from .identity import (
    DEFAULT_THRESHOLDS,
    IdentityThresholds,
    anchor_embedding,
    face_embedding,
    identity_distance,
    measure_shot,
)
from .ledger import Ledger
from .providers.base import Provider
from .records import InputImage, Request, new_id
from .runner import run_plan
from .shoot import write_run_json

__all__ = ["SWAP_PROMPT", "SwapReport", "plan_swap", "transfer_identity"]

SWAP_PROMPT = (
    "Place the person from image 1 in the scene of image 2: give the person in image 2 the face, facial features, "
    "skin tone, eye colour, hair colour and age of the person in image 1, exactly. Keep image 2's pose, framing, "
    "expression, wardrobe, lighting, background and camera unchanged. Photorealistic, natural skin texture, "
    "seamless blend at the hairline and jaw."
)
MAX_OUTPUT_MP = 4.0


class SwapReport(BaseModel):
    """The transferred portrait and how close its face now is to the anchor's."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    image_id: str
    path: str
    model: str
    rights_id: str
    distance_before: float | None
    distance: float | None
    status: str
    spent_usd: float
    sandbox: bool = False

    @property
    def passed(self) -> bool:
        return self.status in ("pass", "warn")


def _aspect(width: int, height: int) -> str:
    ratio = Fraction(width, height).limit_denominator(21)
    return f"{ratio.numerator}:{ratio.denominator}"


def plan_swap(portrait: str | Path, anchor: str | Path, *, model: str = "flux-2-pro", provider: str | None = None,
              seed: int = 0, prompt: str | None = None, rights_id: str | None = None) -> Request:
    """The edit request: images [anchor, portrait] and the transfer instruction, at the portrait's size."""
    for what, path in (("portrait", portrait), ("anchor", anchor)):
        if not Path(path).is_file():
            raise BriefError(f"{what} image not found: {path}", field=f"--{what}" if what == "anchor" else what)
    spec = get_model(model)
    provider = provider or spec.default_provider
    spec.route(provider)
    local_kontext = provider == "local" and spec.family == "kontext"
    if "edit" not in spec.modes or spec.max_references < 2 or local_kontext:
        raise CapabilityError(f"{spec.name}{' (local)' if local_kontext else ''} cannot take two images to transfer an identity",
                              hint="use flux-2-pro or flux-kontext-pro (bfl), or flux-2-dev / flux-2-klein-4b locally")
    with Image.open(portrait) as im:
        width, height = im.size
    width_out = height_out = aspect = None
    if spec.family == "kontext":
        aspect = _aspect(width, height)
    else:
        scale = min(1.0, (MAX_OUTPUT_MP / megapixels(width, height)) ** 0.5)
        multiple = spec.size_on(provider).multiple
        width_out = max(multiple, int(width * scale) // multiple * multiple)
        height_out = max(multiple, int(height * scale) // multiple * multiple)
    images = (InputImage.from_path(anchor, role="identity", rights_id=rights_id), InputImage.from_path(portrait, role="edit"))
    input_mp = sum(megapixels(*Image.open(i.path).size) for i in images)
    return Request(
        model=spec.id, provider=provider, mode="edit", prompt=prompt or SWAP_PROMPT, width=width_out, height=height_out,
        aspect_ratio=aspect, seed=seed, images=images, output_format="png",
        estimated_cost=estimate_cost(spec, provider, width_out, height_out, input_mp),
        warnings=(f"identity transfer: image 1 = anchor {Path(anchor).name}, image 2 = portrait {Path(portrait).name}",),
    )


async def transfer_identity(
    portrait: str | Path,
    anchor: str | Path,
    model: str = "flux-2-pro",
    *,
    ledger: Ledger,
    providers: Mapping[str, Provider],
    images_dir: Path,
    runs_dir: Path,
    provider: str | None = None,
    out_dir: Path | None = None,
    seed: int = 0,
    rights: Rights | None = None,
    budget_usd: float | None = None,
    prompt: str | None = None,
    thresholds: IdentityThresholds = DEFAULT_THRESHOLDS,
) -> SwapReport:
    """Put the anchor's identity into `portrait`; refuses without a rights record for the anchor."""
    request = plan_swap(portrait, anchor, model=model, provider=provider, seed=seed, prompt=prompt)
    anchor_face = anchor_embedding(anchor)
    rights_id = require_rights(ledger, anchor, rights)
    anchor_image = request.images[0].model_copy(update={"rights_id": rights_id})
    request = request.model_copy(update={"images": (anchor_image, *request.images[1:])})
    if budget_usd is not None and request.estimated_cost.usd > budget_usd + 1e-9:
        raise BudgetExceeded(f"the transfer is estimated at ${request.estimated_cost.usd:.3f}, over the ${budget_usd:.2f} "
                             "budget; nothing was spent", budget_usd=budget_usd, needed_usd=request.estimated_cost.usd)
    before_face = face_embedding(portrait)
    before = round(identity_distance(anchor_face, before_face), 4) if before_face is not None else None

    run_id = new_id("run_")
    out = out_dir or (runs_dir / run_id)
    out.mkdir(parents=True, exist_ok=True)
    ledger.create_run("swap", run_id=run_id, name=f"swap {Path(portrait).name}", budget_usd=budget_usd, out_dir=str(out),
                      plan={"operation": "identity transfer", "model": request.model, "portrait": str(portrait),
                            "anchor": str(anchor), "rights_id": rights_id, "estimated_usd": request.estimated_cost.usd})
    request = request.model_copy(update={"run_id": run_id})
    ledger.add_requests(run_id, [request])
    report = await run_plan(run_id, ledger=ledger, providers=providers, images_dir=images_dir, out_dir=out,
                            budget_usd=budget_usd)
    outcome = report.outcomes[0]
    write_run_json(ledger, run_id, out)
    if outcome.image is None:
        raise StudioError(f"the transfer did not finish: {outcome.error or outcome.status}",
                          hint=f"see 'portrait log'; finish it with 'portrait resume {run_id}'")
    identity = await asyncio.to_thread(measure_shot, anchor_face, outcome.image.path, 0, thresholds)
    ledger.record_identity(run_id, 0, outcome.image.image_sha256, identity.distance, identity.status, details={
        "operation": "swap", "distance_before": before, "portrait_sha256": request.images[1].sha256,
        "anchor_sha256": request.images[0].sha256, "rights_id": rights_id})
    write_run_json(ledger, run_id, out)
    return SwapReport(run_id=run_id, image_id=outcome.image.id, path=outcome.image.out_path or outcome.image.path,
                      model=request.model, rights_id=rights_id, distance_before=before, distance=identity.distance,
                      status=identity.status, spent_usd=report.spent_usd, sandbox=outcome.image.sandbox)

