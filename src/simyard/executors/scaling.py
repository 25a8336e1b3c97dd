"""How many workers the cluster should have, and which to retire: plain data in, a plan out.

Scaling follows simyard's queue, not Dask's adaptive heuristics (those see only tasks
already submitted to Dask, so a cluster at zero never grows). :func:`wanted_workers`
packs the queued and running task runs (within each user's quota) onto workers of the
cluster's shape; :func:`reconcile` compares that with the workers the cluster reports,
as Dask's ``SpecCluster`` corrects its state: start the missing ones, retire idle ones
past ``idle_timeout`` (never one running an attempt), pending ones first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from simyard.executors.clusterfile import WorkerShape


@dataclass(frozen=True)
class Work:
    """One queued or running task run, as the scaler sees it."""

    user_id: int
    cpus: float = 1.0
    memory: int | None = None
    running: bool = False


@dataclass(frozen=True)
class Demand:
    """The queue, read outside any transaction; ``quotas``: user -> most tasks at once."""

    work: tuple[Work, ...] = ()
    quotas: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerState:
    """A worker the cluster reports: ``connected`` once it joined the scheduler."""

    name: str
    connected: bool
    busy: bool = False  # running (or holding) an attempt
    idle_for: float = 0.0  # seconds since it last ran an attempt (or since it was asked for)
    job_id: str | None = None  # the batch job behind it, when there is one
    retirable: bool = True  # False: one the cluster cannot be told to drop (a pending pod)


@dataclass(frozen=True)
class ScalePlan:
    start: int = 0
    retire: tuple[str, ...] = ()


def fits(work: Work, shape: WorkerShape) -> bool:
    """Whether one worker of ``shape`` can ever run ``work``."""
    if work.cpus > shape.cpus:
        return False
    return work.memory is None or shape.memory is None or work.memory <= shape.memory


def unsatisfiable(cpus: float, memory: int | None, shape: WorkerShape) -> str | None:
    """The resource no worker of ``shape`` can ever give, said for the user; None if it fits."""
    if cpus > shape.cpus:
        return f"resources.cpus={cpus:g}: a worker of this cluster has {shape.cpus:g}"
    if memory is not None and shape.memory is not None and memory > shape.memory:
        return f"resources.memory={memory}: a worker of this cluster has {shape.memory} bytes"
    return None


def within_quotas(work: Iterable[Work], quotas: Mapping[int, int]) -> list[Work]:
    """The work that may run now: running first, then queued up to each user's quota."""
    items = sorted(work, key=lambda w: not w.running)  # stable: queue order kept
    taken: dict[int, int] = {}
    kept = []
    for item in items:
        limit = quotas.get(item.user_id)
        used = taken.get(item.user_id, 0)
        if limit is not None and used >= limit and not item.running:
            continue
        taken[item.user_id] = used + 1
        kept.append(item)
    return kept


def wanted_workers(
    demand: Demand, shape: WorkerShape, *, min_workers: int = 0, max_workers: int
) -> int:
    """Workers of ``shape`` that run all the work allowed now (first fit, largest first)."""
    bins: list[list[float]] = []  # per worker: cpus, memory, threads left
    memory_per = float(shape.memory) if shape.memory is not None else float("inf")
    allowed = [w for w in within_quotas(demand.work, demand.quotas) if fits(w, shape)]
    for item in sorted(allowed, key=lambda w: (-w.cpus, -(w.memory or 0))):
        need = (item.cpus, float(item.memory or 0), 1.0)
        for left in bins:
            if all(have >= want for have, want in zip(left, need, strict=True)):
                for i, want in enumerate(need):
                    left[i] -= want
                break
        else:
            if len(bins) >= max_workers:
                break
            bins.append([shape.cpus - need[0], memory_per - need[1], shape.threads - 1.0])
    return max(min_workers, min(len(bins), max_workers))


def reconcile(wanted: int, workers: Sequence[WorkerState], *, idle_timeout: float) -> ScalePlan:
    """Start what is missing; retire the excess among idle workers past ``idle_timeout``."""
    if wanted > len(workers):
        return ScalePlan(start=wanted - len(workers))
    excess = len(workers) - wanted
    idle = [w for w in workers if w.retirable and not w.busy and w.idle_for >= idle_timeout]
    idle.sort(key=lambda w: (w.connected, -w.idle_for))  # pending first, then the longest idle
    return ScalePlan(retire=tuple(w.name for w in idle[:excess]))


def waiting_reason(
    workers: Sequence[WorkerState], wanted: int, job_label: str = "job"
) -> str | None:
    """Why queued work waits on the cluster, or None: it waits for a free slot."""
    pending = [w for w in workers if not w.connected]
    if pending:
        jobs = sorted((w.job_id for w in pending if w.job_id), key=lambda j: (len(j), j))
        if jobs:
            shown = ", ".join(jobs[:3]) + (" ..." if len(jobs) > 3 else "")
            label = job_label + ("s" if len(jobs) > 1 else "")
            return f"starting a worker ({label} {shown} pending)"
        return "starting a worker"
    if wanted > len(workers):
        return "starting a worker"
    return None
