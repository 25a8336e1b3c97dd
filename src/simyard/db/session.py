"""Open the database: SQLite (WAL, busy timeout, immediate write locks) or PostgreSQL.

SQLite has one writer at a time. Left to itself, every waiting connection polls the
file lock (the busy handler sleeps and tries again), which is neither fair nor bounded:
under 50 concurrent writers some waited past any timeout and failed "database is
locked". So the transactions of this process queue at a :class:`WriteGate` first, in
the order they came, and only the one at its head asks SQLite for the lock (other
processes, such as a CLI command, still meet it at SQLite's busy timeout). A queue that
is full, or a wait that is too long, is refused at once with :class:`DatabaseBusy`
(the API answers 503 with Retry-After) rather than letting the request time out. The
dispatcher's transactions (its lease's renewal, recording an attempt's end and claiming
the next) go to the head of that queue (``first_in_line``): they are short and few, and
a renewal that waited behind a burst of submissions would stop every running model.

Reads do not queue. A session of :func:`session_factory` with ``read_only=True`` begins a
deferred transaction outside the gate: in WAL mode it reads a snapshot beside the writer
and never waits for it. Such a transaction may not write (:class:`WriteInReadOnly`);
:func:`read_then_write` runs work that only sometimes writes (noting when a token was
last used) as a reader first and again as a writer when it turns out to write.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from simyard.times import limit_ms

MIGRATIONS = Path(__file__).parent / "migrations"

# The connection whose transaction this context (a thread, or a task of the event loop) began.
_held: ContextVar[weakref.ref[Any] | None] = ContextVar("_held", default=None)

GATE_WAITING = 256  # transactions that may wait for the SQLite writer at once
GATE_WAIT = 30.0  # seconds one may wait for it before it is refused
POOL_SIZE = 64  # SQLite connections: a waiting transaction holds one
# Threads the server's thread pool may run at once: more than may wait at the gate, so
# that the transaction holding it always finds a thread for its next step (shaping the
# answer, the session's commit). With fewer, every thread waited at the gate while its
# holder waited for a thread, until the waits ran out (30 s).
POOL_THREADS = GATE_WAITING + 64
READ_ONLY = "simyard_read_only"  # the execution option of read-only sessions' connections
FIRST_IN_LINE = "simyard_first_in_line"  # the option of sessions served first at the gate
_READS = ("select", "with", "pragma", "begin", "savepo", "releas")  # what readers may run

T = TypeVar("T")
_log = logging.getLogger(__name__)


class DatabaseBusy(RuntimeError):
    """Too many transactions are waiting for the embedded database (it is locked)."""

    retry_after = 1


class WriteInReadOnly(RuntimeError):
    """A read-only transaction tried to write (the code must use a writing session)."""


class WriteGate:
    """A first-come, first-served lock with a bounded queue and a bounded wait; a waiter
    ``first`` in line goes ahead of the others (after the ones first in line before it)."""

    def __init__(self, waiting: int = GATE_WAITING, wait: float = GATE_WAIT) -> None:
        self.waiting = waiting
        self.wait = wait
        self._mutex = threading.Lock()
        self._held = False
        self._holder: int | None = None  # the thread that took the gate last
        self._queue: deque[threading.Event] = deque()
        self._first = 0  # how many at the head of the queue came first in line

    def acquire(self, *, first: bool = False) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                self._holder = threading.get_ident()
                return
            if len(self._queue) >= self.waiting and not first:
                raise DatabaseBusy(f"{len(self._queue)} transactions wait for the writer")
            turn = threading.Event()
            if first:
                self._queue.insert(self._first, turn)
                self._first += 1
            else:
                self._queue.append(turn)
        began = time.monotonic()
        if not turn.wait(self.wait):
            with self._mutex:
                if turn in self._queue:
                    if list(self._queue).index(turn) < self._first:
                        self._first -= 1
                    self._queue.remove(turn)
                    waited = time.monotonic() - began
                    _log.warning("a writer waited %.0f s; %s", waited, self._holder_is())
                    raise DatabaseBusy(f"waited {waited:.0f} s for the writer")
            # handed over just as the wait ran out: ours
        self._holder = threading.get_ident()

    def _holder_is(self) -> str:
        """Where the thread that took the gate last is now (what an operator needs to know
        when writers time out)."""
        if self._holder is None:
            return "the gate was handed to the next in line, who has not woken yet"
        frame = sys._current_frames().get(self._holder)
        if frame is None:
            return "the thread that took the gate has ended"
        where = "".join(traceback.format_list(traceback.extract_stack(frame)[-30:]))
        return f"the thread that took the gate is at:\n{where}"

    def release(self) -> None:
        with self._mutex:
            self._holder = None  # until the next in line wakes up
            if self._queue:
                self._first = max(0, self._first - 1)
                self._queue.popleft().set()  # the gate stays held, by the next in line
            else:
                self._held = False


def make_engine(url: str, *, idle_transaction_timeout: float | None = None) -> Engine:
    """An engine for ``url``; SQLite is set up so concurrent writers wait instead of failing.

    ``idle_transaction_timeout`` (PostgreSQL): the database ends a transaction that waits
    this many seconds for its next statement. None of simyard's does; one of a process
    that was stopped (SIGSTOP, a paused VM) would hold its row locks, and every other
    server waiting on them, for as long as the process stays stopped.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        connect_args = {}
        if idle_transaction_timeout is not None:
            timeout = limit_ms(idle_transaction_timeout)
            connect_args["options"] = f"-c idle_in_transaction_session_timeout={timeout}"
        engine = create_engine(
            url, pool_pre_ping=True, pool_size=10, max_overflow=20, connect_args=connect_args
        )
        _refuse_writes_of_readers(engine)
        return engine
    engine = create_engine(
        url,
        connect_args={"timeout": 60, "check_same_thread": False},
        pool_size=POOL_SIZE,
        max_overflow=POOL_SIZE,
    )
    gate = WriteGate()

    def _leave(info: dict[str, Any]) -> None:
        if info.pop("simyard_gate", False):
            gate.release()

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
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")  # a snapshot: waits for no writer
            return
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
        gate.acquire(first=bool(connection.get_execution_options().get(FIRST_IN_LINE)))
        connection.info["simyard_gate"] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _leave(connection.info)
            raise
        _held.set(weakref.ref(connection))

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _end(connection: Any) -> None:
        # Fired just before the COMMIT/ROLLBACK itself: the next in line then waits the
        # moment that takes at SQLite's busy handler. Not after it: a failed commit must
        # free the gate too, and "after" has no event of its own.
        _leave(connection.info)

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        _leave(record.info)  # a connection dropped in a transaction frees the gate too

    _refuse_writes_of_readers(engine)
    return engine


def _refuse_writes_of_readers(engine: Engine) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _only_reads(
        connection: Any, _cursor: Any, statement: str, *_args: Any, **_kwargs: Any
    ) -> None:
        if connection.get_execution_options().get(READ_ONLY) and not (
            statement.lstrip()[:6].lower().startswith(_READS)
        ):
            raise WriteInReadOnly(f"a read-only transaction may not run {statement[:40]!r}")


class NestedTransaction(RuntimeError):
    """Code opened a transaction while its thread already holds one (a bug)."""


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema up to the newest migration (what ``simyard db upgrade`` does)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(
    engine: Engine, *, read_only: bool = False, first_in_line: bool = False
) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit; ``read_only`` ones read a
    snapshot without waiting for the writer and may not write; ``first_in_line`` ones
    wait for SQLite's writer ahead of the others (the dispatcher's)."""
    if read_only:
        engine = engine.execution_options(**{READ_ONLY: True})
    if first_in_line:
        engine = engine.execution_options(**{FIRST_IN_LINE: True})
    return sessionmaker(engine, expire_on_commit=False)


def read_then_write(
    readers: sessionmaker[Session], writers: sessionmaker[Session], work: Callable[[Session], T]
) -> T:
    """``work(session)`` in a read-only transaction, or, when it turns out to write (it
    flushed a change or left one pending), again from the start in a writing one."""
    try:
        with readers() as session, session.begin():
            result = work(session)
            if session.new or session.dirty or session.deleted:
                raise WriteInReadOnly("the work changed rows")
            return result
    except WriteInReadOnly:
        pass
    with writers() as session, session.begin():
        return work(session)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction: committed at the end, rolled back on error."""
    with factory() as session, session.begin():
        yield session
