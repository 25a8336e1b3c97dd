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

from sqlalchemy import func, select, union
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


def run_views(db: Session, run_ids: Any, now: dt.datetime) -> tuple[RunView, ...]:
    """The runs ``run_ids`` (ids, or a query of them) with all their task runs in graph
    order, as plain data, by id; one statement."""
    rows = db.execute(
        select(*_TASK_COLUMNS, Run.user_id, Run.state.label("run_state"), Run.cancel_requested)
        .join(Run, Run.id == TaskRun.run_id)
        .where(TaskRun.run_id.in_(run_ids))
        .order_by(TaskRun.run_id, TaskRun.position)
    )
    views = []
    for run_id, of_run in groupby(rows, key=attrgetter("run_id")):
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
    quotas = dict(
        db.execute(select(User.id, User.max_running).where(User.max_running.is_not(None))).all()
    )
    if not quotas:
        return {}
    running = dict(
        db.execute(
            select(Run.user_id, func.count(TaskRun.id))
            .join(Run, Run.id == TaskRun.run_id)
            .where(TaskRun.state == TaskRunState.running, Run.user_id.in_(list(quotas)))
            .group_by(Run.user_id)
        ).all()
    )
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
    # A union of three narrow queries rather than one OR, so each uses an index: a queued
    # run needs a pass only when asked to stop, or when a rerun made all it has left cached.
    needing_a_pass = union(
        select(Run.id).where(Run.state == RunState.running),
        select(Run.id).where(Run.state == RunState.queued, Run.cancel_requested.is_(True)),
        select(TaskRun.run_id)
        .join(Run, Run.id == TaskRun.run_id)
        .where(TaskRun.state == TaskRunState.cached, Run.state == RunState.queued),
    )
    runs = run_views(db, needing_a_pass, now)
    room = quota_room(db)
    candidates: list[Candidate] = []
    if free_slots > 0:
        full = [user for user, left in room.items() if left <= 0]
        query = (
            select(*_TASK_COLUMNS, Run.user_id, Run.cancel_requested)
            .join(Run, Run.id == TaskRun.run_id)
            .where(TaskRun.state == TaskRunState.queued)
            .order_by(TaskRun.queued_at, TaskRun.id)
            .limit(free_slots * 4)
        )
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
    rows = db.execute(
        select(TaskRun, Run.cancel_requested, ModelVersion)
        .join(Run, Run.id == TaskRun.run_id)
        .join(ModelVersion, ModelVersion.id == Run.model_version_id)
        .where(TaskRun.id.in_(list(task_ids)))
    )
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
