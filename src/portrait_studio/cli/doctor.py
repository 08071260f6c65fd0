"""`portrait doctor [--repair]`: check the studio folder and fix what is safe to fix."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer
from rich.markup import escape

from ..config import resolve_home
from ._common import HomeOption, JsonOption, console, print_json

_MARK = {"ok": "[green]ok[/]", "info": "[blue]info[/]", "warning": "[yellow]warning[/]",
         "problem": "[bold red]problem[/]", "fixed": "[green]fixed[/]"}


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor(
        repair: Annotated[bool, typer.Option("--repair", help="Fix what is safe to fix (nothing you made is deleted).")] = False,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Check the studio: config, keys, ledger, image files, leftover temp files, sandbox state."""
        from ..doctor import examine

        report = examine(resolve_home(home), repair=repair)
        if json_out:
            print_json({"home": str(report.home), "healthy": report.healthy,
                        "findings": [dataclasses.asdict(f) for f in report.findings]})
        else:
            console.print(f"studio {escape(str(report.home))}", highlight=False)
            for f in report.findings:
                console.print(f"  {_MARK[f.severity]} {f.area}: {escape(f.message)}", highlight=False, soft_wrap=True)
                if f.fix:
                    console.print(f"      [dim]fix: {escape(f.fix)}[/]", highlight=False, soft_wrap=True)
            left = len(report.problems)
            if left:
                hint = "" if repair else " ('portrait doctor --repair' fixes what it safely can)"
                console.print(f"[bold red]{left} problem{'s' if left != 1 else ''} left[/]{escape(hint)}", highlight=False)
            else:
                console.print("[green]the studio is healthy[/]")
        if not report.healthy:
            raise typer.Exit(1)
