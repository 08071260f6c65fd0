"""What every part of the ledger shares: the database, its transactions, and who is acting."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..accounts import Actor
from ..errors import LedgerError
from . import database

__all__ = ["LedgerBase", "dump_json", "load_json"]


def dump_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def load_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class LedgerBase:
    """A connection pool to the ledger's database, seen by one `actor` (None: the one-person studio,
    which sees and records everything unscoped).

    `read_only=True` is for commands that only read (log, gallery, audit, review lists): a SQLite
    ledger is opened with `mode=ro`, nothing is created (a studio without a ledger reads as
    empty), and it works on a read-only folder or disk; any write is refused with a LedgerError.
    The default (read-write) refuses a studio it cannot write with a LedgerError instead of
    failing half-way. A file that is not a ledger, or is damaged, is a LedgerError naming
    `portrait doctor`.
    """

    def __init__(self, location: str | Path, *, actor: Actor | None = None, read_only: bool = False) -> None:
        self.read_only = read_only
        self.url = database.database_url(location, create=not read_only)
        self.path: Path | None = Path(self.url.database) if self.url.get_backend_name() == "sqlite" and self.url.database else None
        self._owns_engine = True
        self.actor = actor
        # Many processes opening one brand-new SQLite ledger at once: switching it to WAL and the
        # first migration can answer SQLITE_BUSY without waiting on the busy timeout (SQLite's
        # deadlock avoidance), so a busy first open is retried for a while before it is an error.
        deadline = time.monotonic() + 60.0
        while True:
            try:
                self._engine = database.connect(self.url, read_only=read_only)
                try:
                    with database.damage_as_ledger_error(self.location):
                        self.migrate()
                except BaseException:
                    self._engine.dispose()
                    raise
                break
            except LedgerError as exc:
                if self.path is None or " is busy " not in exc.message or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.02, 0.2))

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    @property
    def location(self) -> str:
        """Where the ledger lives, password hidden (for messages)."""
        return str(self.path) if self.path else database.describe_url(self.url)

    def as_actor(self, actor: Actor | None) -> Any:
        """The same ledger seen by `actor`: every read scoped to its team, every write signed by it.
        Shares the connection pool; closing the view leaves the pool open."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.actor = actor
        view._owns_engine = False
        return view

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema and transactions -------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema up to date. A read-only SQLite ledger that needs it is upgraded once
        through a writer when its folder allows, else refused (read-only studio)."""
        if self.read_only and self.path is not None and self.pending_migrations():
            if not self.path.exists():
                database.upgrade(self._engine)  # the empty in-memory stand-in
                return
            if os.access(self.path.parent, os.W_OK) and os.access(self.path, os.W_OK):
                type(self)(self.path).close()  # an older ledger: upgrade it once through a writer
                return
            raise LedgerError(
                f"the ledger {self.path} needs an upgrade ({', '.join(self.pending_migrations())}) "
                "and the studio is read-only",
                hint="run any recording command (or 'portrait doctor --repair') on a writable studio first",
            )
        database.upgrade(self._engine)

    def pending_migrations(self) -> list[str]:
        """Migrations not yet applied (all of them for a new ledger). Reads only."""
        with self._read() as conn:
            return database.pending(conn)

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One transaction that holds SQLite's write lock from its first statement (PostgreSQL:
        READ COMMITTED; lock the rows a decision depends on with FOR UPDATE)."""
        if self.read_only:
            raise LedgerError(f"the ledger {self.location} was opened read-only; this records something",
                              hint="use a recording command on a writable studio")
        with database.damage_as_ledger_error(self.location), database.transaction(self._engine, "write") as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with database.damage_as_ledger_error(self.location), self._engine.connect() as conn:
            conn.execution_options(ledger_tx="read")
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[database.RawSQL]:
        """A write transaction for plain SQL (`?` placeholders): tests and one-off tools only."""
        with self._write() as conn:
            yield database.RawSQL(self._engine, conn)

    @property
    def db(self) -> database.RawSQL:
        """Plain SQL on the ledger's database (`?` placeholders), each statement its own
        transaction: tests and one-off tools only; product code uses the methods."""
        return database.RawSQL(self._engine)

    # --- who is acting -----------------------------------------------------------------------
    @property
    def team_id(self) -> str | None:
        return self.actor.team_id if self.actor else None

    @property
    def user_id(self) -> str | None:
        return self.actor.user_id if self.actor else None

    def _scope(self, table: sa.Table) -> list[sa.ColumnElement[bool]]:
        """The WHERE clause that keeps a team's rows to itself (nothing for the one-person studio)."""
        team = self.team_id
        return [table.c.team_id == team] if team else []
