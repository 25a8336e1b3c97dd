"""Read what the policy decides from: the runs that need work, as plain data.

Only runs that can change are read: running ones, queued ones asked to stop or with
cached task runs (a rerun's) — a queued run's waiting tasks need nothing but a claim —
and the oldest queued task runs, as many as could be claimed. So a pass costs about the
same with ten or ten thousand runs waiting.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from itertools import groupby
from operator import attrgetter
from typing import Any

from sqlalchemy import bindparam, func, select, union
from sqlalchemy.orm import Session

from simyard.dispatch.policy import Attempt, Candidate, RunView, Snapshot, TaskView
from simyard.domain.registry import hold_version, manifest_of
from simyard.domain.states import RunState, TaskRunState
from simyard.domain.tables import ModelVersion, Run, TaskRun, User, utcnow
from simyard.manifest.schema import Manifest


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


# What a TaskView is made of: read as plain rows, no ORM objects built (a pass reads these
# for every running run and the oldest queued task runs; building TaskRun objects for them
# was the pass's largest cost after the writes).
_TASK_COLUMNS = (
    TaskRun.id,
    TaskRun.run_id,
    TaskRun.name,
    TaskRun.state,
    TaskRun.attempt,
    TaskRun.needs,
    TaskRun.worker,
    TaskRun.heartbeat_at,
    TaskRun.started_at,
)


def task_view(task_run: Any, now: dt.datetime, retries: int = 0) -> TaskView:
    """A task run (a TaskRun, or a row of ``_TASK_COLUMNS``) as plain data."""
    beat = task_run.heartbeat_at or task_run.started_at
    silent = (now - _aware(beat)).total_seconds() if beat is not None else 0.0
    return TaskView(
        id=task_run.id,
        run_id=task_run.run_id,
        name=task_run.name,
        state=TaskRunState(task_run.state),
        attempt=task_run.attempt,
        needs=tuple(task_run.needs),
        worker=task_run.worker,
        silent_for=silent,
        retries=retries,
    )


# A pass's statements are built once, their values bound at each execution: building
# them anew (the column comparisons, the cache key) was a sixth of a dispatch turn's CPU.
# A union of three narrow queries rather than one OR, so each uses an index: a queued run
# needs a pass only when asked to stop, or when a rerun made all it has left cached.
_NEEDING_A_PASS = union(
    select(Run.id).where(Run.state == RunState.running),
    select(Run.id).where(Run.state == RunState.queued, Run.cancel_requested.is_(True)),
    select(TaskRun.run_id)
    .join(Run, Run.id == TaskRun.run_id)
    .where(TaskRun.state == TaskRunState.cached, Run.state == RunState.queued),
)
_RUN_VIEW_ROWS = (
    select(*_TASK_COLUMNS, Run.user_id, Run.state.label("run_state"), Run.cancel_requested)
    .join(Run, Run.id == TaskRun.run_id)
    .where(TaskRun.run_id.in_(_NEEDING_A_PASS))
    .order_by(TaskRun.run_id, TaskRun.position)
)
_QUOTAS = select(User.id, User.max_running).where(User.max_running.is_not(None))
_RUNNING_PER_USER = (
    select(Run.user_id, func.count(TaskRun.id))
    .join(Run, Run.id == TaskRun.run_id)
    .where(
        TaskRun.state == TaskRunState.running,
        Run.user_id.in_(bindparam("users", expanding=True)),
    )
    .group_by(Run.user_id)
)
_OLDEST_QUEUED = (
    select(*_TASK_COLUMNS, Run.user_id, Run.cancel_requested)
    .join(Run, Run.id == TaskRun.run_id)
    .where(TaskRun.state == TaskRunState.queued)
    .order_by(TaskRun.queued_at, TaskRun.id)
)
_EVENT_TASKS = (
    select(TaskRun, Run.cancel_requested, ModelVersion)
    .join(Run, Run.id == TaskRun.run_id)
    .join(ModelVersion, ModelVersion.id == Run.model_version_id)
    .where(TaskRun.id.in_(bindparam("ids", expanding=True)))
)


def run_views(db: Session, now: dt.datetime) -> tuple[RunView, ...]:
    """The runs that need a pass with all their task runs in graph order, as plain data,
    by id; one statement."""
    views = []
    for run_id, of_run in groupby(db.execute(_RUN_VIEW_ROWS), key=attrgetter("run_id")):
        tasks = list(of_run)
        views.append(
            RunView(
                id=run_id,
                user_id=tasks[0].user_id,
                state=RunState(tasks[0].run_state),
                cancel_requested=bool(tasks[0].cancel_requested),
                tasks=tuple(task_view(task, now) for task in tasks),
            )
        )
    return tuple(views)


def quota_room(db: Session) -> dict[int, int]:
    """For each user with a quota, how many more of their tasks may start now."""
    quotas = dict(db.execute(_QUOTAS).all())
    if not quotas:
        return {}
    running = dict(db.execute(_RUNNING_PER_USER, {"users": list(quotas)}).all())
    return {user: (limit or 0) - running.get(user, 0) for user, limit in quotas.items()}


def read_snapshot(
    db: Session,
    *,
    free_slots: int,
    handed_over: Iterable[Attempt] = (),
    stop_sent: Iterable[Attempt] = (),
    lost_after: float = 60.0,
    orphan_reason: str | None = None,
) -> Snapshot:
    """The snapshot one pass plans from."""
    now = utcnow()
    runs = run_views(db, now)
    room = quota_room(db)
    candidates: list[Candidate] = []
    if free_slots > 0:
        full = [user for user, left in room.items() if left <= 0]
        query = _OLDEST_QUEUED.limit(free_slots * 4)
        if full:
            query = query.where(Run.user_id.not_in(full))
        for row in db.execute(query):
            cancel = bool(row.cancel_requested)
            candidates.append(Candidate(task_view(row, now), row.user_id, cancel))
    extra = {} if orphan_reason is None else {"orphan_reason": orphan_reason}
    return Snapshot(
        runs=runs,
        candidates=tuple(candidates),
        quota_room=room,
        free_slots=free_slots,
        handed_over=frozenset(handed_over),
        stop_sent=frozenset(stop_sent),
        lost_after=lost_after,
        **extra,
    )


def read_event_tasks(
    db: Session, task_ids: Iterable[int]
) -> tuple[dict[int, TaskView], dict[int, bool]]:
    """The task runs executor events name (with their manifest's retries), and their runs'
    cancel requests."""
    now = utcnow()
    rows = db.execute(_EVENT_TASKS, {"ids": list(task_ids)})
    tasks: dict[int, TaskView] = {}
    cancels: dict[int, bool] = {}
    manifests: dict[int, Manifest] = {}
    for task_run, cancel, version in rows:
        retries = 0
        if task_run.state == TaskRunState.running:
            if version.id not in manifests:
                manifests[version.id] = manifest_of(hold_version(db, version))
            task = manifests[version.id].tasks.get(task_run.name)
            retries = task.retries if task is not None else 0
        tasks[task_run.id] = task_view(task_run, now, retries)
        cancels[task_run.run_id] = bool(cancel)
    return tasks, cancels
