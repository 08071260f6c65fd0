"""`portrait log`: what was made, newest first, with lineage."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Table

from ..ledger import Ledger
from ._common import HomeOption, JsonOption, console, print_json, studio


def register(app: typer.Typer) -> None:
    @app.command("log")
    def log(
        n: Annotated[int, typer.Option("-n", help="How many images.")] = 20,
        run: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """List the images in the ledger: run, model, seed, cost, checks, lineage."""
        s = studio(home)
        with Ledger(s.ledger_path, read_only=True) as ledger:
            run_id = ledger.run(run).id if run else None
            rows = ledger.images(run_id=run_id, limit=n)
            real = ledger.spent(run_id)
            sandbox = ledger.spent(run_id, sandbox=True)
            if json_out:
                print_json([r.model_dump(mode="json") for r in rows])
                return
            if not rows:
                console.print("the ledger is empty — start with: portrait shoot BRIEF.yaml --model flux-1.1-pro --seeds 3")
                return
            table = Table("image", "run", "op", "model", "seed", "cost", "check", "parent", "when")
            for r in rows:
                table.add_row(
                    f"{r.id}{' ★' if r.picked else ''}", r.run_id or "-", r.operation, r.model or "-",
                    str(r.seed if r.seed is not None else "-"),
                    f"${r.cost_usd:.3f}" + (" SANDBOX" if r.sandbox else ""), r.check_overall or "-",
                    (r.parent_sha256 or "")[:10] or "-",
                    dt.datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M"),
                )
            console.print(table)
            scope = f"run {run_id}" if run_id else "in total"
            console.print(f"spent {scope}: ${real.usd:.3f} real money"
                          + (f" · sandbox (test, not money): ${sandbox.usd:.3f}" if sandbox.usd else ""))
