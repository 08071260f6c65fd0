"""The team studio: accounts (users, teams, roles), login sessions and API tokens, login
throttling, budgets per team/user/period/project, approvals, background jobs as rows, and who
did what on every row that records an act (runs, requests, results, files, labels, rights).

Rows made before accounts existed keep NULL owners: they belong to the one-person studio (and
to the first team, once `portrait team init` adopts them).

Revision ID: 0003_team
Revises: 0002_engine
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_team"
down_revision = "0002_engine"
branch_labels = None
depends_on = None

T, D, Int = sa.Text, sa.Double, sa.Integer


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", T, primary_key=True),
        sa.Column("name", T, nullable=False, unique=True),
        sa.Column("created_at", D, nullable=False),
        sa.Column("created_by", T),
    )
    op.create_table(
        "users",
        sa.Column("id", T, primary_key=True),
        sa.Column("email", T, nullable=False, unique=True),
        sa.Column("name", T),
        sa.Column("password_hash", T),
        sa.Column("created_at", D, nullable=False),
        sa.Column("disabled_at", D),
    )
    op.create_table(
        "memberships",
        sa.Column("user_id", T, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("team_id", T, sa.ForeignKey("teams.id"), primary_key=True),
        sa.Column("role", T, nullable=False),
        sa.Column("created_at", D, nullable=False),
        sa.Column("created_by", T),
    )
    op.create_table(
        "sessions",
        sa.Column("id", T, primary_key=True),
        sa.Column("user_id", T, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("team_id", T, sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("csrf", T, nullable=False),
        sa.Column("created_at", D, nullable=False),
        sa.Column("expires_at", D, nullable=False),
        sa.Column("client", T),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", T, primary_key=True),
        sa.Column("token_hash", T, nullable=False, unique=True),
        sa.Column("user_id", T, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("team_id", T, sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("name", T, nullable=False),
        sa.Column("created_at", D, nullable=False),
        sa.Column("last_used_at", D),
        sa.Column("revoked_at", D),
    )
    op.create_table(
        "login_failures",
        sa.Column("id", Int, primary_key=True, autoincrement=True),
        sa.Column("subject", T, nullable=False),
        sa.Column("at", D, nullable=False),
    )
    op.create_index("login_failures_subject", "login_failures", ["subject", "at"])
    op.create_table(
        "budgets",
        sa.Column("id", T, primary_key=True),
        sa.Column("team_id", T, sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("user_id", T, sa.ForeignKey("users.id")),
        sa.Column("period", T, nullable=False),
        sa.Column("project", T),
        sa.Column("limit_usd", D, nullable=False),
        sa.Column("created_at", D, nullable=False),
        sa.Column("created_by", T),
    )
    op.create_index("budgets_team", "budgets", ["team_id"])
    op.create_table(
        "reviews",
        sa.Column("id", T, primary_key=True),
        sa.Column("result_id", T, sa.ForeignKey("results.id"), nullable=False),
        sa.Column("decision", T, nullable=False),
        sa.Column("comment", T),
        sa.Column("user_id", T),
        sa.Column("team_id", T),
        sa.Column("created_at", D, nullable=False),
    )
    op.create_index("reviews_result", "reviews", ["result_id", "created_at"])
    op.create_table(
        "jobs",
        sa.Column("id", T, primary_key=True),
        sa.Column("kind", T, nullable=False),
        sa.Column("title", T, nullable=False),
        sa.Column("spec_json", T, nullable=False),
        sa.Column("status", T, nullable=False, server_default="queued"),
        sa.Column("run_id", T),
        sa.Column("image_id", T),
        sa.Column("result_id", T),
        sa.Column("message", T),
        sa.Column("error", T),
        sa.Column("hint", T),
        sa.Column("user_id", T),
        sa.Column("team_id", T),
        sa.Column("created_at", D, nullable=False),
        sa.Column("started_at", D),
        sa.Column("finished_at", D),
        sa.Column("lease_owner", T),
        sa.Column("lease_until", D),
        sa.Column("attempts", Int, nullable=False, server_default="0"),
    )
    op.create_index("jobs_status", "jobs", ["status", "created_at"])
    op.create_index("jobs_team", "jobs", ["team_id", "created_at"])

    for table, columns in (
        ("runs", ("created_by", "team_id", "project")),
        ("requests", ("user_id", "team_id")),
        ("results", ("created_by", "team_id", "picked_by")),
        ("checks", ("created_by",)),
        ("labels", ("created_by",)),
        ("rights", ("user_id", "team_id")),
        ("files", ("created_by",)),
    ):
        for column in columns:
            op.add_column(table, sa.Column(column, T))
    op.add_column("requests", sa.Column("reserved_at", D))
    op.add_column("requests", sa.Column("attempts", Int, nullable=False, server_default="0"))
    op.add_column("requests", sa.Column("settled_attempt", Int))
    op.create_index("runs_team", "runs", ["team_id", "created_at"])
    op.create_index("requests_team_spend", "requests", ["team_id", "reserved_at"])
    op.create_index("requests_user_spend", "requests", ["user_id", "reserved_at"])
    op.create_index("results_team", "results", ["team_id", "created_at"])
    op.create_index("labels_image", "labels", ["image_sha256"])
    op.create_index("rights_image", "rights", ["image_sha256"])
    op.create_index("identity_run", "identity", ["run_id", "shot"])
    # Money already spent counts in its day: a request's reservation time is when it was last touched.
    op.execute("UPDATE requests SET reserved_at = updated_at WHERE charged_usd IS NOT NULL OR reserved_usd > 0")
