"""The child side of `isolated.run_isolated`: `python -m portrait_studio.web.child TASK ARGS FD`.

Runs one task from `isolated.TASKS` and answers in JSON lines on file descriptor FD.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

from ..errors import StudioError
from .isolated import TASKS


def main(argv: list[str]) -> int:
    task, args, fd = argv[0], json.loads(argv[1]), int(argv[2])
    with os.fdopen(fd, "w", encoding="utf-8", buffering=1) as out:
        def send(**message: Any) -> None:
            out.write(json.dumps(message) + "\n")

        try:
            send(done=TASKS[task](lambda text: send(say=text), *args))
        except StudioError as exc:
            send(error=exc.message, hint=exc.hint)
        except Exception as exc:  # a bug: the job page shows it, the server's log has the traceback
            traceback.print_exc()
            send(error=f"{type(exc).__name__}: {exc}", hint=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
