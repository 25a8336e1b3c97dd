"""The dispatcher: desired state in the database vs. what the executor reports.

One loop, in one thread of one server: it turns executor events into database state,
queues task runs whose upstream succeeded (skips those whose upstream did not), claims
queued task runs up to the executor's free slots (the claim, with its attempt number,
is committed before the executor hears of it), passes cancellations on, and finishes
runs whose task runs have all ended. On start it reconciles: attempts that were
running when the server died are retried, or failed with the reason "server restarted".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from simyard.domain.lease import acquire_lease, release_lease
from simyard.domain.registry import manifest_of
from simyard.domain.runs import record_event
from simyard.domain.states import RunState, TaskRunState
from simyard.domain.tables import Run, StoredFile, TaskRun, User, utcnow
from simyard.engine.result import FailureKind, TaskOutcome
from simyard.engine.workorder import StoredOutput, WorkOrder, WorkResult
from simyard.executors.base import EventKind, Executor, ExecutorEvent
from simyard.manifest.results import read_metrics
from simyard.storage.base import StorageError, Store

log = logging.getLogger("simyard.dispatch")

MAX_ATTEMPTS = 3  # tries of a task run lost to infrastructure before it fails
IDLE_PASS_SECONDS = 1.0
PROGRESS_WRITE_SECONDS = 0.5


class LiveLogs:
    """Lines of running task runs, appended to one file per attempt for live followers."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)

    def path(self, task_run_id: int, attempt: int) -> Path:
        return self.root / f"{task_run_id}.a{attempt}.log"

    def append(self, task_run_id: int, attempt: int, lines: list[str]) -> None:
        path = self.path(task_run_id, attempt)
        size = path.stat().st_size if path.exists() else 0
        if size >= self.max_bytes:
            return
        data = "".join(line + "\n" for line in lines).encode("utf-8", errors="replace")
        if size + len(data) > self.max_bytes:
            data = data[: self.max_bytes - size] + b"\n[simyard: live log capped here]\n"
        with open(path, "ab") as handle:
            handle.write(data)


class Dispatcher:
    """Runs the reconcile loop in a thread; ``wake()`` makes it look at the database now."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        store: Store,
        executor: Executor,
        live_logs: LiveLogs,
        lost_after: float = 60.0,
        lease_ttl: float = 10.0,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.executor = executor
        self.live_logs = live_logs
        self.lost_after = lost_after
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: set[tuple[int, int]] = set()  # attempts handed to the executor
        self._cancel_sent: set[tuple[int, int]] = set()
        self._progress: dict[int, float] = {}
        self._progress_written = 0.0
        self.lease_ttl = lease_ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leading = threading.Event()
        self._lease_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Dispatch once this server holds the dispatch lease (at once, when it is free)."""
        self._lease_thread = threading.Thread(
            target=self._hold_lease, name="simyard-lease", daemon=True
        )
        self._lease_thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in (self._thread, self._lease_thread):
            if thread is not None:
                thread.join(timeout=30)
        if self.leading.is_set():
            with self.sessions() as db, db.begin():
                release_lease(db, self.holder)
        self.executor.close()

    def _hold_lease(self) -> None:
        """Take the lease when it is free, renew it while leading, stop if it is ever lost."""
        while not self._stop.is_set():
            try:
                with self.sessions() as db, db.begin():
                    held = acquire_lease(db, self.holder, self.lease_ttl)
            except Exception:
                log.exception("dispatch lease check failed")
                held = False
            if held and not self.leading.is_set():
                log.info("this server dispatches now (%s)", self.holder)
                self.reconcile_lost_attempts("server restarted")
                self.leading.set()
                self._thread = threading.Thread(
                    target=self._loop, name="simyard-dispatcher", daemon=True
                )
                self._thread.start()
            elif not held and self.leading.is_set():
                log.error("dispatch lease lost to another server; stopping dispatch")
                self.leading.clear()
            self._stop.wait(self.lease_ttl / 4)

    def wake(self) -> None:
        """Something changed in the database (a run was created or cancelled)."""
        self._dirty.set()

    def _loop(self) -> None:
        last_pass = 0.0
        while not self._stop.is_set() and self.leading.is_set():
            try:
                events = self.executor.poll(timeout=0.005 if self._dirty.is_set() else 0.01)
                if events:
                    self.handle_events(events)
                now = time.monotonic()
                if events or self._dirty.is_set() or now - last_pass > IDLE_PASS_SECONDS:
                    self._dirty.clear()
                    self.dispatch_once()
                    last_pass = now
                if now - self._progress_written > PROGRESS_WRITE_SECONDS:
                    self._write_progress()
            except Exception:  # keep dispatching: one bad row must not stop every run
                log.exception("dispatcher pass failed")
                time.sleep(0.5)

    # ------------------------------------------------------------------ one pass

    def dispatch_once(self) -> None:
        """Queue, skip, cancel, claim and finish, as the database says."""
        with self.sessions() as db, db.begin():
            runs = list(
                db.scalars(
                    select(Run)
                    .where(Run.state.in_([RunState.queued, RunState.running]))
                    .options(selectinload(Run.task_runs), selectinload(Run.model_version))
                    .order_by(Run.id)
                )
            )
            for run in runs:
                self._advance_graph(db, run)
        self._claim_and_submit()
        self._reconcile_silent_attempts()
        with self.sessions() as db, db.begin():
            for run in db.scalars(
                select(Run)
                .where(Run.state.in_([RunState.queued, RunState.running]))
                .options(selectinload(Run.task_runs), selectinload(Run.model_version))
            ):
                self._finish_if_done(db, run)

    def _advance_graph(self, db: Session, run: Run) -> None:
        states = {t.name: TaskRunState(t.state) for t in run.task_runs}
        for task_run in run.task_runs:
            state = TaskRunState(task_run.state)
            if run.cancel_requested and state is TaskRunState.running:
                key = (task_run.id, task_run.attempt)
                if key not in self._cancel_sent:
                    self._cancel_sent.add(key)
                    self.executor.cancel(*key)
            if state is not TaskRunState.pending:
                continue
            needs = [states[n] for n in task_run.needs]
            if run.cancel_requested:
                task_run.set_state(TaskRunState.cancelled)
            elif any(s.final and not s.done_ok for s in needs):
                task_run.set_state(TaskRunState.skipped)
                record_event(db, "task.skipped", run, task_run)
            elif all(s.done_ok for s in needs):
                task_run.set_state(TaskRunState.queued)
                record_event(db, "task.queued", run, task_run)
            states[task_run.name] = TaskRunState(task_run.state)

    def _claim_and_submit(self) -> None:
        free = self.executor.slots - len(self._running)
        if free <= 0:
            return
        orders: list[WorkOrder] = []
        with self.sessions() as db, db.begin():
            room = self._quota_room(db)
            query = (
                select(TaskRun)
                .join(Run, Run.id == TaskRun.run_id)
                .where(TaskRun.state == TaskRunState.queued)
                .order_by(TaskRun.queued_at, TaskRun.id)
                .limit(free)
                .with_for_update(of=TaskRun, skip_locked=True)
            )
            full = [user_id for user_id, left in room.items() if left <= 0]
            if full:
                query = query.where(Run.user_id.not_in(full))
            claimed = list(db.scalars(query))
            for task_run in claimed:
                run = db.get(Run, task_run.run_id)
                assert run is not None
                if run.user_id in room:
                    if room[run.user_id] <= 0:
                        continue  # this turn filled the user's quota; it waits, still queued
                    room[run.user_id] -= 1
                if run.cancel_requested:
                    task_run.set_state(TaskRunState.cancelled)
                    continue
                task_run.set_state(TaskRunState.running)
                task_run.attempt += 1
                task_run.progress = None
                task_run.worker = None
                if run.state == RunState.queued:
                    run.set_state(RunState.running)
                    record_event(db, "run.running", run)
                record_event(db, "task.running", run, task_run)
                orders.append(self._work_order(db, run, task_run))
        for order in orders:
            self._running.add((order.task_run_id, order.attempt))
            try:
                self.executor.submit(order)
            except Exception as exc:  # the executor refused: an infrastructure failure
                log.exception("submit failed")
                self.handle_events(
                    [
                        ExecutorEvent(
                            order.task_run_id, order.attempt, EventKind.lost, {"reason": str(exc)}
                        )
                    ]
                )

    @staticmethod
    def _quota_room(db: Session) -> dict[int, int]:
        """For each user with a quota, how many more of their tasks may start now."""
        quotas = dict(
            db.execute(select(User.id, User.max_running).where(User.max_running.is_not(None)))
            .tuples()
            .all()
        )
        if not quotas:
            return {}
        running = dict(
            db.execute(
                select(Run.user_id, func.count(TaskRun.id))
                .join(Run, Run.id == TaskRun.run_id)
                .where(TaskRun.state == TaskRunState.running, Run.user_id.in_(list(quotas)))
                .group_by(Run.user_id)
            )
            .tuples()
            .all()
        )
        return {user: (limit or 0) - running.get(user, 0) for user, limit in quotas.items()}

    def _work_order(self, db: Session, run: Run, task_run: TaskRun) -> WorkOrder:
        version = run.model_version
        manifest = manifest_of(version)
        inputs = {
            f.slot: f.key
            for f in db.scalars(
                select(StoredFile).where(StoredFile.run_id == run.id, StoredFile.kind == "input")
            )
            if f.slot
        }
        upstream: dict[str, str] = {}
        by_name = {t.name: t for t in run.task_runs}
        for name in manifest.ancestors(task_run.name):
            for f in db.scalars(
                select(StoredFile).where(
                    StoredFile.task_run_id == by_name[name].id, StoredFile.kind == "output"
                )
            ):
                upstream[f.path] = f.key
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
        )

    def _finish_if_done(self, db: Session, run: Run) -> None:
        task_runs = run.task_runs
        if not task_runs or not all(TaskRunState(t.state).final for t in task_runs):
            return
        states = [TaskRunState(t.state) for t in task_runs]
        failed = next(
            (
                t
                for t in task_runs
                if TaskRunState(t.state) in (TaskRunState.failed, TaskRunState.timed_out)
            ),
            None,
        )
        if all(s.done_ok for s in states):
            final = RunState.succeeded
        elif run.cancel_requested or (failed is None and TaskRunState.cancelled in states):
            final = RunState.cancelled
        elif failed is not None and failed.state == TaskRunState.timed_out:
            final = RunState.timed_out
        else:
            final = RunState.failed
        if run.state == RunState.queued and final is not RunState.cancelled:
            run.set_state(RunState.running)
        if final is RunState.cancelled:
            run.error_kind = FailureKind.cancelled
            run.error_summary = "The run was cancelled."
        elif failed is not None:
            run.error_kind = failed.failure_kind
            run.error_task = failed.name
            run.error_summary = failed.failure_summary
        run.metrics = self._metrics(db, run)
        run.set_state(final)
        record_event(db, f"run.{final}", run)

    def _metrics(self, db: Session, run: Run) -> dict[str, Any] | None:
        manifest = manifest_of(run.model_version)
        if not manifest.results.metrics:
            return None
        files = db.scalars(
            select(StoredFile).where(
                StoredFile.run_id == run.id, StoredFile.kind.in_(["output", "log"])
            )
        ).all()
        by_task = {t.id: t.name for t in run.task_runs}
        wanted = {m.file for m in manifest.results.metrics.values() if m.file}
        wanted_logs = {m.log for m in manifest.results.metrics.values() if m.log}
        local: dict[str, Path] = {}
        logs: dict[str, Path] = {}
        with contextlib.suppress(StorageError, OSError):
            for f in files:
                if f.kind == "output" and f.path in wanted:
                    local[f.path] = self._local(f.key)
                elif f.kind == "log" and by_task.get(f.task_run_id or 0) in wanted_logs:
                    logs[by_task[f.task_run_id or 0]] = self._local(f.key)
        return read_metrics(manifest, local, logs)

    def _local(self, key: str) -> Path:
        path = self.store.local_path(key)
        if path is not None:
            return path
        dest = self.live_logs.root.parent / "metric-cache" / key
        if not dest.exists():
            self.store.get(key, dest)
        return dest

    # ------------------------------------------------------------------ events

    def handle_events(self, events: list[ExecutorEvent]) -> None:
        """Record what the executor reported; events of stale attempts are ignored."""
        lines: dict[tuple[int, int], list[str]] = {}
        for event in events:
            if event.kind is EventKind.lines:
                lines.setdefault((event.task_run_id, event.attempt), []).extend(
                    event.payload["lines"]
                )
            elif event.kind is EventKind.progress:
                self._progress[event.task_run_id] = event.payload["percent"]
        for (task_run_id, attempt), batch in lines.items():
            self.live_logs.append(task_run_id, attempt, batch)
        important = [
            e for e in events if e.kind in (EventKind.started, EventKind.result, EventKind.lost)
        ]
        heartbeats = {e.task_run_id for e in events}
        if not important and not heartbeats:
            return
        with self.sessions() as db, db.begin():
            for event in important:
                task_run = db.get(TaskRun, event.task_run_id)
                if (
                    task_run is None
                    or task_run.attempt != event.attempt
                    or task_run.state != TaskRunState.running
                ):
                    if event.kind is not EventKind.started:
                        self._running.discard((event.task_run_id, event.attempt))
                    continue  # a late word from an attempt that is no longer current
                if event.kind is EventKind.started:
                    task_run.worker = event.payload.get("worker")
                    task_run.heartbeat_at = utcnow()
                elif event.kind is EventKind.result:
                    self._running.discard((event.task_run_id, event.attempt))
                    self._record_result(db, task_run, event.payload["result"])
                else:
                    self._running.discard((event.task_run_id, event.attempt))
                    self._lost(db, task_run, event.payload.get("reason", "worker lost"))
            if heartbeats:
                now = utcnow()
                for task_run in db.scalars(select(TaskRun).where(TaskRun.id.in_(heartbeats))):
                    if task_run.state == TaskRunState.running:
                        task_run.heartbeat_at = now
        self._dirty.set()

    def _record_result(self, db: Session, task_run: TaskRun, result: WorkResult) -> None:
        run = db.get(Run, task_run.run_id)
        assert run is not None
        for kind, files in (("output", result.outputs), ("diagnostic", result.diagnostics)):
            for out in files:
                self._add_file(db, run, task_run, kind, out)
        if result.log is not None:
            self._add_file(db, run, task_run, "log", result.log)
        task_run.exit_code = result.exit_code
        task_run.progress = result.progress
        task_run.failure_kind = result.failure_kind
        task_run.failure_reason = result.failure_reason
        task_run.failure_summary = result.failure_summary
        retries = manifest_of(run.model_version).tasks[task_run.name].retries
        outcome = result.outcome
        if (
            outcome is TaskOutcome.failed
            and result.failure_kind == FailureKind.model_error
            and task_run.attempt <= retries
            and not run.cancel_requested
        ):
            task_run.set_state(TaskRunState.queued)
            record_event(db, "task.retry", run, task_run, reason=result.failure_reason)
            return
        task_run.set_state(TaskRunState(outcome.value))
        record_event(db, f"task.{outcome.value}", run, task_run)

    @staticmethod
    def _add_file(db: Session, run: Run, task_run: TaskRun, kind: str, out: StoredOutput) -> None:
        db.add(
            StoredFile(
                run_id=run.id,
                task_run_id=task_run.id,
                kind=kind,
                path=out.path,
                key=out.key,
                size=out.size,
                sha256=out.sha256,
            )
        )

    def _lost(self, db: Session, task_run: TaskRun, reason: str) -> None:
        run = db.get(Run, task_run.run_id)
        assert run is not None
        if run.cancel_requested:
            task_run.set_state(TaskRunState.cancelled)
            record_event(db, "task.cancelled", run, task_run)
        elif task_run.attempt < MAX_ATTEMPTS:
            task_run.set_state(TaskRunState.queued)
            record_event(db, "task.retry", run, task_run, reason=reason)
        else:
            task_run.failure_kind = FailureKind.infrastructure
            task_run.failure_reason = reason
            task_run.failure_summary = (
                f"Task {task_run.name!r} failed: the platform failed (not the model). "
                f"{reason} (after {task_run.attempt} attempts)"
            )
            task_run.set_state(TaskRunState.failed)
            record_event(db, "task.failed", run, task_run)

    def reconcile_lost_attempts(self, reason: str) -> int:
        """Attempts marked running that no executor of ours runs: retry or fail them."""
        with self.sessions() as db, db.begin():
            stale = list(db.scalars(select(TaskRun).where(TaskRun.state == TaskRunState.running)))
            stale = [t for t in stale if (t.id, t.attempt) not in self._running]
            for task_run in stale:
                # It may still run somewhere (a remote worker): stop it, its results are refused.
                with contextlib.suppress(Exception):
                    self.executor.cancel(task_run.id, task_run.attempt)
                self._lost(db, task_run, reason)
        if stale:
            self._dirty.set()
        return len(stale)

    def _reconcile_silent_attempts(self) -> None:
        """Attempts whose heartbeats stopped: stop what may be left of them and retry."""
        cutoff = utcnow() - dt.timedelta(seconds=self.lost_after)
        with self.sessions() as db, db.begin():
            silent = list(
                db.scalars(
                    select(TaskRun).where(
                        TaskRun.state == TaskRunState.running,
                        TaskRun.worker.is_not(None),  # started: waiting in a queue is not silence
                        TaskRun.heartbeat_at < cutoff,
                    )
                )
            )
            for task_run in silent:
                key = (task_run.id, task_run.attempt)
                self.executor.cancel(*key)
                self._running.discard(key)
                self._lost(db, task_run, f"no heartbeat for {self.lost_after:g} s")

    def _write_progress(self) -> None:
        self._progress_written = time.monotonic()
        if not self._progress:
            return
        updates, self._progress = self._progress, {}
        with self.sessions() as db, db.begin():
            for task_run in db.scalars(select(TaskRun).where(TaskRun.id.in_(updates))):
                if task_run.state == TaskRunState.running:
                    task_run.progress = updates[task_run.id]
