"""`portrait local ...`: set up the local (diffusers) provider: licences and tiny test weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ._common import HomeOption, JsonOption, console, escape, new_app, print_json, studio

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    local = new_app("Run FLUX on this machine with diffusers.")

    @local.command("licence")
    def licence(
        model: Annotated[str, typer.Argument(help="Catalog model id, e.g. flux-1-dev.", metavar="MODEL")],
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Accept without asking.")] = False,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Show a model's weights licence and record that you accept it (asked once per studio)."""
        from ..providers.local import LocalProvider

        provider = LocalProvider(studio=studio(home))
        notice = provider.licence_notice(model)
        if notice is None:
            if json_out:
                print_json({"model": model, "licence": None, "accepted": True})
            else:
                console.print(f"{escape(model)}: no licence to accept (open weights, or accepted already)", highlight=False)
            return
        if not json_out:
            console.print(notice, markup=False, highlight=False, soft_wrap=True)  # verbatim: "FLUX.1 [dev] ..."
        if not yes:
            if json_out:
                raise UsageError("--json cannot ask a question", field="--yes", hint=f"portrait local licence {model} --yes --json")
            try:
                yes = typer.confirm("Accept this licence?", default=False)
            except typer.Abort:
                console.print()  # end the unanswered prompt's line
                raise UsageError("no answer to 'Accept this licence?' (input ended)", field="--yes",
                                 hint=f"answer y at the prompt, or run: portrait local licence {model} --yes") from None
        if not yes:
            console.print("not accepted; nothing was recorded")
            raise typer.Exit(1)
        provider.accept_licence(model)
        if json_out:
            print_json({"model": model, "licence": notice, "accepted": True, "recorded_in": str(provider._licence_file)})
        else:
            console.print(f"accepted; recorded in {escape(str(provider._licence_file))}", highlight=False)

    @local.command("tiny")
    def tiny(
        kind: Annotated[str, typer.Argument(help="flux1-dev, flux1-schnell, flux1-fill, flux1-kontext, "
                                                 "flux1-redux, flux2-klein or flux2-dev.", metavar="KIND")],
        path: Annotated[Path, typer.Argument(help="Folder to write (then: --weights PATH).", file_okay=False,
                                             metavar="FOLDER")],
        json_out: JsonOption = False,
    ) -> None:
        """Write a tiny random-weight pipeline: tries the local provider end to end in seconds, offline."""
        from ..testing.tiny import TINY_KINDS, save_tiny_pipeline

        if kind not in TINY_KINDS:
            raise typer.BadParameter(f"'{kind}' is not one of {', '.join(TINY_KINDS)}", param_hint="KIND")
        save_tiny_pipeline(kind, path)
        if json_out:
            print_json({"kind": kind, "path": str(path)})
        else:
            console.print(f"wrote {kind} to {escape(str(path))}", highlight=False)

    app.add_typer(local, name="local")
