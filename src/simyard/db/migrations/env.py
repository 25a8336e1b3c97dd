"""Alembic environment: runs on the connection simyard hands over (see db/session.py)."""

from alembic import context

from simyard.domain.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - simyard always passes its own connection
    raise RuntimeError("run migrations through `simyard db upgrade`")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
