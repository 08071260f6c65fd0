"""The `portrait` command. Thin: parse, call the library, render.

Each command group lives in its own module with a `register(app)` function; this file
only assembles them. Heavy libraries (torch, mediapipe) are imported inside commands so
that `portrait --help` stays instant.
"""

from __future__ import annotations

import importlib

import typer

from ._common import run_cli

__all__ = ["app", "main"]

app = typer.Typer(
    name="portrait",
    help="Portrait Studio: photoreal AI portraits with FLUX, checked, labelled and reproducible.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    run_cli(app)
