"""Compare 2–4 models on the same brief and seed: a side-by-side grid and a feature/price table.

Each model gets its *own* compiled prompt and settings (a model without negative prompts
gets positive rewrites, FLUX.2 may get the JSON prompt, ...), from the same brief and seed.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .brief import Brief
from .catalog import get_model, parse_model_refs
from .delivery import delivery_modes
from .engine import StepContext, register_step
from .errors import BriefError
from .files import atomic_write_text
from .grids import Tile, side_by_side
from .ledger import ImageRow, Ledger
from .records import Request
from .shoot import ShootPlan, plan_shoot

__all__ = ["MAX_MODELS", "comparison_rows", "plan_compare", "write_comparison"]

MAX_MODELS = 4


def plan_compare(brief: Brief, models: Sequence[str], seeds: Sequence[int], *, provider: str | None = None,
                 deliver: str | None = None) -> ShootPlan:
    """Each model on its own provider: 'flux-1-dev@local', 'flux-2-pro@fal'; a bare id takes `provider`."""
    if len(models) < 2:
        raise BriefError("only one model chosen" if models else "no model chosen", field="--model",
                         hint=f"compare 2 to {MAX_MODELS} models: add another --model (see 'portrait models')")
    if len(models) > MAX_MODELS:
        raise BriefError(f"{len(models)} models chosen", field="--model",
                         hint=f"compare 2 to {MAX_MODELS} models side by side (a fifth does not fit the grid)")
    requests: list[Request] = []
    for route in parse_model_refs(list(models), default_provider=provider):
        requests.extend(plan_shoot(brief, [route.model], seeds, provider=route.provider, kind="compare",
                                   deliver=deliver).requests)
    return ShootPlan(kind="compare", brief=brief, requests=tuple(requests))


def comparison_rows(ledger: Ledger, run_id: str) -> list[dict[str, Any]]:
    """One row per model: catalog features, list price, what this comparison cost, time, checks."""
    from .catalog import model_summary

    requests = ledger.requests(run_id)
    images = {i.request_id: i for i in ledger.images(run_id=run_id, limit=10_000)}
    rows: dict[str, dict[str, Any]] = {}
    for req in requests:
        spec = get_model(req.model)
        summary = model_summary(spec)
        modes_2k_4k = delivery_modes(spec, req.provider, _aspect(req.request))
        row = rows.setdefault(
            f"{req.model}@{req.provider}",
            {
                "model": spec.name,
                "id": spec.id,
                "provider": req.provider,
                "modes": ", ".join(summary["modes"]),
                "max_resolution": spec.max_resolution,
                "aspect_ratios": spec.aspect_ratios,
                "safety_tolerance": (
                    f"{spec.safety_tolerance.min}–{spec.safety_tolerance.max}" if spec.safety_tolerance else "-"
                ),
                "variants": ", ".join(spec.variants) or "-",
                "mode_2k": modes_2k_4k["2k"],
                "mode_4k": modes_2k_4k["4k"],
                "price": spec.price_on(req.provider).describe(),
                "cost_usd": 0.0,
                "seconds": [],
                "checks": [],
                "images": [],
                "warnings": len(req.request.warnings),
            },
        )
        img = images.get(req.id)
        if img is not None:
            row["cost_usd"] = round(row["cost_usd"] + img.cost_usd, 6)
            row["seconds"].append(img.timings.get("total_s", 0.0))
            row["checks"].append(img.check_overall or "n/a")
            row["images"].append(img)
        else:
            row["checks"].append(req.status)
    for row in rows.values():
        secs = row.pop("seconds")
        row["time_to_image_s"] = round(sum(secs) / len(secs), 2) if secs else None
        row["checklist"] = ", ".join(row.pop("checks"))
    return list(rows.values())


COLUMNS = [
    ("model", "Model"), ("provider", "Provider"), ("modes", "Modes"), ("max_resolution", "Max resolution"),
    ("aspect_ratios", "Aspect ratios"), ("safety_tolerance", "Safety tolerance"), ("variants", "Variants"),
    ("mode_2k", "2K mode"), ("mode_4k", "4K mode"), ("price", "Price per image"), ("cost_usd", "This comparison cost"), ("time_to_image_s", "Time to image (s)"),
    ("checklist", "Checklist"),
]


def _aspect(request: Request) -> str | float:
    """The comparison's aspect ratio: the request's, or its width/height."""
    if request.aspect_ratio:
        return request.aspect_ratio
    if request.width and request.height:
        return request.width / request.height
    return "3:4"


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if key == "cost_usd":
        return f"${value:.3f}"
    return "-" if value is None else str(value)


def write_comparison(ledger: Ledger, run_id: str, out: Path) -> dict[str, Path]:
    """compare-grid.png, comparison.md and comparison.html in `out`."""
    rows = comparison_rows(ledger, run_id)
    seeds = sorted({i.seed for r in rows for i in r["images"] if i.seed is not None})
    paths: dict[str, Path] = {}
    for seed in seeds or [None]:
        tiles = []
        for row in rows:
            img: ImageRow | None = next((i for i in row["images"] if i.seed == seed), None)
            if img is not None:
                tiles.append(
                    Tile(
                        path=img.out_path or img.path,
                        lines=(row["model"], f"{row['provider']} · ${img.cost_usd:.3f} · {img.timings.get('total_s', 0):.1f}s",
                               f"check {img.check_overall or 'n/a'}"),
                        status=img.check_overall,
                        badge="SANDBOX" if img.sandbox else None,
                    )
                )
        if tiles:
            name = "compare-grid.png" if seed == seeds[0] else f"compare-grid-seed{seed}.png"
            paths[f"grid_{seed}"] = side_by_side(tiles, out / name, title=f"Same brief, seed {seed}")
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    sep = "|" + "---|" * len(COLUMNS)
    lines = [header, sep, *("| " + " | ".join(_cell(r, k) for k, _ in COLUMNS) + " |" for r in rows)]
    total = sum(r["cost_usd"] for r in rows)
    md = out / "comparison.md"
    atomic_write_text(md, f"# Model comparison · run {run_id}\n\nSeeds: {', '.join(map(str, seeds))}\n\n" + "\n".join(lines)
                  + f"\n\nTotal spent: ${total:.3f}\n")
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r, k))}</td>" for k, _ in COLUMNS) + "</tr>" for r in rows)
    page = out / "comparison.html"
    grid = next(iter(paths.values()), None)
    atomic_write_text(page,
        "<!doctype html><meta charset='utf-8'><title>Model comparison</title>"
        "<style>body{font:14px system-ui;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:left}img{max-width:100%}</style>"
        f"<h1>Model comparison · run {html.escape(run_id)}</h1>"
        + (f"<img src='{grid.name}' alt='side-by-side grid'>" if grid else "")
        + f"<table><tr>{head}</tr>{body}</table><p>Total spent: ${total:.3f}</p>"
    )
    paths["markdown"], paths["html"] = md, page
    return paths


@register_step("compare")
def _compare_step(ctx: StepContext) -> None:
    """The comparison's grid and feature/price tables, written again on every resume."""
    write_comparison(ctx.engine.ledger, ctx.run.id, ctx.out_dir)
