"""Shared CLI plumbing: the studio folder option, error rendering, JSON output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..config import Studio
from ..errors import StudioError

__all__ = ["HomeOption", "JsonOption", "console", "err_console", "print_json", "renamed_option", "run_cli", "studio"]

console = Console()
err_console = Console(stderr=True)

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Studio folder (default: $PORTRAIT_STUDIO_HOME or ~/.portrait-studio).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def studio(home: Path | None) -> Studio:
    return Studio.open(home)


def renamed_option(old: str, value: object, new: str, meaning: str) -> None:
    """A retired option name was used: say which one replaces it (one meaning per word)."""
    if value is not None:
        from ..errors import UsageError

        raise UsageError(f"retired: it meant two opposite things; this command takes {new} ({meaning})",
                         field=old, hint=f"use {new} {value}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def run_cli(app: typer.Typer) -> None:
    """Run the app; a StudioError becomes one line on stderr (with its fix) and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except StudioError as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        if exc.hint:
            err_console.print(f"[yellow]fix:[/] {escape(exc.hint)}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise SystemExit(130) from None
    except Exception as exc:  # click's own usage errors
        import click

        if isinstance(exc, click.exceptions.Exit):
            raise SystemExit(exc.exit_code) from None
        if isinstance(exc, click.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        if isinstance(exc, click.exceptions.Abort):
            err_console.print("aborted")
            raise SystemExit(1) from None
        raise
    if isinstance(code, int) and code:
        raise SystemExit(code)
