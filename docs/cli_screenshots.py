"""Render the README's CLI screenshots: the newcomer journey against the sandboxes, recorded by Rich.

    python docs/cli_screenshots.py            # writes docs/images/cli-*.svg

Runs in a throw-away studio folder with no API keys, so every image comes from the BFL sandbox
(marked SANDBOX) and nothing is spent. Output is 80 columns wide, as when piped.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.text import Text

ROOT = Path(__file__).resolve().parents[1]
BRIEF = "brief.yaml"
OUT = ROOT / "docs" / "images"


def _capture(*args: str) -> list[str]:
    """Run one command; return what it printed on stderr, then stdout, with Rich's styles (ANSI)."""
    from portrait_studio.cli import app, run_cli
    from portrait_studio.cli._common import console, err_console

    for c in (console, err_console):
        c.width = 80
        c.record = True
    err_console._record_buffer = console._record_buffer  # one transcript, in the order it was printed
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), contextlib.suppress(SystemExit):
        run_cli(app, list(args))
    return [console.export_text(clear=True, styles=True)]


def _shot(name: str, title: str, *commands: tuple[str, ...]) -> None:
    # the studio prints for 80 columns; paths and commands to copy may run longer on their own line
    screen = Console(record=True, width=104, force_terminal=True, file=io.StringIO())
    for args in commands:
        screen.print(Text("$ portrait " + " ".join(args), style="bold green"), soft_wrap=True)
        for text in _capture(*args):
            if text.strip():
                screen.print(Text.from_ansi(text.rstrip("\n")), soft_wrap=True)
    path = OUT / f"cli-{name}.svg"
    screen.save_svg(str(path), title=title)
    print(f"wrote {path}")


def main() -> None:
    home = tempfile.mkdtemp(prefix="portrait-screens-")
    os.chdir(home)
    Path(BRIEF).write_text((ROOT / "src/portrait_studio/presets/briefs/rembrandt-studio-headshot.yaml").read_text())
    os.environ.update(PORTRAIT_STUDIO_HOME=str(Path(home) / "studio"), COLUMNS="80")
    for var in ("BFL_API_KEY", "FAL_KEY", "REPLICATE_API_TOKEN"):
        os.environ.pop(var, None)
    sys.path.insert(0, str(ROOT / "src"))
    _shot("mistakes", "portrait: mistakes get two lines and exit code 2",
          ("shot", BRIEF), ("shoot", BRIEF, "-m", "flux-1.1-pro", "--seeds", "0"),
          ("shoot", BRIEF, "-m", "flux-1.1-pro", "--sandbox", "maybe"), ("resume", "%"))
    _shot("shoot", "portrait shoot (sandbox)", ("shoot", BRIEF, "-m", "flux-1.1-pro", "--seeds", "3"))
    _shot("compare", "portrait compare (sandbox)",
          ("compare", BRIEF, "-m", "flux-1.1-pro", "-m", "flux-2-pro", "-m", "flux-1.1-pro-ultra", "--seed", "1234"))
    _shot("log", "portrait log", ("log", "-n", "4"))


if __name__ == "__main__":
    main()
