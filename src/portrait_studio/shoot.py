"""The portrait workflow's planners: explore seeds, pick and lock one, vary one element per round.

    plan_shoot / plan_vary / plan_compare ──► ShootPlan.to_plan() ──► Engine.record ──► Engine.execute
        (steps: deliver labelled copies, checklist, contact sheet [, comparison])

Planning is pure; nothing is spent until the engine runs the plan. A plan over the budget is
refused before the first request.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from . import ranking
from .brief import VARIABLE_ELEMENTS, Brief, parse_brief
from .engine import Plan, Step
from .errors import BriefError, BudgetExceeded, StudioError
from .grids import candidate_tile, contact_sheet
from .ledger import ImageRow, Ledger
from .prompting import compile_brief
from .records import Cost, Request, estimated_total
from .seeds import SEED_MAX  # re-exported: the seed policy lives in seeds.py

__all__ = [
    "SEED_MAX",
    "ShootPlan",
    "check_budget",
    "choose_seeds",
    "contact_sheet_for",
    "default_checker",
    "diversify_brief",
    "plan_shoot",
    "plan_vary",
    "run_json",
]

"""Seeds are 0 … 2³²−1: what the providers and diffusers' generators take (one seed policy)."""

SHOOT_STEPS = (Step(name="deliver"), Step(name="check"), Step(name="sheet"))


class ShootPlan(BaseModel):
    """Every request of a round, decided before anything is paid for."""

    model_config = ConfigDict(frozen=True)

    kind: str
    brief: Brief
    requests: tuple[Request, ...]
    parent_run_id: str | None = None
    varied: dict[str, Any] | None = None
    forced: bool = False

    @property
    def estimated(self) -> Cost:
        return estimated_total(self.requests)

    def to_plan(self, *, brief_path: str | None = None) -> Plan:
        """The engine's plan: these requests, then labelled copies, the checklist and the sheet
        (and the grid and tables for a comparison)."""
        steps = SHOOT_STEPS + ((Step(name="compare"),) if self.kind == "compare" else ())
        if any("delivery" in r.options for r in self.requests):
            steps += (Step(name="deliver_size", args={"operations": ["generate"]}),)
        return Plan(
            kind=self.kind, requests=self.requests, steps=steps, name=self.brief.name,
            brief=self.brief.model_dump(mode="json"), brief_path=brief_path, parent_run_id=self.parent_run_id,
            varied=self.varied, forced=self.forced,
        )


def choose_seeds(count: int | None, seed: int | None, rng: random.Random | None = None) -> list[int]:
    """`--seed S` locks one seed; `--seeds N` explores N random ones (the policy is in seeds.py)."""
    from .seeds import check_seed, random_seeds

    return [check_seed(seed)] if seed is not None else random_seeds(count, rng)


def plan_shoot(
    brief: Brief,
    models: Sequence[str],
    seeds: Sequence[int],
    *,
    provider: str | None = None,
    variations: Sequence[tuple[dict[str, Any], Brief]] | None = None,
    kind: str = "shoot",
    deliver: str | None = None,
) -> ShootPlan:
    """models × seeds (× brief variations for --diversify), each compiled for its model. With `deliver`
    (1080p | 2k | 4k) each image renders at its model's best native size for the delivery, and the
    engine's `deliver_size` step upscales it to the exact size afterwards."""
    if not models:
        raise BriefError("no model chosen", field="--model", hint="add --model flux-1.1-pro (see 'portrait models')")
    briefs: Sequence[tuple[dict[str, Any], Brief]] = variations or [({}, brief)]
    requests = []
    for attrs, variant in briefs:
        for model in models:
            delivery = None
            if deliver:
                from .catalog import get_model
                from .delivery import plan_delivery

                spec = get_model(model)
                delivery = plan_delivery(spec.id, provider or spec.default_provider, deliver, brief_aspect(variant))
            for seed in seeds:
                req = compile_brief(variant, model, provider=provider, seed=seed, delivery=delivery)
                options = dict(req.options)
                if attrs:
                    options["declared"] = attrs
                if delivery is not None:
                    options["delivery"] = delivery.model_dump()
                if options != req.options:
                    req = req.model_copy(update={"options": options})
                requests.append(req)
    return ShootPlan(kind=kind, brief=brief, requests=tuple(requests))


def brief_aspect(brief: Brief) -> str:
    """The brief's aspect ratio: its output's, else its composition preset's (e.g. '3:4')."""
    from .brief import preset

    return str(brief.output.aspect_ratio or preset("compositions")[brief.composition.framing]["aspect_ratio"])


DIVERSIFIABLE = ("age", "skin_tone", "gender_expression", "ethnicity")


def diversify_brief(brief: Brief, spec: str) -> list[tuple[dict[str, Any], Brief]]:
    """`--diversify 'skin_tone=light,medium,deep;age=25,45,65'` → balanced brief variants.

    The attributes are *declared* in each variant's brief (and so in the ledger) for the
    representation review; nothing is ever inferred from pixels.
    """
    from .review import diversify

    values: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, _, listed = part.partition("=")
        name = name.strip().replace("-", "_")
        if name not in DIVERSIFIABLE or not listed:
            raise BriefError(f"cannot diversify '{part}'", field="--diversify",
                             hint=f"write NAME=v1,v2;NAME2=... with NAME one of {', '.join(DIVERSIFIABLE)}")
        values[name] = [v.strip() for v in listed.split(",") if v.strip()]
    n = max(len(v) for v in values.values())
    variants = []
    for attrs in diversify(values, n):
        subject = brief.subject.model_dump()
        subject.update({k: (int(v) if k == "age" else v) for k, v in attrs.items()})
        if {"age", "gender_expression"} & attrs.keys():
            subject["description"] = None  # the description would contradict the new age/gender
        data = brief.model_dump(mode="python")
        data["subject"] = subject
        variants.append((dict(attrs), parse_brief(data, source="--diversify")))
    return variants


def check_budget(plan: ShootPlan | Plan, budget_usd: float | None) -> None:
    """Refuse a plan whose estimate exceeds the budget, before anything is spent."""
    if budget_usd is not None and plan.estimated.usd > budget_usd + 1e-9:
        raise BudgetExceeded(
            f"the plan is estimated at ${plan.estimated.usd:.3f} ({len(plan.requests)} images), over the "
            f"${budget_usd:.2f} budget; nothing was spent",
            budget_usd=budget_usd,
            needed_usd=plan.estimated.usd,
        )


def plan_vary(ledger: Ledger, run_id: str, changes: dict[str, Any], *, force: bool = False) -> ShootPlan:
    """A new round from the run's picked image, with exactly one brief element changed."""
    run = ledger.run(run_id)
    picked = ledger.picked(run.id)
    if picked is None:
        raise StudioError(f"run {run.id} has no picked image to lock", hint=f"run 'portrait pick {run.id} IMAGE' first")
    if not changes:
        raise BriefError("nothing to vary", hint=f"pass one of --{', --'.join(VARIABLE_ELEMENTS)}")
    if len(changes) > 1 and not force:
        raise BriefError(
            f"{len(changes)} elements changed at once ({', '.join(changes)})",
            hint="change one element per round so results stay comparable, or pass --force",
        )
    if run.brief is None:
        raise StudioError(f"run {run.id} has no brief recorded")
    brief = parse_brief(run.brief, source=f"run {run.id}")
    for element, value in changes.items():
        brief = brief.with_element(element, value)
    base = next(r.request for r in ledger.requests(run.id) if r.id == picked.request_id)
    req = compile_brief(brief, base.model, provider=base.provider, seed=base.seed)
    # The locked baseline keeps the picked image's compiled settings; only the prose changes.
    locked = req.model_copy(
        update={
            "width": base.width, "height": base.height, "aspect_ratio": base.aspect_ratio,
            "steps": base.steps if req.steps is not None else None,
            "guidance": base.guidance if req.guidance is not None else None,
            "parent_id": picked.id,
            "estimated_cost": base.estimated_cost,
        }
    )
    return ShootPlan(kind="vary", brief=brief, requests=(locked,), parent_run_id=run.id, varied=changes, forced=len(changes) > 1)


def run_json(ledger: Ledger, run_id: str) -> dict[str, Any]:
    """Everything needed to redo the run: brief, every compiled request, results and costs."""
    run = ledger.run(run_id)
    images = {img.request_id: img for img in ledger.images(run_id=run_id, limit=100_000)}
    return {
        "run_id": run.id,
        "kind": run.kind,
        "created_at": run.created_at,
        "brief": run.brief,
        "budget_usd": run.budget_usd,
        "parent_run_id": run.parent_run_id,
        "varied": run.varied,
        "forced": run.forced,
        "status": run.status,
        "plan": run.plan,
        "steps": run.steps,
        "spent": ledger.spent(run_id).model_dump(),
        "sandbox_spent": ledger.spent(run_id, sandbox=True).model_dump(),
        "requests": [
            {
                "request": r.request.model_dump(mode="json"),
                "status": r.status,
                "task_id": r.task_id,
                "error": r.error,
                "charged_usd": r.charged_usd,
                "sandbox": r.sandbox,
                "image": _image_summary(images.get(r.id)),
            }
            for r in ledger.requests(run_id)
        ],
        "redo": f"portrait resume {run.id}",
        **_identity_blocks(ledger, run.id, run.plan or {}),
    }


def _identity_blocks(ledger: Ledger, run_id: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Series and swaps: the per-shot identity measurements (and the series report) in run.json."""
    rows = ledger.identity(run_id)
    found: dict[str, Any] = {}
    if plan.get("series") is not None:
        found["series"] = plan["series"]
    if rows:
        found["identity"] = [{k: v for k, v in r.items() if k != "details_json"} for r in rows]
    return found


def _image_summary(img: ImageRow | None) -> dict[str, Any] | None:
    if img is None:
        return None
    return {
        "id": img.id, "sha256": img.image_sha256, "file": img.out_path or img.path, "seed": img.seed,
        "cost_usd": img.cost_usd, "timings": img.timings, "check": img.check_overall, "picked": img.picked,
        "sandbox": img.sandbox,
    }


Checker = Callable[[Path, Brief], tuple[str, float, dict[str, Any]]]
"""(image path, brief) -> (overall status, score, checklist JSON)."""


def default_checker() -> Checker | None:
    """The checklist, if the vision stack is installed (it is in a full install).

    The checklist itself is imported at the first check, not here: the engine opens before the
    first request is sent, and the import (half a second) then runs in the warm-up thread while
    the provider works (`engine._warm_checklist`) instead of delaying the submission."""
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in ("mediapipe", "cv2", "dlib")):
        return None

    def check(path: Path, brief: Brief) -> tuple[str, float, dict[str, Any]]:
        from .checks import CheckContext, run_checklist
        from .imaging import open_image
        from .quiet import native_quiet

        image = open_image(path)
        with native_quiet():
            checklist = run_checklist(image, context=CheckContext.from_brief(brief))
        return checklist.overall, float(checklist.score), checklist.model_dump(mode="json")

    return check


def ranked_images(ledger: Ledger, run_id: str) -> list[ImageRow]:
    """The run's generated images, best first by the one ranking rule (ranking.py)."""
    return ranking.rank(i for i in ledger.images(run_id=run_id, limit=100_000) if i.operation == "generate")


def contact_sheet_for(ledger: Ledger, run_id: str, out: Path) -> Path | None:
    """The run's contact sheet: every image ranked, with seed, model, cost, time and checklist status."""
    run = ledger.run(run_id)
    ranked = ranked_images(ledger, run_id)
    if not ranked:
        return None
    tiles = [candidate_tile(r, n, ledger.checks(r.image_sha256)) for n, r in enumerate(ranked, 1)]
    title = f"{run.name or run.kind} · {run.id} · {time.strftime('%Y-%m-%d')}"
    return contact_sheet(tiles, out / "contact-sheet.png", title=title)
