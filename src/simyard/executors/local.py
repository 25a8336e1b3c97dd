"""The local executor: each attempt runs the engine in its own child process on this machine.

Children are started from a forkserver (a clean, pre-imported process), report lines,
progress, heartbeats and their result through one queue, and die with the server: a
child gets SIGTERM when its parent goes, stops its model's process tree and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import socket
import threading
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from simyard.engine.task import EngineOptions
from simyard.engine.workorder import WorkOrder, execute_work_order
from simyard.errors import SimyardError
from simyard.executors.base import AttemptReporter, EventKind, Executor, ExecutorEvent, drain
from simyard.storage.base import Store

_PR_SET_PDEATHSIG = 1


class LocalExecutor(Executor):
    """Up to ``slots`` attempts at once, each in a child process."""

    def __init__(
        self,
        *,
        store: Store,
        work_root: Path,
        cache_root: Path,
        options: EngineOptions,
        slots: int,
    ) -> None:
        self.slots = slots
        self._store = store
        self._work_root = work_root
        self._cache_root = cache_root
        self._options = options
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(
            ["simyard.engine.workorder", "simyard.executors.local", "simyard.storage.file"]
        )
        self._queue: Any = self._ctx.Queue()
        self._children: dict[tuple[int, int], BaseProcess] = {}
        self._finished: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    def submit(self, order: WorkOrder) -> None:
        args = (order, self._queue, self._store, self._work_root, self._cache_root, self._options)
        child = self._ctx.Process(target=_child_main, args=args, daemon=False)
        child.start()
        with self._lock:
            self._children[(order.task_run_id, order.attempt)] = child

    def cancel(self, task_run_id: int, attempt: int) -> None:
        with self._lock:
            child = self._children.get((task_run_id, attempt))
        if child is not None and child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)

    def poll(self, timeout: float) -> list[ExecutorEvent]:
        events = drain(self._queue, timeout)
        for event in events:
            if event.kind is EventKind.result:
                self._finished.add((event.task_run_id, event.attempt))
        events += self._reap()
        return events

    def _reap(self) -> list[ExecutorEvent]:
        """Children that exited: a child that sent no result was lost."""
        lost = []
        with self._lock:
            for key, child in list(self._children.items()):
                if child.is_alive():
                    continue
                child.join()
                del self._children[key]
                if key in self._finished:
                    self._finished.discard(key)
                    continue
                # Its result may still be in the queue: look once more before calling it lost.
                late = self._drain()
                if any(
                    e.kind is EventKind.result and (e.task_run_id, e.attempt) == key for e in late
                ):
                    lost.extend(late)
                    continue
                lost.extend(late)
                reason = f"the worker process exited with code {child.exitcode} before finishing"
                lost.append(ExecutorEvent(key[0], key[1], EventKind.lost, {"reason": reason}))
        return lost

    def _drain(self) -> list[ExecutorEvent]:
        # Called for a child that has exited: it flushed its queue before exiting, so what
        # it sent is in the pipe already and waiting for more would only stall dispatch.
        return drain(self._queue, 0.0)

    def close(self) -> None:
        with self._lock:
            children = list(self._children.values())
        for child in children:
            if child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)
        for child in children:
            child.join(timeout=self._options.kill_grace + 5)
            if child.is_alive():
                child.kill()
                child.join()
        self._queue.close()
        self._queue.join_thread()


def _child_main(
    order: WorkOrder,
    events: Any,
    store: Store,
    work_root: Path,
    cache_root: Path,
    options: EngineOptions,
) -> None:
    """Runs in the child process: execute the order, report everything through ``events``."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    key = (order.task_run_id, order.attempt)

    def send(kind: EventKind, payload: dict[str, Any]) -> None:
        events.put(ExecutorEvent(key[0], key[1], kind, payload))

    send(EventKind.started, {"worker": f"local:{socket.gethostname()}:{os.getpid()}"})
    with AttemptReporter(send) as reporter:
        try:
            result = execute_work_order(
                order,
                store=store,
                work_root=work_root,
                cache_root=cache_root,
                options=options,
                cancel=cancel,
                on_line=reporter.on_line,
                on_progress=reporter.on_progress,
            )
        except SimyardError as exc:
            failure: str | None = str(exc)
        else:
            failure = None
    if failure is not None:
        send(EventKind.lost, {"reason": failure})
    else:
        send(EventKind.result, {"result": result})
    events.close()
    events.join_thread()
