"""`portrait models`: the catalog as a comparison table."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from ..catalog import ModelSpec, all_models
from ._common import JsonOption, console, print_json


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
        table = Table("model", "providers", "modes", "max res", "aspect ratios", "variants", "price", title="FLUX models")
        for r in rows:
            table.add_row(
                f"{r['name']}\n[dim]{r['id']}[/]", ", ".join(r["providers"]), ", ".join(r["modes"]),
                r["max_resolution"], r["aspect_ratios"], ", ".join(r["variants"]) or "-", r["price"],
            )
        console.print(table)
