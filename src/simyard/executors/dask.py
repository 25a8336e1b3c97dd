"""The Dask executor: each task-run attempt is one Dask task running the engine on a worker.

Workers are plain ``dask worker`` processes with simyard installed; they reach the
object store, never the database. Lines, progress and heartbeats travel as Dask
events (``Worker.log_event`` -> ``Client.subscribe_topic``), results as the task's
value. An attempt runs at most once: its first execution sets a claim on the
scheduler, and Dask's own re-execution after a lost worker finds the claim and stops,
so the dispatcher retries with a new attempt number and refuses anything late.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Any

from simyard.engine.result import FailureKind, TaskOutcome
from simyard.engine.task import EngineOptions
from simyard.engine.workorder import WorkOrder, WorkResult, execute_work_order
from simyard.errors import Refusal, SimyardError, TaskRefused
from simyard.executors.base import (
    AttemptReporter,
    EventKind,
    Executor,
    ExecutorEvent,
    drain,
    failure_event,
)
from simyard.storage.base import Store

TOPIC = "simyard"
STALE = "stale"


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise SimyardError("the Dask executor needs: pip install 'simyard[dask]'") from None
    return distributed


def _names(order: WorkOrder) -> tuple[str, str, str]:
    base = f"simyard-{order.task_run_id}-a{order.attempt}"
    return base, f"{base}-claim", f"{base}-cancel"


class DaskExecutor(Executor):
    """Submits attempts to a Dask scheduler; ``slots`` is the cluster's thread count."""

    def __init__(
        self,
        *,
        address: str,
        store: Store,
        options: EngineOptions,
        work_dir: str = "simyard-work",
        security: Any = None,
        min_slots: int = 1,
    ) -> None:
        distributed = _import_distributed()
        self._distributed = distributed
        self._address = address
        self._security = security
        self._store = store
        self._options = options
        self._work_dir = work_dir
        self._events: queue.Queue[ExecutorEvent | None] = queue.Queue()  # None: interrupt
        self._futures: dict[tuple[int, int], Any] = {}
        self._lock = threading.Lock()
        self._min_slots = min_slots
        self._client = self._connect()

    def _connect(self) -> Any:
        client = self._distributed.Client(self._address, security=self._security, timeout="20s")
        client.subscribe_topic(TOPIC, self._on_worker_event)
        return client

    def _live_client(self) -> Any:
        """The client, reconnected if the scheduler was away longer than Dask's own retries."""
        if self._client.status in ("closed", "closing", "failed"):
            with contextlib.suppress(Exception):
                self._client.close(timeout=2)
            self._client = self._connect()
        return self._client

    @property
    def slots(self) -> int:  # type: ignore[override]
        """Threads across the cluster's workers (at least ``min_slots`` while it scales up)."""
        try:
            info = self._live_client().scheduler_info()
        except Exception:  # the scheduler is away: hold submissions until it is back
            return 0
        threads = sum(w.get("nthreads", 1) for w in info.get("workers", {}).values())
        return int(max(threads, self._min_slots))

    # ------------------------------------------------------------------ contract

    def submit(self, order: WorkOrder) -> None:
        key, _, _ = _names(order)
        resources = self._resources(order)
        unsatisfiable = self._unsatisfiable(resources)
        if unsatisfiable:
            now = dt.datetime.now(dt.UTC)
            result = WorkResult(
                task_run_id=order.task_run_id, attempt=order.attempt, outcome=TaskOutcome.failed,
                started_at=now, finished_at=now, failure_kind=FailureKind.resource_limit,
                failure_reason=unsatisfiable,
                failure_summary=f"Task {order.task!r} cannot run: {unsatisfiable}.",
            )  # fmt: skip
            self._events.put(
                ExecutorEvent(
                    order.task_run_id, order.attempt, EventKind.result, {"result": result}
                )
            )
            return
        future = self._live_client().submit(
            run_on_worker,
            order,
            self._store,
            self._options,
            self._work_dir,
            key=key,
            pure=False,
            resources=resources or None,
            retries=0,
        )
        with self._lock:
            self._futures[(order.task_run_id, order.attempt)] = future
        future.add_done_callback(lambda f, o=order: self._on_done(o, f))

    def cancel(self, task_run_id: int, attempt: int) -> None:
        with contextlib.suppress(Exception):
            event = self._distributed.Event(
                f"simyard-{task_run_id}-a{attempt}-cancel", client=self._client
            )
            event.set()
        with self._lock:
            future = self._futures.get((task_run_id, attempt))
        if future is not None and not future.done():
            # A queued task never starts; a running one sees the event and stops its tree.
            threading.Timer(self._options.kill_grace + 10, _cancel_quietly, (future,)).start()

    def poll(self, timeout: float) -> list[ExecutorEvent]:
        return drain(self._events, timeout)

    def interrupt(self) -> None:
        self._events.put(None)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.unsubscribe_topic(TOPIC)
        with contextlib.suppress(Exception):
            self._client.close(timeout=10)

    # ------------------------------------------------------------------ internals

    def _resources(self, order: WorkOrder) -> dict[str, float]:
        """Manifest resources as Dask worker resources: those the workers declare at all."""
        tasks = order.manifest.tasks
        spec = tasks[order.task].resources if order.task in tasks else None
        declared = {name for offer in self._declared_resources() for name in offer}
        if spec is None or not declared:
            return {}
        wanted: dict[str, float] = {"cpus": float(spec.cpus)}
        if spec.memory is not None:
            wanted["memory"] = float(spec.memory)
        return {name: amount for name, amount in wanted.items() if name in declared}

    def _declared_resources(self) -> list[dict[str, float]]:
        try:
            workers = self._live_client().scheduler_info().get("workers", {}).values()
        except Exception:
            return []
        return [w.get("resources") or {} for w in workers if w.get("resources")]

    def _unsatisfiable(self, wanted: dict[str, float]) -> str | None:
        if not wanted:
            return None
        offers = self._declared_resources()
        if any(all(o.get(k, 0) >= v for k, v in wanted.items()) for o in offers):
            return None
        best = ", ".join(f"{k}={v:g}" for k, v in wanted.items())
        have = "; ".join(", ".join(f"{k}={v:g}" for k, v in o.items()) for o in offers) or "none"
        return f"no worker can ever run this task: it needs {best}; workers offer {have}"

    def _on_worker_event(self, event: tuple[float, dict[str, Any]]) -> None:
        _, msg = event
        try:
            kind = EventKind(msg["kind"])
            self._events.put(ExecutorEvent(int(msg["task_run_id"]), int(msg["attempt"]), kind,
                                           msg.get("payload", {})))  # fmt: skip
        except (KeyError, ValueError, TypeError):
            return

    def _on_done(self, order: WorkOrder, future: Any) -> None:
        key = (order.task_run_id, order.attempt)
        with self._lock:
            self._futures.pop(key, None)
        try:
            result = future.result(timeout=5)
        except Exception as exc:  # worker lost, scheduler restarted, cancelled, engine error
            reason = f"{type(exc).__name__}: {exc}".strip(": ")
            self._events.put(ExecutorEvent(*key, EventKind.lost, {"reason": f"Dask: {reason}"}))
            return
        if result == STALE:
            reason = "the worker running it was lost"
            self._events.put(ExecutorEvent(*key, EventKind.lost, {"reason": reason}))
        elif isinstance(result, WorkResult):
            self._events.put(ExecutorEvent(*key, EventKind.result, {"result": result}))
        elif isinstance(result, SimyardError):
            self._events.put(failure_event(*key, result))
        else:
            self._events.put(ExecutorEvent(*key, EventKind.lost, {"reason": str(result)}))


def _cancel_quietly(future: Any) -> None:
    """Cancel a future that may outlive its client (closed meanwhile: nothing to cancel)."""
    with contextlib.suppress(Exception):
        future.cancel()


def run_on_worker(
    order: WorkOrder, store: Store, options: EngineOptions, work_dir: str
) -> WorkResult | TaskRefused | str:
    """Runs on a Dask worker: one attempt, with its lines and heartbeats sent as events."""
    import distributed

    worker = distributed.get_worker()
    _, claim_name, cancel_name = _names(order)
    claim = distributed.Event(claim_name)
    if claim.is_set():
        return STALE  # Dask re-ran this attempt after losing its worker: it is not ours to run
    claim.set()
    root = Path(worker.local_directory) / work_dir

    def send(kind: EventKind, payload: dict[str, Any]) -> None:
        msg = {"kind": kind.value, "task_run_id": order.task_run_id, "attempt": order.attempt,
               "payload": payload}  # fmt: skip
        worker.log_event(TOPIC, msg)

    send(
        EventKind.started, {"worker": f"dask:{socket.gethostname()}:{os.getpid()}:{worker.address}"}
    )
    cancel = threading.Event()
    remote_cancel = distributed.Event(cancel_name)
    checked = [time.monotonic()]

    def look_for_cancel() -> None:
        if time.monotonic() - checked[0] >= 0.5:
            checked[0] = time.monotonic()
            with contextlib.suppress(Exception):
                if remote_cancel.is_set():
                    cancel.set()

    with AttemptReporter(send, tick=look_for_cancel) as reporter:
        try:
            return execute_work_order(
                order,
                store=store,
                work_root=root / "work",
                cache_root=root / "bundles",
                options=options,
                cancel=cancel,
                on_line=reporter.on_line,
                on_progress=reporter.on_progress,
            )
        except SimyardError as exc:  # a refusal stays one: the server will not retry it
            return TaskRefused(str(exc)) if isinstance(exc, Refusal) else f"infrastructure: {exc}"
