"""Why a queued run waits, said for its owner: a quota, a worker starting, or a free slot."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from simyard.domain.states import TaskRunState
from simyard.domain.tables import Run, TaskRun

FREE_SLOT = "waiting for a free slot"


def waiting_reason(*, db: Session, run: Run, executor_says: str | None) -> str | None:
    """None unless a task run of ``run`` is queued; ``executor_says``: the executor's own word."""
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
            return f"quota: {running} of your tasks run, at most {limit} at once"
    return executor_says or FREE_SLOT
