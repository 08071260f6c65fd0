"""`portrait doctor` finds what a kill, a full disk or a hand edit broke, and `--repair` fixes
what it safely can — nothing the user made is deleted."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from PIL import Image

from _studio_helpers import import_photo, make_studio, remount, tmpfs
from portrait_studio.doctor import examine
from portrait_studio.ledger import Ledger


def severities(report, area: str) -> list[str]:
    return [f.severity for f in report.findings if f.area == area]


def test_a_healthy_studio_is_healthy(cli, studio_home: Path) -> None:
    make_studio(studio_home)
    code, out, _ = cli("doctor", "--home", studio_home)
    assert code == 0 and "the studio is healthy" in out and "problem" not in out
    assert "1 image in the ledger came from a sandbox" in out


def test_truncated_and_missing_run_copies_are_restored_from_the_store(cli, studio_home: Path) -> None:
    """A kill mid-copy left a truncated PNG in the run folder; every resume then failed."""
    made = make_studio(studio_home)
    (_, _, first), (_, _, second) = made[0], made[1]
    first.write_bytes(first.read_bytes()[:200])
    second.unlink()
    code, out, _ = cli("doctor", "--home", studio_home)
    assert code == 1 and out.count("problem") >= 2 and "--repair" in out
    code, out, _ = cli("doctor", "--repair", "--home", studio_home)
    assert code == 0 and out.count("fixed") == 2
    from PIL import ImageChops

    from portrait_studio.labels import verify

    for _, store, copy in made[:2]:  # written again from the original: the same pixels, labelled
        assert verify(copy).labelled
        assert ImageChops.difference(Image.open(copy).convert("RGB"), Image.open(store).convert("RGB")).getbbox() is None
    assert cli("doctor", "--home", studio_home)[0] == 0


def test_a_truncated_original_is_restored_from_an_intact_copy(studio_home: Path, tmp_path: Path) -> None:
    """An imported photo's own file is byte-identical to the stored original: it can stand in."""
    make_studio(studio_home)
    sha, store, copy = import_photo(studio_home, tmp_path)
    store.write_bytes(store.read_bytes()[:100])
    assert not examine(studio_home).healthy
    report = examine(studio_home, repair=True)
    assert report.healthy and store.read_bytes() == copy.read_bytes()


def test_a_lost_original_without_a_copy_is_reported_not_invented(studio_home: Path) -> None:
    (sha, store, copy), *_ = make_studio(studio_home)
    store.unlink()
    copy.unlink()
    report = examine(studio_home, repair=True)
    assert [f.message for f in report.problems if sha[:12] in f.message]
    assert not store.exists() and not copy.exists()


def test_a_damaged_keys_file_is_moved_aside_and_keys_made_private(studio_home: Path) -> None:
    studio_home.mkdir()
    keys = studio_home / "keys.json"
    keys.write_text('{"bfl": "bfl_abc')
    report = examine(studio_home)
    assert severities(report, "keys") == ["problem"]
    report = examine(studio_home, repair=True)
    assert severities(report, "keys") == ["fixed"] and not keys.exists()
    (aside,) = studio_home.glob("keys.json.damaged-*")
    assert aside.read_text() == '{"bfl": "bfl_abc'
    keys.write_text('{"bfl": "bfl_abcdefghijklmnop"}')
    keys.chmod(0o644)
    assert severities(examine(studio_home), "keys") == ["problem"]
    assert severities(examine(studio_home, repair=True), "keys") == ["fixed"]
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600


def test_a_ledger_that_is_not_a_database_is_set_aside_and_a_new_one_started(cli, studio_home: Path) -> None:
    studio_home.mkdir()
    (studio_home / "ledger.db").write_bytes(b"garbage " * 512)
    code, _, err = cli("log", "--home", studio_home)
    assert code == 2 and "damaged" in err and "portrait doctor" in err and "Traceback" not in err
    code, out, _ = cli("doctor", "--repair", "--home", studio_home)
    assert code == 0 and "moved it aside" in out
    assert list(studio_home.glob("ledger.db.damaged-*"))
    assert cli("log", "--home", studio_home)[0] == 0


def test_a_corrupted_ledger_keeps_its_readable_rows(studio_home: Path) -> None:
    make_studio(studio_home, images=3)
    path = studio_home / "ledger.db"
    with Ledger(path) as ledger:
        ledger.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = ledger.db.execute("SELECT rootpage FROM sqlite_master WHERE name='checks'").fetchone()[0]
        page = ledger.db.execute("PRAGMA page_size").fetchone()[0]
    with path.open("r+b") as fh:  # scribble over the (empty) checks table's page
        fh.seek((root - 1) * page)
        fh.write(b"\xff" * page)
    report = examine(studio_home)
    assert severities(report, "ledger") == ["problem"]
    report = examine(studio_home, repair=True)
    (fixed,) = [f for f in report.findings if f.area == "ledger"]
    assert fixed.severity == "fixed" and "3 results" in fixed.message and "1 runs" in fixed.message
    with Ledger(path, read_only=True) as ledger:
        assert ledger.integrity_errors() == [] and len(ledger.images()) == 3


def test_leftover_temp_files_are_removed_but_fresh_ones_left_alone(studio_home: Path) -> None:
    (sha, store, _), *_ = make_studio(studio_home)
    old = store.with_suffix(".part")
    old.write_bytes(b"half")
    fresh = store.parent / f".{store.name}.0123456789ab.tmp.png"
    fresh.write_bytes(b"being written")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    report = examine(studio_home, repair=True)
    assert not old.exists() and fresh.exists()
    assert severities(report, "temp") == ["info", "fixed"]


def test_a_loopback_bfl_host_is_flagged_as_sandbox_state(studio_home: Path) -> None:
    studio_home.mkdir()
    (studio_home / "config.toml").write_text('bfl_host = "http://127.0.0.1:8765"\n')
    report = examine(studio_home)
    assert severities(report, "sandbox") == ["warning"] and report.healthy


def test_a_bad_config_is_reported_not_raised(cli, studio_home: Path) -> None:
    studio_home.mkdir()
    (studio_home / "config.toml").write_text("default_budget_usd = 'lots'\n")
    code, out, _ = cli("doctor", "--json", "--home", studio_home)
    data = json.loads(out)
    assert code == 1 and not data["healthy"]
    assert any(f["area"] == "config" and "default_budget_usd" in f["message"] for f in data["findings"])


# --- read-only studios ------------------------------------------------------------------------


def test_read_commands_work_on_a_read_only_studio(cli, tmp_path: Path) -> None:
    """A read-only studio made even `portrait log` crash; now log, audit and doctor read it."""
    with tmpfs(tmp_path / "ro", "16m") as mount:
        if mount is None:
            pytest.skip("this machine does not allow mounting a tmpfs (needs root / CAP_SYS_ADMIN)")
        home = mount / "studio"
        make_studio(home)
        (home / "keys.json").write_text('{"bfl": "bfl_abcdefghijklmnop"}')
        (home / "keys.json").chmod(0o600)
        assert remount(mount, "ro")
        before = sorted(str(p) for p in home.rglob("*"))
        code, out, err = cli("log", "--home", home, "--json")
        assert code == 0, err
        assert len(json.loads(out)) == 3
        code, out, err = cli("audit", (json.loads(out)[0]["run_id"]), "--out", tmp_path / "bundle.zip", "--home", home)
        assert code == 0, err
        code, out, _ = cli("doctor", "--home", home)
        assert "read-only" in out and "Traceback" not in out
        code, _, err = cli("keys", "set", "fal", "--value", "abc-def:0123456789abcdef0123456789", "--home", home)
        assert code == 2 and ("read-only" in err.lower() or "Read-only" in err) and "Traceback" not in err
        assert sorted(str(p) for p in home.rglob("*")) == before


def test_log_on_a_studio_that_does_not_exist_yet_creates_nothing(cli, tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    code, out, _ = cli("log", "--home", home)
    assert code == 0 and "the ledger is empty" in out and not home.exists()
