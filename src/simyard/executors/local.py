"""The local executor: each attempt runs the engine in its own child process on this machine.

Children are started from a forkserver (a clean, pre-imported process) and report lines,
progress, heartbeats and their result through one queue. They die with the server, not
only with the forkserver: each child watches the server's pidfd and, the moment the
server is gone, kills its whole process tree (it adopts orphans, so a daemon cannot
leave it) and exits, so a restarted server never retries a task beside its old attempt.
(The forkserver cannot be the watcher: it stays alive while any child holds its
"alive" pipe, which every child does.) As belt and braces, a starting executor kills
what a dead engine left: processes of model uids no live engine leases, and processes
in working folders of attempts no live engine holds, whose folders it then removes.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import multiprocessing as mp
import os
import select
import shutil
import signal
import socket
import threading
import time
from multiprocessing import context, forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from simyard.engine.hostuser import kill_unleased_processes
from simyard.engine.limits import adopt_orphans
from simyard.engine.proctree import ProcessTree, read_stat
from simyard.engine.task import EngineOptions
from simyard.engine.workorder import (
    WorkOrder,
    attempt_dir_of,
    execute_work_order,
    sweep_dead_attempts,
)
from simyard.errors import SimyardError
from simyard.executors.base import (
    AttemptReporter,
    EventKind,
    Executor,
    ExecutorEvent,
    drain,
    failure_event,
)
from simyard.storage.base import Store
from simyard.storage.retry import abandoned_when

_PR_SET_PDEATHSIG = 1
# Imported once by the forkserver, so that an attempt child imports nothing of its own.
FORKSERVER_PRELOAD = ["simyard.engine.workorder", "simyard.executors.local", "simyard.storage.file"]
SERVER_POLL_SECONDS = 0.2  # how often a child looks for its server where pidfds do not exist


class _AttemptPopen(popen_forkserver.Popen):
    """Starts an attempt child without the server's ``__main__``.

    multiprocessing tells every child to re-run the parent's main module, so that objects
    defined there can be unpickled. Started by the ``simyard`` console script, that is the
    whole CLI: ~0.25 s of imports per attempt (the forkserver's "__main__" preload does not
    help: Python 3.11 never hands it the path). An attempt's target and arguments live in
    importable modules, so the child needs nothing of ``__main__``.
    """

    def _launch(self, process_obj: Any) -> None:
        # CPython's own _launch (3.11-3.13), with the main module left out of the data.
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            context.set_spawning_popen(None)
        fds = self._fds  # type: ignore[attr-defined]  # set by Popen.__init__, untyped
        self.sentinel, w = forkserver.connect_to_new_process(fds)
        parent_w = os.dup(w)  # the child watches it as its parent's sentinel
        close_fds = util.close_fds  # type: ignore[attr-defined]  # untyped in typeshed
        self.finalizer = util.Finalize(self, close_fds, (parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _AttemptProcess(context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _AttemptPopen:
        return _AttemptPopen(process_obj)


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
        self._ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
        server = read_stat(os.getpid())
        self._server = (os.getpid(), server.start_time if server is not None else 0)
        self.sweep_leftovers()
        self._queue: Any = self._ctx.Queue()
        self._deadline: Any = self._ctx.Value("d", float("inf"), lock=False)  # see fence()
        self._children: dict[tuple[int, int], BaseProcess] = {}
        self._folders: dict[tuple[int, int], Path] = {}  # the attempts' working folders
        self._finished: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    def sweep_leftovers(self) -> None:
        """Kill and remove what dead attempts left on this machine (a killed server's)."""
        kill_unleased_processes(self._options.model_users())
        sweep_dead_attempts(self._work_root)

    def submit(self, order: WorkOrder) -> None:
        args = (
            order,
            self._queue,
            self._store,
            self._work_root,
            self._cache_root,
            self._options,
            self._server,
            self._deadline,
        )
        child = _AttemptProcess(target=_child_main, args=args, daemon=False)
        child.start()
        with self._lock:
            self._children[(order.task_run_id, order.attempt)] = child
            self._folders[(order.task_run_id, order.attempt)] = attempt_dir_of(
                self._work_root, order
            )

    def cancel(self, task_run_id: int, attempt: int) -> None:
        with self._lock:
            child = self._children.get((task_run_id, attempt))
        if child is not None and child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)

    def fence(self, deadline: float) -> None:
        self._deadline.value = deadline  # shared memory: every child reads it each 50 ms

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
                folder = self._folders.pop(key)
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
                # Killed from outside: its models may live on, and its folder stays behind.
                kill_unleased_processes(self._options.model_users())
                sweep_dead_attempts(self._work_root, only=[folder])
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
    server: tuple[int, int],
    deadline: Any = None,
) -> None:
    """Runs in the child process: execute the order, report everything through ``events``.

    Past ``deadline`` (the server's lease, see Executor.fence) the attempt stops itself.
    """
    # What the forkserver imported is never garbage: a collection walking it would cost
    # milliseconds and copy the shared pages it touches.
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    with contextlib.suppress(OSError, AttributeError):
        adopt_orphans()
    _die_with_server(*server, folder=attempt_dir_of(work_root, order))
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    key = (order.task_run_id, order.attempt)

    def send(kind: EventKind, payload: dict[str, Any]) -> None:
        events.put(ExecutorEvent(key[0], key[1], kind, payload))

    send(EventKind.started, {"worker": f"local:{socket.gethostname()}:{os.getpid()}"})

    def past_deadline() -> None:
        if deadline is not None and time.time() > deadline.value and not cancel.is_set():
            cancel.set()

    with AttemptReporter(send, tick=past_deadline) as reporter, abandoned_when(cancel):
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
            failure: SimyardError | None = exc
        else:
            failure = None
    if failure is not None:
        events.put(failure_event(key[0], key[1], failure))
    else:
        send(EventKind.result, {"result": result})
    events.close()
    events.join_thread()


def _die_with_server(pid: int, start_time: int, *, folder: Path) -> None:
    """Watch the server (``pid`` started at ``start_time``); once it is gone, kill every
    process below this one, remove the attempt's ``folder`` and exit at once: no result
    to report, nobody to hear it."""
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        pidfd = None

    def server_alive() -> bool:
        entry = read_stat(pid)
        return entry is not None and entry.alive and entry.start_time == start_time

    if not server_alive():  # gone before the pidfd was opened (or the pid was reused)
        os._exit(1)

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while server_alive():
                time.sleep(SERVER_POLL_SECONDS)
        ProcessTree(os.getpid(), None, adopter=os.getpid()).kill()
        shutil.rmtree(folder, ignore_errors=True)  # its lock file goes with the next sweep
        os._exit(1)

    threading.Thread(target=watch, name="simyard-server-watch", daemon=True).start()
