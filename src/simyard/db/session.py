"""Open the database: SQLite (WAL, busy timeout, immediate write locks) or PostgreSQL."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"

# The connection whose transaction this context (a thread, or a task of the event loop) began.
_held: ContextVar[weakref.ref[Any] | None] = ContextVar("_held", default=None)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite is set up so concurrent writers wait instead of failing."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions, so "BEGIN IMMEDIATE" below is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        # Take the write lock up front: a deferred transaction that later upgrades to a
        # writer fails at once with "database is locked" instead of waiting its turn.
        # A second transaction begun while this code path holds one would wait forever.
        # "Code path" is a context, not a thread: a request may begin its transaction in
        # one worker thread and commit it in another, and the first thread goes on to
        # serve other requests meanwhile.
        held = _held.get()
        other = held() if held is not None else None
        if other is not None and other is not connection and other.in_transaction():
            raise NestedTransaction(
                "a second database transaction in one thread would deadlock on SQLite; "
                "pass the open session along instead"
            )
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        _held.set(weakref.ref(connection))

    return engine


class NestedTransaction(RuntimeError):
    """Code opened a transaction while its thread already holds one (a bug)."""


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema up to the newest migration (what ``simyard db upgrade`` does)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction: committed at the end, rolled back on error."""
    with factory() as session, session.begin():
        yield session
