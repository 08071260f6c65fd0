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

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from ..errors import LedgerError

__all__ = ["HEAD", "RawSQL", "alembic_head", "connect", "database_url", "describe_url", "head", "transaction", "upgrade"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
LEGACY = {"m001_initial": "0001_initial", "m002_engine": "0002_engine"}
"""The pre-Alembic migration functions and the revision each one's schema equals."""
_LOCK_KEY = 0x706F72747261  # 'portra': the advisory lock PostgreSQL migrations hold


def database_url(location: str | Path) -> sa.URL:
    """A file path (or sqlite:/// URL) or a postgresql:// URL, as SQLAlchemy's URL."""
    text = str(location)
    if "://" not in text:
        path = Path(text).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
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
        if url.database and url.database != ":memory:":
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return url
    raise LedgerError(f"the ledger cannot live in '{backend}'",
                      hint="use a postgresql:// URL for a shared ledger, or a file path for SQLite")


def describe_url(url: str | sa.URL) -> str:
    """The URL with its password hidden (for messages and logs)."""
    try:
        return sa.make_url(str(url) if not isinstance(url, sa.URL) else url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(unreadable database URL)"


def connect(url: sa.URL) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
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


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                              pool_size=8, max_overflow=24)

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we begin transactions ourselves (below)
        cursor = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL", "busy_timeout=30000"):
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


def upgrade(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision (a no-op, one query, when it already is)."""
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
            conn.execution_options(ledger_tx="write")
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
