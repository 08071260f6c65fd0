"""`portrait log`: what was made, newest first, with lineage."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from ..ledger import open_ledger
from ._common import HomeOption, JsonOption, console, plain, print_json, studio
from ._options import check_id
from ._tables import ID, new_table


def register(app: typer.Typer) -> None:
    @app.command("log")
    def log(
        n: Annotated[int, typer.Option("-n", min=1, max=10_000, help="How many images.")] = 20,
        run: Annotated[str | None, typer.Option("--run", help="Only this run (id or unique prefix).", metavar="RUN",
                                                callback=lambda v: check_id(v, "run id"))] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """List the images in the ledger: run, model, seed, cost, checks, lineage."""
        s = studio(home)
        with open_ledger(s, read_only=True) as ledger:
            run_id = ledger.run(run).id if run else None
            rows = ledger.images(run_id=run_id, limit=n)
            real = ledger.spent(run_id)
            sandbox = ledger.spent(run_id, sandbox=True)
            if json_out:
                print_json([r.model_dump(mode="json") for r in rows])
                return
            if not rows:
                console.print("the ledger is empty — start with: portrait shoot BRIEF.yaml --model flux-1.1-pro --seeds 3",
                              highlight=False)
                return
            # two lines per image: the ids you type next (never cut) over what the image is
            table = new_table(("image / run", ID), ("model", ID), ("cost", {}),
                              ("when", {}), spaced=True)
            for r in rows:
                table.add_row(
                    plain(r.id + (" ★" if r.picked else ""), "bold") + plain(f"\n{r.run_id or '-'}", "dim"),
                    plain(f"{r.model or '-'}\n{r.seed if r.seed is not None else '-'}\n{r.operation}"),
                    plain(f"${r.cost_usd:.3f}" + ("\nSANDBOX" if r.sandbox else "") + f"\n{r.check_overall or '-'}"),
                    plain(dt.datetime.fromtimestamp(r.created_at).strftime("%m-%d %H:%M")
                          + f"\n{(r.parent_sha256 or '')[:10] or '-'}"),
                )
            console.print(table)
            scope = f"run {run_id}" if run_id else "in total"
            console.print(f"spent {scope}: ${real.usd:.3f} real money"
                          + (f" · sandbox (test, not money): ${sandbox.usd:.3f}" if sandbox.usd else ""), highlight=False)
            console.print("★ picked · under each image: its run id; the model's seed and operation; SANDBOX and the checklist verdict under the cost", style="dim", highlight=False)
