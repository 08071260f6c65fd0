"""The `portrait` command. Thin: parse, call the library, render.

Each command group lives in its own module with a `register(app)` function; this file
only assembles them. Heavy libraries (torch, mediapipe) are imported inside commands so
that `portrait --help` stays instant, and `COMMANDS` says which module has which command, so
that running one imports only its module (a new command goes in both lists; a test says so).
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Annotated, Any

import typer

from ._common import EXIT_HELP, new_app
from ._run import completing, leave, run_cli

__all__ = ["COMMANDS", "app", "app_for", "build_app", "main", "run_cli"]


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"portrait {__version__}")
        raise typer.Exit(0)


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

COMMANDS: dict[str, str] = {
    "compile": "brief", "brief": "brief", "models": "models", "log": "log",
    "shoot": "shoot", "compare": "shoot", "pick": "shoot", "vary": "shoot", "resume": "shoot",
    "audit": "studio_cmds", "keys": "studio_cmds", "verify": "labels", "label": "labels", "review": "review",
    "check": "check", "sandbox": "sandbox", "local": "local",
    "fix": "finishing", "upscale": "finishing", "masks": "finishing", "lineage": "finishing",
    "series": "series", "swap": "series", "batch": "batch", "edit": "edit", "restyle": "edit", "serve": "web",
    "doctor": "doctor", "approve": "team", "reject": "team", "export-approved": "team", "team": "team",
    "remote": "remote",
}
"""Each top-level command (or group) -> the module in COMMAND_MODULES that registers it (a test
holds the two equal): running one command imports only its module."""


def build_app(modules: list[str] | None = None) -> typer.Typer:
    """The `portrait` app with the commands of `modules` (default: every command)."""
    built = new_app(
        "Portrait Studio: photoreal AI portraits with FLUX, checked, labelled and reproducible.",
        epilog=f"{EXIT_HELP} Set PORTRAIT_DEBUG=1 to see tracebacks. Docs: README.md.",
        name="portrait",
    )
    built.callback()(_root)
    for name in COMMAND_MODULES if modules is None else modules:
        importlib.import_module(f"{__name__}.{name}").register(built)
    return built


def app_for(args: list[str]) -> typer.Typer:
    """The app to run `args` with: one that has only the named command's module when `args`
    starts with a command's name (none for `--version`), else the whole app (`--help`, a typo
    that gets a "did you mean", shell completion).

    Importing every command module costs each run the imports of all of them (the ledger's
    SQLAlchemy, the web server's FastAPI, ...): 0.2-0.3 s of `portrait check`, which needs
    none of them. The command runs the same either way (a test compares help, errors and exit
    codes of every command in both)."""
    if args and not completing() and args[0] in ("--version", "-V"):
        return build_app([])
    if args and not completing() and args[0] in COMMANDS:
        return build_app([COMMANDS[args[0]]])
    return _whole_app()


@functools.cache
def _whole_app() -> typer.Typer:
    return build_app()


def __getattr__(name: str) -> Any:
    """`app`, the whole app, is built on first use (`portrait --help`, tests, embedding)."""
    if name == "app":
        return _whole_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        run_cli(app_for(sys.argv[1:]))
    except SystemExit as exc:
        leave(exc.code)
    leave(0)
