"""The local executor: attempts run the engine in worker processes on this machine.

A worker is a child process started from a forkserver (a clean, pre-imported process).
It runs one attempt at a time, for up to ``MAX_ATTEMPTS_PER_WORKER`` attempts: starting
a process per attempt cost more CPU than the engine's own work (a fork of a large
process, its pages copied as it touched them, its exit). A worker takes orders and
cancels through a pipe of its own, and reports lines, progress, heartbeats and results
through another (one queue shared by all would hang them all once one was killed while
holding its lock). Workers die with the server, not only with the forkserver: each
watches the server's pidfd and, the moment the server is gone, kills its whole process
tree (it adopts orphans, so a daemon cannot leave it), removes its attempt's folder and
exits, so a restarted server never retries a task beside its old attempt. (The
forkserver cannot be the watcher: it stays alive while any child holds its "alive"
pipe, which every child does.) A worker that dies mid-attempt loses that attempt (it is
retried). As belt and braces, a starting executor kills what a dead engine left:
processes of model uids no live engine leases, and processes in working folders of
attempts no live engine holds, whose folders it then removes.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import multiprocessing as mp
import os
import queue
import select
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing import connection as mp_connection
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
    failure_event,
)
from simyard.storage.base import Store
from simyard.storage.file import abandon_writes
from simyard.storage.retry import abandoned_when

_PR_SET_PDEATHSIG = 1
# Imported once by the forkserver, so that an attempt child imports nothing of its own.
FORKSERVER_PRELOAD = ["simyard.engine.workorder", "simyard.executors.local", "simyard.storage.file"]
SERVER_POLL_SECONDS = 0.2  # how often a child looks for its server where pidfds do not exist
MAX_ATTEMPTS_PER_WORKER = 100  # then the worker process is replaced (whatever it accrued goes)
MAX_RESENT = 2  # an order whose worker died before beginning it goes to another, this often
FENCED_REASON = "stopped at its deadline: the server had not renewed its dispatch lease in time"
WORKER_IDLE_SECONDS = 60.0  # a worker beyond ``slots`` (or any, past this) idle this long ends


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


Attempt = tuple[int, int]  # (task_run_id, attempt)
ENDS = (EventKind.result, EventKind.lost, EventKind.refused)


class _Worker:
    """The executor's handle on one worker process."""

    def __init__(self, process: BaseProcess, orders: Any, events: Any) -> None:
        self.process = process
        self.orders = orders  # the write end of the pipe of orders
        self.events = events  # the read end of the pipe of events
        self.current: Attempt | None = None  # the attempt it runs, until its end is seen
        self.order: WorkOrder | None = None  # the current attempt's order
        self.began = False  # whether its "started" came: it may have run the model since
        self.folder: Path | None = None
        self.done = 0
        self.resent = 0  # how often the current order went to another worker before
        self.idle_since = time.monotonic()
        self.retiring = False

    def send(self, message: tuple[Any, ...]) -> bool:
        """Send ``message`` to the worker; False when it is gone."""
        try:
            self.orders.send(message)
        except (OSError, ValueError):
            return False
        return True

    def retire(self) -> None:
        if not self.retiring:
            self.retiring = True
            self.send(("stop",))

    def read(self) -> list[ExecutorEvent]:
        """Every event the worker has sent so far (after its death too: the pipe keeps them)."""
        events = []
        try:
            while self.events.poll(0):
                events.append(self.events.recv())
        except (EOFError, OSError):
            pass  # it is gone: _reap tells what that means
        return events

    def close(self) -> None:
        self.orders.close()
        self.events.close()


def _begins(worker: _Worker, event: ExecutorEvent) -> bool:
    return event.kind is EventKind.started and (event.task_run_id, event.attempt) == worker.current


class LocalExecutor(Executor):
    """Up to ``slots`` attempts at once, each in a worker process of its own at a time."""

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
        self._deadline: Any = self._ctx.Value("d", float("inf"), lock=False)  # see fence()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        # interrupt() writes a byte; a full pipe (nobody polls: a standby server) drops it
        self._woken, self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def sweep_leftovers(self) -> None:
        """Kill and remove what dead attempts left on this machine (a killed server's)."""
        kill_unleased_processes(self._options.model_users())
        sweep_dead_attempts(self._work_root)

    def submit(self, order: WorkOrder) -> None:
        with self._lock:
            self._hand(order, resent=0)

    def _hand(self, order: WorkOrder, *, resent: int) -> None:
        """Give ``order`` to an idle worker (a new one if none is)."""
        worker = next((w for w in self._workers if w.current is None and not w.retiring), None)
        if worker is None or not worker.process.is_alive():
            worker = self._start_worker()
        worker.current = (order.task_run_id, order.attempt)
        worker.order, worker.began, worker.resent = order, False, resent
        worker.folder = attempt_dir_of(self._work_root, order)
        worker.send(("run", order))  # if it died meanwhile, _reap hands the order on

    def _start_worker(self) -> _Worker:
        orders_in, orders_out = self._ctx.Pipe(duplex=False)
        events_in, events_out = self._ctx.Pipe(duplex=False)
        args = (
            orders_in,
            events_out,
            self._store,
            self._work_root,
            self._cache_root,
            self._options,
            self._server,
            self._deadline,
        )
        process = _AttemptProcess(target=_worker_main, args=args, daemon=False)
        process.start()
        orders_in.close()  # the worker has its own copies
        events_out.close()
        worker = _Worker(process, orders_out, events_in)
        self._workers.append(worker)
        return worker

    def cancel(self, task_run_id: int, attempt: int) -> None:
        with self._lock:
            worker = next((w for w in self._workers if w.current == (task_run_id, attempt)), None)
        if worker is not None:
            worker.send(("cancel", (task_run_id, attempt)))

    def interrupt(self) -> None:
        with self._lock, contextlib.suppress(BlockingIOError):  # full: a wake is pending
            if self._wake >= 0:  # (not closed)
                os.write(self._wake, b"!")

    def fence(self, deadline: float) -> None:
        self._deadline.value = deadline  # shared memory: every worker reads it each 50 ms

    def poll(self, timeout: float) -> list[ExecutorEvent]:
        with self._lock:
            by_pipe = {w.events: w for w in self._workers}
            by_sentinel = {w.process.sentinel: w for w in self._workers}
        events: list[ExecutorEvent] = []
        exited: set[_Worker] = set()
        woken = [self._woken] if self._woken >= 0 else []
        # A worker's sentinel is ready once it exited: one wait tells that of every worker,
        # where asking each whether it lives cost a wait of its own on every turn.
        for ready in mp_connection.wait([*woken, *by_pipe, *by_sentinel], timeout):
            if ready == self._woken:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._woken, 4096)
                continue
            if ready in by_sentinel:
                exited.add(by_sentinel[ready])
                continue
            worker = by_pipe[ready]
            read = worker.read()
            worker.began |= any(_begins(worker, e) for e in read)
            events += read
        self._ended(events)
        events += self._reap(exited)
        return events

    def _ended(self, events: list[ExecutorEvent]) -> None:
        """Workers whose attempt ended are free again (or retire, having run their share)."""
        ended = {(e.task_run_id, e.attempt) for e in events if e.kind in ENDS}
        if not ended:
            return
        with self._lock:
            for worker in self._workers:
                if worker.current in ended:
                    worker.current, worker.order, worker.folder = None, None, None
                    worker.done += 1
                    worker.idle_since = time.monotonic()
                    if worker.done >= MAX_ATTEMPTS_PER_WORKER:
                        worker.retire()

    def _reap(self, exited: set[_Worker]) -> list[ExecutorEvent]:
        """Workers that exited (``exited``: their sentinels were ready): one that was running
        an attempt lost it; one that died before it began its order (killed while idle,
        say) hands the order on."""
        lost = []
        now = time.monotonic()
        with self._lock:
            idle = [w for w in self._workers if w.current is None and not w.retiring]
            for worker in idle[self.slots :]:
                worker.retire()  # more than the slots need (started while one was busy)
            for worker in idle[: self.slots]:
                if now - worker.idle_since > WORKER_IDLE_SECONDS:
                    worker.retire()
            for worker in list(self._workers):
                if worker not in exited:
                    continue
                worker.process.join()
                late = worker.read()  # its result may have come after the last look
                worker.close()
                self._workers.remove(worker)
                lost.extend(late)
                key, folder = worker.current, worker.folder
                if key is None or folder is None:
                    continue
                if any(e.kind in ENDS and (e.task_run_id, e.attempt) == key for e in late):
                    continue
                began = worker.began or any(_begins(worker, e) for e in late)
                if not began and worker.order is not None and worker.resent < MAX_RESENT:
                    self._hand(worker.order, resent=worker.resent + 1)  # it never ran
                    continue
                # Killed from outside: its models may live on, and its folder stays behind.
                kill_unleased_processes(self._options.model_users())
                sweep_dead_attempts(self._work_root, only=[folder])
                code = worker.process.exitcode
                reason = f"the worker process exited with code {code} before finishing"
                lost.append(ExecutorEvent(key[0], key[1], EventKind.lost, {"reason": reason}))
        return lost

    def close(self) -> None:
        with self._lock:
            workers = list(self._workers)
            for fd in (self._wake, self._woken):
                if fd >= 0:
                    os.close(fd)
            self._wake = self._woken = -1
        for worker in workers:
            worker.retire()
            if worker.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGTERM)  # stops its attempt too
        for worker in workers:
            worker.process.join(timeout=self._options.kill_grace + 5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.close()


class _Now:
    """What a worker is doing: the attempt it runs, its cancel, and cancels sent early."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: Attempt | None = None
        self.folder: Path | None = None
        self.cancel = threading.Event()
        self.cancelled: set[Attempt] = set()  # cancels of attempts not started yet
        self.stopping = threading.Event()

    def start(self, key: Attempt, folder: Path) -> threading.Event:
        with self.lock:
            self.key, self.folder = key, folder
            self.cancel = threading.Event()
            if key in self.cancelled or self.stopping.is_set():
                self.cancelled.discard(key)
                self.cancel.set()
            return self.cancel

    def end(self) -> None:
        with self.lock:
            self.key, self.folder = None, None

    def cancel_attempt(self, key: Attempt) -> None:
        with self.lock:
            if self.key == key:
                self.cancel.set()
            else:
                self.cancelled.add(key)

    def stop(self) -> None:
        """Stop the attempt that runs, then the worker."""
        with self.lock:
            self.stopping.set()
            self.cancel.set()


def _worker_main(
    orders: Any,
    events: Any,
    store: Store,
    work_root: Path,
    cache_root: Path,
    options: EngineOptions,
    server: tuple[int, int],
    deadline: Any = None,
) -> None:
    """Runs in the worker process: run each order sent, report everything through ``events``.

    Past ``deadline`` (the server's lease, see Executor.fence) an attempt stops itself.
    """
    # What the forkserver imported is never garbage: a collection walking it would cost
    # milliseconds and copy the shared pages it touches.
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    with contextlib.suppress(OSError, AttributeError):
        adopt_orphans()
    now = _Now()
    sending = threading.Lock()  # the attempt's threads share the pipe

    def send(event: ExecutorEvent) -> None:
        with sending:
            events.send(event)

    _die_with_server(*server, now=now)
    signal.signal(signal.SIGTERM, lambda *_: now.stop())
    queued: queue.SimpleQueue[WorkOrder | None] = queue.SimpleQueue()

    def listen() -> None:
        """Orders to the queue, cancels to the attempt; the pipe's end (the executor
        gone) or a stop ends the worker after its attempt."""
        while True:
            try:
                message = orders.recv()
            except (EOFError, OSError):
                message = ("stop",)
            if message[0] == "run":
                queued.put(message[1])
            elif message[0] == "cancel":
                now.cancel_attempt(message[1])
            elif message[0] == "stop":
                now.stopping.set()
                queued.put(None)
                return

    threading.Thread(target=listen, name="simyard-orders", daemon=True).start()
    while not now.stopping.is_set():
        order = queued.get()
        if order is None:
            break
        key = (order.task_run_id, order.attempt)
        cancel = now.start(key, attempt_dir_of(work_root, order))
        try:
            _run_attempt(order, send, store, work_root, cache_root, options, deadline, cancel)
        finally:
            now.end()
    events.close()


def _run_attempt(
    order: WorkOrder,
    put: Callable[[ExecutorEvent], None],
    store: Store,
    work_root: Path,
    cache_root: Path,
    options: EngineOptions,
    deadline: Any,
    cancel: threading.Event,
) -> None:
    """One attempt: execute the order, report its start, lines, progress and end."""
    key = (order.task_run_id, order.attempt)

    def send(kind: EventKind, payload: dict[str, Any]) -> None:
        put(ExecutorEvent(key[0], key[1], kind, payload))

    send(EventKind.started, {"worker": f"local:{socket.gethostname()}:{os.getpid()}"})
    fenced = threading.Event()  # stopped at the lease's deadline, not on anyone's request

    def past_deadline() -> None:
        if deadline is not None and time.time() > deadline.value and not cancel.is_set():
            fenced.set()
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
    if fenced.is_set():  # the infrastructure's doing: lost (retried), never "cancelled"
        send(EventKind.lost, {"reason": FENCED_REASON})
    elif failure is not None:
        put(failure_event(key[0], key[1], failure))
    else:
        send(EventKind.result, {"result": result})


def _die_with_server(pid: int, start_time: int, *, now: _Now) -> None:
    """Watch the server (``pid`` started at ``start_time``); once it is gone, kill every
    process below this one, remove the running attempt's folder and exit at once: no
    result to report, nobody to hear it."""
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
        abandon_writes()  # an output half copied into the file store
        folder = now.folder
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)  # its lock file goes with the next sweep
        os._exit(1)

    threading.Thread(target=watch, name="simyard-server-watch", daemon=True).start()
