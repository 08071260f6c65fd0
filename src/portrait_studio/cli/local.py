"""`portrait local ...`: set up the local (diffusers) provider: licences and tiny test weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import HomeOption, console, studio

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    local = typer.Typer(help="Run FLUX on this machine with diffusers.", no_args_is_help=True)

    @local.command("licence")
    def licence(
        model: Annotated[str, typer.Argument(help="catalog model id, e.g. flux-1-dev")],
        yes: Annotated[bool, typer.Option("--yes", help="accept without asking")] = False,
        home: HomeOption = None,
    ) -> None:
        """Show a model's weights licence and record that you accept it (asked once per studio)."""
        from ..providers.local import LocalProvider

        provider = LocalProvider(studio=studio(home))
        notice = provider.licence_notice(model)
        if notice is None:
            console.print(f"{model}: no licence to accept (open weights, or accepted already)")
            return
        console.print(notice, highlight=False, soft_wrap=True)
        if yes or typer.confirm("Accept this licence?", default=False):
            provider.accept_licence(model)
            console.print(f"accepted; recorded in {provider._licence_file}")
        else:
            raise typer.Exit(1)

    @local.command("tiny")
    def tiny(
        kind: Annotated[str, typer.Argument(help="flux1-dev, flux1-schnell, flux1-fill, flux1-kontext, "
                                                 "flux1-redux, flux2-klein or flux2-dev")],
        path: Annotated[Path, typer.Argument(help="folder to write (then: --weights PATH)")],
    ) -> None:
        """Write a tiny random-weight pipeline: tries the local provider end to end in seconds, offline."""
        from ..testing.tiny import TINY_KINDS, save_tiny_pipeline

        if kind not in TINY_KINDS:
            raise typer.BadParameter(f"choose one of {', '.join(TINY_KINDS)}", param_hint="KIND")
        save_tiny_pipeline(kind, path)
        console.print(f"wrote {kind} to {path}")

    app.add_typer(local, name="local")
