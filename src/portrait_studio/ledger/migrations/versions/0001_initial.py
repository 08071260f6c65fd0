"""The first ledger (what `m001_initial` made): runs, requests, images, results, checks, labels,
rights and identity.

Revision ID: 0001_initial
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

T, D, Int, B = sa.Text, sa.Double, sa.Integer, sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", T, primary_key=True),
        sa.Column("kind", T, nullable=False),
        sa.Column("created_at", D, nullable=False),
        sa.Column("name", T),
        sa.Column("brief_json", T),
        sa.Column("brief_path", T),
        sa.Column("plan_json", T),
        sa.Column("budget_usd", D),
        sa.Column("parent_run_id", T, sa.ForeignKey("runs.id")),
        sa.Column("varied_json", T),
        sa.Column("forced", Int, nullable=False, server_default="0"),
        sa.Column("out_dir", T),
        sa.Column("status", T, nullable=False, server_default="planned"),
        sa.Column("versions_json", T),
    )
    op.create_table(
        "requests",
        sa.Column("id", T, primary_key=True),
        sa.Column("run_id", T, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("position", Int, nullable=False),
        sa.Column("idempotency_key", T, nullable=False),
        sa.Column("model", T, nullable=False),
        sa.Column("provider", T, nullable=False),
        sa.Column("seed", B, nullable=False),
        sa.Column("request_json", T, nullable=False),
        sa.Column("estimated_usd", D, nullable=False, server_default="0"),
        sa.Column("status", T, nullable=False, server_default="planned"),
        sa.Column("task_id", T),
        sa.Column("ticket_json", T),
        sa.Column("error", T),
        sa.Column("updated_at", D, nullable=False),
    )
    op.create_index("requests_run", "requests", ["run_id", "position"])
    op.create_table(
        "images",
        sa.Column("sha256", T, primary_key=True),
        sa.Column("path", T, nullable=False),
        sa.Column("width", Int),
        sa.Column("height", Int),
        sa.Column("format", T),
        sa.Column("created_at", D, nullable=False),
    )
    op.create_table(
        "results",
        sa.Column("id", T, primary_key=True),
        sa.Column("run_id", T, sa.ForeignKey("runs.id")),
        sa.Column("request_id", T, sa.ForeignKey("requests.id")),
        sa.Column("image_sha256", T, sa.ForeignKey("images.sha256"), nullable=False),
        sa.Column("parent_sha256", T),
        sa.Column("operation", T, nullable=False, server_default="generate"),
        sa.Column("operation_json", T),
        sa.Column("model", T),
        sa.Column("provider", T),
        sa.Column("seed", B),
        sa.Column("provider_task_id", T),
        sa.Column("cost_credits", D, nullable=False, server_default="0"),
        sa.Column("cost_usd", D, nullable=False, server_default="0"),
        sa.Column("timings_json", T),
        sa.Column("metadata_json", T),
        sa.Column("versions_json", T),
        sa.Column("sandbox", Int, nullable=False, server_default="0"),
        sa.Column("picked", Int, nullable=False, server_default="0"),
        sa.Column("out_path", T),
        sa.Column("created_at", D, nullable=False),
    )
    op.create_index("results_run", "results", ["run_id"])
    op.create_index("results_image", "results", ["image_sha256"])
    op.create_table(
        "checks",
        sa.Column("image_sha256", T, nullable=False),
        sa.Column("overall", T, nullable=False),
        sa.Column("score", D),
        sa.Column("checklist_json", T, nullable=False),
        sa.Column("created_at", D, nullable=False),
    )
    op.create_index("checks_image", "checks", ["image_sha256"])
    op.create_table(
        "labels",
        sa.Column("image_sha256", T, nullable=False),
        sa.Column("info_json", T, nullable=False),
        sa.Column("c2pa_status", T),
        sa.Column("created_at", D, nullable=False),
    )
    op.create_table(
        "rights",
        sa.Column("id", T, primary_key=True),
        sa.Column("image_sha256", T, nullable=False),
        sa.Column("who", T, nullable=False),
        sa.Column("source", T, nullable=False),
        sa.Column("permission", T, nullable=False),
        sa.Column("recorded_by", T),
        sa.Column("recorded_at", D, nullable=False),
    )
    op.create_table(
        "identity",
        sa.Column("run_id", T, nullable=False),
        sa.Column("image_sha256", T),
        sa.Column("shot", Int, nullable=False),
        sa.Column("distance", D),
        sa.Column("status", T, nullable=False),
        sa.Column("reset_applied", Int, nullable=False, server_default="0"),
        sa.Column("details_json", T),
        sa.Column("created_at", D, nullable=False),
    )
