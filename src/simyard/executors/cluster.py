"""The elastic Dask executor (``SIMYARD_EXECUTOR=dask-cluster``): simyard runs its own cluster.

The cluster file names a Dask deploy class (``distributed.LocalCluster``,
``dask_jobqueue.SLURMCluster``, ...); this executor starts it with no workers and then
grows and shrinks it from simyard's queue (:mod:`simyard.executors.scaling`), not from
Dask's adaptive heuristics, which see only tasks already handed to Dask. Attempts run
exactly as with :class:`~simyard.executors.dask.DaskExecutor`, which this extends: its
slots are the threads of the workers that joined, so nothing waits inside Dask for a
worker that may never come.

Workers and batch jobs are written to a state file in ``SIMYARD_HOME``; a server that
starts again after a crash cancels the jobs and stops the worker processes it finds
there, so no Slurm job outlives its server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simyard.engine.task import EngineOptions
from simyard.executors.base import EventKind, ExecutorEvent
from simyard.executors.clusterfile import ClusterFile
from simyard.executors.dask import DaskExecutor
from simyard.executors.deploy import WorkerPool, pool_for
from simyard.executors.scaling import (
    Demand,
    WorkerState,
    reconcile,
    unsatisfiable,
    waiting_reason,
    wanted_workers,
)
from simyard.storage.base import Store

log = logging.getLogger("simyard.cluster")

SCALE_SECONDS = 1.0
JOB_LABELS = {"SLURMCluster": "Slurm job", "PBSCluster": "PBS job", "SGECluster": "SGE job",
              "LSFCluster": "LSF job", "HTCondorCluster": "HTCondor job"}  # fmt: skip


def _no_demand() -> Demand:
    return Demand()


def cluster_options(spec: ClusterFile) -> dict[str, Any]:
    """The deploy class's keyword arguments: the file's, plus what simyard needs.

    Workers declare the shape's resources (so Dask places tasks by ``cpus``/``memory``),
    the cluster starts with no workers, and the scheduler stays on loopback unless the
    file says otherwise.
    """
    options = dict(spec.options)
    shape = spec.shape()
    resources: dict[str, float] = {"cpus": shape.cpus}
    if shape.memory is not None:
        resources["memory"] = float(shape.memory)
    if spec.is_local:
        options.setdefault("n_workers", 0)
        options.setdefault("processes", True)
        options.setdefault("threads_per_worker", shape.threads)
        options.setdefault("host", "127.0.0.1")
        options.setdefault("dashboard_address", None)
        options.setdefault("resources", resources)
    elif spec.is_operator:
        # the operator's KubeCluster: a stable name, so a server started again adopts its
        # cluster; no workers at start; every worker declares the shape and its threads
        options.setdefault("name", "simyard")
        options.setdefault("n_workers", 0)
        options.setdefault("quiet", True)
        options.setdefault("shutdown_on_close", True)  # also once adopted: closed means gone
        command = options.get("worker_command") or ["dask-worker"]
        command = command.split() if isinstance(command, str) else list(command)
        options["worker_command"] = [*command, "--nthreads", str(shape.threads),
                                     "--resources", _declared(resources)]  # fmt: skip
    elif spec.is_ecs:  # dask-cloudprovider's ECSCluster, FargateCluster
        options.setdefault("n_workers", 0)
        options.setdefault("scheduler_timeout", "365 days")  # its default: gone after 5 idle min
        options.setdefault("worker_nthreads", shape.threads)
        options["worker_extra_args"] = [
            *(options.get("worker_extra_args") or []), "--resources", _declared(resources)
        ]  # fmt: skip
    elif spec.is_jobqueue:
        options.setdefault("n_workers", 0)
        options.setdefault("python", sys.executable)
        scheduler = dict(options.get("scheduler_options") or {})
        scheduler.setdefault("host", "127.0.0.1")
        scheduler.setdefault("dashboard_address", None)
        options["scheduler_options"] = scheduler
        options["worker_extra_args"] = [
            *(options.get("worker_extra_args") or []), "--resources", _declared(resources)
        ]  # fmt: skip
    return options


def _declared(resources: dict[str, float]) -> str:
    return ",".join(f"{k}={int(v) if v.is_integer() else v}" for k, v in resources.items())


class ClusterExecutor(DaskExecutor):
    """A Dask executor that starts, scales and stops its own cluster."""

    def __init__(
        self,
        *,
        spec: ClusterFile,
        store: Store,
        options: EngineOptions,
        state_file: Path,
        security: Any = None,
        demand: Callable[[], Demand] = _no_demand,
    ) -> None:
        self.spec = spec
        self.shape = spec.shape()
        self.price_per_worker_hour = spec.price_per_worker_hour
        self._state_file = state_file
        self.demand = demand  # replaced once the dispatcher exists (wiring)
        cls = spec.deploy_class()  # options checked against it, nothing started yet
        pool_cls = pool_for(cls, spec.class_)
        self._cancel_command = getattr(getattr(cls, "job_cls", None), "cancel_command", None)
        clean_up_leftovers(state_file, self._cancel_command)
        self._job_label = JOB_LABELS.get(cls.__name__, "job")
        self.cluster = cls(**cluster_options(spec))
        self.pool: WorkerPool = pool_cls(self.cluster)
        self._last_busy: dict[str, float] = {}  # worker name -> when it last ran an attempt
        self._ended_at: dict[str, float] = {}  # worker address -> when an attempt last ended
        self._attempt_on: dict[tuple[int, int], str] = {}  # attempt -> worker address
        self._ever_connected: set[str] = set()
        self._workers: list[WorkerState] = []
        self._wanted = spec.min_workers
        self._stop = threading.Event()
        try:
            super().__init__(
                address=self.pool.scheduler_address, store=store, options=options,
                security=security, min_slots=0,
            )  # fmt: skip
            self.pool.prepare(self._live_client())
        except BaseException:
            self.cluster.close()
            raise
        self._scaler = threading.Thread(target=self._scale_loop, name="simyard-scaler", daemon=True)
        self._scaler.start()

    # ------------------------------------------------------------------ what others ask

    def waiting(self) -> str | None:
        return waiting_reason(self._workers, self._wanted, self._job_label)

    def unsatisfiable(self, cpus: float, memory: int | None) -> str | None:
        """Why a task with these resources can never run here; None if it can."""
        return unsatisfiable(cpus, memory, self.shape)

    def poll(self, timeout: float) -> list[ExecutorEvent]:
        """The Dask executor's events; each attempt's worker noted, so it counts as busy
        until the attempt has ended (the scaler's ticks may miss a short attempt)."""
        events = super().poll(timeout)
        now = time.monotonic()
        for event in events:
            key = (event.task_run_id, event.attempt)
            if event.kind is EventKind.started:
                # "dask:HOST:PID:ADDRESS", see run_on_worker
                self._attempt_on[key] = str(event.payload.get("worker", "")).split(":", 3)[-1]
            elif event.kind in (EventKind.result, EventKind.lost, EventKind.refused):
                address = self._attempt_on.pop(key, None)
                if address:
                    self._ended_at[address] = now
        return events

    def close(self) -> None:
        self._stop.set()
        self._scaler.join(timeout=10)
        super().close()
        with contextlib.suppress(Exception):
            self.pool.close(timeout=30)
        self._state_file.unlink(missing_ok=True)

    # ------------------------------------------------------------------ scaling

    def _scale_loop(self) -> None:
        while not self._stop.wait(SCALE_SECONDS):
            try:
                self.scale_once()
            except Exception:  # the scheduler or the batch system away: try again
                log.exception("scaling the cluster failed")

    def observe(self) -> list[WorkerState]:
        """The workers the cluster has asked for, with what the scheduler says of each."""
        now = time.monotonic()
        client = self._live_client()
        joined = {str(w.get("name")): addr
                  for addr, w in client.scheduler_info()["workers"].items()}  # fmt: skip
        processing = client.processing()
        states = []
        for key in self.pool.asked(joined):
            addr = joined.get(key)
            busy = bool(addr and processing.get(addr))
            if busy or key not in self._last_busy:
                self._last_busy[key] = now
            if addr and key not in self._ever_connected:  # it just joined: idle from now
                self._ever_connected.add(key)
                self._last_busy[key] = now
            if addr in self._ended_at:
                self._last_busy[key] = max(self._last_busy[key], self._ended_at.pop(addr))
            states.append(WorkerState(
                name=key, connected=addr is not None, busy=busy,
                idle_for=now - self._last_busy[key], job_id=self.pool.job_id(key),
                retirable=self.pool.retirable(key),
            ))  # fmt: skip
        for key in set(self._last_busy) - {s.name for s in states}:
            del self._last_busy[key]
        return states

    def scale_once(self) -> None:
        """One reconcile: the workers wanted from the queue against those the cluster has."""
        states = self.observe()
        gone = [s.name for s in states if not s.connected and s.name in self._ever_connected]
        if gone:  # its job ended (scancel, walltime) or its process died: forget it
            self.pool.forget(gone)
            self._ever_connected -= set(gone)
            states = [s for s in states if s.name not in gone]
        wanted = wanted_workers(self.demand(), self.shape, min_workers=self.spec.min_workers,
                                max_workers=self.spec.max_workers)  # fmt: skip
        self._wanted = wanted
        self.pool.correct()
        plan = reconcile(wanted, states, idle_timeout=self.spec.idle_timeout)
        if plan.start:
            log.info("starting %d worker(s) for the queue", plan.start)
            self.pool.grow(plan.start)
        if plan.retire:
            self._retire(list(plan.retire))
        self._workers = self.observe() if plan.start or plan.retire or gone else states
        self._write_state()

    def _retire(self, names: list[str]) -> None:
        """Close idle workers, never one that got an attempt meanwhile (see WorkerPool)."""
        gone = self.pool.retire(self._live_client(), names)
        if gone:
            log.info("retiring idle worker(s) %s", ", ".join(gone))

    @property
    def slots(self) -> int:  # type: ignore[override]
        """Threads of the workers that take tasks (not those being retired)."""
        try:
            workers = self._live_client().scheduler_info()["workers"].values()
        except Exception:  # the scheduler is away
            return 0
        return sum(int(w.get("nthreads", 1)) for w in workers if w.get("status") == "running")

    def _write_state(self) -> None:
        """What to clean up should this server die: batch jobs and worker processes."""
        state = {
            "jobs": self.pool.jobs(),
            "pids": self.pool.pids() if self.spec.is_local else [],
            "wanted": self._wanted,  # for an operator's eyes: the last decision
            "workers": [vars(w) for w in self._workers],
        }
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self._state_file)


def check_deploy_class(cls: type[Any], name: str) -> None:
    """Refuse a class simyard cannot scale worker by worker (see :func:`pool_for`)."""
    pool_for(cls, name)


def clean_up_leftovers(state_file: Path, cancel: str | None) -> None:
    """Cancel the batch jobs and stop the worker processes a crashed server left behind."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return
    import subprocess

    import psutil

    jobs = [str(j) for j in state.get("jobs", []) if str(j).isdigit()]
    if cancel and jobs:
        log.warning("cancelling batch jobs left by a previous server: %s", ", ".join(jobs))
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([*cancel.split(), *jobs], capture_output=True, timeout=60, check=False)
    for pid, started in state.get("pids", []):
        with contextlib.suppress(psutil.Error, ValueError, TypeError):
            proc = psutil.Process(int(pid))
            if abs(proc.create_time() - float(started)) < 1:
                log.warning("stopping worker process %d left by a previous server", pid)
                proc.send_signal(signal.SIGKILL)
    state_file.unlink(missing_ok=True)
