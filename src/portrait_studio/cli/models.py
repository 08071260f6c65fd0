"""`portrait models`: the catalog as a comparison table."""

from __future__ import annotations

from typing import Any

import typer

from ..catalog import ModelSpec, all_models
from ._common import JsonOption, console, plain, print_json
from ._tables import ID, new_table


def model_summary(spec: ModelSpec) -> dict[str, Any]:
    """One catalog row in the shape comparison pages show."""
    provider = spec.default_provider
    return {
        "id": spec.id,
        "name": spec.name,
        "providers": list(spec.routes),
        "modes": list(spec.modes) + (["lora"] if spec.lora else []) + (["finetune"] if spec.finetune else []),
        "references": spec.max_references,
        "max_resolution": spec.max_resolution,
        "resolution_modes": list(spec.resolution_modes),
        "aspect_ratios": spec.aspect_ratios,
        "steps": spec.steps.model_dump() if spec.steps else None,
        "guidance": spec.guidance.model_dump() if spec.guidance else None,
        "negative_prompt": spec.negative_prompt,
        "safety_tolerance": spec.safety_tolerance.model_dump() if spec.safety_tolerance else None,
        "variants": list(spec.variants),
        "price": spec.price_on(provider).describe(),
        "price_by_provider": {p: spec.price_on(p).describe() for p in spec.routes},
        "licence": spec.licence,
    }


def register(app: typer.Typer) -> None:
    @app.command("models")
    def models(json_out: JsonOption = False) -> None:
        """List every catalog model: providers, modes, resolution, aspect ratios, price."""
        rows = [model_summary(m) for m in all_models()]
        if json_out:
            print_json(rows)
            return
        table = new_table(("model id / name", ID), ("providers · modes", {"ratio": 2}),
                          ("size", {"ratio": 2}), ("price", {"ratio": 2}), title="FLUX models", spaced=True)
        for r in rows:
            extras = f"\nvariants: {', '.join(r['variants'])}" if r["variants"] else ""
            table.add_row(
                plain(r["id"], "bold") + plain(f"\n{r['name']}", "dim"),
                plain(f"{', '.join(r['providers'])}\n{', '.join(r['modes'])}{extras}"),
                plain(f"{r['max_resolution']}\n{r['aspect_ratios']}"),
                plain(r["price"]),
            )
        console.print(table)
        console.print("use the id with --model, e.g. portrait shoot BRIEF -m flux-1.1-pro", highlight=False)
