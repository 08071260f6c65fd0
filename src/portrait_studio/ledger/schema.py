"""The ledger's tables, as SQLAlchemy Core objects: the one schema the queries are built from.

The migrations in `migrations/versions/` create exactly this on SQLite and PostgreSQL alike
(`test_the_migrated_schema_is_the_declared_schema` compares them). Conventions, kept from the
first SQLite ledger so old files migrate without a rewrite: times are epoch seconds (double),
flags are 0/1 integers, structured values are JSON text, seeds are 64-bit.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["metadata"]

metadata = sa.MetaData()
Double = sa.Double
Text = sa.Text
Int = sa.Integer
Big = sa.BigInteger


def _flag(name: str) -> sa.Column[int]:
    return sa.Column(name, Int, nullable=False, server_default="0")


teams = sa.Table(
    "teams", metadata,
    sa.Column("id", Text, primary_key=True),
    sa.Column("name", Text, nullable=False, unique=True),
    sa.Column("created_at", Double, nullable=False),
    sa.Column("created_by", Text),
)

users = sa.Table(
    "users", metadata,
    sa.Column("id", Text, primary_key=True),
    sa.Column("email", Text, nullable=False, unique=True),   # the login name, lower-cased
    sa.Column("name", Text),
    sa.Column("password_hash", Text),                        # argon2id; NULL: token-only account
    sa.Column("created_at", Double, nullable=False),
    sa.Column("disabled_at", Double),
)

memberships = sa.Table(
    "memberships", metadata,
    sa.Column("user_id", Text, sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("team_id", Text, sa.ForeignKey("teams.id"), primary_key=True),
    sa.Column("role", Text, nullable=False),                 # owner | producer | reviewer | viewer
    sa.Column("created_at", Double, nullable=False),
    sa.Column("created_by", Text),
)

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", Text, primary_key=True),                 # sha256 of the cookie's secret
    sa.Column("user_id", Text, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("team_id", Text, sa.ForeignKey("teams.id"), nullable=False),
    sa.Column("csrf", Text, nullable=False),
    sa.Column("created_at", Double, nullable=False),
    sa.Column("expires_at", Double, nullable=False),
    sa.Column("client", Text),
)

api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", Text, primary_key=True),
    sa.Column("token_hash", Text, nullable=False, unique=True),  # sha256 of the token
    sa.Column("user_id", Text, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("team_id", Text, sa.ForeignKey("teams.id"), nullable=False),
    sa.Column("name", Text, nullable=False),
    sa.Column("created_at", Double, nullable=False),
    sa.Column("last_used_at", Double),
    sa.Column("revoked_at", Double),
)

login_failures = sa.Table(
    "login_failures", metadata,
    sa.Column("id", Int, primary_key=True, autoincrement=True),
    sa.Column("subject", Text, nullable=False),              # "user:<email>" or "ip:<address>"
    sa.Column("at", Double, nullable=False),
    sa.Index("login_failures_subject", "subject", "at"),
)

budgets = sa.Table(
    "budgets", metadata,
    sa.Column("id", Text, primary_key=True),
    sa.Column("team_id", Text, sa.ForeignKey("teams.id"), nullable=False),
    sa.Column("user_id", Text, sa.ForeignKey("users.id")),   # NULL: the whole team's budget
    sa.Column("period", Text, nullable=False),               # day | month | total
    sa.Column("project", Text),                              # NULL: every project
    sa.Column("limit_usd", Double, nullable=False),
    sa.Column("created_at", Double, nullable=False),
    sa.Column("created_by", Text),
    sa.Index("budgets_team", "team_id"),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", Text, primary_key=True),
    sa.Column("kind", Text, nullable=False),
    sa.Column("created_at", Double, nullable=False),
    sa.Column("name", Text),
    sa.Column("brief_json", Text),
    sa.Column("brief_path", Text),
    sa.Column("plan_json", Text),
    sa.Column("budget_usd", Double),
    sa.Column("parent_run_id", Text, sa.ForeignKey("runs.id")),
    sa.Column("varied_json", Text),
    _flag("forced"),
    sa.Column("out_dir", Text),
    sa.Column("status", Text, nullable=False, server_default="planned"),
    sa.Column("versions_json", Text),
    sa.Column("steps_json", Text),
    sa.Column("lock_owner", Text),
    sa.Column("lock_until", Double),
    sa.Column("created_by", Text),
    sa.Column("team_id", Text),
    sa.Column("project", Text),
    sa.Index("runs_team", "team_id", "created_at"),
)

requests = sa.Table(
    "requests", metadata,
    sa.Column("id", Text, primary_key=True),
    sa.Column("run_id", Text, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("position", Int, nullable=False),
    sa.Column("idempotency_key", Text, nullable=False),
    sa.Column("model", Text, nullable=False),
    sa.Column("provider", Text, nullable=False),
    sa.Column("seed", Big, nullable=False),
    sa.Column("request_json", Text, nullable=False),
    sa.Column("estimated_usd", Double, nullable=False, server_default="0"),
    sa.Column("status", Text, nullable=False, server_default="planned"),
    sa.Column("task_id", Text),
    sa.Column("ticket_json", Text),
    sa.Column("error", Text),
    sa.Column("updated_at", Double, nullable=False),
    sa.Column("reserved_usd", Double, nullable=False, server_default="0"),
    sa.Column("charged_usd", Double),
    sa.Column("charged_credits", Double),
    _flag("sandbox"),
    sa.Column("user_id", Text),
    sa.Column("team_id", Text),
    sa.Column("reserved_at", Double),
    sa.Column("attempts", Int, nullable=False, server_default="0"),
    sa.Column("settled_attempt", Int),
    sa.Index("requests_run", "run_id", "position"),
    sa.Index("requests_key", "run_id", "idempotency_key"),
    sa.Index("requests_team_spend", "team_id", "reserved_at"),
    sa.Index("requests_user_spend", "user_id", "reserved_at"),
)

images = sa.Table(
    "images", metadata,
    sa.Column("sha256", Text, primary_key=True),
    sa.Column("path", Text, nullable=False),
    sa.Column("width", Int),
    sa.Column("height", Int),
    sa.Column("format", Text),
    sa.Column("created_at", Double, nullable=False),
)

results = sa.Table(
    "results", metadata,
    sa.Column("id", Text, primary_key=True),
    sa.Column("run_id", Text, sa.ForeignKey("runs.id")),
    sa.Column("request_id", Text, sa.ForeignKey("requests.id")),
    sa.Column("image_sha256", Text, sa.ForeignKey("images.sha256"), nullable=False),
    sa.Column("parent_sha256", Text),
    sa.Column("operation", Text, nullable=False, server_default="generate"),
    sa.Column("operation_json", Text),
    sa.Column("model", Text),
    sa.Column("provider", Text),
    sa.Column("seed", Big),
    sa.Column("provider_task_id", Text),
    sa.Column("cost_credits", Double, nullable=False, server_default="0"),
    sa.Column("cost_usd", Double, nullable=False, server_default="0"),
    sa.Column("timings_json", Text),
    sa.Column("metadata_json", Text),
    sa.Column("versions_json", Text),
    _flag("sandbox"),
    _flag("picked"),
    sa.Column("out_path", Text),
    sa.Column("created_at", Double, nullable=False),
    sa.Column("created_by", Text),
    sa.Column("team_id", Text),
    sa.Column("picked_by", Text),
    sa.Index("results_run", "run_id"),
    sa.Index("results_image", "image_sha256"),
    sa.Index("results_request", "request_id"),
    sa.Index("results_parent", "parent_sha256"),
    sa.Index("results_team", "team_id", "created_at"),
)

checks = sa.Table(
    "checks", metadata,
    sa.Column("image_sha256", Text, nullable=False),
    sa.Column("overall", Text, nullable=False),
    sa.Column("score", Double),
    sa.Column("checklist_json", Text, nullable=False),
    sa.Column("created_at", Double, nullable=False),
    sa.Column("created_by", Text),
    sa.Index("checks_image", "image_sha256"),
)

labels = sa.Table(
    "labels", metadata,
    sa.Column("image_sha256", Text, nullable=False),
    sa.Column("info_json", Text, nullable=False),
    sa.Column("c2pa_status", Text),
    sa.Column("created_at", Double, nullable=False),
    sa.Column("created_by", Text),
    sa.Index("labels_image", "image_sha256"),
)

rights = sa.Table(
    "rights", metadata,
    sa.Column("id", Text, primary_key=True),
    sa.Column("image_sha256", Text, nullable=False),
    sa.Column("who", Text, nullable=False),
    sa.Column("source", Text, nullable=False),
    sa.Column("permission", Text, nullable=False),
    sa.Column("recorded_by", Text),
    sa.Column("recorded_at", Double, nullable=False),
    sa.Column("user_id", Text),
    sa.Column("team_id", Text),
    sa.Index("rights_image", "image_sha256"),
)

identity = sa.Table(
    "identity", metadata,
    sa.Column("run_id", Text, nullable=False),
    sa.Column("image_sha256", Text),
    sa.Column("shot", Int, nullable=False),
    sa.Column("distance", Double),
    sa.Column("status", Text, nullable=False),
    _flag("reset_applied"),
    sa.Column("details_json", Text),
    sa.Column("created_at", Double, nullable=False),
    sa.Index("identity_run", "run_id", "shot"),
)

files = sa.Table(
    "files", metadata,
    sa.Column("path", Text, primary_key=True),
    sa.Column("sha256", Text, nullable=False),
    sa.Column("result_id", Text, sa.ForeignKey("results.id"), nullable=False),
    sa.Column("kind", Text, nullable=False),
    _flag("labelled"),
    sa.Column("created_at", Double, nullable=False),
    sa.Column("created_by", Text),
    sa.Index("files_sha", "sha256"),
    sa.Index("files_result", "result_id"),
)

reviews = sa.Table(
    "reviews", metadata,
    sa.Column("id", Text, primary_key=True),
    sa.Column("result_id", Text, sa.ForeignKey("results.id"), nullable=False),
    sa.Column("decision", Text, nullable=False),             # approved | rejected
    sa.Column("comment", Text),
    sa.Column("user_id", Text),
    sa.Column("team_id", Text),
    sa.Column("created_at", Double, nullable=False),
    sa.Index("reviews_result", "result_id", "created_at"),
)

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", Text, primary_key=True),
    sa.Column("kind", Text, nullable=False),
    sa.Column("title", Text, nullable=False),
    sa.Column("spec_json", Text, nullable=False),            # what to do, enough to do it again after a restart
    sa.Column("status", Text, nullable=False, server_default="queued"),  # queued | running | done | failed
    sa.Column("run_id", Text),
    sa.Column("image_id", Text),
    sa.Column("result_id", Text),
    sa.Column("message", Text),
    sa.Column("error", Text),
    sa.Column("hint", Text),
    sa.Column("user_id", Text),
    sa.Column("team_id", Text),
    sa.Column("created_at", Double, nullable=False),
    sa.Column("started_at", Double),
    sa.Column("finished_at", Double),
    sa.Column("lease_owner", Text),
    sa.Column("lease_until", Double),
    sa.Column("attempts", Int, nullable=False, server_default="0"),
    sa.Index("jobs_status", "status", "created_at"),
    sa.Index("jobs_team", "team_id", "created_at"),
)
