"""Usage: worker-seconds and CPU-seconds per task run, summed per run, sweep and user.

An attempt's worker-seconds are the time it held a worker (the engine's start to end
when it reported a result; claim to end when it was lost); its CPU-seconds are what its
processes used, user and system time, as the engine measured them when it reaped them;
where nothing was measured (a lost attempt), that time its task's ``resources.cpus``
(what the cluster reserved for it). Each attempt adds to its task run when it ends, in
the dispatcher's transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from simyard.domain.tables import Run, TaskRun, User
from simyard.engine.workorder import WorkResult
from simyard.manifest.schema import Manifest
from simyard.times import aware, utcnow

if TYPE_CHECKING:
    from simyard.domain.runs import ListedRun

Grouping = Literal["user", "run", "sweep"]


def add_attempt_usage(task_run: TaskRun, manifest: Manifest, result: WorkResult | None) -> None:
    """Add the attempt that is ending now to its task run's usage."""
    if result is not None:
        start, end = aware(result.started_at), aware(result.finished_at)
    elif task_run.started_at is not None:
        start, end = aware(task_run.started_at), utcnow()
    else:
        return
    seconds = max((end - start).total_seconds(), 0.0)
    task = manifest.tasks.get(task_run.name)
    cpus = float(task.resources.cpus) if task is not None else 1.0
    used = result.cpu_seconds if result is not None else None
    task_run.worker_seconds = (task_run.worker_seconds or 0.0) + seconds
    cpu_seconds = seconds * cpus if used is None else used
    task_run.cpu_seconds = (task_run.cpu_seconds or 0.0) + cpu_seconds


@dataclass(frozen=True)
class UsageRow:
    key: str  # the user's name, the run's or the sweep's id
    task_runs: int
    worker_seconds: float
    cpu_seconds: float

    def cost(self, price_per_worker_hour: float | None) -> float | None:
        if price_per_worker_hour is None:
            return None
        return round(self.worker_seconds / 3600 * price_per_worker_hour, 6)


def usage_by(
    *,
    db: Session,
    group: Grouping = "user",
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    user: User | None = None,
) -> list[UsageRow]:
    """Usage of task runs that ended in [since, until), grouped; only ``user``'s if given."""
    column = {"user": User.name, "run": Run.id, "sweep": Run.sweep_id}[group]
    query = (
        select(
            column,
            func.count(TaskRun.id),
            func.coalesce(func.sum(TaskRun.worker_seconds), 0.0),
            func.coalesce(func.sum(TaskRun.cpu_seconds), 0.0),
        )
        .join(Run, Run.id == TaskRun.run_id)
        .join(User, User.id == Run.user_id)
        .where(TaskRun.worker_seconds.is_not(None))
        .group_by(column)
        .order_by(func.sum(TaskRun.worker_seconds).desc())
    )
    if group == "sweep":
        query = query.where(Run.sweep_id.is_not(None))
    if since is not None:
        query = query.where(TaskRun.finished_at >= aware(since).astimezone(dt.UTC))
    if until is not None:
        query = query.where(TaskRun.finished_at < aware(until).astimezone(dt.UTC))
    if user is not None:
        query = query.where(Run.user_id == user.id)
    return [
        UsageRow(str(key), int(n), float(w or 0), float(c or 0))
        for key, n, w, c in db.execute(query)
    ]


def run_usage(run: Run | ListedRun) -> tuple[float, float] | None:
    """(worker-seconds, CPU-seconds) of a run's task runs; None when nothing was recorded."""
    recorded = [t for t in run.task_runs if t.worker_seconds is not None]
    if not recorded:
        return None
    return (sum(t.worker_seconds or 0.0 for t in recorded),
            sum(t.cpu_seconds or 0.0 for t in recorded))  # fmt: skip
