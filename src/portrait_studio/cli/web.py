"""`portrait serve`: the local web studio."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import HomeOption, console, studio


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        host: Annotated[str, typer.Option("--host", help="Address to listen on; anything but loopback needs --token.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="Port to listen on (0 picks a free one).")] = 8765,
        token: Annotated[str | None, typer.Option("--token", help="Access token; required off loopback.", envvar="PORTRAIT_WEB_TOKEN")] = None,
        no_open: Annotated[bool, typer.Option("--no-open", help="Do not open a browser tab.")] = False,
        home: HomeOption = None,
    ) -> None:
        """Open the web studio: brief builder, live shoots, gallery and compare view."""
        from ..web.server import check_bind, serve
        from ._engine import sandbox_starter

        check_bind(host, token)  # before anything starts, so the error is one line
        s = studio(home)
        serve(s, host=host, port=port, token=token, open_browser=not no_open,
              announce=lambda text: console.print(text, highlight=False, soft_wrap=True),
              start_sandbox=sandbox_starter(s))


__all__ = ["register"]
