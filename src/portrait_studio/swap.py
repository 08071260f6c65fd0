"""Identity transfer: place the anchor's person into an existing portrait with a reference-editing model.

FLUX.2 (and Kontext's multi-reference input) takes several images and an instruction that
names them by position, so "the person from image 1 in the scene of image 2" keeps the
portrait's pose, light, wardrobe and background while taking the face from the anchor.
The anchor shows a real person: the same consent rule as a series applies, and the result's
identity distance to the anchor (and the portrait's before) is measured and recorded.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict

from .brief import Rights
from .catalog import estimate_cost, get_model, megapixels
from .consent import require_rights
from .errors import BriefError, CapabilityError, StudioError
from .identity import (
    DEFAULT_THRESHOLDS,
    IdentityThresholds,
    anchor_embedding,
    face_embedding,
    identity_distance,
    measure_shot,
)
from .records import InputImage, Request

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
    engine: Any,
    portrait: str | Path,
    anchor: str | Path,
    model: str = "flux-2-pro",
    *,
    provider: str | None = None,
    out_dir: Path | None = None,
    seed: int = 0,
    rights: Rights | None = None,
    budget_usd: float | None = None,
    prompt: str | None = None,
    thresholds: IdentityThresholds = DEFAULT_THRESHOLDS,
) -> SwapReport:
    """Put the anchor's identity into `portrait` on the engine; refuses without a rights record for the
    anchor (and, for a portrait the studio did not make, for the portrait too)."""
    from .engine import Plan, Step, failure_summary

    request = plan_swap(portrait, anchor, model=model, provider=provider, seed=seed, prompt=prompt)
    anchor_face = anchor_embedding(anchor)
    rights_id = require_rights(engine.ledger, anchor, rights)
    anchor_image = request.images[0].model_copy(update={"rights_id": rights_id})
    request = request.model_copy(update={"images": (anchor_image, *request.images[1:])})
    before_face = face_embedding(portrait)
    before = round(identity_distance(anchor_face, before_face), 4) if before_face is not None else None
    args = {"anchor": str(Path(anchor).resolve()), "rights_id": rights_id, "distance_before": before,
            "thresholds": thresholds.model_dump(), "portrait_sha256": request.images[1].sha256,
            "anchor_sha256": request.images[0].sha256}
    plan = Plan(kind="swap", name=f"swap {Path(portrait).name}", requests=(request,),
                steps=(Step(name="deliver"), Step(name="swap", args=args)),
                details={"operation": "identity transfer", "model": request.model, "portrait": str(portrait),
                         "anchor": str(anchor), "rights_id": rights_id})
    run_id = engine.record(plan, budget_usd=budget_usd, out_dir=out_dir)
    report = await engine.execute(run_id, budget_usd=budget_usd)
    image = engine.ledger.result_for_request(request.request_id)
    if image is None:
        raise failure_summary(report) or StudioError("the transfer did not finish",
                                                     hint=f"see 'portrait log'; finish it with 'portrait resume {run_id}'")
    rows = [r for r in engine.ledger.identity(run_id) if r["image_sha256"] == image.image_sha256]
    row = rows[-1]
    return SwapReport(run_id=run_id, image_id=image.id, path=image.out_path or image.path, model=request.model,
                      rights_id=rights_id, distance_before=before, distance=row["distance"], status=row["status"],
                      spent_usd=report.spent_usd + report.sandbox_usd, sandbox=image.sandbox)


def _swap_step(ctx: Any) -> None:
    """Measure the transferred face against the anchor (once per image)."""
    ledger, args = ctx.engine.ledger, ctx.args
    thresholds = IdentityThresholds.model_validate(args["thresholds"])
    anchor_face = anchor_embedding(args["anchor"])
    for image in ledger.images(run_id=ctx.run.id, limit=10):
        if any(r["image_sha256"] == image.image_sha256 for r in ledger.identity(ctx.run.id)):
            continue
        identity = measure_shot(anchor_face, image.path, 0, thresholds)
        ledger.record_identity(ctx.run.id, 0, image.image_sha256, identity.distance, identity.status, details={
            "operation": "swap", "distance_before": args.get("distance_before"),
            "portrait_sha256": args.get("portrait_sha256"), "anchor_sha256": args.get("anchor_sha256"),
            "rights_id": args.get("rights_id")})


def _register() -> None:
    from .engine import register_step

    register_step("swap")(_swap_step)


_register()
