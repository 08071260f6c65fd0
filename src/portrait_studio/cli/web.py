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
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Open the web studio: brief builder, live shoots, gallery and compare view."""
        from ..web.server import check_bind, serve
        from ._engine import sandbox_starter

        check_bind(host, token)  # before anything starts, so the error is one line

        def announce(text: str) -> None:
            if json_out:
                print_json({"message": text}, line=True)
            else:
                console.print(plain(text), soft_wrap=True)

        s = studio(home)
        serve(s, host=host, port=port, token=token, open_browser=not no_open, announce=announce,
              start_sandbox=sandbox_starter(s))


__all__ = ["register"]
