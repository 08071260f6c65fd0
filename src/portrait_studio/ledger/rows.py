"""The typed rows the ledger returns (frozen pydantic values; no SQL types leak out)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from ..records import Request, Ticket

__all__ = [
    "BudgetRow",
    "ImageRow",
    "JobRow",
    "MemberRow",
    "RequestRow",
    "ReviewRow",
    "RunRow",
    "StoredFile",
    "TeamRow",
    "TokenRow",
    "UserRow",
]


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
    created_by: str | None = None
    team_id: str | None = None
    project: str | None = None


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
    user_id: str | None = None
    team_id: str | None = None

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
    review: str | None = None
    """The latest review decision: 'approved', 'rejected', or None (not reviewed)."""
    created_by: str | None = None
    team_id: str | None = None

    @property
    def approved(self) -> bool:
        return self.review == "approved"


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


class TeamRow(_Row):
    id: str
    name: str
    created_at: float


class UserRow(_Row):
    id: str
    email: str
    name: str | None
    created_at: float
    disabled: bool = False
    has_password: bool = False


class MemberRow(_Row):
    user_id: str
    email: str
    name: str | None
    team_id: str
    role: str


class TokenRow(_Row):
    id: str
    user_id: str
    team_id: str
    name: str
    created_at: float
    last_used_at: float | None
    revoked: bool


class BudgetRow(_Row):
    """A spending limit for a whole team (`user_id` None) or one member, per UTC day, calendar
    month or in total, for every project (`project` None) or one."""

    id: str
    team_id: str
    user_id: str | None
    period: str
    project: str | None
    limit_usd: float
    spent_usd: float = 0.0
    """Real money charged or in flight in the current period (filled by `Ledger.budgets`)."""
    sandbox_usd: float = 0.0

    @property
    def scope(self) -> str:
        who = f"user {self.user_id}" if self.user_id else "team"
        where = f" on project '{self.project}'" if self.project else ""
        per = {"day": "per day", "month": "per month", "total": "in total"}.get(self.period, self.period)
        return f"{who} {per}{where}"


class ReviewRow(_Row):
    id: str
    result_id: str
    decision: str
    comment: str | None
    user_id: str | None
    reviewer: str | None = None
    created_at: float


class JobRow(_Row):
    """A background job, as the database keeps it (so it outlives the server that started it)."""

    id: str
    kind: str
    title: str
    spec: dict[str, Any]
    status: str
    run_id: str | None
    image_id: str | None
    result_id: str | None
    message: str | None
    error: str | None
    hint: str | None
    user_id: str | None
    team_id: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    lease_owner: str | None
    lease_until: float | None
    attempts: int

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")
