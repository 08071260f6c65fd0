"""The `portrait` command. Thin: parse, call the library, render.

Each command group lives in its own module with a `register(app)` function; this file
only assembles them. Heavy libraries (torch, mediapipe) are imported inside commands so
that `portrait --help` stays instant.
"""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from ._common import EXIT_HELP, new_app
from ._run import leave, run_cli

__all__ = ["app", "main", "run_cli"]

app = new_app(
    "Portrait Studio: photoreal AI portraits with FLUX, checked, labelled and reproducible.",
    epilog=f"{EXIT_HELP} Set PORTRAIT_DEBUG=1 to see tracebacks. Docs: README.md.",
    name="portrait",
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"portrait {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", "-V", help="Print the version and exit.",
                                          callback=_version, is_eager=True)] = False,
) -> None:
    """Portrait Studio: photoreal AI portraits with FLUX, checked, labelled and reproducible."""


# One line per command module; each defines register(app).
COMMAND_MODULES: list[str] = [
    "brief",
    "models",
    "log",
    "shoot",
    "studio_cmds",
    "labels",
    "review",
    "check",
    "sandbox",
    "local",
    "finishing",
    "series",
    "batch",
    "edit",
    "web",
    "doctor",
    "team",
    "remote",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def _own_stderr() -> None:
    """Give the CLI's own messages and progress bars a private copy of stderr.

    Native libraries are silenced by pointing file descriptor 2 at /dev/null while they load
    (quiet.native_quiet); a progress bar drawing to fd 2 at that moment would lose frames and
    garble. Writing to a duplicate of the original descriptor keeps our output whole.
    """
    import os
    import sys

    from ._common import err_console

    try:
        stream = os.fdopen(os.dup(2), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                           errors="replace")
    except (OSError, ValueError):
        return
    err_console.file = stream


def main() -> None:
    """The `portrait` console command (and `python -m portrait_studio`)."""
    _own_stderr()
    try:
        run_cli(app)
    except SystemExit as exc:
        leave(exc.code)
    leave(0)
