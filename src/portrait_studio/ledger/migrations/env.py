"""Alembic's entry point for the ledger. The ledger hands in its connection (already inside the
transaction that holds the migration lock), so every migration runs on it, all or nothing."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
