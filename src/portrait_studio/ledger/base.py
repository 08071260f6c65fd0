"""What every part of the ledger shares: the database, its transactions, and who is acting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..accounts import Actor
from . import database

__all__ = ["LedgerBase", "dump_json", "load_json"]


def dump_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def load_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class LedgerBase:
    """A connection pool to the ledger's database, seen by one `actor` (None: the one-person studio,
    which sees and records everything unscoped)."""

    def __init__(self, location: str | Path, *, actor: Actor | None = None) -> None:
        self.url = database.database_url(location)
        self.path: Path | None = Path(self.url.database) if self.url.get_backend_name() == "sqlite" and self.url.database else None
        self._engine = database.connect(self.url)
        self._owns_engine = True
        self.actor = actor
        try:
            self.migrate()
        except BaseException:
            self._engine.dispose()
            raise

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
        database.upgrade(self._engine)

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One transaction that holds SQLite's write lock from its first statement (PostgreSQL:
        READ COMMITTED; lock the rows a decision depends on with FOR UPDATE)."""
        with database.transaction(self._engine, "write") as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._engine.connect() as conn:
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
