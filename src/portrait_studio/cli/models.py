"""`portrait models`: the catalog as a comparison table."""

from __future__ import annotations

import typer

from ..catalog import all_models, model_summary
from ._common import JsonOption, console, plain, print_json
from ._tables import ID, new_table


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
