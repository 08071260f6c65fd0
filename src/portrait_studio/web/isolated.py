"""Work that would freeze the server runs in a child process.

Why: the Real-ESRGAN upscaler's native code holds Python's GIL for the whole upscale (measured:
one 2x upscale of a small portrait stopped every other thread for 68 s on a 2-core machine), so
an upscale job on the server's thread pool froze every page, API answer and progress stream
until it finished. In a child process it only takes CPU.

The child is a plain `python -m portrait_studio.web.child TASK ARGS` (not multiprocessing, which
re-imports the parent's main script and fails under an unguarded one). It answers in JSON lines
on a pipe of its own, so whatever native code prints cannot garble them: progress, then the
result, or a `StudioError`'s message and hint, raised again here. A child that dies says so
instead of leaving the job running for ever.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import StudioError

__all__ = ["TASKS", "run_isolated"]

Report = Callable[[str], None]
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds portrait_studio/


def _upscale(report: Report, home: str, image_id: str, scale: float) -> str:
    """Upscale one ledger image (`actions.upscale_image`); returns the new image's id."""
    from ..actions import upscale_image
    from ..config import Studio
    from ..ledger import Ledger

    studio = Studio(home)
    with Ledger(studio.ledger_path) as ledger:
        made = upscale_image(studio, ledger, image_id, scale,
                             progress=lambda done, total, *_: report(f"tile {done} of {total}"))
    return made.id


TASKS: dict[str, Callable[..., str | None]] = {"upscale": _upscale}


def run_isolated(task: str, args: list[Any], say: Report) -> str | None:
    """`TASKS[task](report, *args)` in a fresh Python process; returns what it returns."""
    read_fd, write_fd = os.pipe()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "portrait_studio.web.child", task, json.dumps(args), str(write_fd)],
            pass_fds=(write_fd,), stdin=subprocess.DEVNULL, env=env,
        )
    finally:
        os.close(write_fd)
    answer: dict[str, Any] | None = None
    with os.fdopen(read_fd, encoding="utf-8") as lines:
        for line in lines:
            message = json.loads(line)
            if "say" in message:
                say(message["say"])
            else:
                answer = message
    code = child.wait()
    if answer is None:
        raise StudioError(f"the {task} stopped unexpectedly (exit code {code})",
                          hint=f"try again; 'portrait {task}' on the command line shows its output")
    if "error" in answer:
        raise StudioError(answer["error"], hint=answer.get("hint"))
    return answer.get("done")
