"""The ledger: one SQLite database (WAL) of everything the studio made and spent.

It is the provenance record and the gallery's index. Rows are appended as work happens:
a run and its planned requests first, then (one transaction each) acceptance by the
provider, and the finished image with its cost. So an interrupted run can be resumed
without paying twice, and failures are recorded too. API keys never enter it.

Migrations are a list of small functions, applied in order and recorded in `_migrations`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .errors import LedgerError
from .records import Cost, Request, Result, Ticket, new_id

__all__ = ["ImageRow", "Ledger", "RequestRow", "RunRow", "store_image"]

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
    sha = hashlib.sha256(data).hexdigest()
    path = images_dir / sha[:2] / f"{sha}.{ext}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return sha, path


class Ledger:
    """The studio's SQLite ledger. Safe to open from several processes (WAL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.migrate()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema --------------------------------------------------------------------------
    def migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
        done = {row[0] for row in self.db.execute("SELECT name FROM _migrations")}
        for fn in MIGRATIONS:
            if fn.__name__ not in done:
                with self.transaction():
                    fn(self.db)
                    self.db.execute("INSERT INTO _migrations VALUES (?, ?)", (fn.__name__, time.time()))

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
        """A run by its exact id or a unique prefix of it (never a substring, never a wildcard)."""
        row = self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None and run_id.strip():
            rows = self.db.execute("SELECT * FROM runs WHERE substr(id, 1, ?) = ? LIMIT 2",
                                   (len(run_id), run_id)).fetchall()
            if len(rows) > 1:
                raise LedgerError(f"'{run_id}' is the start of several runs", hint="give more characters of the run id")
            row = rows[0] if rows else None
        if row is None:
            raise LedgerError(f"no run '{run_id}' in the ledger", hint="run 'portrait log' to list runs")
        return RunRow(
            id=row["id"], kind=row["kind"], created_at=row["created_at"], name=row["name"],
            brief=_load(row["brief_json"]), plan=_load(row["plan_json"]), budget_usd=row["budget_usd"],
            parent_run_id=row["parent_run_id"], varied=_load(row["varied_json"]), forced=bool(row["forced"]),
            out_dir=row["out_dir"], status=row["status"],
        )

    def runs(self, limit: int = 20) -> list[RunRow]:
        ids = [r[0] for r in self.db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT ?", (limit,))]
        return [self.run(i) for i in ids]

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
        return [
            RequestRow(
                id=r["id"], run_id=r["run_id"], position=r["position"], idempotency_key=r["idempotency_key"],
                model=r["model"], provider=r["provider"], seed=r["seed"],
                request=Request.model_validate_json(r["request_json"]), estimated_usd=r["estimated_usd"],
                status=r["status"], task_id=r["task_id"],
                ticket=Ticket.model_validate_json(r["ticket_json"]) if r["ticket_json"] else None, error=r["error"],
            )
            for r in rows
        ]

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
    ) -> ImageRow:
        """Store the image file and its row in one step; the request becomes 'done'."""
        ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(result.media_type, "png")
        sha, path = store_image(images_dir, result.image, ext)
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            if not out_path.exists():
                out_path.write_bytes(result.image)
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
            if request_id:
                db.execute(
                    "UPDATE requests SET status='done', error=NULL, updated_at=? WHERE id=?", (now, request_id)
                )
        return self.image(result_id)

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
        """An image by result id, sha256 (or a unique prefix of either), or output path."""
        exact = self.db.execute(self._IMAGE_SQL + " WHERE r.id=?", (ref,)).fetchone()
        if exact is not None:  # the common case: an id from the log or the gallery, no table scan
            return self._image_row(exact)
        n = len(ref)
        rows = [] if not ref.strip() else self.db.execute(
            self._IMAGE_SQL + " WHERE r.id=? OR substr(r.image_sha256, 1, ?)=? OR substr(r.id, 1, ?)=?"
            " OR r.out_path=? OR i.path=? ORDER BY r.created_at DESC",
            (ref, n, ref, n, ref, ref, ref),
        ).fetchall()
        if not rows:
            raise LedgerError(f"no image '{ref}' in the ledger", hint="use an id or sha256 prefix from 'portrait log'")
        if len({r["id"] for r in rows}) > 1 and len({r["image_sha256"] for r in rows}) > 1:
            raise LedgerError(f"'{ref}' matches several images", hint="give more characters of the id or sha256")
        return self._image_row(rows[0])

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
    ) -> list[ImageRow]:
        where, args = [], []  # type: ignore[var-annotated]
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

    def spent(self, run_id: str | None = None) -> Cost:
        sql = "SELECT COALESCE(SUM(cost_credits),0), COALESCE(SUM(cost_usd),0) FROM results"
        row = self.db.execute(sql + (" WHERE run_id=?" if run_id else ""), (run_id,) if run_id else ()).fetchone()
        return Cost(credits=round(row[0], 4), usd=round(row[1], 6))

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

    def identity(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM identity WHERE run_id=? ORDER BY shot, created_at", (run_id,))
        return [{**dict(r), "details": _load(r["details_json"])} for r in rows.fetchall()]
