"""Shared CLI plumbing: the app factory, the studio folder option, consoles, JSON output.

Everything the studio prints that came from a user or the catalog (model names such as
"FLUX1.1 [pro]", prompts, file names, licence text) goes through `plain()` or `escape()`:
Rich would otherwise read "[pro]" as a style tag and drop it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from ..config import Studio
from ._run import EXIT_CODES_HELP, run_cli

__all__ = [
    "HomeOption", "JsonOption", "console", "err_console", "escape", "new_app", "plain", "print_json",
    "renamed_option", "run_cli", "say_command", "say_path", "studio",
]

console = Console()
err_console = Console(stderr=True)

CONTEXT = {"help_option_names": ["-h", "--help"]}

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Studio folder (default: $PORTRAIT_STUDIO_HOME or ~/.portrait-studio).",
                 show_default=False, file_okay=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def new_app(help: str, *, epilog: str | None = None, **kwargs: Any) -> typer.Typer:
    """A typer app (or command group) with the studio's conventions.

    -h and --help; help shown verbatim (no Rich markup, so "FLUX.1 [dev]" survives); no
    shell-completion options; no pretty tracebacks (run_cli turns errors into two lines).
    """
    return typer.Typer(
        help=help, epilog=epilog, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
        rich_markup_mode=None, context_settings=CONTEXT, **kwargs,
    )


def studio(home: Path | None) -> Studio:
    return Studio.open(home)


def plain(value: object, style: str = "") -> Text:
    """A table cell or message part shown exactly as written (no markup, no highlighting)."""
    return Text(str(value), style=style)


def say_path(label: str, path: object) -> None:
    """A label, then the path on a line of its own, never cut or wrapped (so it can be copied)."""
    console.print(label, highlight=False)
    console.print(plain(f"  {path}"), soft_wrap=True)


def say_command(label: str, command: str) -> None:
    """'next:' and the command to type on its own line, unwrapped."""
    console.print(label, highlight=False)
    console.print(plain(f"  {command}"), soft_wrap=True)


def renamed_option(old: str, value: object, new: str, meaning: str) -> None:
    """A retired option name was used: say which one replaces it (one meaning per word)."""
    if value is not None:
        from ..errors import UsageError

        raise UsageError(f"retired: it meant two opposite things; this command takes {new} ({meaning})",
                         field=old, hint=f"use {new} {value}")


def print_json(data: Any, *, line: bool = False) -> None:
    """JSON on stdout; `line=True` writes one compact line (JSON Lines, for long-running commands)."""
    sys.stdout.write(json.dumps(data, indent=None if line else 2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


EXIT_HELP = EXIT_CODES_HELP
