"""The dispatch policy: named rules over a plain snapshot, deciding actions; no I/O.

``plan(snapshot)`` runs :data:`RULES` in order (the way Prefect's orchestration policy
is a list of named rules, and Dask's ``SpecCluster._correct_state`` is a difference
between desired and observed). Each rule reads the snapshot and the plan so far —
later rules see what earlier ones decided, e.g. a task queued this pass may be claimed
in the same pass — and adds actions. What the executor reports is decided the same
way by :func:`after_events`. Applying the actions (one short transaction) and acting
on the executor happen elsewhere (``apply.py``, ``dispatcher.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simyard import taskgraph
from simyard.domain.states import RunState, TaskRunState
from simyard.engine.result import FailureKind, TaskOutcome
from simyard.engine.workorder import WorkResult
from simyard.executors.base import EventKind, ExecutorEvent
from simyard.taskgraph import Readiness

MAX_ATTEMPTS = 3  # tries of a task run lost to infrastructure before it fails

Attempt = tuple[int, int]  # (task_run_id, attempt)


# ---------------------------------------------------------------------- the snapshot


@dataclass(frozen=True)
class TaskView:
    """A task run as the policy sees it."""

    id: int
    run_id: int
    name: str
    state: TaskRunState
    attempt: int = 0
    needs: tuple[str, ...] = ()
    worker: str | None = None
    silent_for: float = 0.0  # seconds since its last heartbeat (running task runs)
    retries: int = 0  # model-error retries the manifest allows

    @property
    def key(self) -> Attempt:
        return (self.id, self.attempt)


@dataclass(frozen=True)
class RunView:
    """A run that may need work, with all its task runs in graph order."""

    id: int
    user_id: int
    state: RunState
    cancel_requested: bool
    tasks: tuple[TaskView, ...]


@dataclass(frozen=True)
class Candidate:
    """A queued task run that may be claimed, oldest first."""

    task: TaskView
    user_id: int
    cancel_requested: bool


@dataclass(frozen=True)
class Snapshot:
    """Everything one dispatch pass decides from; read in one short transaction."""

    runs: tuple[RunView, ...] = ()
    candidates: tuple[Candidate, ...] = ()
    quota_room: Mapping[int, int] = field(default_factory=dict)  # user -> tasks that may start
    free_slots: int = 0
    handed_over: frozenset[Attempt] = frozenset()  # attempts the executor runs for us
    stop_sent: frozenset[Attempt] = frozenset()
    lost_after: float = 60.0
    # Why a running task run no executor of ours runs is lost: on the first pass of a
    # term, every running one is (the previous dispatcher is gone).
    orphan_reason: str = "no executor of the dispatching server runs it"


# ---------------------------------------------------------------------- actions


@dataclass(frozen=True)
class SetTaskState:
    """Move a task run that is still ``expect`` (at ``attempt``) to ``new``; add ``event``."""

    task_id: int
    run_id: int
    attempt: int
    expect: TaskRunState
    new: TaskRunState
    event: str
    reason: str | None = None
    failure_kind: str | None = None
    failure_summary: str | None = None


@dataclass(frozen=True)
class Claim:
    """Start attempt ``attempt + 1`` of a queued task run; the executor hears after commit."""

    task_id: int
    run_id: int
    attempt: int


@dataclass(frozen=True)
class StopAttempt:
    """Tell the executor to stop an attempt's process tree (no database write)."""

    task_id: int
    attempt: int


@dataclass(frozen=True)
class Forget:
    """The executor no longer runs this attempt (it ended or was refused)."""

    task_id: int
    attempt: int


@dataclass(frozen=True)
class RecordResult:
    """Store an attempt's files and exit, then move it as ``change`` says."""

    change: SetTaskState
    result: WorkResult


@dataclass(frozen=True)
class MarkStarted:
    task_id: int
    run_id: int
    attempt: int
    worker: str | None


@dataclass(frozen=True)
class Heartbeat:
    task_ids: frozenset[int]
    run_ids: frozenset[int]  # theirs: locked first, as every write locks


@dataclass(frozen=True)
class FinishRun:
    """A run whose task runs all ended: its final state and the reason shown."""

    run_id: int
    final: RunState
    error_kind: str | None = None
    error_task: str | None = None
    error_summary: str | None = None


Action = (
    SetTaskState | Claim | StopAttempt | Forget | RecordResult | MarkStarted | Heartbeat | FinishRun
)


@dataclass
class Plan:
    """The actions decided so far, and the task states they lead to (for later rules)."""

    snapshot: Snapshot
    actions: list[Action] = field(default_factory=list)
    states: dict[int, TaskRunState] = field(default_factory=dict)

    def state_of(self, task: TaskView) -> TaskRunState:
        return self.states.get(task.id, task.state)

    def add(self, action: Action) -> None:
        self.actions.append(action)
        if isinstance(action, SetTaskState):
            self.states[action.task_id] = action.new
        elif isinstance(action, Claim):
            self.states[action.task_id] = TaskRunState.running

    def of(self, kind: type[Any]) -> list[Any]:
        return [a for a in self.actions if isinstance(a, kind)]


Rule = Callable[[Plan], None]


# ---------------------------------------------------------------------- outcome rules


def _from_running(task: TaskView, new: TaskRunState, event: str, **kw: Any) -> SetTaskState:
    return SetTaskState(task.id, task.run_id, task.attempt, TaskRunState.running, new, event, **kw)


def after_lost(task: TaskView, reason: str, *, cancel_requested: bool) -> SetTaskState:
    """An attempt died without a result: cancelled, retried, or failed after MAX_ATTEMPTS."""
    if cancel_requested:
        return _from_running(task, TaskRunState.cancelled, "task.cancelled")
    if task.attempt < MAX_ATTEMPTS:
        return _from_running(task, TaskRunState.queued, "task.retry", reason=reason)
    return _from_running(
        task,
        TaskRunState.failed,
        "task.failed",
        reason=reason,
        failure_kind=FailureKind.infrastructure,
        failure_summary=(
            f"Task {task.name!r} failed: the platform failed (not the model). "
            f"{reason} (after {task.attempt} attempts)"
        ),
    )


def after_refused(task: TaskView, reason: str, kind: str) -> SetTaskState:
    """An attempt that can never run (a Refusal): failed at once, never retried."""
    return _from_running(
        task,
        TaskRunState.failed,
        "task.failed",
        reason=reason,
        failure_kind=kind,
        failure_summary=f"Task {task.name!r} could not start: {reason}",
    )


def after_result(task: TaskView, result: WorkResult, *, cancel_requested: bool) -> SetTaskState:
    """A model error is retried while the manifest's ``retries`` allow; else the outcome."""
    if (
        result.outcome is TaskOutcome.failed
        and result.failure_kind == FailureKind.model_error
        and task.attempt <= task.retries
        and not cancel_requested
    ):
        return _from_running(task, TaskRunState.queued, "task.retry", reason=result.failure_reason)
    new = TaskRunState(result.outcome.value)
    return _from_running(task, new, f"task.{new}")


def after_events(
    events: Iterable[ExecutorEvent],
    tasks: Mapping[int, TaskView],
    cancel_requested: Mapping[int, bool],
) -> list[Action]:
    """What executor events mean for the database; events of stale attempts are refused.

    ``tasks`` holds the task runs the events name, as they are now; an event of an
    attempt that is not the task run's current running one changes nothing.
    """
    actions: list[Action] = []
    beats: dict[int, int] = {}  # task run -> its run
    for event in events:
        task = tasks.get(event.task_run_id)
        current = (
            task is not None
            and task.attempt == event.attempt
            and task.state is TaskRunState.running
        )
        if event.kind in (EventKind.result, EventKind.lost, EventKind.refused):
            actions.append(Forget(event.task_run_id, event.attempt))
        if not current or task is None:
            continue  # a late word from an attempt that is no longer current
        beats[task.id] = task.run_id
        cancelled = cancel_requested.get(task.run_id, False)
        if event.kind is EventKind.started:
            worker = event.payload.get("worker")
            actions.append(MarkStarted(task.id, task.run_id, task.attempt, worker))
        elif event.kind is EventKind.result:
            result: WorkResult = event.payload["result"]
            actions.append(
                RecordResult(after_result(task, result, cancel_requested=cancelled), result)
            )
        elif event.kind is EventKind.lost:
            reason = event.payload.get("reason", "worker lost")
            actions.append(after_lost(task, reason, cancel_requested=cancelled))
        elif event.kind is EventKind.refused:
            reason = event.payload.get("reason", "refused")
            kind = event.payload.get("kind", FailureKind.invalid_input)
            actions.append(after_refused(task, reason, kind))
    if beats:
        actions.append(Heartbeat(frozenset(beats), frozenset(beats.values())))
    return actions


# ---------------------------------------------------------------------- pass rules


def stop_cancelled_runs(plan: Plan) -> None:
    """A run asked to stop: its waiting task runs are cancelled, its running ones stopped."""
    for run in plan.snapshot.runs:
        if not run.cancel_requested:
            continue
        for task in run.tasks:
            state = plan.state_of(task)
            if state in (TaskRunState.pending, TaskRunState.queued):
                plan.add(
                    SetTaskState(
                        task.id,
                        run.id,
                        task.attempt,
                        state,
                        TaskRunState.cancelled,
                        "task.cancelled",
                    )
                )
            elif state is TaskRunState.running and task.key not in plan.snapshot.stop_sent:
                plan.add(StopAttempt(task.id, task.attempt))


def lose_orphaned_attempts(plan: Plan) -> None:
    """A running task run that no executor of ours runs is lost (retried or failed)."""
    for run in plan.snapshot.runs:
        for task in run.tasks:
            if plan.state_of(task) is not TaskRunState.running:
                continue
            if task.key not in plan.snapshot.handed_over:
                plan.add(StopAttempt(task.id, task.attempt))  # a remote worker may still run it
                reason = plan.snapshot.orphan_reason
                plan.add(after_lost(task, reason, cancel_requested=run.cancel_requested))


def lose_silent_attempts(plan: Plan) -> None:
    """A running task run silent past ``lost_after`` (with a worker or not) is lost."""
    limit = plan.snapshot.lost_after
    for run in plan.snapshot.runs:
        for task in run.tasks:
            if plan.state_of(task) is not TaskRunState.running or task.silent_for <= limit:
                continue
            plan.add(StopAttempt(task.id, task.attempt))
            plan.add(Forget(task.id, task.attempt))
            reason = f"no heartbeat for {limit:g} s"
            plan.add(after_lost(task, reason, cancel_requested=run.cancel_requested))


def advance_graph(plan: Plan) -> None:
    """A pending task run is queued once all it needs ended well, skipped once one did not."""
    for run in plan.snapshot.runs:
        if run.cancel_requested:
            continue
        by_name = {t.name: t for t in run.tasks}
        for task in run.tasks:  # graph order: a skip reaches every task downstream at once
            if plan.state_of(task) is not TaskRunState.pending:
                continue
            ready = taskgraph.readiness(
                plan.state_of(by_name[n]).standing for n in task.needs if n in by_name
            )
            if ready is Readiness.skip:
                plan.add(
                    SetTaskState(
                        task.id,
                        run.id,
                        task.attempt,
                        TaskRunState.pending,
                        TaskRunState.skipped,
                        "task.skipped",
                    )
                )
            elif ready is Readiness.start:
                plan.add(
                    SetTaskState(
                        task.id,
                        run.id,
                        task.attempt,
                        TaskRunState.pending,
                        TaskRunState.queued,
                        "task.queued",
                    )
                )


def claim_within_slots_and_quotas(plan: Plan) -> None:
    """Claim the oldest queued task runs for the free slots, each user within their quota."""
    snapshot = plan.snapshot
    free = snapshot.free_slots - len(
        [a for a in plan.of(Forget) if (a.task_id, a.attempt) in snapshot.handed_over]
    )
    room = dict(snapshot.quota_room)
    queued_now = [  # queued by an earlier rule of this pass: the newest in the queue
        Candidate(t, run.user_id, run.cancel_requested)
        for run in snapshot.runs
        for t in run.tasks
        if t.state is not TaskRunState.queued and plan.state_of(t) is TaskRunState.queued
    ]
    for candidate in (*snapshot.candidates, *queued_now):
        if free <= 0:
            return
        task = candidate.task
        if plan.state_of(task) is not TaskRunState.queued or candidate.cancel_requested:
            continue
        if candidate.user_id in room:
            if room[candidate.user_id] <= 0:
                continue  # this user's quota is full: it waits, still queued
            room[candidate.user_id] -= 1
        plan.add(Claim(task.id, task.run_id, task.attempt))
        free -= 1


def finish_ended_runs(plan: Plan) -> None:
    """A run whose task runs all ended gets its final state and the first failure's reason."""
    for run in plan.snapshot.runs:
        states = [plan.state_of(t) for t in run.tasks]
        if not run.tasks or not all(s.final for s in states):
            continue
        failed = next(
            (
                t
                for t, s in zip(run.tasks, states, strict=True)
                if s in (TaskRunState.failed, TaskRunState.timed_out)
            ),
            None,
        )
        failed_state = plan.state_of(failed) if failed is not None else None
        if all(s.done_ok for s in states):
            plan.add(FinishRun(run.id, RunState.succeeded))
        elif run.cancel_requested or (failed is None and TaskRunState.cancelled in states):
            plan.add(
                FinishRun(
                    run.id,
                    RunState.cancelled,
                    FailureKind.cancelled,
                    None,
                    "The run was cancelled.",
                )
            )
        else:
            assert failed is not None
            final = (
                RunState.timed_out if failed_state is TaskRunState.timed_out else RunState.failed
            )
            plan.add(FinishRun(run.id, final, None, failed.name, None))


RULES: list[Rule] = [
    stop_cancelled_runs,
    lose_silent_attempts,
    lose_orphaned_attempts,
    advance_graph,
    claim_within_slots_and_quotas,
    finish_ended_runs,
]


def plan(snapshot: Snapshot, rules: Iterable[Rule] = RULES) -> list[Action]:
    """The actions one dispatch pass takes, from the snapshot alone."""
    decided = Plan(snapshot)
    for rule in rules:
        rule(decided)
    return decided.actions
