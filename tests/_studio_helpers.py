"""A small real studio for reliability tests: a ledger with images made by `record_image`."""

from __future__ import annotations

import contextlib
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from portrait_studio.ledger import Ledger
from portrait_studio.records import Cost, Result


def png_bytes(seed: int, size: int = 96) -> bytes:
    image = Image.effect_noise((size, size), 40 + seed).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def make_studio(home: Path, images: int = 3) -> list[tuple[str, Path, Path]]:
    """(sha256, content-addressed path, labelled run-folder copy) for `images` recorded images of one run,
    delivered the way the engine delivers them."""
    from portrait_studio.engine import Engine

    made = []
    with Ledger(home / "ledger.db") as ledger:
        engine = Engine(ledger=ledger, images_dir=home / "images", runs_dir=home / "runs", providers={})
        run_id = ledger.create_run("shoot", name="doctor story", out_dir=str(home / "runs" / "r1"))
        for i in range(images):
            result = Result(request_id=f"req{i}", provider="bfl", model="flux-1.1-pro", image=png_bytes(i), seed=i,
                            cost=Cost(credits=4, usd=0.04), sandbox=i == 0)
            out = home / "runs" / "r1" / f"seed{i}.png"
            row = ledger.record_image(result, images_dir=home / "images", run_id=run_id, request_id=None, out_path=out)
            engine.deliver(row)
            made.append((row.image_sha256, Path(row.path), out))
    return made


def import_photo(home: Path, folder: Path) -> tuple[str, Path, Path]:
    """A photo from elsewhere, recorded as an import: (sha256, stored original, the user's own file)."""
    from portrait_studio.finishing.lineage import ensure_recorded

    own = folder / "own-photo.png"
    own.write_bytes(png_bytes(7))
    with Ledger(home / "ledger.db") as ledger:
        row = ensure_recorded(ledger, own, home / "images")
    return row.image_sha256, Path(row.path), own


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path | None]:
    """A tmpfs of `size` mounted at `path`, or None where this machine does not allow mounting."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        yield None
        return
    if done.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def remount(path: Path, mode: str) -> bool:
    return subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], capture_output=True, timeout=30).returncode == 0
