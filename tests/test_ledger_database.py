"""One schema, one set of migrations, two databases: the ledger behaves the same on SQLite and
PostgreSQL, and ledgers written by earlier versions migrate forward without losing a row."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.errors import BudgetExceeded, LedgerError
from portrait_studio.ledger import Ledger, schema
from portrait_studio.ledger.database import head
from portrait_studio.prompting import compile_brief
from portrait_studio.records import Cost, Result, Ticket

DATA = Path(__file__).parent / "data"
SRC = Path(__file__).resolve().parents[1] / "src"
BRIEF = load_brief(example_brief_path("rembrandt-studio-headshot"))


def _png(shade: int) -> bytes:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (8, 8), (shade, 40, 90)).save(buf, "PNG")
    return buf.getvalue()


def _requests(n: int, first_seed: int = 1) -> list:  # type: ignore[type-arg]
    return [compile_brief(BRIEF, "flux-1.1-pro", seed=s) for s in range(first_seed, first_seed + n)]


def test_a_new_ledger_is_at_the_newest_revision_and_reopening_changes_nothing(ledger_url: str) -> None:
    Ledger(ledger_url).close()
    with Ledger(ledger_url) as ledger:
        assert [r[0] for r in ledger.db.execute("SELECT version_num FROM alembic_version")] == [head()]


def test_the_newest_revision_the_ledger_expects_is_alembics_head() -> None:
    from portrait_studio.ledger.database import HEAD, alembic_head

    assert alembic_head() == HEAD


def _sqlite_schema(path: Path) -> list[tuple[str, str, str, str | None]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        version = db.execute("SELECT version_num FROM alembic_version").fetchall()
    return [*rows, ("version", str(version), "", None)]


def test_a_new_sqlite_ledger_is_made_from_the_baseline_exactly_as_the_migrations_make_it(tmp_path: Path) -> None:
    """A new studio's ledger comes from `sqlite_head.json` (no Alembic import: 0.2 s of a user's
    first command); it must be the very schema the migrations build, and the file must be of HEAD
    (after adding a migration, run `write_sqlite_baseline()`)."""
    from portrait_studio.ledger import database

    migrated = tmp_path / "migrated.db"
    engine = database.connect(database.database_url(migrated))
    try:
        database.upgrade(engine, baseline=False)
    finally:
        engine.dispose()
    made = tmp_path / "made.db"
    Ledger(made).close()
    assert _sqlite_schema(made) == _sqlite_schema(migrated)
    engine = database.connect(database.database_url(migrated))
    try:
        with engine.connect() as conn:
            built = database.sqlite_baseline(conn)
    finally:
        engine.dispose()
    import json

    assert built["revision"] == head()
    assert json.loads(database.SQLITE_BASELINE.read_text()) == built


def test_a_new_studio_does_not_load_alembic_and_an_old_ledger_is_still_migrated(tmp_path: Path) -> None:
    code = ("import sys; from portrait_studio.ledger import Ledger; Ledger(sys.argv[1]).close(); "
            "print('alembic' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "new.db")], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert run.stdout.strip() == "False"
    # a ledger that has tables (here: one stopped at the first revision) goes through the migrations
    old = tmp_path / "old.db"
    from portrait_studio.ledger import database

    engine = database.connect(database.database_url(old))
    try:
        with engine.connect() as conn, conn.begin():
            from alembic import command

            command.upgrade(database._alembic_config(conn), "0001_initial")
    finally:
        engine.dispose()
    with Ledger(old) as ledger:
        assert [r[0] for r in ledger.db.execute("SELECT version_num FROM alembic_version")] == [head()]
    assert _sqlite_schema(old) == _sqlite_schema(tmp_path / "new.db")


def test_the_migrated_schema_is_the_declared_schema(ledger_url: str) -> None:
    """The queries are built from `schema.py`; the migrations must make exactly that, on both databases."""
    with Ledger(ledger_url) as ledger:
        inspector = sa.inspect(ledger._engine)
        tables = set(inspector.get_table_names()) - {"alembic_version"}
        assert tables == set(schema.metadata.tables)
        for name, table in schema.metadata.tables.items():
            found = {c["name"]: c for c in inspector.get_columns(name)}
            assert set(found) == {c.name for c in table.columns}, name
            for column in table.columns:
                assert found[column.name]["nullable"] == (column.nullable and not column.primary_key), (name, column.name)
            indexes = {i["name"] for i in inspector.get_indexes(name)}
            assert {i.name for i in table.indexes} <= indexes, name


def test_the_ledger_records_a_run_on_both_databases(ledger_url: str, tmp_path: Path) -> None:
    reqs = _requests(2)
    with Ledger(ledger_url) as ledger:
        run = ledger.create_run("shoot", brief=BRIEF.model_dump(mode="json"), budget_usd=1.0, project="spring")
        ledger.add_requests(run, reqs)
        ledger.reserve(reqs[0].request_id, 0.04, limit_usd=1.0, run_id=run)
        ledger.record_accepted(Ticket(request_id=reqs[0].request_id, provider="bfl", task_id="task-1"))
        assert [r.status for r in ledger.requests(run)] == ["accepted", "planned"]
        result = Result(request_id=reqs[0].request_id, provider="bfl", model="flux-1.1-pro", image=_png(1), seed=1,
                        cost=Cost(credits=4, usd=0.04))
        image = ledger.record_image(result, images_dir=tmp_path / "img", run_id=run, request_id=reqs[0].request_id,
                                    charge=result.cost, out_path=tmp_path / "run" / "01.png")
        assert ledger.requests(run)[0].status == "done" and ledger.in_flight(run) == 0
        assert ledger.spent(run).usd == pytest.approx(0.04) and ledger.spent(run, sandbox=True).usd == 0
        assert ledger.pick(run, image.id).picked and ledger.picked(run).id == image.id  # type: ignore[union-attr]
        child = ledger.record_image(Result(request_id="x", provider="bfl", model="flux-fill-pro", image=_png(2), seed=2,
                                           cost=Cost(credits=5, usd=0.05)),
                                    images_dir=tmp_path / "img", run_id=None, request_id=None,
                                    parent_sha256=image.image_sha256, operation="fix")
        assert [r.operation for r in ledger.lineage(child.image_sha256)] == ["fix", "generate"]
        ledger.record_file(tmp_path / "run" / "01.png", "ab" * 32, image.id, labelled=True)
        ledger.record_file(tmp_path / "run" / "01.png", "cd" * 32, image.id, labelled=True)  # upsert
        assert [f["sha256"] for f in ledger.files_for(image.id)] == ["cd" * 32]
        assert ledger.image("cd" * 10).id == image.id and ledger.image(image.image_sha256[:8]).id == image.id
        assert ledger.image(str(tmp_path / "run" / "01.png")).id == image.id
        ledger.record_checks(image.image_sha256, "warn", 0.4, {"eyes": "warn"})
        ledger.record_checks(image.image_sha256, "pass", 0.9, {"eyes": "pass"})
        page, total = ledger.gallery(run_id=None, model=None, seed=None, check="pass", picked=None, limit=10, offset=0)
        assert total == 1 and page[0].check_overall == "pass" and page[0].check_score == pytest.approx(0.9)
        assert ledger.checks(image.image_sha256) == {"eyes": "pass"}
        assert ledger.runs()[0].project == "spring"
        assert ledger.neighbours(image) == (child.id, None)
        with pytest.raises(LedgerError, match="no run"):
            ledger.run("run_nope")
        with pytest.raises(LedgerError, match="no run"):
            ledger.run("%%%%")  # never a pattern


def test_a_seed_above_two_billion_fits_on_both_databases(ledger_url: str) -> None:
    req = compile_brief(BRIEF, "flux-1.1-pro", seed=2**32 - 1)
    with Ledger(ledger_url) as ledger:
        run = ledger.create_run("shoot")
        ledger.add_requests(run, [req])
        assert ledger.requests(run)[0].seed == 2**32 - 1


def test_reserve_never_passes_the_run_budget_when_threads_race(ledger_url: str) -> None:
    """Twelve threads reserve $0.04 each against a $0.20 run budget: exactly five get through."""
    reqs = _requests(12)
    with Ledger(ledger_url) as ledger:
        run = ledger.create_run("shoot", budget_usd=0.20)
        ledger.add_requests(run, reqs)
        go = threading.Barrier(len(reqs))
        outcomes: list[str] = []

        def spend(request_id: str) -> None:
            go.wait()
            try:
                ledger.reserve(request_id, 0.04, limit_usd=0.20, run_id=run)
                outcomes.append("reserved")
            except BudgetExceeded:
                outcomes.append("refused")

        threads = [threading.Thread(target=spend, args=(r.request_id,)) for r in reqs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert outcomes.count("reserved") == 5
        assert ledger.in_flight(run) == pytest.approx(0.20)


def test_a_reservation_is_settled_exactly_once(ledger_url: str) -> None:
    (req,) = _requests(1)
    with Ledger(ledger_url) as ledger:
        run = ledger.create_run("shoot")
        ledger.add_requests(run, [req])
        ledger.reserve(req.request_id, 0.04, limit_usd=None, run_id=run)
        go = threading.Barrier(6)
        settled: list[bool] = []

        def settle() -> None:
            go.wait()
            settled.append(ledger.settle(req.request_id, Cost(credits=4, usd=0.04)))

        threads = [threading.Thread(target=settle) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert settled.count(True) == 1
        assert ledger.spent(run).usd == pytest.approx(0.04) and ledger.in_flight(run) == 0
        ledger.reserve(req.request_id, 0.04, limit_usd=None, run_id=run)  # a retry is a new attempt, settled once more
        assert ledger.settle(req.request_id, Cost(credits=4, usd=0.04))
        assert not ledger.settle(req.request_id, Cost(credits=4, usd=0.04))
        assert ledger.spent(run).usd == pytest.approx(0.08)


def test_one_resumer_holds_a_run(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger:
        run = ledger.create_run("shoot")
        assert ledger.claim_run(run, "host:1") is None
        assert ledger.claim_run(run, "host:2") == "host:1"
        assert ledger.claim_run(run, "host:2", alive=lambda owner: False) is None  # a dead holder is taken over
        ledger.release_run(run, "host:2")
        assert ledger.claim_run(run, "host:3") is None


_OPEN = """
import sys
from portrait_studio.ledger import Ledger
with Ledger(sys.argv[1]) as ledger:
    run = ledger.create_run("shoot", name=sys.argv[2])
print(run)
"""


def test_many_processes_can_open_a_new_ledger_at_the_same_moment(ledger_url: str) -> None:
    """Four processes race to create the schema; all succeed, and it is made once."""
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN, ledger_url, f"p{n}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
             for n in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1][-800:] for o in outs]
    with Ledger(ledger_url) as ledger:
        assert len(ledger.runs(limit=10)) == 4
        assert [r[0] for r in ledger.db.execute("SELECT version_num FROM alembic_version")] == [head()]


def test_an_unreachable_database_is_named_without_its_password() -> None:
    with pytest.raises(LedgerError) as caught:
        Ledger("postgresql://studio:hunter2-very-secret@127.0.0.1:9/studio")
    assert "hunter2" not in str(caught.value) and "127.0.0.1:9/studio" in str(caught.value)
    assert "PostgreSQL is running" in (caught.value.hint or "")
    with pytest.raises(LedgerError, match="cannot live in 'mysql'"):
        Ledger("mysql://x@localhost/y")


# --- ledgers written by earlier versions ------------------------------------------------------------


def _rows(path: Path) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    """Every row of every table, with the columns that existed then, in a stable order."""
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    out = {}
    for table in tables:
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
        out[table] = sorted(tuple(map(repr, r)) for r in db.execute(f"SELECT {', '.join(cols)} FROM {table}"))
        out[table + ".columns"] = [tuple(cols)]
    db.close()
    return out


def _same_rows_after(before: dict[str, list[tuple]], path: Path) -> None:  # type: ignore[type-arg]
    db = sqlite3.connect(path)
    for table, rows in before.items():
        if table.endswith(".columns") or table in ("_migrations",):
            continue
        cols = before[table + ".columns"][0]
        now = sorted(tuple(map(repr, r)) for r in db.execute(f"SELECT {', '.join(cols)} FROM {table}"))
        if table == "requests":  # the one column a migration fills in: spend carried from results
            idx = [cols.index(c) for c in cols if c not in ("charged_usd", "charged_credits", "sandbox")]
            now = sorted(tuple(r[i] for i in idx) for r in now)
            rows = sorted(tuple(r[i] for i in idx) for r in rows)
        assert now == rows, table
    db.close()


def test_a_ledger_of_the_first_version_migrates_forward_with_its_spend(tmp_path: Path) -> None:
    """Made before the engine (money on results only): the migration carries it onto requests."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(DATA / "ledger-v1.db", path)
    before = _rows(path)
    with Ledger(path) as ledger:
        assert ledger.spent("run_old").usd == pytest.approx(0.08)
        assert ledger.image("img_old0").cost_usd == pytest.approx(0.04)
        assert ledger.image("img_old0").check_overall == "warn"
        assert ledger.picked("run_old").id == "img_old1"  # type: ignore[union-attr]
        assert ledger.rights_for("cafe")["who"] == "Ann"  # type: ignore[index]
        assert [r.status for r in ledger.requests("run_old")] == ["done", "done", "failed"]
        assert ledger.identity("run_old")[0]["distance"] == pytest.approx(0.2)
    _same_rows_after(before, path)


def test_an_engine_era_ledger_migrates_forward_without_losing_a_row(tmp_path: Path) -> None:
    """Made by the engine before accounts existed (tests/data/make_legacy_ledgers.py at b04656b):
    every row of every table reads back the same, the API sees it all, and work goes on."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(DATA / "ledger-v2-engine.db", path)
    before = _rows(path)
    with Ledger(path) as ledger:
        runs = ledger.runs()
        assert sorted(r.kind for r in runs) == ["compare", "shoot"]
        shoot = next(r for r in runs if r.kind == "shoot")
        assert shoot.steps and shoot.created_by is None and shoot.team_id is None
        images = ledger.images(run_id=shoot.id)
        assert len(images) == 4 and ledger.picked(shoot.id) is not None
        assert all(ledger.files_for(i.id) for i in images)
        raw = sqlite3.connect(DATA / "ledger-v2-engine.db")
        paid = raw.execute("SELECT SUM(charged_usd) FROM requests WHERE run_id=?", (shoot.id,)).fetchone()[0]
        raw.close()
        assert paid > 0 and ledger.spent(shoot.id, sandbox=True).usd == pytest.approx(paid)
        second = next(r for r in runs if r.kind == "compare")
        assert [r.status for r in ledger.requests(second.id)] == ["failed", "skipped", "planned"]
        assert ledger.spent(second.id, sandbox=True).usd == pytest.approx(0.04)
        fix = ledger.images(limit=100, include_raw=True)[0]
        assert fix.operation == "fix" and [r.operation for r in ledger.lineage(fix.image_sha256)] == ["fix", "generate"]
        assert ledger.identity(shoot.id)[0]["details"] == {"step": "measure"}
    _same_rows_after(before, path)
    with Ledger(path) as ledger:  # and the migrated ledger keeps working: a retry is reserved and settled once
        failed = ledger.requests(second.id)[0]
        ledger.reserve(failed.id, 0.04, limit_usd=None, run_id=second.id, sandbox=True)
        assert ledger.settle(failed.id, Cost(credits=4, usd=0.04)) and not ledger.settle(failed.id, Cost(usd=0.04))
        assert ledger.spent(second.id, sandbox=True).usd == pytest.approx(0.08)


def test_no_sql_outside_the_ledger_package() -> None:
    """The ledger owns its SQL: no query strings in product code outside `portrait_studio/ledger/`."""
    pattern = re.compile(r"""\b(SELECT \S+ FROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE|ALTER TABLE)\b""")
    offenders = []
    for path in (SRC / "portrait_studio").rglob("*.py"):
        if "ledger" in path.relative_to(SRC / "portrait_studio").parts[0]:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and "sqlite3" not in line:
                offenders.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert offenders == []
