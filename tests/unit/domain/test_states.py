"""Run and task-run states move only along the allowed transitions."""

from __future__ import annotations

import pytest

from simyard.domain.states import (
    InvalidTransition,
    RunState,
    TaskRunState,
    check_run_transition,
    check_task_transition,
)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (RunState.queued, RunState.running),
        (RunState.queued, RunState.cancelled),
        (RunState.running, RunState.succeeded),
        (RunState.running, RunState.timed_out),
    ],
)
def test_allowed_run_transitions(current: RunState, new: RunState) -> None:
    check_run_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (RunState.succeeded, RunState.running),
        (RunState.failed, RunState.succeeded),
        (RunState.queued, RunState.succeeded),
        (RunState.cancelled, RunState.queued),
    ],
)
def test_forbidden_run_transitions_raise(current: RunState, new: RunState) -> None:
    with pytest.raises(InvalidTransition, match=f"{current} -> {new}"):
        check_run_transition(current, new)


def test_a_lost_attempt_may_be_queued_again_but_a_finished_task_may_not() -> None:
    check_task_transition(TaskRunState.running, TaskRunState.queued)
    with pytest.raises(InvalidTransition):
        check_task_transition(TaskRunState.succeeded, TaskRunState.queued)
    with pytest.raises(InvalidTransition):
        check_task_transition(TaskRunState.pending, TaskRunState.running)


def test_final_and_done_ok() -> None:
    assert not RunState.running.final
    assert RunState.timed_out.final
    assert TaskRunState.cached.done_ok
    assert TaskRunState.skipped.final
    assert not TaskRunState.skipped.done_ok
