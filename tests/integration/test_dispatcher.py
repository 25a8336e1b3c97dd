"""The dispatcher in process, on real SQLite and PostgreSQL, with a scripted executor."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from simyard.config import Settings
from simyard.db.session import make_engine, session_factory, upgrade_schema
from simyard.dispatch import MAX_ATTEMPTS, Dispatcher, LiveLogs
from simyard.dispatch.changes import Change
from simyard.dispatch.lease import LeaseTerm
from simyard.domain.registry import manifest_of, register_model
from simyard.domain.runs import cancel_run, queue_run, rerun
from simyard.domain.tables import DispatcherLease, ModelVersion, Run, StoredFile, TaskRun, User
from simyard.domain.users import create_user
from simyard.engine.result import FailureKind, TaskOutcome
from simyard.engine.workorder import StoredOutput, WorkOrder, WorkResult
from simyard.executors.base import EventKind, Executor, ExecutorEvent
from simyard.manifest.runinput import validate_run_input
from simyard.storage.file import FileStore
from simyard.wiring import idle_transaction_timeout
from tests.conftest import MakeModel, run_apart
from tests.sqlcount import counted

MODEL = """\
simyard: 1
name: chain
version: "1"
tasks:
  prep: {command: [python3, -c, "1"], outputs: [prep/]}
  simulate: {needs: [prep], command: [python3, -c, "1"], outputs: [results/]}
  report: {needs: [simulate], command: [python3, -c, "1"], outputs: [report/]}
"""


class ScriptedExecutor(Executor):
    """Records what it is told; the test says what happened."""

    def __init__(self, slots: int = 2) -> None:
        self.slots = slots
        self.submitted: list[WorkOrder] = []
        self.cancelled: list[tuple[int, int]] = []

    def submit(self, order: WorkOrder) -> None:
        self.submitted.append(order)

    def cancel(self, task_run_id: int, attempt: int) -> None:
        self.cancelled.append((task_run_id, attempt))

    def poll(self, timeout: float) -> list[ExecutorEvent]:
        return []

    def close(self) -> None:
        return None


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    upgrade_schema(engine)
    yield session_factory(engine)
    engine.dispose()


class World:
    def __init__(self, sessions: sessionmaker[Session], tmp_path: Path, model_dir: Path) -> None:
        self.sessions = sessions
        self.tmp_path = tmp_path
        self.store = FileStore(tmp_path / "store")
        self.model_dir = model_dir
        with sessions() as db, db.begin():
            self.user_id = create_user(db=db, name="ana", email="a@example.org", password=None).id
            version, _ = register_model(db=db, store=self.store, model_dir=model_dir, user=None)
            self.version_id = version.id

    def dispatcher(self, executor: ScriptedExecutor, lease_ttl: float = 30.0) -> Dispatcher:
        live = LiveLogs(self.tmp_path / "live", 1 << 20)
        d = Dispatcher(sessions=self.sessions, store=self.store, executor=executor,
                       live_logs=live, lease_ttl=lease_ttl)  # fmt: skip
        assert d.take_lease()
        return d

    def new_run(self, user_id: int | None = None) -> int:
        with self.sessions() as db, db.begin():
            version = db.get(ModelVersion, self.version_id)
            user = db.get(User, user_id or self.user_id)
            assert version is not None
            assert user is not None
            checked = validate_run_input(manifest_of(version), self.model_dir, {}, {},
                                         max_input_size=1 << 20)  # fmt: skip
            return queue_run(db=db, user=user, version=version, checked=checked, inputs=[]).id

    def tasks(self, run_id: int) -> dict[str, tuple[str, int]]:
        with self.sessions() as db:
            rows = db.scalars(select(TaskRun).where(TaskRun.run_id == run_id))
            return {t.name: (t.state, t.attempt) for t in rows}

    def run(self, run_id: int) -> Run:
        with self.sessions() as db:
            run = db.get(Run, run_id)
            assert run is not None
            return run


@pytest.fixture
def world(sessions: sessionmaker[Session], tmp_path: Path, make_model: MakeModel) -> World:
    return World(sessions, tmp_path, make_model(MODEL, {}))


def result(order: WorkOrder, outcome: TaskOutcome = TaskOutcome.succeeded,
           kind: FailureKind | None = None) -> ExecutorEvent:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    out = StoredOutput(
        f"{order.task}/out.txt", f"{order.prefix}outputs/{order.task}/out.txt", 1, ""
    )
    work = WorkResult(task_run_id=order.task_run_id, attempt=order.attempt, outcome=outcome,
                      started_at=now, finished_at=now, exit_code=0 if kind is None else 2,
                      failure_kind=kind, failure_reason="exit 2" if kind else None,
                      failure_summary="it failed" if kind else None, outputs=[out])  # fmt: skip
    return ExecutorEvent(order.task_run_id, order.attempt, EventKind.result, {"result": work})


def lost(order: WorkOrder) -> ExecutorEvent:
    return ExecutorEvent(order.task_run_id, order.attempt, EventKind.lost, {"reason": "gone"})


def test_a_run_goes_through_its_graph_and_finishes(world: World) -> None:
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    for name in ("prep", "simulate", "report"):
        d.dispatch_once()
        order = executor.submitted[-1]
        assert order.task == name
        d.handle_events([result(order)])
    d.dispatch_once()
    run = world.run(run_id)
    assert run.state == "succeeded"
    assert executor.submitted[-1].upstream  # the report was given what came before it
    assert set(executor.submitted[-1].upstream) == {"prep/out.txt", "simulate/out.txt"}


def test_a_failed_task_skips_its_downstream_and_fails_the_run(world: World) -> None:
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    d.dispatch_once()
    d.handle_events([result(executor.submitted[-1])])
    d.dispatch_once()
    d.handle_events([result(executor.submitted[-1], TaskOutcome.failed, FailureKind.model_error)])
    d.dispatch_once()
    assert world.tasks(run_id) == {"prep": ("succeeded", 1), "simulate": ("failed", 1),
                                   "report": ("skipped", 0)}  # fmt: skip
    run = world.run(run_id)
    assert (run.state, run.error_task, run.error_summary) == ("failed", "simulate", "it failed")


def test_a_stale_attempts_result_is_refused(world: World) -> None:
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    d.dispatch_once()
    first = executor.submitted[-1]
    d.handle_events([lost(first)])
    d.dispatch_once()
    second = executor.submitted[-1]
    assert (second.task_run_id, second.attempt) == (first.task_run_id, 2)
    d.handle_events([result(first)])  # the first attempt's word comes late
    assert world.tasks(run_id)["prep"] == ("running", 2)
    with world.sessions() as db:
        assert not db.scalars(select(StoredFile).where(StoredFile.run_id == run_id)).all()


def test_a_lost_attempt_is_retried_up_to_the_limit_then_fails(world: World) -> None:
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    for _ in range(MAX_ATTEMPTS):
        d.dispatch_once()
        d.handle_events([lost(executor.submitted[-1])])
    d.dispatch_once()
    assert len(executor.submitted) == MAX_ATTEMPTS
    run = world.run(run_id)
    assert (run.state, run.error_kind) == ("failed", "infrastructure")
    assert "after 3 attempts" in (run.error_summary or "")


def test_a_users_quota_leaves_the_rest_queued_for_others(world: World) -> None:
    executor = ScriptedExecutor(slots=3)
    d = world.dispatcher(executor)
    with world.sessions() as db, db.begin():
        db.execute(update(User).where(User.id == world.user_id).values(max_running=1))
        other = create_user(db=db, name="ben", email="b@example.org", password=None).id
    mine = [world.new_run(), world.new_run()]
    theirs = world.new_run(other)
    d.dispatch_once()
    assert sorted(o.run_id for o in executor.submitted) == [mine[0], theirs]
    d.dispatch_once()
    assert len(executor.submitted) == 2  # a free slot, but the user's one task runs already
    d.handle_events([result(next(o for o in executor.submitted if o.run_id == mine[0]))])
    d.dispatch_once()
    with world.sessions() as db:
        running = db.scalars(
            select(TaskRun.run_id).join(Run).where(Run.user_id == world.user_id,
                                                   TaskRun.state == "running")
        ).all()  # fmt: skip
    assert len(running) == 1


def test_cancel_while_queued_runs_nothing(world: World) -> None:
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    with world.sessions() as db, db.begin():
        run = db.get(Run, run_id)
        assert run is not None
        assert cancel_run(db=db, run=run)
    d.dispatch_once()
    assert executor.submitted == []
    assert world.run(run_id).state == "cancelled"


def test_cancel_while_claimed_stops_the_attempt_and_ends_cancelled(world: World) -> None:
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    d.dispatch_once()
    order = executor.submitted[-1]
    with world.sessions() as db, db.begin():
        run = db.get(Run, run_id)
        assert run is not None
        assert cancel_run(db=db, run=run)
    assert world.tasks(run_id)["prep"] == ("running", 1)  # a cancel never overwrites a claim
    d.dispatch_once()
    assert executor.cancelled == [(order.task_run_id, 1)]
    d.dispatch_once()
    assert executor.cancelled == [(order.task_run_id, 1)]  # told once
    d.handle_events([lost(order)])
    d.dispatch_once()
    assert world.run(run_id).state == "cancelled"
    assert world.tasks(run_id)["prep"] == ("cancelled", 1)


def test_cancel_while_storing_outputs_keeps_them_and_cancels_the_rest(world: World) -> None:
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    d.dispatch_once()
    order = executor.submitted[-1]
    with world.sessions() as db, db.begin():
        run = db.get(Run, run_id)
        assert run is not None
        assert cancel_run(db=db, run=run)
    d.handle_events([result(order)])  # it had finished and was storing its outputs
    d.dispatch_once()
    assert world.tasks(run_id) == {"prep": ("succeeded", 1), "simulate": ("cancelled", 0),
                                   "report": ("cancelled", 0)}  # fmt: skip
    assert world.run(run_id).state == "cancelled"
    with world.sessions() as db:
        kept = db.scalars(select(StoredFile.path).where(StoredFile.run_id == run_id)).all()
    assert kept == ["prep/out.txt"]


def test_rerun_from_failed_reuses_what_succeeded(world: World) -> None:
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    d.dispatch_once()
    d.handle_events([result(executor.submitted[-1])])
    d.dispatch_once()
    d.handle_events([result(executor.submitted[-1], TaskOutcome.failed, FailureKind.model_error)])
    d.dispatch_once()
    with world.sessions() as db, db.begin():
        old = db.get(Run, run_id)
        user = db.get(User, world.user_id)
        assert old is not None
        assert user is not None
        new_id = rerun(db=db, run=old, user=user, from_failed=True).id
    d.dispatch_once()
    order = executor.submitted[-1]
    assert (order.run_id, order.task) == (new_id, "simulate")
    assert set(order.upstream) == {"prep/out.txt"}
    assert world.tasks(new_id)["prep"] == ("cached", 0)


def test_a_dispatcher_whose_lease_was_taken_over_stops_its_attempts_and_reports_nothing(
    world: World,
) -> None:
    first_executor, second_executor = ScriptedExecutor(), ScriptedExecutor()
    first = world.dispatcher(first_executor)
    run_id = world.new_run()
    first.dispatch_once()
    order = first_executor.submitted[-1]
    with world.sessions() as db, db.begin():  # the first server stalls past its lease
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        db.execute(update(DispatcherLease).values(expires_at=past))
    second = world.dispatcher(second_executor)
    second.dispatch_once()  # the new term retries what the stalled one left running
    assert second_executor.submitted[-1].attempt == 2
    first.handle_events([result(order)])  # the stalled server wakes up with a result
    assert first_executor.cancelled == [(order.task_run_id, 1)]
    assert not first.leading.is_set()
    assert world.tasks(run_id)["prep"] == ("running", 2)
    with world.sessions() as db:
        assert not db.scalars(select(StoredFile).where(StoredFile.run_id == run_id)).all()


def test_a_refused_attempt_fails_at_once_and_is_not_retried(world: World) -> None:
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    d.dispatch_once()
    order = executor.submitted[-1]
    refusal = {"reason": "input/grid.zip: unpacks past its limit", "kind": "invalid_input"}
    d.handle_events([ExecutorEvent(order.task_run_id, order.attempt, EventKind.refused, refusal)])
    d.dispatch_once()
    assert len(executor.submitted) == 1
    run = world.run(run_id)
    assert (run.state, run.error_kind) == ("failed", "invalid_input")


def test_an_event_whose_write_failed_is_kept_and_applied_later(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    d.dispatch_once()
    order = executor.submitted[-1]
    import simyard.dispatch.dispatcher as loop

    real = loop.apply_actions
    failures = iter([True])

    def flaky(*args: object, **kwargs: object) -> object:
        if next(failures, False):
            raise OperationalError("UPDATE", {}, Exception("database is locked"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "apply_actions", flaky)
    d.handle_events([result(order)])  # the write fails: the result must not be lost
    assert world.tasks(run_id)["prep"] == ("running", 1)
    d.handle_events([])  # the next turn of the loop
    assert world.tasks(run_id)["prep"] == ("succeeded", 1)


def test_lines_record_a_heartbeat_once_per_beat_interval_and_always_reach_the_live_log(
    world: World,
) -> None:
    """A chatty model must not cost a write per batch of lines: the silence check needs one
    heartbeat per ``lost_after``, so words of life are recorded at most every ``beat_every``;
    the lines themselves always go to the live log, and decisive events are always written."""
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    world.new_run()
    d.dispatch_once()
    order = executor.submitted[-1]
    key = (order.task_run_id, order.attempt)

    def heartbeat_at() -> dt.datetime | None:
        with world.sessions() as db:
            task_run = db.get(TaskRun, order.task_run_id)
            assert task_run is not None
            return task_run.heartbeat_at

    def lines(*text: str) -> ExecutorEvent:
        return ExecutorEvent(*key, EventKind.lines, {"lines": list(text)})

    d.handle_events([ExecutorEvent(*key, EventKind.started, {"worker": "w1"})])
    started = heartbeat_at()
    assert started is not None
    d.handle_events([lines("step 1")])
    assert heartbeat_at() == started, "a heartbeat was written for lines within the interval"
    d.beat_every = 0.0  # the interval has passed
    d.handle_events([lines("step 2")])
    beat = heartbeat_at()
    assert beat is not None
    assert beat > started
    live = d.live_logs.path(*key).read_text()
    assert "step 1" in live
    assert "step 2" in live


PARAMETER_MODEL = """\
simyard: 1
name: withfile
version: "1"
parameters:
  days: {type: integer, default: 3}
parameter_file: {path: params.json, format: json}
tasks:
  run: {command: [python3, -c, "1"], outputs: [out/]}
"""


def test_the_parameter_file_rendered_at_submission_travels_with_every_attempt(
    sessions: sessionmaker[Session], tmp_path: Path, make_model: MakeModel
) -> None:
    world = World(sessions, tmp_path, make_model(PARAMETER_MODEL, {}))
    run_id = world.new_run()
    stored = world.run(run_id).parameter_file
    assert stored is not None
    assert b'"days": 3' in stored
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    d.dispatch_once()
    assert executor.submitted[-1].parameter_file == stored  # the worker writes these bytes
    d.handle_events([result(executor.submitted[-1], TaskOutcome.failed, FailureKind.model_error)])
    d.dispatch_once()
    with sessions() as db, db.begin():
        source = db.get(Run, run_id)
        user = db.get(User, world.user_id)
        assert source is not None
        assert user is not None
        again = rerun(db=db, run=source, user=user).id
    d.dispatch_once()
    assert world.run(again).parameter_file == stored
    assert executor.submitted[-1].parameter_file == stored


METRIC_MODEL = """\
simyard: 1
name: measured
version: "1"
tasks:
  simulate: {command: [python3, -c, "1"], outputs: [results/]}
  report: {needs: [simulate], command: [python3, -c, "1"], outputs: [report/]}
results:
  metrics:
    total: {file: results/summary.json, key: total}
    rows: {log: report, pattern: "rows=([0-9]+)"}
"""


def with_metrics(event: ExecutorEvent, metrics: dict[str, object] | None) -> ExecutorEvent:
    work = dataclasses.replace(event.payload["result"], metrics=metrics)
    return ExecutorEvent(event.task_run_id, event.attempt, event.kind, {"result": work})


def test_metrics_come_from_the_workers_results_and_nothing_is_downloaded(
    sessions: sessionmaker[Session], tmp_path: Path, make_model: MakeModel
) -> None:
    world = World(sessions, tmp_path, make_model(METRIC_MODEL, {}))
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    d.dispatch_once()
    d.handle_events([with_metrics(result(executor.submitted[-1]), {"total": 42})])
    d.dispatch_once()
    d.handle_events([with_metrics(result(executor.submitted[-1]), {"rows": 7})])
    d.dispatch_once()
    run = world.run(run_id)
    assert run.state == "succeeded"
    assert run.metrics == {"total": 42, "rows": 7}  # the store holds none of their files
    assert not (tmp_path / "store" / "runs").exists()


def test_a_result_without_metrics_has_them_read_from_storage(
    sessions: sessionmaker[Session], tmp_path: Path, make_model: MakeModel
) -> None:
    world = World(sessions, tmp_path, make_model(METRIC_MODEL, {}))
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    d.dispatch_once()
    order = executor.submitted[-1]
    key = f"{order.prefix}outputs/results/summary.json"
    (tmp_path / "summary.json").write_text('{"total": 5}')
    world.store.put(key, tmp_path / "summary.json")
    now = dt.datetime.now(dt.UTC)
    out = StoredOutput("results/summary.json", key, 12, "")
    work = WorkResult(task_run_id=order.task_run_id, attempt=order.attempt,
                      outcome=TaskOutcome.succeeded, started_at=now, finished_at=now,
                      exit_code=0, outputs=[out])  # fmt: skip
    d.handle_events([ExecutorEvent(order.task_run_id, order.attempt, EventKind.result,
                                   {"result": work})])  # fmt: skip
    d.dispatch_once()
    d.handle_events([with_metrics(result(executor.submitted[-1]), {"rows": 3})])
    d.dispatch_once()
    assert world.run(run_id).metrics == {"total": 5, "rows": None}


def test_an_attempts_end_its_next_claim_and_its_runs_finish_are_one_commit(
    world: World,
) -> None:
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    d.dispatch_once()
    commits: list[int] = []
    with counted(world.sessions, commits):
        assert d.turn([result(executor.submitted[-1])])  # prep's result
    assert len(commits) == 1
    assert world.tasks(run_id) == {"prep": ("succeeded", 1), "simulate": ("running", 1),
                                   "report": ("pending", 0)}  # fmt: skip
    assert executor.submitted[-1].task == "simulate"
    d.turn([result(executor.submitted[-1])])
    commits.clear()
    with counted(world.sessions, commits):
        d.turn([result(executor.submitted[-1])])  # report's: the run ends in the same commit
    assert len(commits) == 1
    assert world.run(run_id).state == "succeeded"


def test_a_start_is_written_with_the_attempts_next_decisive_event(world: World) -> None:
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    d.dispatch_once()
    order = executor.submitted[-1]
    start = ExecutorEvent(order.task_run_id, order.attempt, EventKind.started, {"worker": "w1"})
    commits: list[int] = []
    with counted(world.sessions, commits):
        d.turn([start])
        assert not commits, "a start was written on its own"
        d.turn([result(order)])
    assert len(commits) == 1
    with world.sessions() as db:
        prep = db.get(TaskRun, order.task_run_id)
        assert prep is not None
        assert (prep.state, prep.worker) == ("succeeded", "w1")
    assert world.tasks(run_id)["simulate"] == ("running", 1)


def test_a_start_with_nothing_after_it_is_written_within_the_hold(world: World) -> None:
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    world.new_run()
    d.dispatch_once()
    order = executor.submitted[-1]
    start = ExecutorEvent(order.task_run_id, order.attempt, EventKind.started, {"worker": "w1"})
    commits: list[int] = []
    with counted(world.sessions, commits):
        d.turn([start])
        assert not commits
        d.start_hold = 0.0  # the hold has passed
        d.turn([])
    assert len(commits) == 1
    with world.sessions() as db:
        prep = db.get(TaskRun, order.task_run_id)
        assert prep is not None
        assert prep.worker == "w1"
        assert prep.heartbeat_at is not None


ONE_TASK = """\
simyard: 1
name: one
version: "1"
tasks:
  run: {command: [python3, -c, "1"]}
"""


def test_a_run_costs_the_dispatcher_one_commit_and_a_bounded_number_of_statements(
    sessions: sessionmaker[Session], tmp_path: Path, make_model: MakeModel
) -> None:
    """Claimed, started and ended, one single-task run after another: each costs one
    commit and (today) 19.5 statements on SQLite, 18.5 on PostgreSQL; the bound leaves
    room, not the 25 of before the outbox's rows were written in one statement."""
    world = World(sessions, tmp_path, make_model(ONE_TASK, {}))
    executor = ScriptedExecutor(slots=1)
    d = world.dispatcher(executor)
    runs = [world.new_run() for _ in range(6)]
    d.dispatch_once()  # the first claim
    commits: list[int] = []
    with counted(world.sessions, commits) as sent:
        for _ in runs:
            order = executor.submitted[-1]
            key = (order.task_run_id, order.attempt)
            d.turn([ExecutorEvent(*key, EventKind.started, {"worker": "w1"})])
            d.turn([result(order)])  # its end, its run's finish and the next claim
    assert [world.run(r).state for r in runs] == ["succeeded"] * len(runs)
    assert len(commits) == len(runs)
    assert len(sent) / len(runs) <= 22


def test_a_run_created_while_every_slot_is_taken_waits_for_the_next_end_not_a_pass(
    sessions: sessionmaker[Session], tmp_path: Path, make_model: MakeModel
) -> None:
    world = World(sessions, tmp_path, make_model(ONE_TASK, {}))
    executor = ScriptedExecutor(slots=1)
    d = world.dispatcher(executor)
    first = world.new_run()
    d.wake(created=True)
    assert d.turn([])  # a free slot: the pass claims it at once
    assert world.tasks(first)["run"] == ("running", 1)
    second = world.new_run()
    d.wake(created=True)
    with counted(world.sessions) as sent:
        assert not d.turn([]), "a pass ran that could claim nothing"
    assert not sent
    d.turn([result(executor.submitted[-1])])  # the first run's end frees the slot
    assert world.run(first).state == "succeeded"
    assert world.tasks(second)["run"] == ("running", 1)
    cancelled = world.new_run()
    with world.sessions() as db, db.begin():
        run = db.get(Run, cancelled)
        assert run is not None
        cancel_run(db=db, run=run)
    d.wake()  # a cancel is decided at once, slots taken or not
    assert d.turn([])
    assert world.run(cancelled).state == "cancelled"


class WatchedExecutor(ScriptedExecutor):
    """Notes, at each call, how many transactions are open on the dispatcher's database:
    a Dask executor's calls are network round trips, never to be made holding a lock."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        super().__init__()
        self.open = 0
        self.seen: dict[str, list[int]] = {"slots": [], "submit": [], "cancel": []}
        engine = sessions.kw["bind"]
        event.listen(engine, "begin", lambda _conn: self._count(+1))
        for ended in ("commit", "rollback"):
            event.listen(engine, ended, lambda _conn: self._count(-1))

    def _count(self, change: int) -> None:
        self.open += change

    @property  # type: ignore[override]
    def slots(self) -> int:
        self.seen["slots"].append(self.open)
        return 2

    @slots.setter
    def slots(self, _value: int) -> None:
        pass

    def submit(self, order: WorkOrder) -> None:
        self.seen["submit"].append(self.open)
        super().submit(order)

    def cancel(self, task_run_id: int, attempt: int) -> None:
        self.seen["cancel"].append(self.open)
        super().cancel(task_run_id, attempt)


def test_the_executor_is_never_called_inside_a_transaction(world: World) -> None:
    executor = WatchedExecutor(world.sessions)
    d = world.dispatcher(executor)
    finished, cancelled = world.new_run(), world.new_run()
    d.wake(created=True)
    d.turn([])
    for _ in range(3):  # prep, simulate, report of the first run
        d.turn([result([o for o in executor.submitted if o.run_id == finished][-1])])
    with world.sessions() as db, db.begin():
        run = db.get(Run, cancelled)
        assert run is not None
        cancel_run(db=db, run=run)
    d.wake()
    d.turn([])  # its claimed prep is told to stop
    d.turn([lost(executor.submitted[1])])
    assert world.run(finished).state == "succeeded"
    assert world.run(cancelled).state == "cancelled"
    assert all(executor.seen.values()), executor.seen  # each kind of call was made
    assert executor.seen == {kind: [0] * len(calls) for kind, calls in executor.seen.items()}


def test_a_holder_stalled_inside_its_transaction_lets_another_server_take_the_lease_over(
    postgres_url: str,
) -> None:
    """A server stopped (SIGSTOP, a paused VM) while its transaction holds the lease's row
    lock would keep every other server from taking over for as long as it stays stopped:
    PostgreSQL ends that transaction once a lease's time passes without a statement."""
    engine = make_engine(postgres_url)
    upgrade_schema(engine)
    sessions = session_factory(engine)
    ttl = 1.0
    stalled, other = LeaseTerm(ttl), LeaseTerm(ttl)
    with sessions() as db, db.begin():
        assert stalled.take(db)
    held = sessions()
    try:
        held.begin()
        stalled.fence(held)  # the row is locked; then the server stops, its transaction open
        taken: list[float] = []

        def take_over() -> None:
            started = time.monotonic()
            while time.monotonic() - started < 20 and not taken:
                with sessions() as db, db.begin():
                    if other.take(db):
                        taken.append(time.monotonic() - started)
                time.sleep(0.1)

        thread = threading.Thread(target=take_over, daemon=True)
        thread.start()
        thread.join(timeout=30)
        assert taken, "no other server could take the lease over from a stalled holder"
        assert taken[0] < 10 * ttl
        with pytest.raises(DBAPIError):  # the stalled server's transaction is gone
            held.execute(select(DispatcherLease.holder))
    finally:
        held.close()
        engine.dispose()


def test_a_stopped_servers_open_transaction_is_ended_by_the_database(postgres_url: str) -> None:
    """Any transaction of a server, not only the dispatcher's: the server's engine has
    PostgreSQL end one that waits for its next statement past the server's limit."""
    settings = Settings(database_url=postgres_url, lease_ttl=1.0)
    assert idle_transaction_timeout(settings) == 30.0  # three leases, at least 30 s
    engine = make_engine(postgres_url, idle_transaction_timeout=1.0)
    upgrade_schema(engine)
    sessions = session_factory(engine)
    with sessions() as db, db.begin():
        assert LeaseTerm(60).take(db)
    held = sessions()
    try:
        held.begin()
        held.execute(select(DispatcherLease).with_for_update())  # then it stops
        started = time.monotonic()
        with sessions() as db, db.begin():  # waits for the lock until the database ends it
            db.execute(text("SET LOCAL lock_timeout = '10s'"))  # without that: forever
            db.execute(update(DispatcherLease).values(holder="another"))
        assert time.monotonic() - started < 10
        with pytest.raises(DBAPIError):
            held.execute(select(DispatcherLease.holder))
    finally:
        held.close()
        engine.dispose()


def test_followers_hear_what_the_dispatcher_records_at_once(world: World) -> None:
    """A follower waiting (here up to a minute) for the next change hears a batch of live
    lines and the commit of an attempt's end the moment they are made, from the
    dispatcher's thread, and reads them."""
    executor = ScriptedExecutor()
    d = world.dispatcher(executor)
    run_id = world.new_run()
    d.dispatch_once()
    order = executor.submitted[0]
    key = (order.task_run_id, order.attempt)

    def woken_by(kind: Change, events: list[ExecutorEvent]) -> float:
        recording = threading.Timer(0.05, d.handle_events, [events])

        async def follow() -> float:
            seen = d.changes.seen()
            recording.start()
            began = time.monotonic()
            await d.changes.wait(seen, 60.0, kind)
            return time.monotonic() - began

        took = run_apart(follow)
        recording.join()  # what it records after the wake (a heartbeat) is done, too
        return took

    lines = ExecutorEvent(*key, EventKind.lines, {"lines": ["day 1"]})
    assert woken_by(Change.logged, [lines]) < 30
    assert d.live_logs.path(*key).read_text() == "day 1\n"
    assert woken_by(Change.recorded, [result(order)]) < 30
    assert world.tasks(run_id)["prep"][0] == "succeeded"
