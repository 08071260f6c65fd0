"""Opening the ledger: many processes at once on a new studio, read-only studios, damaged files."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from portrait_studio.errors import LedgerError
from portrait_studio.ledger import Ledger

SRC = str(Path(__file__).resolve().parents[1] / "src")

OPENER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from portrait_studio.ledger import Ledger

    db, gate, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    ready.touch()
    while not gate.exists():
        time.sleep(0.001)
    with Ledger(db) as ledger:
        ledger.create_run("shoot", name=ready.name)
    print("opened")
    """
)


def test_thirty_two_processes_open_a_brand_new_ledger_at_once(tmp_path: Path) -> None:
    """Each process read the applied-migrations list before taking the lock, so two of them
    both created `runs` ("table runs already exists"). Now every one opens and records."""
    studio = tmp_path / "new-studio"  # does not exist yet: the first opener creates it
    db, gate = studio / "ledger.db", tmp_path / "go"
    n = 32
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [
        subprocess.Popen([sys.executable, "-c", OPENER, str(db), str(gate), str(tmp_path / f"ready-{i}")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(n)
    ]
    deadline = time.monotonic() + 120
    while sum(1 for i in range(n) if (tmp_path / f"ready-{i}").exists()) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    gate.touch()  # all start together
    outcomes = [p.communicate(timeout=120) for p in procs]
    failures = [err.strip().splitlines()[-1] for (out, err), p in zip(outcomes, procs) if p.returncode != 0]
    assert failures == []
    with Ledger(db, read_only=True) as ledger:
        assert len(ledger.runs(limit=100)) == n
        assert ledger.pending_migrations() == []


def test_read_only_open_of_a_missing_ledger_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "nowhere"
    with Ledger(home / "ledger.db", read_only=True) as ledger:
        assert ledger.runs() == [] and ledger.images() == []
    assert not home.exists()


def test_read_only_open_cannot_write(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.create_run("shoot", name="first")
    with Ledger(tmp_path / "ledger.db", read_only=True) as ledger:
        assert [r.name for r in ledger.runs()] == ["first"]
        with pytest.raises(LedgerError, match="opened read-only"):
            ledger.create_run("shoot")


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(b"this is not sqlite at all, just text that got here somehow\n" * 20)
    for read_only in (False, True):
        with pytest.raises(LedgerError, match="damaged or not a ledger") as err:
            Ledger(path, read_only=read_only)
        assert "portrait doctor" in str(err.value)


def test_a_truncated_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        for i in range(200):
            ledger.create_run("shoot", name=f"run {i}" * 20)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(LedgerError, match="damaged"), Ledger(path) as ledger:
        ledger.runs(limit=1000)
        raise AssertionError(ledger.integrity_errors())  # pragma: no cover - only if the open itself passed


def test_a_first_open_that_sqlite_answers_busy_is_retried_not_an_error(tmp_path: Path, monkeypatch) -> None:
    """CI: of 32 processes opening a brand-new ledger, one got 'database is locked' straight away —
    switching a new file to WAL and its first migration can answer SQLITE_BUSY without waiting on the
    busy timeout. Such a first open is tried again; only a ledger busy for a long time is an error."""
    from portrait_studio.ledger import database

    real = database.upgrade
    calls = {"n": 0}

    def busy_twice(engine):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] <= 2:
            raise sqlite3.OperationalError("database is locked")
        return real(engine)

    monkeypatch.setattr(database, "upgrade", busy_twice)
    with Ledger(tmp_path / "studio" / "ledger.db") as ledger:
        assert ledger.create_run("shoot", name="after two busy answers")
    assert calls["n"] == 3


def test_a_ledger_that_stays_damaged_is_not_retried(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    db.write_bytes(b"not a database at all" * 100)
    started = time.monotonic()
    with pytest.raises(LedgerError, match="damaged or not a ledger"):
        Ledger(db)
    assert time.monotonic() - started < 5
