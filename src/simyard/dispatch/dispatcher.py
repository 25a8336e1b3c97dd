"""The reconcile loop: record what the executor said, let the policy decide, apply, act.

One loop, in one thread of the one server holding the dispatch lease. Each turn polls
the executor, then, in one short fenced transaction, records its decisive events
(:func:`~simyard.dispatch.policy.after_events`) and, when the plan may have changed, reads
a snapshot, lets :func:`~simyard.dispatch.policy.plan` (pure) decide and applies that
too: an attempt's end, its run's finish and the next claim are one commit. Executor
calls (submit, cancel) happen after the commit; metrics come with the results, and the
rare ones that must be downloaded are read with no transaction open. An event whose
write failed is kept and applied again, never dropped. A server whose lease ran out
(a stall, a SIGSTOP) stops every attempt it handed over at once and reports nothing
of them; the first pass of a new term retries what the previous holder left running.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from simyard.dispatch.apply import Applied, apply_actions, write_progress
from simyard.dispatch.changes import Change, Changes
from simyard.dispatch.lease import LeaseTerm
from simyard.dispatch.livelogs import LiveLogs
from simyard.dispatch.metrics import RunMetrics
from simyard.dispatch.policy import Attempt, FinishRun, after_events, plan
from simyard.dispatch.snapshot import read_event_tasks, read_snapshot
from simyard.errors import LeaseLost
from simyard.executors.base import EventKind, Executor, ExecutorEvent
from simyard.storage.base import Store

log = logging.getLogger("simyard.dispatch")

IDLE_PASS_SECONDS = 1.0
POLL_SECONDS = 0.05
PROGRESS_WRITE_SECONDS = 0.5
BEAT_SECONDS = 5.0  # at most this long between two recorded heartbeats of one attempt
START_HOLD_SECONDS = 0.25  # a start waits this long at most to be written with other events
RESTART_REASON = "server restarted"
DECISIVE = (EventKind.started, EventKind.result, EventKind.lost, EventKind.refused)
# An attempt's end frees a slot, may queue what waited on it and may finish its run.
REPLANNED = (EventKind.result, EventKind.lost, EventKind.refused)


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
        self.changes = Changes()  # followers of runs and logs, woken at each record
        self.lost_after = lost_after
        self.beat_every = min(BEAT_SECONDS, lost_after / 10)  # recorded words of life
        self.lease_ttl = lease_ttl
        self.term = LeaseTerm(lease_ttl)
        self.metrics = RunMetrics(
            sessions=sessions, store=store, cache=live_logs.root.parent / "metric-cache"
        )
        self.leading = threading.Event()
        self._stop = threading.Event()
        self._dirty = threading.Event()  # a pass is due
        self._created = threading.Event()  # a run was added: a pass is due once a slot is free
        self._acting = threading.RLock()  # a pass's apply + executor calls vs. losing the lease
        self._thread: threading.Thread | None = None
        self._lease_thread: threading.Thread | None = None
        self._handed_over: set[Attempt] = set()  # attempts the executor runs for this term
        self._stop_sent: set[Attempt] = set()
        self._unapplied: list[ExecutorEvent] = []  # decisive events whose write failed
        self._held: list[tuple[float, ExecutorEvent]] = []  # starts waiting to be written
        self.start_hold = min(START_HOLD_SECONDS, self.beat_every)
        self._prefetched: dict[int, dict[str, Any] | None] = {}  # metrics read from storage
        self._progress: dict[int, float] = {}
        self._beats: dict[Attempt, float] = {}  # when each attempt's last word of life was
        self._progress_written = 0.0
        self._orphan_reason: str | None = None

    @property
    def holder(self) -> str | None:
        return self.term.token

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
            try:
                with self.sessions() as db, db.begin():
                    self.term.release(db)
            except Exception:
                log.exception("could not give the dispatch lease up")
        self.executor.close()

    def wake(self, *, created: bool = False) -> None:
        """Something changed in the database: a run was cancelled, or (``created``) added.

        A new run needs a pass only while a slot is free: with every slot taken, the pass
        that follows the next attempt's end claims it (a hundred runs submitted at once
        cost a hundred passes that could claim nothing)."""
        if created:
            self._created.set()
            if self.executor.slots - len(self._handed_over) <= 0:
                return
        else:
            self._dirty.set()
        self.executor.interrupt()  # a new run is claimed now, not at the poll's timeout

    def take_lease(self) -> bool:
        """Try to start a term; on success the next pass retries what was left running."""
        with self.sessions() as db, db.begin():
            taken = self.term.take(db)
        if taken:
            with self._acting:
                self._handed_over.clear()
                self._stop_sent.clear()
                self._unapplied.clear()
                self._held.clear()
                self._beats.clear()
                self._orphan_reason = RESTART_REASON
                self.leading.set()
            self.executor.fence(self.term.attempts_deadline)
        return taken

    def _hold_lease(self) -> None:
        """Take the lease when it is free, renew it while leading, stop at once if it is lost."""
        while not self._stop.is_set():
            try:
                if self.leading.is_set():
                    with self.sessions() as db, db.begin():
                        renewed = self.term.renew(db)
                    if renewed:
                        self.executor.fence(self.term.attempts_deadline)
                    else:
                        self.lose_lease("its renewal failed")
                elif self.take_lease():
                    log.info("this server dispatches now (%s)", self.term.token)
                    self._thread = threading.Thread(
                        target=self._loop, name="simyard-dispatcher", daemon=True
                    )
                    self._thread.start()
            except Exception:
                log.exception("dispatch lease check failed")
                if self.leading.is_set() and not self.term.valid():
                    self.lose_lease("it ran out while the database could not be reached")
            self._stop.wait(self.lease_ttl * LeaseTerm.RENEW_SHARE)

    def lose_lease(self, why: str) -> None:
        """The term is over: stop every attempt handed over, report none of them."""
        with self._acting:
            self.term.end()
            if not self.leading.is_set():
                return
            log.error("dispatch lease lost (%s): stopping this server's attempts", why)
            self.leading.clear()
            self.executor.fence(0.0)
            for key in sorted(self._handed_over):
                try:
                    self.executor.cancel(*key)
                except Exception:
                    log.exception("could not stop attempt %s", key)
            self._handed_over.clear()
            self._stop_sent.clear()
            self._unapplied.clear()
            self._held.clear()
            self._progress.clear()

    def _loop(self) -> None:
        last_pass = 0.0
        while not self._stop.is_set() and self.leading.is_set():
            try:
                if not self.term.valid():
                    self.lose_lease("it ran out (this server stalled)")
                    break
                # Events and wake() end the wait at once: the timeout paces only the timers
                # (held starts, progress, the idle pass, the lease's term).
                events = self.executor.poll(timeout=POLL_SECONDS)
                now = time.monotonic()
                # A pass when the plan may have changed: an attempt ended, a run was
                # created or cancelled (wake), or now and then.
                if self.turn(events, replan=now - last_pass > IDLE_PASS_SECONDS):
                    last_pass = now
                if now - self._progress_written > PROGRESS_WRITE_SECONDS:
                    self._write_progress()
            except LeaseLost:
                self.lose_lease("another server holds it")
            except Exception:  # keep dispatching: one bad row must not stop every run
                log.exception("dispatcher pass failed")
                time.sleep(0.5)

    def turn(self, events: list[ExecutorEvent], *, replan: bool = False) -> bool:
        """One turn of the loop: record ``events`` and, when the plan may have changed, run
        a pass, both in one transaction; whether a pass ran.

        An attempt's end (a result, a loss) and the pass that finishes its run and claims
        the next task share that transaction; a start is held (at most ``start_hold``)
        to be written with the next decisive event rather than on its own.
        """
        batch = self._batch(events, hold_starts=True)
        claimable = self._created.is_set() and self.executor.slots > len(self._handed_over)
        replan = (
            replan or claimable or self._dirty.is_set() or any(e.kind in REPLANNED for e in batch)
        )
        if not batch and not replan:
            return False
        if replan:
            self._dirty.clear()
            self._created.clear()
        self._settle(batch, replan=replan)
        return replan

    # ------------------------------------------------------------------ one pass

    def dispatch_once(self) -> Applied:
        """Queue, skip, cancel, claim, retry and finish, as the policy decides."""
        return self._settle([], replan=True)

    def handle_events(self, events: list[ExecutorEvent]) -> None:
        """Record what the executor reported; events of stale attempts are refused.

        Lines go to the live log and progress is batched; the rest is decided by the
        policy and written in one fenced transaction. When that write fails the
        decisive events are kept and tried again on the next turn of the loop.
        """
        batch = self._batch(events, hold_starts=False)
        if batch:
            self._settle(batch, replan=False)
        if any(e.kind in REPLANNED for e in batch):
            self._dirty.set()

    def _settle(self, batch: list[ExecutorEvent], *, replan: bool) -> Applied:
        """Record ``batch`` and (``replan``) run a pass, in one short transaction; then act.

        Executor calls happen after the commit, storage reads before a transaction: a
        finishing run whose metrics its tasks did not read themselves is left to a
        second pass, after they were downloaded (:meth:`RunMetrics.of_runs`).
        """
        if not self.term.valid():
            self.lose_lease("it ran out (this server stalled)")
            return Applied()
        with self._acting:
            if not self.leading.is_set():
                self._unapplied.clear()
                return Applied()  # a term that ended reports nothing of its attempts
            unread: list[int] = []
            slots = self.executor.slots if replan else 0  # a Dask call: not in a transaction
            try:
                with self.sessions() as db, db.begin():
                    applied = Applied()
                    if batch:
                        self.term.fence(db)
                        tasks, cancels = read_event_tasks(db, {e.task_run_id for e in batch})
                        applied = apply_actions(db, after_events(batch, tasks, cancels))
                    if replan:
                        passed, unread = self._pass(db, applied, slots, fenced=bool(batch))
                        applied = applied.then(passed)
            except LeaseLost:
                self.lose_lease("another server holds it")
                return Applied()
            except Exception:
                if not batch:
                    raise  # a pass alone: the loop logs it and tries again
                log.exception("recording executor events failed; they are kept and retried")
                self._unapplied = [e for e in batch if e.kind in DECISIVE]
                if replan:
                    self._dirty.set()
                return Applied()
            self._unapplied = []
            self.changes.changed(Change.recorded)
            if replan:
                self._orphan_reason = None
                self._prefetched.clear()
            self._act(applied)
        if unread:  # rare: results of workers that did not read their metrics
            self._prefetched = self.metrics.of_runs(unread)
            applied = applied.then(self._settle([], replan=True))
        return applied

    def _pass(
        self, db: Session, recorded: Applied, slots: int, *, fenced: bool
    ) -> tuple[Applied, list[int]]:
        """Plan from a snapshot read in ``db`` (after ``recorded``'s writes) and apply it,
        with ``slots`` the executor's; what was applied, and the runs left unfinished
        because their metrics are in storage."""
        ended = set(recorded.forgotten)
        handed_over = self._handed_over - ended
        snapshot = read_snapshot(
            db,
            free_slots=slots - len(handed_over),
            handed_over=handed_over,
            stop_sent=self._stop_sent - ended,
            lost_after=self.lost_after,
            orphan_reason=self._orphan_reason,
        )
        actions = plan(snapshot)
        if not actions:  # nothing to write: no lease row locked
            return Applied(), []
        finishing = [a.run_id for a in actions if isinstance(a, FinishRun)]
        metrics, unread = self.metrics.read(db, finishing) if finishing else ({}, [])
        metrics |= {i: self._prefetched[i] for i in unread if i in self._prefetched}
        unread = [i for i in unread if i not in self._prefetched]
        if unread:
            actions = [a for a in actions if not (isinstance(a, FinishRun) and a.run_id in unread)]
        if not fenced:
            self.term.fence(db)
        return apply_actions(db, actions, metrics), unread

    def _act(self, applied: Applied) -> None:
        """After the commit: forget ended attempts, stop and submit on the executor."""
        for key in applied.forgotten:
            self._handed_over.discard(key)
            self._stop_sent.discard(key)
        for key in applied.stops:
            if key in self._stop_sent:
                continue
            self._stop_sent.add(key)
            try:
                self.executor.cancel(*key)
            except Exception:
                log.exception("could not stop attempt %s", key)
        failed: list[ExecutorEvent] = []
        for order in applied.orders:
            if not self.term.valid():  # lost meanwhile: the next holder runs it
                break
            key = (order.task_run_id, order.attempt)
            self._handed_over.add(key)
            try:
                self.executor.submit(order)
            except Exception as exc:  # the executor refused: an infrastructure failure
                log.exception("submit failed")
                failed.append(ExecutorEvent(*key, EventKind.lost, {"reason": str(exc)}))
        if failed:
            self._unapplied.extend(failed)
            self._dirty.set()

    # ------------------------------------------------------------------ events

    def _batch(self, events: list[ExecutorEvent], *, hold_starts: bool) -> list[ExecutorEvent]:
        """Lines to the live log and progress aside; the events to record now.

        ``hold_starts``: a start records only a word of life (the claim made the task
        run running), so it waits for the next decisive event, at most ``start_hold``.
        """
        lines: dict[Attempt, list[str]] = {}
        for event in events:
            if event.kind is EventKind.lines:
                lines.setdefault((event.task_run_id, event.attempt), []).extend(
                    event.payload["lines"]
                )
            elif event.kind is EventKind.progress:
                self._progress[event.task_run_id] = event.payload["percent"]
        for (task_run_id, attempt), written in lines.items():
            self.live_logs.append(task_run_id, attempt, written)
        if lines:
            self.changes.changed(Change.logged)
        due = self._due(events)
        if hold_starts:
            now = time.monotonic()
            self._held += [(now, e) for e in due if e.kind is EventKind.started]
            due = [e for e in due if e.kind is not EventKind.started]
            if self._held and (due or now - self._held[0][0] >= self.start_hold):
                due = [e for _, e in self._held] + due
                self._held = []
        elif self._held:
            due = [e for _, e in self._held] + due
            self._held = []
        return [*self._unapplied, *due]

    def _due(self, events: list[ExecutorEvent]) -> list[ExecutorEvent]:
        """``events`` to record: every decisive one, and a word of life (lines, progress,
        a heartbeat) only where the attempt's last recorded one is older than
        ``beat_every``: the silence check needs one per ``lost_after``, not one per line."""
        now = time.monotonic()
        due = []
        for event in events:
            key = (event.task_run_id, event.attempt)
            if event.kind in DECISIVE:
                due.append(event)
                if event.kind in REPLANNED:
                    self._beats.pop(key, None)
                else:
                    self._beats[key] = now
            elif now - self._beats.get(key, -math.inf) >= self.beat_every:
                self._beats[key] = now
                due.append(event)
        return due

    def _write_progress(self) -> None:
        self._progress_written = time.monotonic()
        if not self._progress:
            return
        updates, self._progress = self._progress, {}
        with self._acting, self.sessions() as db, db.begin():
            self.term.fence(db)
            write_progress(db, updates)
