"""Apply the policy's actions in the caller's (one, short) transaction; no I/O here.

Every action names the state it expects; one whose row moved on meanwhile (an API
cancel, a late event) is dropped and the next pass decides again. Rows are locked in
one order everywhere — runs by id, then their task runs by id, the order
``cancel_run`` uses too — so a cancel racing a claim waits instead of deadlocking,
and sees the claim. What the executor must be told is returned, to act on after
the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

from simyard.dispatch.policy import (
    Action,
    Attempt,
    Claim,
    FinishRun,
    Forget,
    Heartbeat,
    MarkStarted,
    RecordResult,
    SetTaskState,
    StopAttempt,
)
from simyard.domain.registry import image_digest_of, manifest_of, version_of
from simyard.domain.runs import event_row
from simyard.domain.states import RunState, TaskRunState
from simyard.domain.tables import Event, Run, StoredFile, TaskRun, utcnow
from simyard.domain.usage import add_attempt_usage
from simyard.engine.result import FailureKind
from simyard.engine.workorder import StoredOutput, WorkOrder, WorkResult
from simyard.manifest.schema import Manifest

log = logging.getLogger("simyard.dispatch")


@dataclass
class Applied:
    """What the executor must hear once the transaction has committed."""

    orders: list[WorkOrder] = field(default_factory=list)
    stops: list[Attempt] = field(default_factory=list)
    forgotten: list[Attempt] = field(default_factory=list)
    dropped: int = 0  # actions whose rows had moved on

    def then(self, other: Applied) -> Applied:
        """This, then ``other`` (applied later in the same or a following transaction)."""
        return Applied(
            [*self.orders, *other.orders],
            [*self.stops, *other.stops],
            [*self.forgotten, *other.forgotten],
            self.dropped + other.dropped,
        )


# Built once, values bound at each execution (see snapshot.py).
_LOCK_RUNS = (
    select(Run)
    .where(Run.id.in_(bindparam("ids", expanding=True)))
    .order_by(Run.id)
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)
_LOCK_TASKS = (
    select(TaskRun)
    .where(TaskRun.id.in_(bindparam("ids", expanding=True)))
    .order_by(TaskRun.id)
    .with_for_update()
    .execution_options(populate_existing=True)
)
_TASKS_OF_RUN = select(TaskRun).where(TaskRun.run_id == bindparam("run_id")).order_by(TaskRun.id)
_FILES_TABLE = cast(Table, StoredFile.__table__)
_EVENTS_TABLE = cast(Table, Event.__table__)
# A run's inputs and what its tasks produced, for a work order.
_FILES_FOR_ORDER = (
    select(StoredFile.kind, StoredFile.slot, StoredFile.path, StoredFile.key, TaskRun.name)
    .outerjoin(TaskRun, TaskRun.id == StoredFile.task_run_id)
    .where(StoredFile.run_id == bindparam("run_id"), StoredFile.kind.in_(["input", "output"]))
    .order_by(StoredFile.id)
)


def lock_runs_then_tasks(
    db: Session, run_ids: Iterable[int], task_ids: Iterable[int]
) -> tuple[dict[int, Run], dict[int, TaskRun]]:
    """Lock (and read fresh) runs by id, then task runs by id: the one lock order."""
    runs = {r.id: r for r in db.scalars(_LOCK_RUNS, {"ids": sorted(set(run_ids))})}
    tasks = {t.id: t for t in db.scalars(_LOCK_TASKS, {"ids": sorted(set(task_ids))})}
    return runs, tasks


def _task_ids(action: Action) -> list[int]:
    if isinstance(action, Heartbeat):
        return list(action.task_ids)
    if isinstance(action, RecordResult):
        return [action.change.task_id]
    if isinstance(action, SetTaskState | Claim | MarkStarted):
        return [action.task_id]
    return []


class _Applier:
    def __init__(self, db: Session, metrics: Mapping[int, dict[str, Any] | None]) -> None:
        self.db = db
        self.metrics = metrics
        self.out = Applied()
        self.manifests: dict[int, Manifest] = {}
        self.runs: dict[int, Run] = {}
        self.tasks: dict[int, TaskRun] = {}
        self.events: list[dict[str, Any]] = []  # the outbox's rows, written in one statement
        self.files: list[dict[str, Any]] = []  # stored files' rows, the same way

    def manifest(self, run: Run) -> Manifest:
        if run.model_version_id not in self.manifests:
            self.manifests[run.model_version_id] = manifest_of(version_of(self.db, run))
        return self.manifests[run.model_version_id]

    def current(self, task_id: int, attempt: int, expect: TaskRunState) -> TaskRun | None:
        task_run = self.tasks.get(task_id)
        if task_run is None or task_run.attempt != attempt or task_run.state != expect:
            self.out.dropped += 1
            return None
        return task_run

    def run(self, actions: list[Action]) -> Applied:
        task_ids = [i for a in actions for i in _task_ids(a)]
        run_ids = {
            a.run_id
            for a in actions
            if isinstance(a, SetTaskState | Claim | FinishRun | MarkStarted)
        }
        run_ids |= {a.change.run_id for a in actions if isinstance(a, RecordResult)}
        run_ids |= {i for a in actions if isinstance(a, Heartbeat) for i in a.run_ids}
        self.runs, self.tasks = lock_runs_then_tasks(self.db, run_ids, task_ids)
        with self.db.no_autoflush:  # one flush at the end, not one before every query
            self._apply_each(actions)
        self.db.flush()
        # New rows in one statement each, in the order they came; nothing here needs their
        # ids or objects: a plain executemany of the table, not the ORM's bulk insert (a
        # seventh of applying a result and a claim went there).
        for table, rows in ((_FILES_TABLE, self.files), (_EVENTS_TABLE, self.events)):
            if rows:
                self.db.execute(insert(table), rows)
        return self.out

    def record_event(
        self, kind: str, run: Run, task_run: TaskRun | None = None, **data: Any
    ) -> None:
        self.events.append(event_row(kind, run, task_run, **data))

    def _apply_each(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SetTaskState):
                self.set_task_state(action)
            elif isinstance(action, Claim):
                self.claim(action)
            elif isinstance(action, RecordResult):
                self.record_result(action)
            elif isinstance(action, MarkStarted):
                self.mark_started(action)
            elif isinstance(action, Heartbeat):
                self.heartbeat(action)
            elif isinstance(action, FinishRun):
                self.finish(action)
            elif isinstance(action, StopAttempt):
                self.out.stops.append((action.task_id, action.attempt))
            elif isinstance(action, Forget):
                self.out.forgotten.append((action.task_id, action.attempt))

    # -------------------------------------------------------------- task runs

    def set_task_state(self, action: SetTaskState, extra: WorkResult | None = None) -> None:
        task_run = self.current(action.task_id, action.attempt, action.expect)
        run = self.runs.get(action.run_id)
        if task_run is None or run is None:
            return
        if extra is not None:
            self.store_result(run, task_run, extra)
        if action.failure_kind is not None:
            task_run.failure_kind = action.failure_kind
            task_run.failure_reason = action.reason
            task_run.failure_summary = action.failure_summary
        if task_run.state == TaskRunState.running and action.new is not TaskRunState.running:
            add_attempt_usage(task_run, self.manifest(run), extra)  # the attempt ends
        task_run.set_state(action.new)
        data = {"reason": action.reason} if action.event == "task.retry" else {}
        self.record_event(action.event, run, task_run, **data)

    def record_result(self, action: RecordResult) -> None:
        self.set_task_state(action.change, extra=action.result)

    def store_result(self, run: Run, task_run: TaskRun, result: WorkResult) -> None:
        for kind, files in (("output", result.outputs), ("diagnostic", result.diagnostics)):
            for out in files:
                self.add_file(run, task_run, kind, out)
        if result.log is not None:
            self.add_file(run, task_run, "log", result.log)
        task_run.exit_code = result.exit_code
        task_run.signal = result.signal
        task_run.warnings = result.warnings or None
        task_run.progress = result.progress
        task_run.failure_kind = result.failure_kind
        task_run.failure_reason = result.failure_reason
        task_run.failure_summary = result.failure_summary
        task_run.metrics = result.metrics

    def add_file(self, run: Run, task_run: TaskRun, kind: str, out: StoredOutput) -> None:
        self.files.append(
            {
                "run_id": run.id,
                "task_run_id": task_run.id,
                "kind": kind,
                "path": out.path,
                "key": out.key,
                "size": out.size,
                "sha256": out.sha256,
            }
        )

    def mark_started(self, action: MarkStarted) -> None:
        task_run = self.current(action.task_id, action.attempt, TaskRunState.running)
        if task_run is not None:
            task_run.worker = action.worker
            task_run.heartbeat_at = utcnow()

    def heartbeat(self, action: Heartbeat) -> None:
        now = utcnow()
        for task_id in action.task_ids:
            task_run = self.tasks.get(task_id)
            if task_run is not None and task_run.state == TaskRunState.running:
                task_run.heartbeat_at = now

    def claim(self, action: Claim) -> None:
        task_run = self.current(action.task_id, action.attempt, TaskRunState.queued)
        run = self.runs.get(action.run_id)
        if task_run is None or run is None:
            return
        if run.cancel_requested:  # asked to stop after the snapshot: the next pass cancels it
            self.out.dropped += 1
            return
        task_run.set_state(TaskRunState.running)
        task_run.attempt += 1
        task_run.progress = None
        task_run.worker = None
        if run.state == RunState.queued:
            run.set_state(RunState.running)
            self.record_event("run.running", run)
        self.record_event("task.running", run, task_run)
        self.out.orders.append(self.work_order(run, task_run))

    def work_order(self, run: Run, task_run: TaskRun) -> WorkOrder:
        version = version_of(self.db, run)
        image = image_digest_of(version, task_run.name)
        task_run.image_digest = image  # provenance: the image this task run runs in
        manifest = self.manifest(run)
        inputs: dict[str, str] = {}
        upstream: dict[str, str] = {}
        ancestors = set(manifest.ancestors(task_run.name))
        # One read for the run's inputs and what its tasks produced; nothing in it depends
        # on this transaction's pending writes, so they are not flushed for it. A task with
        # nothing upstream of a model without inputs has neither: no read.
        files: list[Any] = []
        if manifest.inputs or ancestors:
            with self.db.no_autoflush:
                files = list(self.db.execute(_FILES_FOR_ORDER, {"run_id": run.id}).all())
        for kind, slot, path, key, producer in files:
            if kind == "input" and slot:
                inputs[slot] = key
            elif kind == "output" and producer in ancestors:
                upstream[path] = key
        return WorkOrder(
            run_id=run.id,
            task_run_id=task_run.id,
            task=task_run.name,
            attempt=task_run.attempt,
            manifest=manifest,
            bundle_key=version.bundle_key,
            bundle_hash=version.content_hash,
            params=dict(run.params),
            inputs=inputs,
            upstream=upstream,
            parameter_file=run.parameter_file,
            image=image,
        )

    # -------------------------------------------------------------- runs

    def finish(self, action: FinishRun) -> None:
        run = self.runs.get(action.run_id)
        if run is None or RunState(run.state).final:
            self.out.dropped += 1
            return
        task_runs = list(self.db.scalars(_TASKS_OF_RUN, {"run_id": run.id}))
        if not task_runs or not all(TaskRunState(t.state).final for t in task_runs):
            self.out.dropped += 1
            return
        if run.state == RunState.queued and action.final is not RunState.cancelled:
            run.set_state(RunState.running)
        if action.final is RunState.cancelled:
            run.error_kind = action.error_kind or FailureKind.cancelled
            run.error_summary = action.error_summary
        elif action.error_task is not None:
            failed = next((t for t in task_runs if t.name == action.error_task), None)
            if failed is not None:
                run.error_kind = failed.failure_kind
                run.error_task = failed.name
                run.error_summary = failed.failure_summary
        run.metrics = self.metrics.get(run.id)
        run.set_state(action.final)
        self.record_event(f"run.{action.final}", run)


def apply_actions(
    db: Session, actions: list[Action], metrics: Mapping[int, dict[str, Any] | None] | None = None
) -> Applied:
    """Apply ``actions`` in ``db``'s open transaction; the caller fences and commits."""
    return _Applier(db, metrics or {}).run(actions)


def write_progress(db: Session, updates: Mapping[int, float]) -> None:
    """The latest percent done of running task runs (batched, a few times a second)."""
    for task_run in db.scalars(select(TaskRun).where(TaskRun.id.in_(list(updates)))):
        if task_run.state == TaskRunState.running:
            task_run.progress = updates[task_run.id]
