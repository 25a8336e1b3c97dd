"""Why a queued run waits: a quota, a worker starting, or a free slot; said to its owner
("your tasks") or to someone else reading it ("alice's tasks")."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from simyard.domain.states import TaskRunState
from simyard.domain.tables import Run, TaskRun, User

FREE_SLOT = "waiting for a free slot"


def waiting_reason(
    *, db: Session, run: Run, executor_says: str | None, viewer: User | None = None
) -> str | None:
    """None unless a task run of ``run`` is queued; ``executor_says``: the executor's own word;
    ``viewer``: whom it is said to (None: the run's owner)."""
    if not any(t.state == TaskRunState.queued for t in run.task_runs):
        return None
    limit = run.user.max_running
    if limit is not None:
        running = db.scalar(
            select(func.count(TaskRun.id))
            .join(Run, Run.id == TaskRun.run_id)
            .where(Run.user_id == run.user_id, TaskRun.state == TaskRunState.running)
        )
        if (running or 0) >= limit:
            whose = "your" if viewer is None or viewer.id == run.user_id else f"{run.user.name}'s"
            return f"quota: {running} of {whose} tasks run, at most {limit} at once"
    return executor_says or FREE_SLOT
