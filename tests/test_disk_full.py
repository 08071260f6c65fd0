"""A full disk mid-shoot loses nothing already made and leaves no truncated file behind.

Runs on a small tmpfs (root / CAP_SYS_ADMIN); skipped with the reason where mounting is not
allowed.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from _studio_helpers import tmpfs
from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.doctor import examine
from portrait_studio.engine import Engine
from portrait_studio.errors import StudioError
from portrait_studio.files import (
    FileWriteError,
    atomic_save_image,
    atomic_write_bytes,
    atomic_write_text,
    is_temp_file,
)
from portrait_studio.grids import Tile, contact_sheet
from portrait_studio.ledger import Ledger
from portrait_studio.shoot import plan_shoot
from test_runner import CountingProvider

NO_MOUNT = "this machine does not allow mounting a tmpfs (needs root / CAP_SYS_ADMIN)"


class NoisyProvider(CountingProvider):
    """Images that do not compress (≈110 KB each), so a small disk fills after a few."""

    def _image(self, seed: int) -> bytes:
        buf = io.BytesIO()
        Image.frombytes("RGB", (192, 192), os.urandom(192 * 192 * 3)).save(buf, "PNG", compress_level=0)
        return buf.getvalue()


def fill(folder: Path, leave: int) -> None:
    """Fill the disk that holds `folder` until `leave` bytes are free."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    with (folder / "ballast").open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


def truncated_files(root: Path) -> list[str]:
    bad = []
    for path in root.rglob("*"):
        if not path.is_file() or path.name == "ballast":
            continue
        if is_temp_file(path):
            bad.append(f"{path.name}: temp file left behind")
        elif path.suffix in (".png", ".jpg", ".webp"):
            try:
                with Image.open(path) as im:
                    im.load()
            except Exception as exc:
                bad.append(f"{path.relative_to(root)}: {exc}")
        elif path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except ValueError as exc:
                bad.append(f"{path.relative_to(root)}: {exc}")
    return bad


@pytest.fixture
def small_disk(tmp_path: Path):
    with tmpfs(tmp_path / "disk", "16m") as mount:
        if mount is None:
            pytest.skip(NO_MOUNT)
        yield mount


def test_atomic_writers_on_a_full_disk_keep_the_old_file_and_say_so(small_disk: Path) -> None:
    keys = small_disk / "keys.json"
    atomic_write_text(keys, '{"bfl": "old"}')
    sheet = small_disk / "contact-sheet.png"
    tile = small_disk / "tile.png"
    Image.new("RGB", (64, 64), "gray").save(tile)
    contact_sheet([Tile(path=str(tile), lines=("#1",))], sheet)
    before = sheet.read_bytes()
    fill(small_disk, 16 * 1024)
    with pytest.raises(FileWriteError) as err:
        atomic_write_bytes(keys, b"x" * 200_000)
    assert isinstance(err.value, StudioError) and isinstance(err.value, OSError)
    assert "disk is full" in (err.value.hint or "") and keys.read_text() == '{"bfl": "old"}'
    noise = Image.frombytes("RGB", (400, 400), os.urandom(400 * 400 * 3))
    with pytest.raises(FileWriteError):
        atomic_save_image(noise, sheet)
    assert sheet.read_bytes() == before
    assert truncated_files(small_disk) == []


def test_a_full_disk_mid_shoot_loses_nothing_made_and_truncates_nothing(small_disk: Path) -> None:
    brief = load_brief(example_brief_path("rembrandt-studio-headshot"))
    home = small_disk / "studio"
    provider = NoisyProvider()
    with Ledger(home / "ledger.db") as ledger:
        plan = plan_shoot(brief, ["flux-1.1-pro"], list(range(1, 9))).to_plan()
        engine = Engine(ledger=ledger, images_dir=home / "images", runs_dir=home / "runs", providers={"bfl": provider})
        run_id = engine.record(plan)
        fill(small_disk, 600 * 1024)  # room for a few images, not for eight
        try:  # the runner records failed requests; the engine decides how loudly it ends
            asyncio.run(engine.execute(run_id))
        except Exception as exc:
            print(f"the shoot ended with {type(exc).__name__}: {exc}")
    (small_disk / "ballast").unlink()
    with Ledger(home / "ledger.db", read_only=True) as ledger:
        made = ledger.images(run_id=run_id)
        assert 0 < len(made) < 8  # the disk filled mid-shoot
        assert ledger.integrity_errors() == []
    bad = truncated_files(home)
    assert bad == [], "\n".join(bad)
    # space is back: resume writes what is missing (the labelled copies) and pays for nothing again
    with Ledger(home / "ledger.db") as ledger:
        engine = Engine(ledger=ledger, images_dir=home / "images", runs_dir=home / "runs", providers={"bfl": provider})
        asyncio.run(engine.execute(run_id))
        assert len(ledger.images(run_id=run_id)) == 8
        assert sorted(provider.paid) == list(range(1, 9))  # every image paid exactly once: the rest re-collected
    report = examine(home)
    assert [f.message for f in report.problems] == []
    assert truncated_files(home) == []
