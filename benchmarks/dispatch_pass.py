"""One dispatcher pass with 10,000 queued runs, on SQLite and PostgreSQL, in process.

Issue 13: with 10,000 queued runs a dispatcher pass takes ≤ 50 ms. The dispatcher runs
against a real database filled with queued runs (one task each) and an executor that
takes work orders and reports each attempt done at once, so every pass claims the two
free slots, as on a busy server. Printed: the pass (read, plan, apply, submit) with a
claim, and one with no free slot (running work, nothing to claim), and the plan of the
claim query on both databases.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import event, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.context import Bench
from benchmarks.figures import BAR_COLUMNS, LATENCY_COLUMNS, Latency, latency_bar, ms, table
from simyard.db.session import make_engine, session_factory, upgrade_schema
from simyard.dispatch import Dispatcher, LiveLogs
from simyard.domain.registry import register_model
from simyard.domain.tables import Run, TaskRun, User
from simyard.domain.users import create_user
from simyard.engine.result import TaskOutcome
from simyard.engine.workorder import WorkOrder, WorkResult
from simyard.executors.base import EventKind, Executor, ExecutorEvent
from simyard.storage.file import FileStore

QUEUED = 10_000
CHUNK = 2_000
BAR = 0.050
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
MODEL = """\
simyard: 1
name: passes
version: "1"
tasks:
  run: {command: [python3, -c, "1"], outputs: [out/]}
"""


class DoneAtOnce(Executor):
    """Takes work orders; each attempt is reported succeeded on the next poll."""

    def __init__(self, slots: int = 2) -> None:
        self.slots = slots
        self.taken: list[WorkOrder] = []

    def submit(self, order: WorkOrder) -> None:
        self.taken.append(order)

    def cancel(self, task_run_id: int, attempt: int) -> None:
        return None

    def poll(self, timeout: float) -> list[ExecutorEvent]:
        now = dt.datetime.now(dt.UTC)
        done, self.taken = self.taken, []
        events = []
        for order in done:
            result = WorkResult(
                task_run_id=order.task_run_id,
                attempt=order.attempt,
                outcome=TaskOutcome.succeeded,
                started_at=now,
                finished_at=now,
                exit_code=0,
            )
            events.append(
                ExecutorEvent(
                    order.task_run_id, order.attempt, EventKind.result, {"result": result}
                )
            )
        return events

    def close(self) -> None:
        return None


@contextlib.contextmanager
def _postgres() -> Iterator[str | None]:
    """A fresh PostgreSQL database on the local server, dropped afterwards; None if none."""
    try:
        import psycopg

        name = f"simyard_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception:
        yield None
        return
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fill(sessions: sessionmaker[Session], root: Path) -> FileStore:
    """A user, the model, and QUEUED queued runs of one queued task each."""
    store = FileStore(root / "store")
    model = root / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "simyard.yaml").write_text(MODEL)
    with sessions() as db, db.begin():
        user_id = create_user(db=db, name="bench", email="b@example.org", password=None).id
        version, _ = register_model(db=db, store=store, model_dir=model, user=None)
        version_id = version.id
    now = dt.datetime.now(dt.UTC)
    with sessions() as db, db.begin():
        for start in range(0, QUEUED, CHUNK):
            run_rows = [
                {"user_id": user_id, "model_version_id": version_id, "params": {},
                 "state": "queued", "cancel_requested": False}
                for _ in range(start, start + CHUNK)
            ]  # fmt: skip
            ids = db.scalars(insert(Run).returning(Run.id), run_rows).all()
            task_rows = [
                {"run_id": run_id, "name": "run", "position": 0, "needs": [],
                 "state": "queued", "attempt": 0, "queued_at": now + dt.timedelta(microseconds=i)}
                for i, run_id in enumerate(ids, start)
            ]  # fmt: skip
            db.execute(insert(TaskRun), task_rows)
        assert db.scalar(select(User.id).where(User.id == user_id)) is not None
    return store


def _claim_plan(sessions: sessionmaker[Session], dialect: str) -> str:
    """The database's plan for the claim query (the oldest queued task runs)."""
    query = (
        "SELECT task_runs.id FROM task_runs JOIN runs ON runs.id = task_runs.run_id "
        "WHERE task_runs.state = 'queued' ORDER BY task_runs.queued_at, task_runs.id LIMIT 8"
    )
    explain = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
    with sessions() as db:
        rows = db.execute(text(explain + query)).all()
    return "; ".join(str(row[-1]) for row in rows)


def _measure(bench: Bench, url: str, label: str, root: Path) -> tuple[list[str], list[str], str]:
    engine = make_engine(url)
    upgrade_schema(engine)
    sessions = session_factory(engine)
    try:
        with bench.console.status(f"{label}: queueing {QUEUED:,} runs ..."):
            store = _fill(sessions, root)
        if engine.dialect.name == "postgresql":  # fresh statistics, as autovacuum keeps them
            with engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
        executor = DoneAtOnce()
        dispatcher = Dispatcher(
            sessions=sessions, store=store, executor=executor,
            live_logs=LiveLogs(root / "live", 1 << 20), lease_ttl=3600,
        )  # fmt: skip
        if not dispatcher.take_lease():
            raise RuntimeError("the dispatch lease could not be taken")
        dispatcher.dispatch_once()  # the first pass of a term looks for orphans
        claiming: list[float] = []
        full: list[float] = []
        cpu: list[float] = []
        statements = [0]

        def counted(*_: object) -> None:
            statements[0] += 1

        event.listen(engine, "before_cursor_execute", counted)
        for _ in range(bench.samples(50)):
            dispatcher.handle_events(executor.poll(0))
            started, started_cpu = time.perf_counter(), time.process_time()
            before = statements[0]
            applied = dispatcher.dispatch_once()
            claiming.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            per_pass = statements[0] - before
            if not applied.orders:
                raise RuntimeError("a pass claimed nothing although runs were queued")
            started = time.perf_counter()
            dispatcher.dispatch_once()  # both slots taken: nothing to claim
            full.append(time.perf_counter() - started)
        plan = _claim_plan(sessions, engine.dialect.name)
    finally:
        engine.dispose()
    bench.console.print(
        f"{label}: a pass claiming 2 sends {per_pass} SQL statements and spends "
        f"{ms(sorted(cpu)[len(cpu) // 2])} ms of this process's CPU (p50)"
    )
    return (
        [f"{label}: pass claiming 2", *Latency.of(claiming).row()],
        [f"{label}: pass, slots full", *Latency.of(full).row()],
        plan,
    )


def run(bench: Bench) -> None:
    rows: list[list[str]] = []
    bars: list[list[str]] = []
    plans: list[list[str]] = []
    with _postgres() as pg_url:
        targets = [("SQLite", f"sqlite:///{bench.root / 'passes' / 'db.sqlite'}")]
        if pg_url is not None:
            targets.append(("PostgreSQL", pg_url))
        else:
            bench.note("dispatch_pass: no PostgreSQL on 127.0.0.1:5432, measured on SQLite only")
        for label, url in targets:
            root = bench.root / "passes" / label
            root.mkdir(parents=True, exist_ok=True)
            claim_row, full_row, plan = _measure(bench, url, label, root)
            rows += [claim_row, full_row]
            plans.append([label, plan])
            p95 = float(claim_row[3]) / 1000
            bars.append(latency_bar(f"{label}: pass p95 ≤ 50 ms, {QUEUED:,} queued", p95, BAR))
    bench.console.print(
        table(f"dispatcher pass, {QUEUED:,} queued runs", ["pass", *LATENCY_COLUMNS], rows)
    )
    bench.console.print(table("the claim query's plan", ["database", "plan"], plans))
    bench.console.print(table("bars", BAR_COLUMNS, bars))
