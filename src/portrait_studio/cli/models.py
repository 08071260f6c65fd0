"""`portrait models`: the catalog as a comparison table."""

from __future__ import annotations

import typer
from rich.table import Table

from ..catalog import all_models, model_summary
from ._common import JsonOption, console, print_json


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
