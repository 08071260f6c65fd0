"""The ledger: one database of everything the studio made, spent, decided and queued.

It is the provenance record and the gallery's index — runs, requests, results, files (sha256),
checks, labels, rights, identity — and, for a team studio, its accounts, budgets, approvals
and background jobs. `Ledger(location)` opens it:

    Ledger(home / "ledger.db")                     SQLite, WAL: the one-person default
    Ledger("postgresql://user:pw@host/studio")     PostgreSQL (psycopg 3): a shared team ledger

One schema (`schema.py`), one set of Alembic migrations (`migrations/`), for both; existing
SQLite ledgers migrate forward in place. The ledger owns its SQL: nothing outside this package
writes a query. A ledger seen by an `Actor` (`ledger.as_actor(actor)`) reads only that
actor's team's rows and signs every row it writes with the actor's user and team.
"""

from __future__ import annotations

from typing import Any

from .accounts import AccountsLedger, LoginThrottle
from .core import RequestStatus, store_image, window_start
from .database import database_url, describe_url
from .jobs import MAX_ATTEMPTS, JobsLedger
from .maintenance import MaintenanceLedger
from .reviews import DECISIONS, ReviewsLedger
from .rows import (
    BudgetRow,
    ImageRow,
    JobRow,
    MemberRow,
    RequestRow,
    ReviewRow,
    RunRow,
    StoredFile,
    TeamRow,
    TokenRow,
    UserRow,
)

__all__ = [
    "DECISIONS",
    "MAX_ATTEMPTS",
    "BudgetRow",
    "ImageRow",
    "JobRow",
    "Ledger",
    "LoginThrottle",
    "MemberRow",
    "RequestRow",
    "RequestStatus",
    "ReviewRow",
    "RunRow",
    "StoredFile",
    "TeamRow",
    "TokenRow",
    "UserRow",
    "database_url",
    "describe_url",
    "open_ledger",
    "store_image",
    "window_start",
]


class Ledger(ReviewsLedger, AccountsLedger, JobsLedger, MaintenanceLedger):
    """The studio's ledger (SQLite file or PostgreSQL URL). Safe to share between threads and to
    open from several processes at once. `read_only=True` for commands that only read."""


def open_ledger(studio: Any, *, read_only: bool = False) -> Ledger:
    """The studio's ledger as the CLI and scripts see it: acting as the owner of the configured API
    token (`token` in config.toml or $PORTRAIT_TOKEN) when there is one. A studio with accounts
    and no token is refused — every row records who did it — unless it has no accounts at all
    (the one-person studio, unchanged)."""
    from ..errors import LoginRequired

    ledger = Ledger(studio.ledger_path, read_only=read_only)
    try:
        token = studio.token
        if token:
            view: Ledger = ledger.as_actor(ledger.authenticate_token(token))
            view._owns_engine = True
            return view
        if ledger.has_users():
            raise LoginRequired(
                f"the studio at {ledger.location} has accounts, so commands need your API token",
                hint="ask an owner for one ('portrait team token create --user EMAIL'), then put it in config.toml "
                "as token = \"pst_...\" or set PORTRAIT_TOKEN",
            )
    except BaseException:
        ledger.close()
        raise
    return ledger
