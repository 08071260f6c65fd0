"""Looking after the ledger file itself (`portrait doctor`): integrity, the files it lists, salvage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from . import schema as s
from .core import CoreLedger
from .rows import StoredFile

__all__ = ["MaintenanceLedger"]


class MaintenanceLedger(CoreLedger):
    def integrity_errors(self) -> list[str]:
        """SQLite's own `integrity_check` (and foreign keys): an empty list means the file is sound.
        (PostgreSQL keeps its own pages; its answer is always an empty list here.)"""
        if self.dialect != "sqlite":
            return []
        with self._read() as c:
            rows = [str(r[0]) for r in c.exec_driver_sql("PRAGMA integrity_check").all()]
            fk = c.exec_driver_sql("PRAGMA foreign_key_check").all()
        return [r for r in rows if r != "ok"] + [f"foreign key: {tuple(r)}" for r in fk]

    def stored_files(self) -> list[StoredFile]:
        """Every image file the ledger lists: its content-addressed copy and its run-folder copy."""
        i, r = s.images, s.results
        query = (sa.select(i.c.sha256, i.c.path, r.c.out_path, r.c.run_id, sa.func.coalesce(r.c.sandbox, 0), r.c.id,
                           r.c.operation)
                 .select_from(i.outerjoin(r, r.c.image_sha256 == i.c.sha256)).where(*self._scope(r))
                 .order_by(i.c.created_at))
        with self._read() as c:
            rows = c.execute(query).all()
        return [StoredFile(sha256=x[0], path=x[1], out_path=x[2], run_id=x[3], sandbox=bool(x[4]), result_id=x[5],
                           operation=x[6]) for x in rows]

    @classmethod
    def salvage(cls, damaged: Path, into: Path) -> dict[str, int]:
        """Copy every readable row of a damaged SQLite ledger file into a new ledger at `into`.

        Table by table, so one unreadable table does not lose the others; returns rows per table
        (-1 where a table could not be read). `portrait doctor --repair` uses it.
        """
        import sqlite3

        with cls(into) as fresh:
            counts: dict[str, int] = {}
            with fresh._engine.connect() as conn:
                conn.execution_options(ledger_tx="read")  # ATTACH cannot run inside a transaction
                raw: Any = conn.connection.dbapi_connection
                tables = [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")]
                raw.execute("ATTACH DATABASE ? AS old", (str(damaged),))
                try:
                    for table in tables:
                        if table in ("_migrations", "alembic_version"):
                            continue
                        try:
                            old = [r[1] for r in raw.execute(f"PRAGMA old.table_info({table})")]
                            new = {r[1] for r in raw.execute(f"PRAGMA main.table_info({table})")}
                            keep = [c for c in old if c in new]
                            if not keep:
                                counts[table] = -1
                                continue
                            names = ", ".join(keep)
                            raw.execute("BEGIN IMMEDIATE")
                            try:
                                raw.execute(f"INSERT OR IGNORE INTO main.{table} ({names}) SELECT {names} FROM old.{table}")
                                raw.execute("COMMIT")
                            except BaseException:
                                raw.execute("ROLLBACK")
                                raise
                            counts[table] = raw.execute(f"SELECT count(*) FROM main.{table}").fetchone()[0]
                        except sqlite3.DatabaseError:
                            counts[table] = -1
                finally:
                    raw.execute("DETACH DATABASE old")
        return counts
