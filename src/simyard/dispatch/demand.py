"""The queue as an elastic cluster's scaler sees it: queued and running task runs, quotas.

Read in a short transaction of its own, never inside a dispatcher pass; the scaler
(:mod:`simyard.executors.scaling`) decides from it without the database.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from simyard.domain.registry import manifest_of
from simyard.domain.states import TaskRunState
from simyard.domain.tables import ModelVersion, Run, TaskRun, User
from simyard.executors.scaling import Demand, Work
from simyard.manifest.schema import Manifest


class QueueReader:
    """Reads the demand; manifests are parsed once per model version (they never change)."""

    def __init__(self, sessions: sessionmaker[Session], *, queued_limit: int) -> None:
        self.sessions = sessions
        self.queued_limit = queued_limit
        self._manifests: dict[int, Manifest] = {}

    def __call__(self) -> Demand:
        with self.sessions() as db, db.begin():
            return self.read(db)

    def read(self, db: Session) -> Demand:
        columns = (TaskRun.name, TaskRun.state, Run.user_id, Run.model_version_id)
        base = select(*columns).join(Run, Run.id == TaskRun.run_id)
        running = db.execute(base.where(TaskRun.state == TaskRunState.running)).all()
        queued = db.execute(
            base.where(TaskRun.state == TaskRunState.queued)
            .order_by(TaskRun.queued_at, TaskRun.id)
            .limit(self.queued_limit)
        ).all()
        rows = [*running, *queued]
        missing = {row.model_version_id for row in rows} - set(self._manifests)
        if missing:
            for version in db.scalars(select(ModelVersion).where(ModelVersion.id.in_(missing))):
                self._manifests[version.id] = manifest_of(version)
        users = {row.user_id for row in rows}
        limits = db.execute(
            select(User.id, User.max_running).where(
                User.id.in_(users), User.max_running.is_not(None)
            )
        )
        quotas = {user: limit for user, limit in limits if limit is not None}
        work = []
        for row in rows:
            task = self._manifests[row.model_version_id].tasks.get(row.name)
            cpus, memory = (task.resources.cpus, task.resources.memory) if task else (1.0, None)
            work.append(Work(row.user_id, float(cpus), memory, row.state == TaskRunState.running))
        return Demand(tuple(work), quotas)
