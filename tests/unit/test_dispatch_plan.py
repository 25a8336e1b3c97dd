"""The dispatch policy alone: plan(snapshot) and after_events, no database, no server."""

from __future__ import annotations

import datetime as dt

from simyard.dispatch.policy import (
    MAX_ATTEMPTS,
    Candidate,
    Claim,
    FinishRun,
    RecordResult,
    RunView,
    SetTaskState,
    Snapshot,
    StopAttempt,
    TaskView,
    after_events,
    plan,
)
from simyard.domain.states import RunState, TaskRunState
from simyard.engine.result import FailureKind, TaskOutcome
from simyard.engine.workorder import WorkResult
from simyard.executors.base import EventKind, ExecutorEvent

S = TaskRunState


def task(id: int, name: str, state: TaskRunState, *, run: int = 1, needs: tuple[str, ...] = (),
         attempt: int = 0, silent_for: float = 0.0, retries: int = 0) -> TaskView:  # fmt: skip
    return TaskView(id, run, name, state, attempt, needs, None, silent_for, retries)


def chain(run: int, *states: TaskRunState, cancel: bool = False, user: int = 1) -> RunView:
    """A run whose tasks t0 -> t1 -> ... each need the one before."""
    tasks = tuple(
        task(run * 10 + i, f"t{i}", s, run=run, needs=(f"t{i - 1}",) if i else (),
             attempt=1 if s is not S.pending and s is not S.queued else 0)
        for i, s in enumerate(states)
    )  # fmt: skip
    state = RunState.running if any(s is not S.pending and s is not S.queued for s in states) \
        else RunState.queued  # fmt: skip
    return RunView(run, user, state, cancel, tasks)


def changes(actions: list[object]) -> dict[int, TaskRunState]:
    return {a.task_id: a.new for a in actions if isinstance(a, SetTaskState)}


def test_a_failed_task_skips_everything_downstream_and_the_run_fails() -> None:
    run = chain(1, S.succeeded, S.failed, S.pending, S.pending)
    actions = plan(Snapshot(runs=(run,), handed_over=frozenset()))
    assert changes(actions) == {12: S.skipped, 13: S.skipped}
    assert FinishRun(1, RunState.failed, None, "t1", None) in actions


def test_a_task_whose_upstream_succeeded_is_queued_and_claimed_in_the_same_pass() -> None:
    run = chain(1, S.succeeded, S.pending)
    queued = task(11, "t1", S.pending, needs=("t0",))
    snapshot = Snapshot(runs=(run,), candidates=(Candidate(queued, 1, False),), free_slots=1)
    actions = plan(snapshot)
    assert changes(actions) == {11: S.queued}
    assert Claim(11, 1, 0) in actions


def test_claims_fill_free_slots_oldest_first_and_respect_quotas() -> None:
    waiting = [Candidate(task(i, "t0", S.queued, run=i), user, False)
               for i, user in ((1, 7), (2, 7), (3, 8), (4, 9))]  # fmt: skip
    actions = plan(Snapshot(candidates=tuple(waiting), quota_room={7: 1}, free_slots=3))
    assert [a.task_id for a in actions if isinstance(a, Claim)] == [1, 3, 4]
    none = plan(Snapshot(candidates=tuple(waiting), quota_room={7: 0, 8: 0, 9: 0}, free_slots=3))
    assert not [a for a in none if isinstance(a, Claim)]


def test_a_run_asked_to_stop_cancels_waiting_tasks_and_stops_running_ones_once() -> None:
    run = chain(1, S.running, S.pending, cancel=True)
    actions = plan(Snapshot(runs=(run,), handed_over=frozenset({(10, 1)})))
    assert changes(actions) == {11: S.cancelled}
    assert StopAttempt(10, 1) in actions
    again = plan(Snapshot(runs=(run,), handed_over=frozenset({(10, 1)}),
                          stop_sent=frozenset({(10, 1)})))  # fmt: skip
    assert StopAttempt(10, 1) not in again


def test_a_queued_task_of_a_cancelled_run_is_never_claimed() -> None:
    run = chain(1, S.queued, cancel=True)
    candidate = Candidate(run.tasks[0], 1, True)
    actions = plan(Snapshot(runs=(run,), candidates=(candidate,), free_slots=2))
    assert not [a for a in actions if isinstance(a, Claim)]
    assert FinishRun(1, RunState.cancelled, FailureKind.cancelled, None,
                     "The run was cancelled.") in actions  # fmt: skip


def test_a_silent_attempt_is_stopped_and_retried_with_or_without_a_worker() -> None:
    silent = task(10, "t0", S.running, attempt=1, silent_for=61)
    run = RunView(1, 1, RunState.running, False, (silent,))
    actions = plan(Snapshot(runs=(run,), handed_over=frozenset({(10, 1)}), lost_after=60))
    assert StopAttempt(10, 1) in actions
    assert changes(actions) == {10: S.queued}


def test_a_lost_attempt_is_retried_up_to_the_limit_then_fails_as_infrastructure() -> None:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        lost = task(10, "t0", S.running, attempt=attempt)
        event = ExecutorEvent(10, attempt, EventKind.lost, {"reason": "worker died"})
        (change,) = [
            a for a in after_events([event], {10: lost}, {}) if isinstance(a, SetTaskState)
        ]
        if attempt < MAX_ATTEMPTS:
            assert change.new is S.queued
            assert change.event == "task.retry"
        else:
            assert change.new is S.failed
            assert change.failure_kind == FailureKind.infrastructure
            assert change.failure_summary is not None
            assert "after 3 attempts" in change.failure_summary


def test_a_running_task_no_executor_of_ours_runs_is_lost_with_the_terms_reason() -> None:
    orphan = task(10, "t0", S.running, attempt=1)
    run = RunView(1, 1, RunState.running, False, (orphan,))
    actions = plan(Snapshot(runs=(run,), orphan_reason="server restarted"))
    (retry,) = [a for a in actions if isinstance(a, SetTaskState)]
    assert (retry.new, retry.reason) == (S.queued, "server restarted")


def test_a_refused_attempt_fails_at_once_without_retry() -> None:
    running = task(10, "t0", S.running, attempt=1)
    event = ExecutorEvent(
        10, 1, EventKind.refused, {"reason": "bad archive", "kind": "invalid_input"}
    )
    (change,) = [a for a in after_events([event], {10: running}, {}) if isinstance(a, SetTaskState)]
    assert change.new is S.failed
    assert change.failure_kind == "invalid_input"


def test_a_stale_attempts_result_is_refused() -> None:
    now = dt.datetime.now(dt.UTC)
    result = WorkResult(task_run_id=10, attempt=1, outcome=TaskOutcome.succeeded, started_at=now,
                        finished_at=now, exit_code=0)  # fmt: skip
    current = task(10, "t0", S.running, attempt=2)
    event = ExecutorEvent(10, 1, EventKind.result, {"result": result})
    actions = after_events([event], {10: current}, {})
    assert not [a for a in actions if isinstance(a, RecordResult | SetTaskState)]


def test_a_model_error_is_retried_while_the_manifest_allows() -> None:
    now = dt.datetime.now(dt.UTC)
    failed = WorkResult(task_run_id=10, attempt=1, outcome=TaskOutcome.failed, started_at=now,
                        finished_at=now, exit_code=2,
                        failure_kind=FailureKind.model_error)  # fmt: skip
    event = ExecutorEvent(10, 1, EventKind.result, {"result": failed})
    (retry,) = [a for a in after_events([event], {10: task(10, "t0", S.running, attempt=1,
                retries=1)}, {}) if isinstance(a, RecordResult)]  # fmt: skip
    assert retry.change.new is S.queued
    (final,) = [a for a in after_events([event], {10: task(10, "t0", S.running, attempt=1)},
                {1: True}) if isinstance(a, RecordResult)]  # fmt: skip
    assert final.change.new is S.failed


def test_a_run_whose_tasks_all_succeeded_or_were_cached_succeeds() -> None:
    run = chain(1, S.cached, S.succeeded)
    assert FinishRun(1, RunState.succeeded) in plan(Snapshot(runs=(run,)))
    timed_out = chain(2, S.succeeded, S.timed_out)
    assert FinishRun(2, RunState.timed_out, None, "t1", None) in plan(Snapshot(runs=(timed_out,)))
