"""The executor contract: told what to run, it reports what happened; the database decides.

An executor implements four methods. ``submit`` starts one attempt (a WorkOrder) and
returns at once; ``cancel`` asks the attempt's process tree to stop; ``poll`` hands
back what happened since the last call (lines, progress, heartbeats, results, lost
attempts, refused ones); ``close`` stops everything; ``fence`` (optional) bounds how
long attempts may outlive the dispatcher's lease. An attempt that failed for the
platform's sake is ``lost`` (retried); one that raised a :class:`~simyard.errors.Refusal`
is ``refused`` (final), see :func:`failure_event`. The dispatcher claims an attempt in the
database before submitting it and ignores events of attempts that are not current.
"""

from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from simyard.engine.workorder import WorkOrder
from simyard.errors import Refusal, SimyardError


class EventKind(StrEnum):
    started = "started"  # payload: {"worker": str}
    lines = "lines"  # payload: {"lines": [str, ...]}
    progress = "progress"  # payload: {"percent": float}
    heartbeat = "heartbeat"  # payload: {}
    result = "result"  # payload: {"result": WorkResult}
    lost = "lost"  # payload: {"reason": str}; the attempt died without a result (retried)
    refused = "refused"  # payload: {"reason": str, "kind": str}; it can never run (final)


@dataclass(frozen=True)
class ExecutorEvent:
    task_run_id: int
    attempt: int
    kind: EventKind
    payload: dict[str, Any]


def failure_event(task_run_id: int, attempt: int, exc: SimyardError) -> ExecutorEvent:
    """The event for an attempt that raised ``exc``: lost (retried) or refused (final)."""
    if isinstance(exc, Refusal):
        payload = {"reason": str(exc), "kind": exc.failure_kind}
        return ExecutorEvent(task_run_id, attempt, EventKind.refused, payload)
    return ExecutorEvent(task_run_id, attempt, EventKind.lost, {"reason": str(exc)})


def _no_op() -> None:
    return None


class Executor(ABC):
    """Runs work orders somewhere; see the module docstring for the duties."""

    slots: int
    price_per_worker_hour: float | None = None  # what a worker costs, when it is known

    @abstractmethod
    def submit(self, order: WorkOrder) -> None: ...

    @abstractmethod
    def cancel(self, task_run_id: int, attempt: int) -> None: ...

    @abstractmethod
    def poll(self, timeout: float) -> list[ExecutorEvent]: ...

    @abstractmethod
    def close(self) -> None: ...

    def unsatisfiable(self, cpus: float, memory: int | None) -> str | None:
        """The resource no worker can ever give a task asking this much; None: it may run."""
        return None

    def waiting(self) -> str | None:
        """Why queued work waits here, when it is more than a free slot (a worker starting)."""
        return None

    def interrupt(self) -> None:
        """End a ``poll`` waiting now (the dispatcher has something to do). Default: the
        poll waits out its timeout."""
        return None

    def fence(self, deadline: float) -> None:
        """Attempts must stop by ``deadline`` (``time.time()``) unless called again later.

        The dispatcher calls this on every renewal of its lease, so an executor whose
        server stalls (a SIGSTOP, a long pause) kills its attempts itself before another
        server can take the lease over. Default: nothing; the dispatcher stops them when
        it wakes up without its lease.
        """
        return None


def drain(source: Any, timeout: float) -> list[ExecutorEvent]:
    """Everything waiting in ``source`` (a queue), waiting up to ``timeout`` for the first;
    a None in it (:meth:`Executor.interrupt`) ends the wait and is left out."""
    events: list[ExecutorEvent | None] = []
    try:
        events.append(source.get(timeout=timeout))
        while True:
            events.append(source.get_nowait())
    except queue.Empty:
        pass
    return [event for event in events if event is not None]


class AttemptReporter:
    """Worker side: batches the model's lines and sends them, with heartbeats, every 50 ms.

    ``send(kind, payload)`` ships one event to the server (a process queue, a Dask event).
    A flood is capped per batch; the full log (capped too) is stored with the result.
    """

    FLUSH_SECONDS = 0.05
    HEARTBEAT_SECONDS = 5.0
    MAX_LINES_PER_FLUSH = 2000

    def __init__(
        self, send: Callable[[EventKind, dict[str, Any]], None], tick: Callable[[], None] = _no_op
    ) -> None:
        self.send = send
        self.tick = tick  # called every flush, e.g. to look for a remote cancel
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> AttemptReporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.flush()

    def on_line(self, line: str) -> None:
        with self._lock:
            if len(self._pending) < self.MAX_LINES_PER_FLUSH:
                self._pending.append(line)

    def on_progress(self, percent: float) -> None:
        self.send(EventKind.progress, {"percent": percent})

    def flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
        if lines:
            self.send(EventKind.lines, {"lines": lines})

    def _run(self) -> None:
        last_beat = time.monotonic()
        while not self._done.wait(self.FLUSH_SECONDS):
            self.flush()
            self.tick()
            if time.monotonic() - last_beat >= self.HEARTBEAT_SECONDS:
                self.send(EventKind.heartbeat, {})
                last_beat = time.monotonic()
