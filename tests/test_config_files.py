"""The studio's own files: config.toml and keys.json fail with a way out, keys are written 0600
atomically, and every writer leaves the old file or the whole new one."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from portrait_studio.config import Studio
from portrait_studio.errors import StudioError, UsageError
from portrait_studio.files import (
    atomic_copy,
    atomic_replace,
    atomic_save_image,
    atomic_write_bytes,
    atomic_write_text,
    is_temp_file,
)


def test_opening_a_studio_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "not-yet"
    studio = Studio(home, environ={})
    assert studio.key("bfl") is None and studio.secrets() == []
    assert not home.exists()


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'{"bfl": 42}', b"\xff\xfe garbage", b""],
)
def test_a_damaged_keys_file_is_a_clear_error_with_the_way_out(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "keys.json").write_bytes(content)
    studio = Studio(tmp_path, environ={})
    with pytest.raises(StudioError) as err:
        studio.key("bfl")
    assert "keys.json" in str(err.value) and "portrait doctor --repair" in (err.value.hint or "")


def test_keys_set_through_the_cli_on_a_damaged_file_is_one_line(cli, studio_home: Path) -> None:
    studio_home.mkdir()
    (studio_home / "keys.json").write_text("{oops")
    code, _, err = cli("keys", "set", "bfl", "--value", "bfl_abcdefghijklmnop1234")
    assert code == 2 and "keys.json" in err and "Traceback" not in err


def test_an_unknown_provider_or_a_bad_key_is_refused(tmp_path: Path) -> None:
    studio = Studio(tmp_path, environ={})
    with pytest.raises(UsageError, match="unknown provider 'acme'") as err:
        studio.set_key("acme", "secret-value-123")
    assert "bfl" in (err.value.hint or "")
    for bad in ("", "   ", "two words", "k\u00e9y", "line\nbreak"):
        with pytest.raises(UsageError, match="key"):
            studio.set_key("bfl", bad)
    assert not studio.keys_path.exists()


def test_keys_are_written_owner_only_and_keep_the_others(tmp_path: Path) -> None:
    studio = Studio(tmp_path / "home", environ={})
    studio.set_key("bfl", "bfl_first_key_1234567890")
    studio.set_key("fal", "fal-id:secret1234567890")
    assert stat.S_IMODE(studio.keys_path.stat().st_mode) == 0o600
    assert json.loads(studio.keys_path.read_text()) == {"bfl": "bfl_first_key_1234567890", "fal": "fal-id:secret1234567890"}
    assert [p.name for p in studio.home.iterdir()] == ["keys.json"]  # no temp file left
    assert studio.keys_mode_problem() is None
    studio.keys_path.chmod(0o644)
    assert "readable by others" in (studio.keys_mode_problem() or "")


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("creator = \n", "not valid TOML"),
        ("default_budget_usd = nan\n", "default_budget_usd"),
        ("default_budget_usd = -1\n", "default_budget_usd"),
        ("colour = 'red'\n", "colour"),
        ("[c2pa]\nalgorithm = 3\n", "c2pa.algorithm"),
    ],
)
def test_a_bad_config_names_the_file_and_field(tmp_path: Path, toml: str, needle: str) -> None:
    (tmp_path / "config.toml").write_text(toml)
    with pytest.raises(StudioError) as err:
        Studio(tmp_path, environ={})
    assert "config.toml" in str(err.value) and needle in str(err.value) and "\n" not in err.value.message


def test_a_binary_or_folder_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes(b"\x89PNG\x00\xff")
    with pytest.raises(StudioError, match="not UTF-8"):
        Studio(tmp_path, environ={})
    (tmp_path / "config.toml").unlink()
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(StudioError, match="is a folder"):
        Studio(tmp_path, environ={})


# --- atomic writes ----------------------------------------------------------------------------


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "run.json"
    atomic_write_text(path, "old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and sorted(p.name for p in path.parent.iterdir()) == ["run.json"]


def test_a_failed_write_keeps_the_old_file_and_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_replace(path) as tmp:
        tmp.write_text("half of the new cont")
        raise RuntimeError("disk full")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_a_secret_file_is_never_readable_by_others_even_while_written(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    with atomic_replace(path, mode=0o600) as tmp:
        assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o600
        tmp.write_text("{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_images_and_copies_are_atomic_too(tmp_path: Path) -> None:
    image = Image.new("RGB", (8, 8), (200, 10, 10))
    png = atomic_save_image(image, tmp_path / "sheet.png")
    jpg = atomic_save_image(image, tmp_path / "grid.jpg", quality=90)
    with Image.open(png) as a, Image.open(jpg) as b:
        assert (a.format, b.format) == ("PNG", "JPEG")
    copy = atomic_copy(png, tmp_path / "runs" / "copy.png")
    assert copy.read_bytes() == png.read_bytes()
    with pytest.raises(ValueError, match="format"):
        atomic_save_image(image, tmp_path / "noext")


def test_temp_files_are_recognised_for_cleanup(tmp_path: Path) -> None:
    with atomic_replace(tmp_path / "a.png") as tmp:
        assert is_temp_file(tmp)
        tmp.write_bytes(b"x")
    assert is_temp_file(tmp_path / "ab" / "sha.part") and not is_temp_file(tmp_path / "a.png")
    assert not is_temp_file(tmp_path / ".hidden.png")
