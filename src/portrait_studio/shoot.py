"""The portrait workflow: explore seeds, pick and lock one, vary one element per round.

    plan_shoot ──► check_budget ──► start_run (ledger rows + run.json) ──► runner.run_plan
        ──► finish_run (checks, ranking, contact sheet)

Planning is pure; nothing is spent until `run_plan`. A plan over the budget is refused
before the first request.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .brief import VARIABLE_ELEMENTS, Brief, parse_brief
from .errors import BriefError, BudgetExceeded, StudioError
from .grids import Tile, contact_sheet
from .ledger import ImageRow, Ledger
from .prompting import compile_brief
from .records import Cost, Request
from .runner import Outcome, RunReport

__all__ = [
    "ShootPlan",
    "check_budget",
    "choose_seeds",
    "diversify_brief",
    "execute_recorded_run",
    "default_labeler",
    "finish_run",
    "plan_shoot",
    "plan_vary",
    "start_run",
]


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
        total = Cost()
        for r in self.requests:
            total = total + r.estimated_cost
        return total


def choose_seeds(count: int | None, seed: int | None, rng: random.Random | None = None) -> list[int]:
    """`--seed S` locks one seed; `--seeds N` explores N random ones (3–5 recommended)."""
    if seed is not None:
        return [seed]
    count = count or 3
    if not 1 <= count <= 16:
        raise BriefError(f"{count} seeds", field="--seeds", hint="explore 3–5 seeds (at most 16)")
    rng = rng or random.SystemRandom()
    return [rng.randrange(2**32) for _ in range(count)]


def plan_shoot(
    brief: Brief,
    models: Sequence[str],
    seeds: Sequence[int],
    *,
    provider: str | None = None,
    variations: Sequence[tuple[dict[str, Any], Brief]] | None = None,
    kind: str = "shoot",
) -> ShootPlan:
    """models × seeds (× brief variations for --diversify), each compiled for its model."""
    if not models:
        raise BriefError("no model chosen", field="--model", hint="add --model flux-1.1-pro (see 'portrait models')")
    briefs: Sequence[tuple[dict[str, Any], Brief]] = variations or [({}, brief)]
    requests = []
    for attrs, variant in briefs:
        for model in models:
            for seed in seeds:
                req = compile_brief(variant, model, provider=provider, seed=seed)
                if attrs:
                    req = req.model_copy(update={"options": {**req.options, "declared": attrs}})
                requests.append(req)
    return ShootPlan(kind=kind, brief=brief, requests=tuple(requests))


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


def check_budget(plan: ShootPlan, budget_usd: float | None) -> None:
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


def start_run(
    plan: ShootPlan,
    ledger: Ledger,
    runs_dir: Path,
    *,
    budget_usd: float | None,
    brief_path: str | None = None,
    out_dir: Path | None = None,
) -> tuple[str, Path]:
    """Record the run and its requests (before any is sent) and write run.json."""
    from .records import new_id

    run_id = new_id("run_")
    out = out_dir or (runs_dir / run_id)
    out.mkdir(parents=True, exist_ok=True)
    requests = [r.model_copy(update={"run_id": run_id}) for r in plan.requests]
    ledger.create_run(
        plan.kind, run_id=run_id, name=plan.brief.name, brief=plan.brief.model_dump(mode="json"), brief_path=brief_path,
        plan={"estimated_usd": plan.estimated.usd, "requests": len(requests)}, budget_usd=budget_usd,
        parent_run_id=plan.parent_run_id, varied=plan.varied, forced=plan.forced, out_dir=str(out),
    )
    ledger.add_requests(run_id, requests)
    write_run_json(ledger, run_id, out)
    return run_id, out


def write_run_json(ledger: Ledger, run_id: str, out: Path) -> Path:
    """Everything needed to redo the run: brief, every compiled request, results and costs."""
    run = ledger.run(run_id)
    images = {img.request_id: img for img in ledger.images(run_id=run_id, limit=10_000)}
    data = {
        "run_id": run.id,
        "kind": run.kind,
        "created_at": run.created_at,
        "brief": run.brief,
        "budget_usd": run.budget_usd,
        "parent_run_id": run.parent_run_id,
        "varied": run.varied,
        "forced": run.forced,
        "status": run.status,
        "spent": ledger.spent(run_id).model_dump(),
        "requests": [
            {
                "request": r.request.model_dump(mode="json"),
                "status": r.status,
                "task_id": r.task_id,
                "error": r.error,
                "image": _image_summary(images.get(r.id)),
            }
            for r in ledger.requests(run_id)
        ],
        "redo": f"portrait resume {run.id}",
    }
    path = out / "run.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


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
    """The checklist, if the vision stack is importable (it is in a full install)."""
    try:
        from .checks import CheckContext, run_checklist
    except ImportError:
        return None

    def check(path: Path, brief: Brief) -> tuple[str, float, dict[str, Any]]:
        from PIL import Image

        from .quiet import native_quiet as _quiet_stderr

        with Image.open(path) as im, _quiet_stderr():
            checklist = run_checklist(im.convert("RGB"), context=CheckContext.from_brief(brief))
        return checklist.overall, float(checklist.score), checklist.model_dump(mode="json")

    return check


Labeler = Callable[[Path, Request], dict[str, Any]]
"""(exported file, its request) -> the label record; labels the file in place."""


def default_labeler(c2pa: Any = None, secrets: Sequence[str] = (), creator: str | None = None,
                    credit: str | None = None) -> Labeler:
    """Label every exported image as AI-made (parameters chunk, XMP/IPTC, C2PA when configured)."""

    def label(path: Path, request: Request) -> dict[str, Any]:
        from .labels import LabelInfo, label_image

        info = LabelInfo.from_request(request, creator=creator, credit=credit)
        configured = c2pa if c2pa is not None and getattr(c2pa, "cert_chain", None) else None
        record = label_image(path, info, configured, sidecar=True, secrets=tuple(secrets))
        return record.model_dump(mode="json")

    return label


def finish_run(
    run_id: str, ledger: Ledger, out: Path, report: RunReport, *, checker: Checker | None = None,
    labeler: Labeler | None = None,
) -> tuple[list[ImageRow], Path | None]:
    """Label, check and rank the run's images; write the contact sheet and run.json.

    The exported copy in the run folder is labelled (the ledger's content-addressed original
    stays as the provider delivered it), and the checklist runs on that exported file.
    """
    run = ledger.run(run_id)
    brief = parse_brief(run.brief, source=f"run {run_id}") if run.brief else None
    images = [o.image for o in report.outcomes if o.image is not None]
    requests = {r.id: r.request for r in ledger.requests(run_id)}
    for img in images:
        exported = Path(img.out_path) if img.out_path else None
        if labeler and exported and exported.exists() and ledger.label(img.image_sha256) is None:
            record = labeler(exported, requests[img.request_id]) if img.request_id in requests else None
            if record:
                status = (record.get("c2pa") or {}).get("status") if isinstance(record.get("c2pa"), dict) else None
                ledger.record_label(img.image_sha256, record, status or ("signed" if record.get("c2pa") else "unsigned"))
    if checker and brief:
        for img in images:
            if ledger.checks(img.image_sha256) is None:
                overall, score, data = checker(Path(img.out_path or img.path), brief)
                ledger.record_checks(img.image_sha256, overall, score, data)
    ranked = sorted(
        (ledger.image(i.id) for i in images), key=lambda r: (-(r.check_score if r.check_score is not None else -1), r.created_at)
    )
    sheet = None
    if ranked:
        tiles = [
            Tile(
                path=r.out_path or r.path,
                lines=(
                    f"#{rank} {r.model} · seed {r.seed}",
                    f"${r.cost_usd:.3f} · {r.timings.get('total_s', 0):.1f}s · check {r.check_overall or 'n/a'}",
                ),
                status=r.check_overall,
                badge="SANDBOX" if r.sandbox else None,
            )
            for rank, r in enumerate(ranked, 1)
        ]
        title = f"{run.name or run.kind} · {run.id} · {time.strftime('%Y-%m-%d')}"
        sheet = contact_sheet(tiles, out / "contact-sheet.png", title=title)
    write_run_json(ledger, run_id, out)
    return ranked, sheet


def execute_recorded_run(
    studio: Any,
    run_id: str,
    *,
    sandbox: str = "auto",
    budget: float | None = None,
    weights: str | None = None,
    resubmit_uncertain: bool = False,
    checker: Checker | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    on_providers: Callable[[dict[str, Any]], None] | None = None,
) -> RunReport:
    """Run (or resume) a run recorded by `start_run`, then label, check, rank and write its files.

    The one place a recorded run is executed: the CLI adds a progress bar through
    `on_outcome`, the web studio a job; each finished image is in the ledger before the next
    is paid for. Compare runs also get their grid and tables.
    """
    import asyncio

    from .providers import open_providers
    from .runner import run_plan

    options = {"local": {"weights": weights}} if weights else {}
    with Ledger(studio.ledger_path) as ledger:
        rows = ledger.requests(run_id)
        run = ledger.run(run_id)
        out = Path(run.out_dir) if run.out_dir else studio.runs_dir / run_id
        with open_providers(studio, {r.provider for r in rows}, sandbox=sandbox, options=options) as providers:  # type: ignore[arg-type]
            if on_providers:
                on_providers(providers)

            async def go() -> RunReport:
                try:
                    return await run_plan(
                        run_id, ledger=ledger, providers=providers, images_dir=studio.images_dir, out_dir=out,
                        budget_usd=budget, resubmit_uncertain=resubmit_uncertain, on_outcome=on_outcome,
                    )
                finally:
                    for p in providers.values():
                        await p.aclose()

            report = asyncio.run(go())
        labeler = default_labeler(studio.config.c2pa, studio.secrets(), studio.config.creator, studio.config.credit)
        finish_run(run_id, ledger, out, report, checker=checker, labeler=labeler)
        if run.kind == "compare":
            from .compare import write_comparison

            write_comparison(ledger, run_id, out)
    return report
