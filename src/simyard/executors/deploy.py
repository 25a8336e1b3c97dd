"""How the elastic executor drives a Dask deploy class: worker by name, or by a replica count.

A ``distributed.SpecCluster`` (``LocalCluster``, dask-jobqueue, dask-cloudprovider) starts
and closes workers by name, so simyard closes exactly the idle workers it chose
(:class:`SpecPool`). The dask-kubernetes operator's ``KubeCluster`` takes only a replica
count: when the count goes down, the operator asks the scheduler which workers to close
(``Scheduler.workers_to_close(n=...)``, which may name a busy worker when fewer are idle)
and deletes their pods. :class:`ReplicaPool` makes that choice simyard's: the count goes
down only by workers simyard has already retired through the scheduler (Dask gives them
nothing new), and ``RetiredWorkersOnly`` (retired.py), a scheduler plugin, lets the
scheduler offer no other worker for downscaling.

Nothing of Dask is imported here at import time: the server imports this module with the
local executor too, where ``distributed`` need not be installed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from typing import Any

from simyard.errors import SimyardError

PENDING = "(pending pod {})"  # a replica asked for whose worker has not joined yet


class WorkerPool:
    """The workers of a started deploy class, as the scaler sees and changes them."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    @property
    def scheduler_address(self) -> str:
        return str(self.cluster.scheduler_address)

    def prepare(self, client: Any) -> None:
        """Once connected to the scheduler: anything the scheduler must know."""

    def asked(self, joined: Collection[str]) -> list[str]:
        """Names of the workers asked for, those that have not joined the scheduler included."""
        raise NotImplementedError

    def retirable(self, name: str) -> bool:
        """Whether the scaler may choose this worker to go (when it is idle)."""
        return True

    def job_id(self, name: str) -> str | None:
        """The batch job behind a worker, when there is one."""
        return None

    def grow(self, n: int) -> None:
        """Ask for ``n`` more workers."""
        raise NotImplementedError

    def shrink(self, names: list[str]) -> None:
        """Close these workers: idle, and already retired through the scheduler."""
        raise NotImplementedError

    def retire(self, client: Any, names: list[str]) -> list[str]:
        """Close idle workers: first Dask gives them nothing new, then those still idle go.

        The dispatcher does not pick workers, Dask does: between a look at a worker and
        its closing Dask may hand it an attempt. Retired gracefully first, a worker takes
        nothing new; one that got an attempt meanwhile stays until it has ended it.
        Returns the names that went.
        """
        joined = {str(w.get("name")): addr
                  for addr, w in client.scheduler_info()["workers"].items()}  # fmt: skip
        addrs = [joined[n] for n in names if n in joined]
        if addrs:
            client.retire_workers(workers=addrs, close_workers=False, remove=False)
        busy = {addr for addr, keys in client.processing(addrs).items() if keys} if addrs else set()
        idle = [n for n in names if joined.get(n) not in busy and self.retirable(n)]
        if idle:
            self.shrink(idle)
        return idle

    def forget(self, names: list[str]) -> None:
        """These workers went away by themselves (job ended, process died)."""

    def correct(self) -> None:
        """Have the cluster correct its state, should an earlier correction have been cut short."""

    def jobs(self) -> list[str]:
        """Batch jobs to cancel should this server die."""
        return []

    def pids(self) -> list[list[float]]:
        """Worker processes (pid, start time) to stop should this server die."""
        return []

    def close(self, timeout: float) -> None:
        self.cluster.close(timeout=timeout)


class SpecPool(WorkerPool):
    """A ``SpecCluster``: workers are asked for, and closed, by name."""

    def _by_key(self) -> dict[str, Any]:
        return {str(name): name for name in list(self.cluster.worker_spec)}

    def asked(self, joined: Collection[str]) -> list[str]:
        return list(self._by_key())

    def job_id(self, name: str) -> str | None:
        job = self.cluster.workers.get(self._by_key().get(name, name))
        found = getattr(job, "job_id", None)
        return None if found is None else str(found)

    def grow(self, n: int) -> None:
        self.cluster.scale(len(self.cluster.worker_spec) + n)

    def shrink(self, names: list[str]) -> None:
        by_key = self._by_key()
        chosen = [by_key[n] for n in names if n in by_key]
        if chosen:
            self.cluster.sync(self.cluster.scale_down, chosen)

    def forget(self, names: list[str]) -> None:
        self.shrink(names)

    def correct(self) -> None:
        if set(self.cluster.worker_spec) != set(self.cluster.workers):
            self.cluster.scale(len(self.cluster.worker_spec))

    def jobs(self) -> list[str]:
        workers = list(self.cluster.workers.values())
        return [str(j.job_id) for j in workers if getattr(j, "job_id", None)]

    def pids(self) -> list[list[float]]:
        import psutil

        found = []
        for worker in list(self.cluster.workers.values()):
            with contextlib.suppress(Exception):
                proc = psutil.Process(int(worker.pid))  # a Nanny's worker process
                found.append([proc.pid, proc.create_time()])
        return found


class ReplicaPool(WorkerPool):
    """The dask-kubernetes operator: a replica count, lowered only by retired workers.

    Workers are known by name once they joined (the operator names each after its
    Deployment); replicas not joined yet are pending placeholders, never chosen to go: the
    operator cannot be told to drop a pending pod rather than a running one. A cluster
    found with more workers than asked for (a server started again) is adopted at that size.
    """

    def __init__(self, cluster: Any, replicas: int = 0) -> None:
        super().__init__(cluster)
        self.replicas = replicas
        self._leaving: set[str] = set()  # retired, count lowered: the operator deletes them

    def prepare(self, client: Any) -> None:
        from simyard.executors.retired import RetiredWorkersOnly

        try:
            client.register_plugin(RetiredWorkersOnly())
        except Exception as exc:
            raise SimyardError(
                f"the Kubernetes cluster's scheduler did not take simyard's plugin ({exc}); "
                "run the scheduler from the workers' image, with simyard installed"
            ) from None

    def asked(self, joined: Collection[str]) -> list[str]:
        self._leaving &= set(joined)
        live = sorted(n for n in joined if n not in self._leaving)
        self.replicas = max(self.replicas, len(live))
        return live + [PENDING.format(i + 1) for i in range(self.replicas - len(live))]

    def retirable(self, name: str) -> bool:
        return not name.startswith(PENDING.split("{", 1)[0])

    def grow(self, n: int) -> None:
        self.replicas += n
        self.cluster.scale(self.replicas)

    def shrink(self, names: list[str]) -> None:
        chosen = [n for n in names if self.retirable(n) and n not in self._leaving]
        if chosen:
            self._leaving.update(chosen)
            self.replicas = max(0, self.replicas - len(chosen))
            self.cluster.scale(self.replicas)


def is_operator_cluster(cls: type[Any]) -> bool:
    """Whether ``cls`` is (or extends) dask-kubernetes' operator ``KubeCluster``."""
    return any(
        f"{k.__module__}.{k.__qualname__}"
        == "dask_kubernetes.operator.kubecluster.kubecluster.KubeCluster"
        for k in cls.__mro__
    )


def pool_for(cls: type[Any], name: str) -> type[WorkerPool]:
    """The pool that drives ``cls``; a class simyard cannot scale worker by worker is refused."""
    from distributed import SpecCluster

    if issubclass(cls, SpecCluster):
        return SpecPool
    if is_operator_cluster(cls):
        return ReplicaPool
    raise SimyardError(
        f"cluster file: class {name!r} is neither a distributed.SpecCluster nor the "
        "dask-kubernetes operator's KubeCluster: simyard retires chosen idle workers and "
        "cannot do that through it (see docs/scale-out.md)"
    )
