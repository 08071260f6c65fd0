"""Where a sandbox keeps its account between processes.

The real APIs keep accepted tasks on their side: kill the client, start it again, and the
tasks are still there, finishing on schedule. A sandbox started with a `state_dir` does
the same. The folder holds:

    lock            flock()ed by the one process serving this state (released by the kernel on kill -9)
    owner.json      that process's pid and URL, so a second process can join it or say who holds it
    account.json    key, signing secret, port and origins used, balance, counters, pending faults
    tasks/ID.json   one accepted task: body, times, cost, scheduled outcome and faults, URLs
    tls/            the fal sandbox's certificate (reused, so a client's CA file stays valid)

Every file is replaced atomically (write, fsync, rename, fsync the folder), and a task is
on disk before its submission is answered, so a task the client heard accepted survives
a `kill -9` right after.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "TEMP_PREFIX",
    "StateLock",
    "load_account",
    "load_tasks",
    "read_owner",
    "save_json",
    "sweep_orphaned_temp_dirs",
]

TEMP_PREFIX = "portrait-sandbox-"
"""Temporary folders of sandboxes without a state_dir: `portrait-sandbox-<pid>-<random>`."""


def save_json(path: Path, data: Any, *, durable: bool) -> None:
    """Replace `path` with `data` as JSON, atomically; `durable` also waits for the disk."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"))
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems refuse fsync on a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def load_account(state_dir: Path) -> dict[str, Any] | None:
    data = _read_json(state_dir / "account.json")
    return data if isinstance(data, dict) else None


def load_tasks(state_dir: Path) -> list[dict[str, Any]]:
    """Every saved task, oldest first. A half-written temp file is never read (names start with '.')."""
    folder = state_dir / "tasks"
    if not folder.is_dir():
        return []
    tasks = []
    for path in folder.glob("*.json"):
        data = _read_json(path)
        if isinstance(data, dict) and "id" in data:
            tasks.append(data)
    return sorted(tasks, key=lambda t: float(t.get("created", 0.0)))


def read_owner(state_dir: Path) -> dict[str, Any] | None:
    data = _read_json(state_dir / "owner.json")
    return data if isinstance(data, dict) else None


class StateLock:
    """An exclusive flock on `state_dir/lock`: one serving process per state folder.

    `acquire()` returns False when another process (or another handle in this one) holds it.
    The kernel drops the lock when the holder dies, even by SIGKILL, so it never goes stale.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

        fd = os.open(self.state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def sweep_orphaned_temp_dirs() -> None:
    """Remove temporary sandbox folders whose owner has died (a kill -9 skips clean-up).

    An owner holds its folder's `lock` for its whole life, so a folder whose lock can be
    taken is orphaned; this holds even for processes in another PID namespace sharing /tmp.
    A folder without a lock file is left alone for a minute (its owner may be creating it)."""
    import time

    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{TEMP_PREFIX}*"):
        pid_text = folder.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or not folder.is_dir():
            continue  # not named by this code: not ours to judge
        if not (folder / "lock").exists():
            try:
                if time.time() - folder.stat().st_mtime < 60:
                    continue
            except OSError:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            continue
        lock = StateLock(folder)
        try:
            if not lock.acquire():
                continue  # alive
        except OSError:
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            lock.release()
