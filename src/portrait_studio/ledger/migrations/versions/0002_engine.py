"""What the one engine needs (what `m002_engine` made): money per request (reserved before sending,
settled on what the provider charged), sandbox spend kept apart, the finishing steps of a run,
one resumer at a time, and every file written.

Revision ID: 0002_engine
Revises: 0001_initial
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_engine"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

T, D, Int = sa.Text, sa.Double, sa.Integer


def upgrade() -> None:
    op.add_column("requests", sa.Column("reserved_usd", D, nullable=False, server_default="0"))
    op.add_column("requests", sa.Column("charged_usd", D))
    op.add_column("requests", sa.Column("charged_credits", D))
    op.add_column("requests", sa.Column("sandbox", Int, nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("steps_json", T))
    op.add_column("runs", sa.Column("lock_owner", T))
    op.add_column("runs", sa.Column("lock_until", D))
    op.create_table(
        "files",
        sa.Column("path", T, primary_key=True),       # resolved absolute path of a file the studio wrote
        sa.Column("sha256", T, nullable=False),       # of the file as written (labelled bytes)
        sa.Column("result_id", T, sa.ForeignKey("results.id"), nullable=False),
        sa.Column("kind", T, nullable=False),         # output | export | sheet | grid | ...
        sa.Column("labelled", Int, nullable=False, server_default="0"),
        sa.Column("created_at", D, nullable=False),
    )
    op.create_index("files_sha", "files", ["sha256"])
    op.create_index("files_result", "files", ["result_id"])
    op.create_index("requests_key", "requests", ["run_id", "idempotency_key"])
    op.create_index("results_request", "results", ["request_id"])
    op.create_index("results_parent", "results", ["parent_sha256"])
    # What earlier versions paid is what their results cost (they recorded nothing else).
    op.execute(
        "UPDATE requests SET charged_usd = (SELECT SUM(cost_usd) FROM results WHERE results.request_id = requests.id),"
        " charged_credits = (SELECT SUM(cost_credits) FROM results WHERE results.request_id = requests.id),"
        " sandbox = COALESCE((SELECT MAX(sandbox) FROM results WHERE results.request_id = requests.id), 0)"
        " WHERE status = 'done'"
    )
