"""The database: engine and session factory, and the Alembic migrations that shape it."""
