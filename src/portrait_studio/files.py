"""Atomic file writes: a file is either the old one or the whole new one, never half of either.

A full disk, a kill or a power cut in the middle of a write must never leave a truncated
PNG, run.json or keys.json behind (a truncated image made every later `resume` fail). Every
writer goes through here: the bytes go to a temporary file in the same folder, are flushed
and fsynced, and `os.replace` swaps it in (atomic on POSIX and Windows). On any failure the
temporary file is removed and the old file is untouched.

Temporary files are named `.<name>.<random>.tmp<suffix>` (hidden, same suffix so image
libraries still recognise the format), so `portrait doctor` can find leftovers of a killed
process with `is_temp_file`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import StudioError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "FileWriteError",
    "atomic_copy",
    "atomic_replace",
    "atomic_save_image",
    "atomic_write_bytes",
    "atomic_write_text",
    "is_temp_file",
]

_TEMP = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp(\.[^.]+)?$")


class FileWriteError(StudioError, OSError):
    """A file could not be written (disk full, read-only folder, permissions). The old file, if any,
    is untouched. Also an OSError, so code that handles OSError keeps working."""

    def __init__(self, message: str, *, hint: str | None = None, code: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.errno = code  # type: ignore[misc]


_HINTS = {
    errno.ENOSPC: "the disk is full: free some space and run the command again (nothing already written was lost)",
    errno.EDQUOT: "the disk quota is used up: free some space and run the command again",
    errno.EROFS: "the folder is on a read-only disk: use a writable studio (--home) or output folder",
    errno.EACCES: "no permission to write there: check the folder's permissions",
    errno.EPERM: "no permission to write there: check the folder's permissions",
}


def is_temp_file(path: str | os.PathLike[str]) -> bool:
    """True for a temporary file this module (or a `.part` writer) leaves if killed mid-write."""
    name = Path(path).name
    return bool(_TEMP.match(name)) or name.endswith(".part")


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp{path.suffix}")


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_replace(path: str | os.PathLike[str], *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; when the block ends without error it replaces `path`.

    Write the new content to the yielded path (any library that takes a file name works).
    `mode` sets the permissions before the file gets its final name (0o600 for secrets), so
    there is no moment when the content is readable with wider permissions. Missing parent
    folders are created. On an exception the temporary file is removed and `path` is untouched.
    """
    target = Path(path)
    tmp = _temp_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode is not None:  # create it with the final permissions before any byte is written
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, FileWriteError) and exc.errno in _HINTS:
            raise FileWriteError(f"cannot write {target}: {exc.strerror}", hint=_HINTS[exc.errno], code=exc.errno) from exc
        raise
    _fsync_dir(target.parent)


def _write(path: str | os.PathLike[str], data: bytes, mode: int | None) -> Path:
    with atomic_replace(path, mode=mode) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> Path:
    """Write `data` to `path` atomically (see the module docstring); returns `path`."""
    return _write(path, bytes(data), mode)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", mode: int | None = None
) -> Path:
    """Write `text` to `path` atomically; returns `path`."""
    return _write(path, text.encode(encoding), mode)


def atomic_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy the file `src` to `dst` atomically (a run-folder copy, an export); returns `dst`."""
    with atomic_replace(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def atomic_save_image(image: Image.Image, path: str | os.PathLike[str], format: str | None = None, **params: Any) -> Path:
    """`image.save(path, format, **params)`, atomically. The format defaults to the one `path`'s suffix names."""
    target = Path(path)
    if format is None:
        from PIL import Image as PILImage

        format = PILImage.registered_extensions().get(target.suffix.lower())
        if format is None:
            raise ValueError(f"cannot tell the image format from '{target.name}'; pass format=")
    with atomic_replace(target) as tmp:
        image.save(tmp, format, **params)
    return target
