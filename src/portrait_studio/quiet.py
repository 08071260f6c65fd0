"""Silence native libraries (MediaPipe/TFLite, onnxruntime, TensorFlow, transformers) at the
file-descriptor level while they set up or run.

Their C++ sides write straight to fd 2 (`Created TensorFlow Lite XNNPACK delegate…`,
`inference_feedback_manager.cc:114 …`), which no Python logging setting reaches. Messages that
matter are re-said by our code in our words. `PORTRAIT_DEBUG=1` (read by the surfaces and passed as
`enabled=False`) shows everything.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["native_quiet"]

_lock = threading.RLock()
_depth = 0
_saved: int | None = None


@contextmanager
def native_quiet(enabled: bool = True) -> Iterator[None]:
    """Redirect fd 2 to /dev/null inside the block.

    Re-entrant and thread-safe: nested or concurrent users share one redirection, restored when
    the last one leaves. Python-level `sys.stderr` writes are flushed first so nothing is lost.
    """
    global _depth, _saved
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
                os.dup2(_saved, 2)
                os.close(_saved)
                _saved = None
