"""Why a queued run waits, and the usage it adds up, on the embedded SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from simyard.db.session import make_engine, session_factory, upgrade_schema
from simyard.domain.states import RunState, TaskRunState
from simyard.domain.tables import ModelVersion, Run, TaskRun, User
from simyard.domain.usage import usage_by
from simyard.domain.waiting import FREE_SLOT, waiting_reason


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    return session_factory(engine)


def add_run(db: Session, user: User, version: ModelVersion, *states: TaskRunState) -> Run:
    run = Run(user_id=user.id, model_version_id=version.id, params={}, state=RunState.running)
    db.add(run)
    db.flush()
    for i, state in enumerate(states):
        db.add(TaskRun(run_id=run.id, name=f"t{i}", position=i, needs=[], state=state))
    db.flush()
    db.refresh(run)
    return run


def test_a_queued_run_says_quota_worker_or_free_slot(sessions: sessionmaker[Session]) -> None:
    with sessions() as db, db.begin():
        user = User(name="ana", email="ana@example.org", max_running=1)
        version = ModelVersion(name="m", version="1", content_hash="0" * 64, manifest={},
                               bundle_key="b", bundle_size=1)  # fmt: skip
        db.add_all([user, version])
        db.flush()
        busy = add_run(db, user, version, TaskRunState.running)
        waiting = add_run(db, user, version, TaskRunState.queued)
        assert waiting_reason(db=db, run=busy, executor_says=None) is None  # nothing queued
        said = waiting_reason(db=db, run=waiting, executor_says="starting a worker")
        assert said == "quota: 1 of your tasks run, at most 1 at once"
        said = waiting_reason(db=db, run=waiting, executor_says=None, viewer=user)
        assert said == "quota: 1 of your tasks run, at most 1 at once"
        reader = User(name="bo", email="bo@example.org")
        db.add(reader)
        db.flush()
        said = waiting_reason(db=db, run=waiting, executor_says=None, viewer=reader)
        assert said == "quota: 1 of ana's tasks run, at most 1 at once"  # not "your" to bo
        user.max_running = None
        db.flush()
        assert waiting_reason(db=db, run=waiting, executor_says="starting a worker") == (
            "starting a worker"
        )
        assert waiting_reason(db=db, run=waiting, executor_says=None) == FREE_SLOT


def test_usage_adds_up_by_user_and_run(sessions: sessionmaker[Session]) -> None:
    with sessions() as db, db.begin():
        user = User(name="ben", email="ben@example.org")
        version = ModelVersion(name="m", version="1", content_hash="0" * 64, manifest={},
                               bundle_key="b", bundle_size=1)  # fmt: skip
        db.add_all([user, version])
        db.flush()
        run = add_run(db, user, version, TaskRunState.succeeded, TaskRunState.succeeded)
        for task, seconds in zip(run.task_runs, (10.0, 20.0), strict=True):
            task.worker_seconds, task.cpu_seconds = seconds, 2 * seconds
        db.flush()
        (row,) = usage_by(db=db, group="user")
        assert (row.key, row.task_runs, row.worker_seconds, row.cpu_seconds) == ("ben", 2, 30, 60)
        assert row.cost(3.6) == pytest.approx(0.03)
        (by_run,) = usage_by(db=db, group="run")
        assert by_run.key == str(run.id)
        assert usage_by(db=db, group="sweep") == []
