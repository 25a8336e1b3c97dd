"""The outbox's fan-out on the embedded SQLite database: what it makes, and at what cost."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from simyard.db.session import make_engine, session_factory, upgrade_schema
from simyard.domain.runs import record_event
from simyard.domain.states import RunState, TaskRunState
from simyard.domain.tables import Delivery, Event, ModelVersion, Run, StoredFile, TaskRun, User
from simyard.notify.outbox import Outbox, OutboxConfig
from tests.sqlcount import counted


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    return session_factory(engine)


def finished_runs(sessions: sessionmaker[Session], count: int) -> list[int]:
    """``count`` runs of two tasks, each ended with the events the dispatcher writes."""
    with sessions() as db, db.begin():
        user = User(name="ana", email="ana@example.org")
        version = ModelVersion(name="toy", version="1", content_hash="0" * 64, manifest={},
                               bundle_key="b", bundle_size=1)  # fmt: skip
        db.add_all([user, version])
        db.flush()
        ids = []
        for index in range(count):
            run = Run(user_id=user.id, model_version_id=version.id, params={"days": index},
                      state=RunState.queued, cancel_requested=False)  # fmt: skip
            db.add(run)
            db.flush()
            record_event(db, "run.queued", run)
            run.set_state(RunState.running)
            record_event(db, "run.running", run)
            for position, name in enumerate(("prep", "model")):
                task = TaskRun(run_id=run.id, name=name, position=position, needs=[])
                db.add(task)
                db.flush()
                for state in (TaskRunState.queued, TaskRunState.running, TaskRunState.succeeded):
                    task.set_state(state)
                    record_event(db, f"task.{state}", run, task)
                db.add(StoredFile(run_id=run.id, task_run_id=task.id, kind="output",
                                  path=f"{name}.csv", key=f"k{run.id}{name}", size=2048,
                                  sha256="0" * 64))  # fmt: skip
            run.set_state(RunState.succeeded)
            record_event(db, "run.succeeded", run)
            ids.append(run.id)
    return ids


def test_fan_out_of_ten_ended_runs_tells_each_once_reading_each_kind_of_row_once(
    sessions: sessionmaker[Session],
) -> None:
    ids = finished_runs(sessions, 10)
    outbox = Outbox(sessions=sessions, config=OutboxConfig("http://simyard.example.org", None, "s"))
    with counted(sessions) as sent:
        assert outbox.fan_out() == 10
    # Not a few statements for each run and event: events, runs (with their model and
    # owner), task runs, outputs, settings, the deliveries, and the marks.
    assert len(sent) <= 10, "\n".join(sent)
    with sessions() as db:
        mails = list(db.scalars(select(Delivery).order_by(Delivery.id)))
        assert [(d.run_id, d.channel, d.target, d.state) for d in mails] == [
            (run_id, "outbox", "ana@example.org", "sent") for run_id in ids
        ]
        assert mails[3].subject == f"[simyard] toy run {ids[3]} succeeded"
        assert "  days = 3\n" in mails[3].body_text
        assert "  model.csv (2.0 KiB)\n  prep.csv (2.0 KiB)\n" in mails[3].body_text
        assert not list(db.scalars(select(Event).where(Event.fanned_out.is_(False))))
    assert outbox.fan_out() == 0  # told once
