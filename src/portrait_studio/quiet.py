"""Silence native libraries (MediaPipe/TFLite, onnxruntime, TensorFlow, transformers) at the
file-descriptor level while they set up or run.

Their C++ sides write straight to fd 2 (`Created TensorFlow Lite XNNPACK delegate…`,
`inference_feedback_manager.cc:114 …`), which no Python logging setting reaches. Messages that
matter are re-said by our code in our words. `PORTRAIT_DEBUG=1` (read by the surfaces and passed as
`enabled=False`) shows everything.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["native_quiet"]

_lock = threading.RLock()
_depth = 0
_saved: int | None = None
_swapped: tuple[object, io.TextIOWrapper] | None = None


@contextmanager
def native_quiet(enabled: bool = True) -> Iterator[None]:
    """Redirect fd 2 to /dev/null inside the block.

    Re-entrant and thread-safe: nested or concurrent users share one redirection, restored when
    the last one leaves. Python-level `sys.stderr` writes are flushed first, and while the block
    runs (possibly in a warm-up thread) a real `sys.stderr` is pointed at the original stream, so
    another thread's error message is never swallowed with the native noise.
    """
    global _depth, _saved, _swapped
    if not enabled:
        yield
        return
    with _lock:
        if _depth == 0:
            try:
                sys.stderr.flush()
            except (AttributeError, ValueError):
                pass
            try:
                _saved = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            except OSError:  # no fd 2 (embedded interpreters): nothing to silence
                _saved = None
            _swapped = _swap_stderr(_saved)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                try:
                    sys.stderr.flush()
                except (AttributeError, ValueError):
                    pass
                if _swapped is not None:
                    previous, wrapper = _swapped
                    if sys.stderr is wrapper:
                        sys.stderr = previous  # type: ignore[assignment]
                    try:
                        wrapper.close()
                    except (OSError, ValueError):
                        pass
                    _swapped = None
                os.dup2(_saved, 2)
                os.close(_saved)
                _saved = None


def _swap_stderr(saved: int | None) -> tuple[object, io.TextIOWrapper] | None:
    """Point a real (fd 2) `sys.stderr` at the saved original stream; leave test captures alone."""
    current = sys.stderr
    if saved is None or current is None:
        return None
    try:
        if current.fileno() != 2:
            return None
    except (AttributeError, OSError, ValueError):
        return None
    wrapper = io.TextIOWrapper(io.FileIO(os.dup(saved), "w"), encoding=getattr(current, "encoding", None) or "utf-8",
                               errors="backslashreplace", line_buffering=True)
    sys.stderr = wrapper
    return current, wrapper
