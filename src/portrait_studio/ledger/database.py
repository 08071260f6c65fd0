"""Connecting to the ledger's database and bringing its schema up to date.

Two databases, one schema, one set of migrations (Alembic, `migrations/versions/`):

- **SQLite** (the default: `<home>/ledger.db`): WAL, foreign keys on, and transactions we
  begin ourselves — `BEGIN IMMEDIATE` for writes, so a write transaction holds the database's
  write lock from its first statement (what makes `reserve` atomic across processes), and no
  transaction at all for plain reads.
- **PostgreSQL** (`postgresql://…`, through psycopg 3): READ COMMITTED; what must be atomic
  locks its rows (`SELECT … FOR UPDATE`) or is one conditional UPDATE.

Opening is safe from many processes at once: migrations run inside one transaction that holds
the database's migration lock (SQLite's write lock; a PostgreSQL advisory lock), so the
second opener waits and finds the schema current. Ledgers made before Alembic (their
`_migrations` table lists `m001_initial`, `m002_engine`) are stamped at the matching revision
and upgraded from there, rows untouched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import StaticPool

from ..errors import LedgerError

__all__ = [
    "HEAD", "SQLITE_BASELINE", "RawSQL", "alembic_head", "connect", "damage_as_ledger_error", "database_url", "describe_url",
    "head", "pending", "sqlite_baseline", "transaction", "upgrade", "write_sqlite_baseline",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
LEGACY = {"m001_initial": "0001_initial", "m002_engine": "0002_engine"}
"""The pre-Alembic migration functions and the revision each one's schema equals."""
_LOCK_KEY = 0x706F72747261  # 'portra': the advisory lock PostgreSQL migrations hold


def database_url(location: str | Path, *, create: bool = True) -> sa.URL:
    """A file path (or sqlite:/// URL) or a postgresql:// URL, as SQLAlchemy's URL. For a file that
    will be written (`create`), its folder is made, and a folder or file that cannot be written is
    refused now rather than half-way through a command."""
    text = str(location)
    if "://" not in text:
        path = Path(text).expanduser().resolve()
        if create:
            _writable(path)
        return sa.URL.create("sqlite", database=str(path))
    try:
        url = sa.make_url(text)
    except sa.exc.ArgumentError as exc:
        raise LedgerError(f"'{describe_url(text)}' is not a database URL: {exc}",
                          hint="use postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or a file path for SQLite") from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if url.database and url.database != ":memory:" and create:
            _writable(Path(url.database).expanduser().resolve())
        return url
    raise LedgerError(f"the ledger cannot live in '{backend}'",
                      hint="use a postgresql:// URL for a shared ledger, or a file path for SQLite")


def _writable(path: Path) -> None:
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerError(f"cannot create the studio folder {folder}: {exc.strerror}",
                          hint="check the path and its permissions (--home / PORTRAIT_STUDIO_HOME)") from None
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise LedgerError(
            f"the studio's ledger {path} is read-only; this command records what it does",
            hint="make the studio folder writable, or point --home / PORTRAIT_STUDIO_HOME at a writable copy",
        )


def describe_url(url: str | sa.URL) -> str:
    """The URL with its password hidden (for messages and logs)."""
    try:
        return sa.make_url(str(url) if not isinstance(url, sa.URL) else url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(unreadable database URL)"


def connect(url: sa.URL, *, read_only: bool = False) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, read_only=read_only)
    engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=20, pool_recycle=1800)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise LedgerError(f"cannot reach the database {describe_url(url)}: {reason}",
                          hint="check that PostgreSQL is running and the --database URL (user, password, host, name)") from None
    return engine


def _sqlite_engine(url: sa.URL, *, read_only: bool = False) -> sa.Engine:
    path = Path(url.database) if url.database and url.database != ":memory:" else None
    if read_only and (path is None or not path.exists()):
        # nothing made yet: an empty ledger in memory (one connection, shared), nothing created on disk
        return _with_pragmas(sa.create_engine("sqlite://", poolclass=StaticPool,
                                              connect_args={"check_same_thread": False}), wal=False)
    if read_only and path is not None:
        for extra in ({}, {"immutable": "1"}):
            # A WAL ledger in a folder we cannot write and without its -shm file cannot be opened
            # 'mode=ro'; nobody can be writing it either, so it may be read as immutable.
            target = sa.URL.create("sqlite", database=path.resolve().as_uri(),
                                   query={"mode": "ro", **extra, "uri": "true"})
            engine = _with_pragmas(sa.create_engine(target, connect_args={"timeout": 30, "check_same_thread": False}),
                                   wal=False)
            try:
                with engine.connect() as conn:
                    conn.execution_options(ledger_tx="read")
                    conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
                return engine
            except sa.exc.OperationalError:
                engine.dispose()
                if extra:
                    raise
            except sa.exc.DatabaseError as exc:
                engine.dispose()
                problem = _sqlite_problem(str(path), exc.orig)
                if problem is None:
                    raise
                raise problem from None
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=8, max_overflow=24)
    return _with_pragmas(engine, wal=True)


def _with_pragmas(engine: sa.Engine, *, wal: bool) -> sa.Engine:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we begin transactions ourselves (below)
        cursor = dbapi_conn.cursor()
        pragmas = ("journal_mode=WAL", "synchronous=NORMAL") if wal else ()
        for pragma in (*pragmas, "foreign_keys=ON", "busy_timeout=30000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("ledger_tx", "write")
        if mode == "write":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif mode == "deferred":
            conn.exec_driver_sql("BEGIN")
        # "read": statements run on their own (autocommit), never holding a lock between them

    return engine


def _sqlite_problem(where: str, exc: BaseException | None) -> LedgerError | None:
    """The LedgerError for a SQLite failure that means the file (not the query) is the problem."""
    import sqlite3

    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(exc, sqlite3.IntegrityError):
        return None
    text = str(exc)
    if "locked" in text or "busy" in text:
        return LedgerError(f"the ledger {where} is busy ({text})", hint="another portrait process holds it; try again")
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return LedgerError(f"cannot open the ledger {where} ({text})",
                           hint="check the studio folder's permissions, or use a read-only command")
    if any(word in text for word in ("malformed", "not a database", "disk image", "file is encrypted")) or \
            type(exc) is sqlite3.DatabaseError:
        return LedgerError(
            f"the ledger {where} is damaged or not a ledger ({text})",
            hint="run 'portrait doctor' to check the studio ('portrait doctor --repair' salvages what it can)",
        )
    return None


@contextmanager
def damage_as_ledger_error(where: str) -> Iterator[None]:
    """A damaged, locked or unopenable SQLite file surfaces as a LedgerError with the way out."""
    import sqlite3

    try:
        yield
    except sa.exc.DBAPIError as exc:
        problem = _sqlite_problem(where, exc.orig)
        if problem is None:
            raise
        raise problem from None
    except sqlite3.DatabaseError as exc:
        problem = _sqlite_problem(where, exc)
        if problem is None:
            raise
        raise problem from None


def _alembic_config(conn: sa.Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


HEAD = "0003_team"
"""The newest revision in `migrations/versions/` (a test holds it to Alembic's own answer), so that
opening a current ledger costs one query and never loads the migration scripts."""


def head() -> str:
    return HEAD


def alembic_head() -> str | None:
    """The newest revision as Alembic reads it from the scripts."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _current(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def pending(conn: sa.Connection) -> list[str]:
    """The revisions a ledger still needs, oldest first (the pre-Alembic ones count as applied)."""
    current = _current(conn)
    if current is None:
        inspector = sa.inspect(conn)
        if inspector.has_table("_migrations"):
            done = {row[0] for row in conn.exec_driver_sql("SELECT name FROM _migrations")}
            reached = [rev for name, rev in LEGACY.items() if name in done]
            current = reached[-1] if reached else None
    if current == HEAD:
        return []
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    chain = [r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()][::-1]  # oldest first
    return chain[chain.index(current) + 1:] if current in chain else chain


SQLITE_BASELINE = MIGRATIONS_DIR / "sqlite_head.json"
"""A brand-new SQLite ledger's schema at HEAD: the statements the migrations leave in
`sqlite_master`, in their order (`write_sqlite_baseline()` writes the file from a ledger the
migrations built; a test holds the two equal). A new studio is made from it in milliseconds,
where importing Alembic and running every migration cost 0.2 s of the user's first command.
Any ledger that already has tables is upgraded by the migrations, as before."""


def sqlite_baseline(conn: sa.Connection) -> dict[str, Any]:
    """The schema of a SQLite ledger at HEAD, as `SQLITE_BASELINE` keeps it."""
    rows = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL "
                                "AND name NOT LIKE 'sqlite_%' ORDER BY rowid")
    return {"revision": _current(conn), "statements": [row[0] for row in rows]}


def write_sqlite_baseline(path: Path = SQLITE_BASELINE) -> Path:
    """Rewrite the baseline from the migrations (after adding one):
    `python -c "from portrait_studio.ledger.database import write_sqlite_baseline as w; w()"`."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        engine = connect(sa.URL.create("sqlite", database=str(Path(folder) / "ledger.db")))
        try:
            upgrade(engine, baseline=False)
            with engine.connect() as conn:
                data = sqlite_baseline(conn)
        finally:
            engine.dispose()
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def _create_from_baseline(conn: sa.Connection) -> bool:
    """Make the schema of an empty SQLite database from the baseline; False (nothing done) when
    the database is not empty or the baseline is not of HEAD."""
    import json

    if conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").scalar():
        return False
    try:
        data = json.loads(SQLITE_BASELINE.read_text())
    except (OSError, ValueError):
        return False
    if data.get("revision") != HEAD:
        return False
    for statement in data["statements"]:
        conn.exec_driver_sql(statement)
    conn.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES (?)", (HEAD,))
    return True


def upgrade(engine: sa.Engine, *, baseline: bool = True) -> None:
    """Bring the schema to the newest revision (a no-op, one query, when it already is). A new
    SQLite ledger is made from `SQLITE_BASELINE` unless `baseline=False`."""
    with engine.connect() as conn:
        conn.execution_options(ledger_tx="read")
        if _current(conn) == head():
            return
    with engine.connect() as conn:
        conn.execution_options(ledger_tx="write")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
            if _current(conn) == head():
                return
            if baseline and conn.dialect.name == "sqlite" and _create_from_baseline(conn):
                return
            from alembic import command

            cfg = _alembic_config(conn)
            inspector = sa.inspect(conn)
            if not inspector.has_table("alembic_version") and inspector.has_table("_migrations"):
                done = {row[0] for row in conn.exec_driver_sql("SELECT name FROM _migrations")}
                reached = [rev for name, rev in LEGACY.items() if name in done]
                if reached:
                    command.stamp(cfg, reached[-1])
            command.upgrade(cfg, "head")


class _Buffered:
    """The rows of one statement, read before its connection went back to the pool."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return list(self._rows)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class RawSQL:
    """Plain SQL on the ledger's database with `?` placeholders — for tests and one-off tools,
    never for product code (the ledger's methods are the API)."""

    def __init__(self, engine: sa.Engine, conn: sa.Connection | None = None) -> None:
        self._engine = engine
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Buffered:
        if self._conn is not None:
            return self._run(self._conn, sql, params)
        with self._engine.connect() as conn:
            conn.execution_options(ledger_tx="read")  # SQLite: the statement commits on its own (PRAGMAs too)
            with conn.begin():
                return self._run(conn, sql, params)

    @staticmethod
    def _run(conn: sa.Connection, sql: str, params: Sequence[Any]) -> _Buffered:
        if conn.dialect.name == "postgresql":
            sql = sql.replace("%", "%%").replace("?", "%s")
        result = conn.exec_driver_sql(sql, tuple(params))
        rows = list(result) if result.returns_rows else []
        return _Buffered(rows, result.rowcount)


@contextmanager
def transaction(engine: sa.Engine, mode: str = "write") -> Iterator[sa.Connection]:
    with engine.connect() as conn:
        conn.execution_options(ledger_tx=mode)
        with conn.begin():
            yield conn
