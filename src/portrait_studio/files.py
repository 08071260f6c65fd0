"""Writing files so that a kill or a full disk never leaves a truncated one.

Every file the studio writes goes to a temporary name in the same folder, is flushed to disk,
then renamed over the target in one step (`os.replace` is atomic on POSIX); a failure removes
the temporary file. Readers therefore see the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path next to `target`; on a clean exit it is fsynced and renamed onto `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or f".part{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
        if mode is not None:
            tmp.chmod(mode)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str, *, mode: int | None = None) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"), mode=mode)


def atomic_write_with(target: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Let `write(tmp_path)` produce the file (e.g. PIL's save), then publish it atomically."""
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


__all__ += ["atomic_write_with"]
