"""Run and task-run states, and the transitions allowed between them.

A state is set only through :func:`advance`, which raises on a transition the table
does not allow: a wrong transition is a bug, never a silent overwrite.
"""

from __future__ import annotations

from enum import StrEnum

from simyard.errors import SimyardError
from simyard.taskgraph import Standing


class RunState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    timed_out = "timed_out"

    @property
    def final(self) -> bool:
        return self not in (RunState.queued, RunState.running)


class TaskRunState(StrEnum):
    pending = "pending"  # waiting for the tasks it needs
    queued = "queued"  # ready; waiting for an executor slot
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    timed_out = "timed_out"
    skipped = "skipped"  # a task it needs did not succeed
    cached = "cached"  # reused from an identical earlier task run

    @property
    def final(self) -> bool:
        return self not in (TaskRunState.pending, TaskRunState.queued, TaskRunState.running)

    @property
    def done_ok(self) -> bool:
        """Whether dependents may start after this state."""
        return self in (TaskRunState.succeeded, TaskRunState.cached)

    @property
    def standing(self) -> Standing:
        """What this state means to the tasks that need it (see simyard.taskgraph)."""
        if self.done_ok:
            return Standing.ok
        return Standing.bad if self.final else Standing.open


RUN_TRANSITIONS: dict[RunState, set[RunState]] = {
    RunState.queued: {RunState.running, RunState.cancelled, RunState.failed},
    RunState.running: {
        RunState.succeeded,
        RunState.failed,
        RunState.cancelled,
        RunState.timed_out,
    },
}

TASK_TRANSITIONS: dict[TaskRunState, set[TaskRunState]] = {
    TaskRunState.pending: {
        TaskRunState.queued,
        TaskRunState.skipped,
        TaskRunState.cancelled,
        TaskRunState.cached,
    },
    TaskRunState.queued: {TaskRunState.running, TaskRunState.cancelled, TaskRunState.failed},
    TaskRunState.running: {
        TaskRunState.succeeded,
        TaskRunState.failed,
        TaskRunState.cancelled,
        TaskRunState.timed_out,
        TaskRunState.queued,  # a lost attempt is retried as a new one
    },
}


class InvalidTransition(SimyardError):
    """A state change the transition table does not allow."""


def check_run_transition(current: RunState, new: RunState) -> None:
    """Raise InvalidTransition unless a run may go from ``current`` to ``new``."""
    if new not in RUN_TRANSITIONS.get(current, set()):
        raise InvalidTransition(f"run: {current} -> {new} is not allowed")


def check_task_transition(current: TaskRunState, new: TaskRunState) -> None:
    """Raise InvalidTransition unless a task run may go from ``current`` to ``new``."""
    if new not in TASK_TRANSITIONS.get(current, set()):
        raise InvalidTransition(f"task run: {current} -> {new} is not allowed")
