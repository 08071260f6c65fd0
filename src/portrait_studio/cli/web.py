"""`portrait serve`: the local web studio."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import HomeOption, JsonOption, console, plain, print_json, studio
from ._options import PortOption, TokenOption


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        host: Annotated[str, typer.Option("--host", help="Address to listen on; anything but loopback needs --token.")] = "127.0.0.1",
        port: PortOption = 8765,
        token: TokenOption = None,
        no_open: Annotated[bool, typer.Option("--no-open", help="Do not open a browser tab.")] = False,
        database: Annotated[str | None, typer.Option(
            "--database", help="postgresql://USER:PASSWORD@HOST/NAME: a ledger shared by a team (default: config.toml's "
            "'database', else the studio folder's ledger.db).", envvar="PORTRAIT_DATABASE", show_envvar=False)] = None,
        workers: Annotated[int, typer.Option("--workers", min=1, max=32, help="Background jobs run at once.")] = 2,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Open the web studio: brief builder, live shoots, gallery and compare view."""
        from ..config import Studio
        from ..web.server import serve
        from ._engine import sandbox_starter

        def announce(text: str) -> None:
            if json_out:
                print_json({"message": text}, line=True)
            else:
                console.print(plain(text), soft_wrap=True)

        s = studio(home)
        if database:
            s = Studio(s.home, database=database)
        serve(s, host=host, port=port, token=token, open_browser=not no_open, announce=announce,
              start_sandbox=sandbox_starter(s), workers=workers)


__all__ = ["register"]
