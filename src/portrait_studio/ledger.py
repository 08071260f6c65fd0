"""The ledger: one SQLite database (WAL) of everything the studio made and spent.

It is the provenance record and the gallery's index. Rows are appended as work happens:
a run and its planned requests first, then (one transaction each) acceptance by the
provider, and the finished image with its cost. So an interrupted run can be resumed
without paying twice, and failures are recorded too. API keys never enter it.

Migrations are a list of small functions, applied in order and recorded in `_migrations`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .errors import LedgerError
from .records import Cost, Request, Result, Ticket, new_id

__all__ = ["ImageRow", "Ledger", "RequestRow", "RunRow", "StoredFile", "store_image"]

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []
migration = MIGRATIONS.append

RequestStatus = Literal["planned", "submitting", "accepted", "done", "failed", "skipped"]


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run statements one by one (executescript would commit the migration's transaction)."""
    for statement in sql.split(";"):
        lines = [line.split("--")[0] for line in statement.splitlines()]
        if "".join(lines).strip():
            db.execute("\n".join(lines))


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,                 -- shoot | compare | vary | series | fix | upscale
            created_at REAL NOT NULL,
            name TEXT,
            brief_json TEXT,
            brief_path TEXT,
            plan_json TEXT,
            budget_usd REAL,
            parent_run_id TEXT REFERENCES runs(id),
            varied_json TEXT,                   -- {"element": value, ...} for vary rounds
            forced INTEGER NOT NULL DEFAULT 0,  -- more than one element changed with --force
            out_dir TEXT,
            status TEXT NOT NULL DEFAULT 'planned',
            versions_json TEXT
        );
        CREATE TABLE requests (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id),
            position INTEGER NOT NULL,
            idempotency_key TEXT NOT NULL,
            model TEXT NOT NULL,
            provider TEXT NOT NULL,
            seed INTEGER NOT NULL,
            request_json TEXT NOT NULL,
            estimated_usd REAL NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'planned',
            task_id TEXT,
            ticket_json TEXT,
            error TEXT,
            updated_at REAL NOT NULL
        );
        CREATE INDEX requests_run ON requests(run_id, position);
        CREATE TABLE images (
            sha256 TEXT PRIMARY KEY,
            path TEXT NOT NULL,
            width INTEGER, height INTEGER, format TEXT,
            created_at REAL NOT NULL
        );
        CREATE TABLE results (
            id TEXT PRIMARY KEY,
            run_id TEXT REFERENCES runs(id),
            request_id TEXT REFERENCES requests(id),
            image_sha256 TEXT NOT NULL REFERENCES images(sha256),
            parent_sha256 TEXT,
            operation TEXT NOT NULL DEFAULT 'generate',   -- generate | fix | upscale | edit | import
            operation_json TEXT,
            model TEXT, provider TEXT, seed INTEGER,
            provider_task_id TEXT,
            cost_credits REAL NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            timings_json TEXT, metadata_json TEXT, versions_json TEXT,
            sandbox INTEGER NOT NULL DEFAULT 0,
            picked INTEGER NOT NULL DEFAULT 0,
            out_path TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX results_run ON results(run_id);
        CREATE INDEX results_image ON results(image_sha256);
        CREATE TABLE checks (
            image_sha256 TEXT NOT NULL,
            overall TEXT NOT NULL,
            score REAL,
            checklist_json TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX checks_image ON checks(image_sha256);
        CREATE TABLE labels (
            image_sha256 TEXT NOT NULL,
            info_json TEXT NOT NULL,
            c2pa_status TEXT,
            created_at REAL NOT NULL
        );
        CREATE TABLE rights (
            id TEXT PRIMARY KEY,
            image_sha256 TEXT NOT NULL,
            who TEXT NOT NULL, source TEXT NOT NULL, permission TEXT NOT NULL,
            recorded_by TEXT,
            recorded_at REAL NOT NULL
        );
        CREATE TABLE identity (
            run_id TEXT NOT NULL,
            image_sha256 TEXT,
            shot INTEGER NOT NULL,
            distance REAL,
            status TEXT NOT NULL,
            reset_applied INTEGER NOT NULL DEFAULT 0,
            details_json TEXT,
            created_at REAL NOT NULL
        );
        """
    )


@migration
def m002_engine(db: sqlite3.Connection) -> None:
    """What the one engine needs: money per request (reserved before sending, settled on what the
    provider charged, whatever the outcome), sandbox spend kept apart, the finishing steps of a
    run (so `resume` finishes any kind of run), one resumer at a time, and every file written."""
    _script(
        db,
        """
        ALTER TABLE requests ADD COLUMN reserved_usd REAL NOT NULL DEFAULT 0;
        ALTER TABLE requests ADD COLUMN charged_usd REAL;
        ALTER TABLE requests ADD COLUMN charged_credits REAL;
        ALTER TABLE requests ADD COLUMN sandbox INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN steps_json TEXT;
        ALTER TABLE runs ADD COLUMN lock_owner TEXT;
        ALTER TABLE runs ADD COLUMN lock_until REAL;
        CREATE TABLE files (
            path TEXT PRIMARY KEY,            -- resolved absolute path of a file the studio wrote
            sha256 TEXT NOT NULL,             -- of the file as written (labelled bytes)
            result_id TEXT NOT NULL REFERENCES results(id),
            kind TEXT NOT NULL,               -- output | export | sheet | grid | ...
            labelled INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        );
        CREATE INDEX files_sha ON files(sha256);
        CREATE INDEX files_result ON files(result_id);
        CREATE INDEX requests_key ON requests(run_id, idempotency_key);
        CREATE INDEX results_request ON results(request_id);
        CREATE INDEX results_parent ON results(parent_sha256)
        """,
    )
    # What earlier versions paid is what their results cost (they recorded nothing else).
    db.execute(
        "UPDATE requests SET charged_usd = (SELECT SUM(cost_usd) FROM results WHERE results.request_id = requests.id),"
        " charged_credits = (SELECT SUM(cost_credits) FROM results WHERE results.request_id = requests.id),"
        " sandbox = COALESCE((SELECT MAX(sandbox) FROM results WHERE results.request_id = requests.id), 0)"
        " WHERE status = 'done'"
    )


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class RunRow(_Row):
    id: str
    kind: str
    created_at: float
    name: str | None
    brief: dict[str, Any] | None
    plan: dict[str, Any] | None
    budget_usd: float | None
    parent_run_id: str | None
    varied: dict[str, Any] | None
    forced: bool
    out_dir: str | None
    status: str
    steps: list[dict[str, Any]] = []
    """The finishing steps recorded with the run (see `engine`), applied again by `resume`."""


class RequestRow(_Row):
    id: str
    run_id: str
    position: int
    idempotency_key: str
    model: str
    provider: str
    seed: int
    request: Request
    estimated_usd: float
    status: str
    task_id: str | None
    ticket: Ticket | None
    error: str | None
    reserved_usd: float = 0.0
    charged_usd: float | None = None
    sandbox: bool = False

    @property
    def accepted(self) -> bool:
        """The provider took the task (and, per its billing, may have charged for it)."""
        return self.task_id is not None


class ImageRow(_Row):
    """One made image, as the log and gallery show it."""

    id: str
    run_id: str | None
    request_id: str | None
    image_sha256: str
    path: str
    out_path: str | None
    parent_sha256: str | None
    operation: str
    operation_details: dict[str, Any] | None
    model: str | None
    provider: str | None
    seed: int | None
    cost_usd: float
    cost_credits: float
    timings: dict[str, float]
    metadata: dict[str, Any]
    versions: dict[str, str]
    sandbox: bool
    picked: bool
    created_at: float
    width: int | None
    height: int | None
    check_overall: str | None = None
    check_score: float | None = None


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def store_image(images_dir: Path, data: bytes, ext: str) -> tuple[str, Path]:
    """Write `data` content-addressed (images/ab/<sha256>.<ext>); return (sha256, path)."""
    from .files import atomic_write_bytes

    sha = hashlib.sha256(data).hexdigest()
    path = images_dir / sha[:2] / f"{sha}.{ext}"
    if not path.exists() or path.stat().st_size != len(data):  # a unique temp name per writer: no race
        atomic_write_bytes(path, data)
    return sha, path


class StoredFile(_Row):
    """An image file the ledger knows: the content-addressed original and its run-folder copy."""

    sha256: str
    path: str
    out_path: str | None
    run_id: str | None
    sandbox: bool
    result_id: str | None = None
    operation: str | None = None
    """'import': the out path is the user's own file (the same bytes); otherwise a labelled copy."""


class Ledger:
    """The studio's SQLite ledger. Safe to open from several processes (WAL).

    `read_only=True` is for commands that only read (log, gallery, audit, review lists): the
    database is opened with SQLite's `mode=ro`, nothing is created (a studio without a ledger
    reads as empty), and it works on a read-only folder or disk. The default (read-write)
    refuses a studio it cannot write with a LedgerError instead of failing half-way.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        try:
            self.db = self._open_read_only() if read_only else self._open()
            self.migrate()
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(Exception):
                self.db.close()
            raise self._damaged(exc) from None

    def _connect(self, target: str, *, uri: bool = False) -> sqlite3.Connection:
        db = sqlite3.connect(target, timeout=30, isolation_level=None, check_same_thread=False, uri=uri)
        db.row_factory = sqlite3.Row
        return db

    def _open(self) -> sqlite3.Connection:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(f"cannot create the studio folder {folder}: {exc.strerror}",
                              hint="check the path and its permissions (--home / PORTRAIT_STUDIO_HOME)") from None
        if not os.access(folder, os.W_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
            raise LedgerError(
                f"the studio's ledger {self.path} is read-only; this command records what it does",
                hint="make the studio folder writable, or point --home / PORTRAIT_STUDIO_HOME at a writable copy",
            )
        self.db = self._connect(str(self.path))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA synchronous=NORMAL")
        return self.db

    def _open_read_only(self) -> sqlite3.Connection:
        if not self.path.exists():  # nothing made yet: an empty ledger in memory, nothing created on disk
            return self._connect(":memory:")
        uri = self.path.resolve().as_uri() + "?mode=ro"
        self.db = self._connect(uri, uri=True)
        try:
            self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            # A WAL database in a folder we cannot write and without its -shm file: nobody can be
            # writing it either, so it may be read as immutable.
            self.db.close()
            self.db = self._connect(uri + "&immutable=1", uri=True)
            self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return self.db

    def _damaged(self, exc: sqlite3.DatabaseError) -> LedgerError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return LedgerError(f"the ledger {self.path} is busy ({text})", hint="another portrait process holds it; try again")
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return LedgerError(f"cannot open the ledger {self.path} ({text})",
                               hint="check the studio folder's permissions, or use a read-only command")
        return LedgerError(
            f"the ledger {self.path} is damaged or not a ledger ({text})",
            hint="run 'portrait doctor' to check the studio ('portrait doctor --repair' salvages what it can)",
        )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema --------------------------------------------------------------------------
    def pending_migrations(self) -> list[str]:
        """Migrations not yet applied (all of them for a new ledger). Reads only."""
        try:
            done = {row[0] for row in self.db.execute("SELECT name FROM _migrations")}
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            done = set()
        return [fn.__name__ for fn in MIGRATIONS if fn.__name__ not in done]

    def migrate(self) -> None:
        """Apply pending migrations, each exactly once even when many processes open a new ledger
        at the same moment: the write lock is taken before the applied list is read, and the
        check is repeated inside that transaction (reading first let two processes both create
        `runs`)."""
        if not self.pending_migrations():
            return
        if self.read_only and self.path.exists():
            if os.access(self.path.parent, os.W_OK) and os.access(self.path, os.W_OK):
                Ledger(self.path).close()  # an older ledger: upgrade it once through a writer
                return
            raise LedgerError(
                f"the ledger {self.path} needs an upgrade ({', '.join(self.pending_migrations())}) "
                "and the studio is read-only",
                hint="run any recording command (or 'portrait doctor --repair') on a writable studio first",
            )
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
            done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
            for fn in MIGRATIONS:
                if fn.__name__ not in done:
                    fn(db)
                    db.execute("INSERT INTO _migrations VALUES (?, ?)", (fn.__name__, time.time()))

    def integrity_errors(self) -> list[str]:
        """SQLite's own `integrity_check` (and foreign keys): an empty list means the file is sound."""
        rows = [str(r[0]) for r in self.db.execute("PRAGMA integrity_check").fetchall()]
        problems = [r for r in rows if r != "ok"]
        fk = self.db.execute("PRAGMA foreign_key_check").fetchall()
        problems += [f"foreign key: {tuple(r)}" for r in fk]
        return problems

    def stored_files(self) -> list[StoredFile]:
        """Every image file the ledger lists: its content-addressed copy and its run-folder copy."""
        rows = self.db.execute(
            "SELECT i.sha256, i.path, r.out_path, r.run_id, COALESCE(r.sandbox, 0), r.id, r.operation FROM images i"
            " LEFT JOIN results r ON r.image_sha256 = i.sha256 ORDER BY i.created_at"
        ).fetchall()
        return [StoredFile(sha256=r[0], path=r[1], out_path=r[2], run_id=r[3], sandbox=bool(r[4]), result_id=r[5],
                           operation=r[6]) for r in rows]

    @staticmethod
    def salvage(damaged: Path, into: Path) -> dict[str, int]:
        """Copy every readable row of a damaged ledger file into a new ledger at `into`.

        Table by table, so one unreadable table does not lose the others; returns rows per table
        (-1 where a table could not be read). `portrait doctor --repair` uses it.
        """
        with Ledger(into) as fresh:
            tables = [r[0] for r in fresh.db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            fresh.db.execute("ATTACH DATABASE ? AS old", (str(damaged),))
            counts: dict[str, int] = {}
            for table in tables:
                if table == "_migrations":
                    continue
                try:
                    cols = [r[1] for r in fresh.db.execute(f"PRAGMA old.table_info({table})")]
                    keep = [c for c in cols if c in {r[1] for r in fresh.db.execute(f"PRAGMA main.table_info({table})")}]
                    if not keep:
                        counts[table] = -1
                        continue
                    names = ", ".join(keep)
                    with fresh.transaction() as db:
                        db.execute(f"INSERT OR IGNORE INTO main.{table} ({names}) SELECT {names} FROM old.{table}")
                    counts[table] = fresh.db.execute(f"SELECT count(*) FROM main.{table}").fetchone()[0]
                except sqlite3.DatabaseError:
                    counts[table] = -1
            fresh.db.execute("DETACH DATABASE old")
        return counts

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- runs ----------------------------------------------------------------------------
    def create_run(
        self,
        kind: str,
        *,
        name: str | None = None,
        brief: dict[str, Any] | None = None,
        brief_path: str | None = None,
        plan: dict[str, Any] | None = None,
        budget_usd: float | None = None,
        parent_run_id: str | None = None,
        varied: dict[str, Any] | None = None,
        forced: bool = False,
        out_dir: str | None = None,
        versions: dict[str, str] | None = None,
        run_id: str | None = None,
    ) -> str:
        run_id = run_id or new_id("run_")
        with self.transaction() as db:
            db.execute(
                "INSERT INTO runs (id, kind, created_at, name, brief_json, brief_path, plan_json, budget_usd,"
                " parent_run_id, varied_json, forced, out_dir, versions_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id, kind, time.time(), name, _json(brief), brief_path, _json(plan), budget_usd,
                    parent_run_id, _json(varied), int(forced), out_dir, _json(versions),
                ),
            )
        return run_id

    def set_run_status(self, run_id: str, status: str) -> None:
        self.db.execute("UPDATE runs SET status=? WHERE id=?", (status, run_id))

    def run(self, run_id: str) -> RunRow:
        """A run by its exact id or a unique prefix of it (never a pattern: '' and '%' match nothing)."""
        ref = (run_id or "").strip()
        row = self.db.execute("SELECT * FROM runs WHERE id=?", (ref,)).fetchone() if ref else None
        if row is None and len(ref) >= 4:
            rows = self.db.execute("SELECT * FROM runs WHERE substr(id, 1, ?) = ? LIMIT 2", (len(ref), ref)).fetchall()
            if len(rows) > 1:
                raise LedgerError(f"'{ref}' matches several runs", hint="give more characters of the run id")
            row = rows[0] if rows else None
        if row is None:
            raise LedgerError(f"no run '{ref}' in the ledger", hint="give a run id (or a unique prefix of one) from 'portrait log'")
        return self._run_row(row)

    @staticmethod
    def _run_row(row: sqlite3.Row) -> RunRow:
        return RunRow(
            id=row["id"], kind=row["kind"], created_at=row["created_at"], name=row["name"],
            brief=_load(row["brief_json"]), plan=_load(row["plan_json"]), budget_usd=row["budget_usd"],
            parent_run_id=row["parent_run_id"], varied=_load(row["varied_json"]), forced=bool(row["forced"]),
            out_dir=row["out_dir"], status=row["status"], steps=_load(row["steps_json"]) or [],
        )

    def set_run_plan(self, run_id: str, plan: dict[str, Any]) -> None:
        self.db.execute("UPDATE runs SET plan_json=? WHERE id=?", (_json(plan), run_id))

    def set_run_steps(self, run_id: str, steps: list[dict[str, Any]]) -> None:
        self.db.execute("UPDATE runs SET steps_json=? WHERE id=?", (_json(steps), run_id))

    # --- one resumer at a time ---------------------------------------------------------------
    def claim_run(self, run_id: str, owner: str, *, ttl_s: float = 60.0, alive: Callable[[str], bool] | None = None) -> str | None:
        """Take the run's lock for `owner`; returns None, or the current holder when another live
        process holds it. A lock whose lease ran out, or whose holder `alive` says is gone, is taken over."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT lock_owner, lock_until FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise LedgerError(f"no run '{run_id}' in the ledger")
            holder, until = row[0], row[1] or 0.0
            if holder and holder != owner and until > now and (alive is None or alive(holder)):
                return str(holder)
            db.execute("UPDATE runs SET lock_owner=?, lock_until=? WHERE id=?", (owner, now + ttl_s, run_id))
        return None

    def renew_run(self, run_id: str, owner: str, *, ttl_s: float = 60.0) -> None:
        self.db.execute("UPDATE runs SET lock_until=? WHERE id=? AND lock_owner=?", (time.time() + ttl_s, run_id, owner))

    def release_run(self, run_id: str, owner: str) -> None:
        self.db.execute("UPDATE runs SET lock_owner=NULL, lock_until=NULL WHERE id=? AND lock_owner=?", (run_id, owner))

    def runs(self, limit: int = 20) -> list[RunRow]:
        rows = self.db.execute("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [self._run_row(r) for r in rows]

    def latest_run(self) -> RunRow:
        row = self.db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
        if row is None:
            raise LedgerError("the ledger has no runs yet", hint="start with 'portrait shoot BRIEF.yaml'")
        return self.run(row[0])

    # --- requests ------------------------------------------------------------------------
    def add_requests(self, run_id: str, requests: list[Request]) -> None:
        """Append requests to a run; positions continue after the run's last one (a series adds shot by shot)."""
        now = time.time()
        with self.transaction() as db:
            first = db.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM requests WHERE run_id=?", (run_id,)).fetchone()[0]
            for pos, req in enumerate(requests, first):
                db.execute(
                    "INSERT INTO requests (id, run_id, position, idempotency_key, model, provider, seed, request_json,"
                    " estimated_usd, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        req.request_id, run_id, pos, req.idempotency_key, req.model, req.provider, req.seed,
                        req.model_dump_json(), req.estimated_cost.usd, now,
                    ),
                )

    def requests(self, run_id: str) -> list[RequestRow]:
        rows = self.db.execute("SELECT * FROM requests WHERE run_id=? ORDER BY position", (run_id,)).fetchall()
        return [self._request_row(r) for r in rows]

    @staticmethod
    def _request_row(r: sqlite3.Row) -> RequestRow:
        return RequestRow(
            id=r["id"], run_id=r["run_id"], position=r["position"], idempotency_key=r["idempotency_key"],
            model=r["model"], provider=r["provider"], seed=r["seed"],
            request=Request.model_validate_json(r["request_json"]), estimated_usd=r["estimated_usd"],
            status=r["status"], task_id=r["task_id"],
            ticket=Ticket.model_validate_json(r["ticket_json"]) if r["ticket_json"] else None, error=r["error"],
            reserved_usd=r["reserved_usd"], charged_usd=r["charged_usd"], sandbox=bool(r["sandbox"]),
        )

    def request(self, request_id: str) -> RequestRow:
        row = self.db.execute("SELECT * FROM requests WHERE id=?", (request_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no request '{request_id}' in the ledger")
        return self._request_row(row)

    def request_by_key(self, run_id: str, idempotency_key: str) -> RequestRow | None:
        """The run's request for exactly this image (same settings), if it was planned before."""
        row = self.db.execute(
            "SELECT * FROM requests WHERE run_id=? AND idempotency_key=? ORDER BY position LIMIT 1", (run_id, idempotency_key)
        ).fetchone()
        return self._request_row(row) if row else None

    def request_counts(self, run_id: str) -> tuple[dict[str, int], list[str]]:
        """(requests per status, the first errors) of a run, for progress displays."""
        counts: dict[str, int] = {}
        errors: list[str] = []
        for status, error in self.db.execute("SELECT status, error FROM requests WHERE run_id=? ORDER BY position", (run_id,)):
            counts[status] = counts.get(status, 0) + 1
            if error and status in ("failed", "skipped"):
                errors.append(error)
        return counts, errors

    # --- money: reserve before sending, settle on what was charged --------------------------
    def reserve(self, request_id: str, usd: float, *, limit_usd: float | None, run_id: str, sandbox: bool = False) -> None:
        """Atomically: refuse when the run's spent + reserved + `usd` would pass `limit_usd`; else
        mark the request 'submitting' with `usd` reserved. Concurrent resumers share the ledger's lock."""
        from .errors import BudgetExceeded

        with self.transaction() as db:
            committed = db.execute(
                "SELECT COALESCE(SUM(COALESCE(charged_usd, 0) + reserved_usd), 0) FROM requests WHERE run_id=?", (run_id,)
            ).fetchone()[0]
            if limit_usd is not None and committed + usd > limit_usd + 1e-9:
                raise BudgetExceeded(
                    f"stopped before a ${usd:.3f} request: ${committed:.3f} spent or in flight of a ${limit_usd:.2f} budget",
                    budget_usd=limit_usd, needed_usd=committed + usd,
                )
            db.execute(
                "UPDATE requests SET status='submitting', reserved_usd=?, sandbox=?, error=NULL, task_id=NULL,"
                " ticket_json=NULL, updated_at=? WHERE id=?",
                (usd, int(sandbox), time.time(), request_id),
            )

    def settle(self, request_id: str, charged: Cost | None) -> None:
        """What the provider charged for the request (None: unknown yet, keep the reservation)."""
        if charged is None:
            return
        self.db.execute(
            "UPDATE requests SET charged_usd=COALESCE(charged_usd, 0) + ?, charged_credits=COALESCE(charged_credits, 0) + ?,"
            " reserved_usd=0, updated_at=? WHERE id=?",
            (charged.usd, charged.credits, time.time(), request_id),
        )

    def set_request_status(self, request_id: str, status: RequestStatus, error: str | None = None) -> None:
        self.db.execute(
            "UPDATE requests SET status=?, error=?, updated_at=? WHERE id=?", (status, error, time.time(), request_id)
        )

    def request_status(self, request_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM requests WHERE id=?", (request_id,)).fetchone()
        return row[0] if row else None

    def record_accepted(self, ticket: Ticket) -> None:
        """The provider accepted (and will charge for) the request: remember its task."""
        with self.transaction() as db:
            db.execute(
                "UPDATE requests SET status='accepted', task_id=?, ticket_json=?, updated_at=? WHERE id=?",
                (ticket.task_id, ticket.model_dump_json(), time.time(), ticket.request_id),
            )

    # --- images and results ----------------------------------------------------------------
    def record_image(
        self,
        result: Result,
        *,
        images_dir: Path,
        run_id: str | None,
        request_id: str | None,
        parent_sha256: str | None = None,
        operation: str = "generate",
        operation_details: dict[str, Any] | None = None,
        out_path: Path | None = None,
        width: int | None = None,
        height: int | None = None,
        charge: Cost | None = None,
    ) -> ImageRow:
        """Store the image (content-addressed) and its row in one step; the request becomes 'done'
        and, with `charge`, is settled at what the provider charged in the same transaction.

        `out_path` is where the delivered (labelled) copy of this image lives or will live; the
        ledger does not write it — the engine's delivery step does, and records it with `record_file`.
        """
        ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(result.media_type, "png")
        sha, path = store_image(images_dir, result.image, ext)
        if width is None:
            from io import BytesIO

            from PIL import Image

            with Image.open(BytesIO(result.image)) as im:
                width, height = im.size
        result_id = new_id("img_")
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO images (sha256, path, width, height, format, created_at) VALUES (?,?,?,?,?,?)",
                (sha, str(path), width, height, ext, now),
            )
            db.execute(
                "INSERT INTO results (id, run_id, request_id, image_sha256, parent_sha256, operation, operation_json,"
                " model, provider, seed, provider_task_id, cost_credits, cost_usd, timings_json, metadata_json,"
                " versions_json, sandbox, out_path, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    result_id, run_id, request_id, sha, parent_sha256, operation, _json(operation_details),
                    result.model, result.provider, result.seed, result.provider_task_id, result.cost.credits,
                    result.cost.usd, _json(result.timings), _json(result.metadata), _json(result.versions),
                    int(result.sandbox), str(out_path) if out_path else None, now,
                ),
            )
            if request_id and charge is not None:
                db.execute(
                    "UPDATE requests SET status='done', error=NULL, charged_usd=COALESCE(charged_usd, 0) + ?,"
                    " charged_credits=COALESCE(charged_credits, 0) + ?, reserved_usd=0, updated_at=? WHERE id=?",
                    (charge.usd, charge.credits, now, request_id),
                )
            elif request_id:
                db.execute("UPDATE requests SET status='done', error=NULL, updated_at=? WHERE id=?", (now, request_id))
        return self.image(result_id)

    def derived_from_request(self, request_id: str, operation: str) -> ImageRow | None:
        """The derivative (fix composite, upscale …) a finishing step made from a request's result."""
        row = self.db.execute(self._IMAGE_SQL + " WHERE r.request_id=? AND r.operation=? ORDER BY r.created_at DESC LIMIT 1",
                              (request_id, operation)).fetchone()
        return self._image_row(row) if row else None

    def derived_in_run(self, run_id: str, operation: str) -> ImageRow | None:
        row = self.db.execute(self._IMAGE_SQL + " WHERE r.run_id=? AND r.operation=? ORDER BY r.created_at DESC LIMIT 1",
                              (run_id, operation)).fetchone()
        return self._image_row(row) if row else None

    def result_for_request(self, request_id: str) -> ImageRow | None:
        """What the provider delivered for the request (its first recorded result)."""
        row = self.db.execute(self._IMAGE_SQL + " WHERE r.request_id=? ORDER BY r.created_at LIMIT 1", (request_id,)).fetchone()
        return self._image_row(row) if row else None

    # --- files the studio wrote ---------------------------------------------------------------
    def record_file(self, path: str | Path, sha256: str, result_id: str, *, kind: str = "output", labelled: bool = False) -> None:
        """Remember a file the studio wrote (a labelled run-folder copy, an export, a fix): any of its
        paths or hashes leads back to its image, so lineage never breaks on a copy."""
        self.db.execute(
            "INSERT INTO files (path, sha256, result_id, kind, labelled, created_at) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT(path) DO UPDATE SET sha256=excluded.sha256, result_id=excluded.result_id, kind=excluded.kind,"
            " labelled=excluded.labelled, created_at=excluded.created_at",
            (str(Path(path).resolve()), sha256, result_id, kind, int(labelled), time.time()),
        )

    def file(self, path: str | Path) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM files WHERE path=?", (str(Path(path).resolve()),)).fetchone()
        return dict(row) if row else None

    def files_for(self, result_id: str) -> list[dict[str, Any]]:
        """The files written for an image (labelled copies first, newest first)."""
        rows = self.db.execute("SELECT * FROM files WHERE result_id=? ORDER BY labelled DESC, created_at DESC", (result_id,))
        return [dict(r) for r in rows.fetchall()]

    def is_studio_output(self, path: str | Path) -> bool:
        """True for files the studio wrote as outputs (recorded files, stored images, run files)."""
        resolved = str(Path(path).resolve())
        if self.db.execute("SELECT 1 FROM files WHERE path=?", (resolved,)).fetchone():
            return True
        return self.db.execute("SELECT 1 FROM images WHERE path=?", (resolved,)).fetchone() is not None

    _IMAGE_SQL = (
        "SELECT r.*, i.path AS path, i.width AS width, i.height AS height,"
        " (SELECT overall FROM checks c WHERE c.image_sha256=r.image_sha256 ORDER BY created_at DESC LIMIT 1) AS check_overall,"
        " (SELECT score FROM checks c WHERE c.image_sha256=r.image_sha256 ORDER BY created_at DESC LIMIT 1) AS check_score"
        " FROM results r JOIN images i ON i.sha256 = r.image_sha256"
    )

    @staticmethod
    def _image_row(r: sqlite3.Row) -> ImageRow:
        return ImageRow(
            id=r["id"], run_id=r["run_id"], request_id=r["request_id"], image_sha256=r["image_sha256"],
            path=r["path"], out_path=r["out_path"], parent_sha256=r["parent_sha256"], operation=r["operation"],
            operation_details=_load(r["operation_json"]), model=r["model"], provider=r["provider"], seed=r["seed"],
            cost_usd=r["cost_usd"], cost_credits=r["cost_credits"], timings=_load(r["timings_json"]) or {},
            metadata=_load(r["metadata_json"]) or {}, versions=_load(r["versions_json"]) or {},
            sandbox=bool(r["sandbox"]), picked=bool(r["picked"]), created_at=r["created_at"],
            width=r["width"], height=r["height"], check_overall=r["check_overall"], check_score=r["check_score"],
        )

    def image(self, ref: str) -> ImageRow:
        """An image by result id, sha256 (of the stored original or of any file the studio wrote from
        it), a unique prefix of an id or hash, or the path of a file the studio wrote."""
        ref = str(ref).strip()
        exact = self.db.execute(self._IMAGE_SQL + " WHERE r.id=?", (ref,)).fetchone() if ref else None
        if exact is not None:  # the common case: an id from the log or the gallery, no table scan
            return self._image_row(exact)
        if not ref:
            raise LedgerError("no image given", hint="use an id or sha256 prefix from 'portrait log'")
        rows: list[sqlite3.Row] = []
        resolved = str(Path(ref).resolve()) if ("/" in ref or "." in ref) else None
        if resolved:
            rows = self.db.execute(
                self._IMAGE_SQL + " WHERE r.id IN (SELECT result_id FROM files WHERE path=?) OR r.out_path=? OR i.path=?"
                " ORDER BY r.created_at DESC", (resolved, ref, resolved),
            ).fetchall()
        if not rows and len(ref) >= 6 and all(c.isalnum() or c == "_" for c in ref):
            n = len(ref)
            rows = self.db.execute(
                self._IMAGE_SQL + " WHERE substr(r.image_sha256, 1, ?)=? OR substr(r.id, 1, ?)=?"
                " OR r.id IN (SELECT result_id FROM files WHERE substr(sha256, 1, ?)=?) ORDER BY r.created_at DESC",
                (n, ref, n, ref, n, ref),
            ).fetchall()
        if not rows:
            raise LedgerError(f"no image '{ref}' in the ledger", hint="use an id or sha256 prefix from 'portrait log'")
        if len({r["id"] for r in rows}) > 1 and len({r["image_sha256"] for r in rows}) > 1:
            raise LedgerError(f"'{ref}' matches several images", hint="give more characters of the id or sha256")
        return self._image_row(rows[0])

    def image_for_file(self, path: str | Path, sha256: str) -> ImageRow | None:
        """The image a file on disk is (by its recorded path, or by the hash of its bytes)."""
        row = self.db.execute(
            self._IMAGE_SQL + " WHERE r.id IN (SELECT result_id FROM files WHERE path=? OR sha256=?)"
            " OR r.image_sha256=? ORDER BY (r.operation = 'import'), r.created_at DESC LIMIT 1",
            (str(Path(path).resolve()), sha256, sha256),
        ).fetchone()
        return self._image_row(row) if row else None

    def images(
        self,
        *,
        run_id: str | None = None,
        model: str | None = None,
        seed: int | None = None,
        picked: bool | None = None,
        check: str | None = None,
        limit: int = 50,
        offset: int = 0,
        include_raw: bool = False,
    ) -> list[ImageRow]:
        """Images newest first. Raw provider outputs that a finishing step turned into the deliverable
        (an inpaint before its composite) are intermediates, left out unless `include_raw`."""
        where, args = [], []  # type: ignore[var-annotated]
        if not include_raw:
            where.append("r.operation != 'raw'")
        for clause, value in (("r.run_id=?", run_id), ("r.model=?", model), ("r.seed=?", seed)):
            if value is not None:
                where.append(clause)
                args.append(value)
        if picked is not None:
            where.append("r.picked=?")
            args.append(int(picked))
        sql = self._IMAGE_SQL + (" WHERE " + " AND ".join(where) if where else "")
        if check is not None:
            sql = f"SELECT * FROM ({sql}) WHERE check_overall=?"
            args.append(check)
        sql += " ORDER BY created_at DESC LIMIT ? OFFSET ?"
        rows = self.db.execute(sql, (*args, limit, offset)).fetchall()
        return [self._image_row(r) for r in rows]

    def gallery(
        self, *, run_id: str | None, model: str | None, seed: int | None, check: str | None, picked: bool | None,
        limit: int, offset: int,
    ) -> tuple[list[ImageRow], int]:
        """One page of images, newest first, and the total matching (the gallery's query)."""
        base = (
            "FROM results r JOIN images i ON i.sha256 = r.image_sha256"
            " LEFT JOIN (SELECT image_sha256, overall, score, MAX(created_at) FROM checks GROUP BY image_sha256) c"
            " ON c.image_sha256 = r.image_sha256"
        )
        where: list[str] = ["r.operation != 'raw'"]
        args: list[Any] = []
        for clause, value in (("r.run_id=?", run_id), ("r.model=?", model), ("r.seed=?", seed)):
            if value is not None:
                where.append(clause)
                args.append(value)
        if picked is not None:
            where.append("r.picked=?")
            args.append(int(picked))
        if check == "unchecked":
            where.append("c.overall IS NULL")
        elif check is not None:
            where.append("c.overall=?")
            args.append(check)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        total = self.db.execute(f"SELECT COUNT(*) {base}{clause}", args).fetchone()[0]
        rows = self.db.execute(
            f"SELECT r.*, i.path AS path, i.width AS width, i.height AS height, c.overall AS check_overall,"
            f" c.score AS check_score {base}{clause} ORDER BY r.created_at DESC, r.id LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
        return [self._image_row(r) for r in rows], int(total)

    def run_choices(self, limit: int = 200) -> list[tuple[str, str]]:
        """(run id, label) of recent runs, for filters."""
        rows = self.db.execute("SELECT id, kind, name FROM runs ORDER BY created_at DESC LIMIT ?", (limit,))
        return [(r[0], f"{r[2] or r[1]} · {r[0][-6:]}") for r in rows]

    def models_used(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT model FROM requests ORDER BY model") if r[0]]

    def result_ids(self, run_id: str) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT id FROM results WHERE run_id=? AND operation != 'raw' ORDER BY created_at", (run_id,))]

    def neighbours(self, image: ImageRow) -> tuple[str | None, str | None]:
        """(newer, older) image ids around `image` in the gallery's order."""
        newer = self.db.execute(
            "SELECT id FROM results WHERE created_at > ? OR (created_at = ? AND id < ?) ORDER BY created_at, id DESC LIMIT 1",
            (image.created_at, image.created_at, image.id),
        ).fetchone()
        older = self.db.execute(
            "SELECT id FROM results WHERE created_at < ? OR (created_at = ? AND id > ?) ORDER BY created_at DESC, id LIMIT 1",
            (image.created_at, image.created_at, image.id),
        ).fetchone()
        return (newer[0] if newer else None, older[0] if older else None)

    def lineage(self, sha256: str) -> list[ImageRow]:
        """The image and its ancestors, newest first (fix → upscale chains)."""
        chain: list[ImageRow] = []
        current: str | None = sha256
        while current and len(chain) < 50:
            row = self.image(current)
            chain.append(row)
            current = row.parent_sha256
        return chain

    def children(self, sha256: str) -> list[ImageRow]:
        rows = self.db.execute(self._IMAGE_SQL + " WHERE r.parent_sha256=? ORDER BY r.created_at", (sha256,))
        return [self._image_row(r) for r in rows.fetchall()]

    def pick(self, run_id: str, image_ref: str) -> ImageRow:
        row = self.image(image_ref)
        if row.run_id != run_id:
            raise LedgerError(f"image {row.id} is not part of run {run_id}", hint="pick an image of that run")
        with self.transaction() as db:
            db.execute("UPDATE results SET picked=0 WHERE run_id=?", (run_id,))
            db.execute("UPDATE results SET picked=1 WHERE id=?", (row.id,))
        return self.image(row.id)

    def picked(self, run_id: str) -> ImageRow | None:
        rows = self.images(run_id=run_id, picked=True, limit=1)
        return rows[0] if rows else None

    def spent(self, run_id: str | None = None, *, sandbox: bool | None = False) -> Cost:
        """What providers charged, per request and whatever its outcome (a moderated task a provider
        bills for counts). Every paid operation goes through a request, so nothing else costs money.
        `sandbox=False` (the default) is real money only; True is sandbox spend only; None is both."""
        where: list[str] = []
        args: list[Any] = []
        if run_id:
            where.append("run_id=?")
            args.append(run_id)
        if sandbox is not None:
            where.append("sandbox=?")
            args.append(int(sandbox))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        row = self.db.execute(
            f"SELECT COALESCE(SUM(charged_credits),0), COALESCE(SUM(charged_usd),0) FROM requests{clause}", args
        ).fetchone()
        return Cost(credits=round(row[0], 4), usd=round(row[1], 6))

    def in_flight(self, run_id: str) -> float:
        """Reserved for requests sent but not settled (their charge is not known yet)."""
        row = self.db.execute("SELECT COALESCE(SUM(reserved_usd), 0) FROM requests WHERE run_id=?", (run_id,)).fetchone()
        return float(row[0])

    # --- checks, labels, rights, identity --------------------------------------------------
    def record_checks(self, sha256: str, overall: str, score: float | None, checklist: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO checks (image_sha256, overall, score, checklist_json, created_at) VALUES (?,?,?,?,?)",
            (sha256, overall, score, _json(checklist), time.time()),
        )

    def checks(self, sha256: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT checklist_json FROM checks WHERE image_sha256=? ORDER BY created_at DESC LIMIT 1", (sha256,)
        ).fetchone()
        return _load(row[0]) if row else None

    def record_label(self, sha256: str, info: dict[str, Any], c2pa_status: str | None) -> None:
        self.db.execute(
            "INSERT INTO labels (image_sha256, info_json, c2pa_status, created_at) VALUES (?,?,?,?)",
            (sha256, _json(info), c2pa_status, time.time()),
        )

    def label(self, sha256: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT info_json, c2pa_status FROM labels WHERE image_sha256=? ORDER BY created_at DESC LIMIT 1",
            (sha256,),
        ).fetchone()
        return {"info": _load(row[0]), "c2pa_status": row[1]} if row else None

    def record_rights(self, image_sha256: str, who: str, source: str, permission: str, recorded_by: str | None = None) -> str:
        rights_id = new_id("rights_")
        self.db.execute(
            "INSERT INTO rights (id, image_sha256, who, source, permission, recorded_by, recorded_at)"
            " VALUES (?,?,?,?,?,?,?)",
            (rights_id, image_sha256, who, source, permission, recorded_by, time.time()),
        )
        return rights_id

    def rights_for(self, image_sha256: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT * FROM rights WHERE image_sha256=? ORDER BY recorded_at DESC LIMIT 1", (image_sha256,)
        ).fetchone()
        return dict(row) if row else None

    def record_identity(
        self, run_id: str, shot: int, image_sha256: str | None, distance: float | None, status: str,
        reset_applied: bool = False, details: dict[str, Any] | None = None,
    ) -> None:
        self.db.execute(
            "INSERT INTO identity (run_id, image_sha256, shot, distance, status, reset_applied, details_json, created_at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (run_id, image_sha256, shot, distance, status, int(reset_applied), _json(details), time.time()),
        )

    def has_identity(self, run_id: str, shot: int, image_sha256: str, step: str) -> bool:
        rows = self.db.execute(
            "SELECT details_json FROM identity WHERE run_id=? AND shot=? AND image_sha256=?", (run_id, shot, image_sha256)
        ).fetchall()
        return any((_load(r[0]) or {}).get("step") == step for r in rows)

    def identity(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM identity WHERE run_id=? ORDER BY shot, created_at", (run_id,))
        return [{**dict(r), "details": _load(r["details_json"])} for r in rows.fetchall()]
