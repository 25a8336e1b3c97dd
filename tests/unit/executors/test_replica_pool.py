"""Driving the dask-kubernetes operator's KubeCluster by its replica count, without Kubernetes.

The operator, on a lower count, asks the scheduler ``workers_to_close(n=..., attribute=
"name")``, retires those and deletes their pods; :class:`OperatorStandIn` does exactly that
on a real ``distributed.LocalCluster`` (its workers in place of pods). What is tested is
simyard's side: the counts it asks for, and that the scheduler it talks to offers only the
workers simyard retired, so a worker running an attempt keeps it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from distributed import Client, LocalCluster

from simyard.executors.deploy import PENDING, ReplicaPool

RELEASE = threading.Event()


def hold() -> str:
    """An attempt that runs until the test lets it end."""
    RELEASE.wait(60)
    return "done"


class OperatorStandIn:
    """The operator's replica handling, on a LocalCluster: the calls simyard makes are kept."""

    def __init__(self, local: LocalCluster) -> None:
        self.local = local
        self.counts: list[int] = []

    @property
    def scheduler_address(self) -> str:
        return str(self.local.scheduler_address)

    def pick(self, n: int) -> list[str]:
        """What the operator asks the scheduler when the count goes down by ``n``."""
        names = self.local.sync(self.local.scheduler_comm.workers_to_close, n=n, attribute="name")
        return [str(name) for name in names]

    def scale(self, n: int) -> None:
        self.counts.append(n)
        current = len(self.local.worker_spec)
        if n > current:
            self.local.scale(n)
        elif n < current:  # the operator: the scheduler names them, then their pods go
            names = self.local.sync(
                self.local.scheduler_comm.workers_to_close, n=current - n, attribute="name"
            )
            self.local.sync(self.local.scheduler_comm.retire_workers, names=names)
            self.local.sync(self.local.scale_down, names)

    def close(self, timeout: float) -> None:
        self.local.close(timeout=timeout)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def joined(client: Client) -> dict[str, str]:
    """Worker name -> address, as the scheduler reports them."""
    return {str(w["name"]): a for a, w in client.scheduler_info()["workers"].items()}


@pytest.fixture
def operator() -> Iterator[tuple[OperatorStandIn, Client]]:
    RELEASE.clear()
    local = LocalCluster(n_workers=0, processes=False, threads_per_worker=1, protocol="tcp",
                         host="127.0.0.1", dashboard_address=":0")  # fmt: skip
    client = Client(local)
    try:
        yield OperatorStandIn(local), client
    finally:
        RELEASE.set()
        client.close()
        local.close()


def started(operator: OperatorStandIn, client: Client, n: int) -> ReplicaPool:
    """``n`` workers through the pool; simyard's plugin not registered yet (``prepare``)."""
    pool = ReplicaPool(operator)
    pool.grow(n)
    wait_for(lambda: len(joined(client)) == n, f"{n} workers")
    return pool


def test_workers_are_asked_for_by_count(operator: tuple[OperatorStandIn, Client]) -> None:
    standin, client = operator
    pool = started(standin, client, 2)
    pool.grow(1)
    assert standin.counts == [2, 3]
    wait_for(lambda: len(joined(client)) == 3, "a third worker")
    assert pool.asked(joined(client)) == sorted(joined(client))


def test_the_scheduler_offers_the_operator_only_the_workers_simyard_retired(
    operator: tuple[OperatorStandIn, Client],
) -> None:
    standin, client = operator
    pool = started(standin, client, 3)
    workers = joined(client)
    unaided = standin.pick(1)[0]  # the scheduler's own choice among idle workers
    chosen = next(name for name in sorted(workers) if name != unaided)
    pool.prepare(client)
    assert standin.pick(1) == []  # none retired: none offered
    client.retire_workers(workers=[workers[chosen]], close_workers=False, remove=False)
    assert standin.pick(1) == [chosen]
    assert standin.pick(3) == [chosen]  # never an idle worker simyard kept


def test_going_down_closes_the_retired_worker_and_a_busy_one_keeps_its_attempt(
    operator: tuple[OperatorStandIn, Client],
) -> None:
    standin, client = operator
    pool = started(standin, client, 3)
    workers = joined(client)
    busy = sorted(workers)[0]
    attempt = client.submit(hold, workers=[workers[busy]], pure=False)
    wait_for(lambda: bool(client.processing([workers[busy]])[workers[busy]]), "the attempt")
    unaided = standin.pick(1)[0]  # busy sorts last: this is an idle one
    idle = next(name for name in sorted(workers) if name not in (busy, unaided))
    pool.prepare(client)

    # both looked idle when chosen; the busy one got an attempt meanwhile
    assert pool.retire(client, [idle, busy]) == [idle]

    assert standin.counts == [3, 2]
    assert sorted(joined(client)) == sorted([busy, unaided])
    assert attempt.status == "pending"  # still running where it started
    RELEASE.set()
    assert attempt.result(timeout=30) == "done"
    assert pool.asked(joined(client)) == sorted([busy, unaided])


def test_a_pending_pod_is_never_chosen_to_go(operator: tuple[OperatorStandIn, Client]) -> None:
    standin, client = operator
    pool = started(standin, client, 1)
    pool.replicas += 1  # asked for, its worker not joined yet
    names = pool.asked(joined(client))
    assert names == [*joined(client), PENDING.format(1)]
    assert not pool.retirable(PENDING.format(1))
    assert pool.retire(client, [PENDING.format(1)]) == []
    assert standin.counts == [1]  # the count did not go down


def test_a_cluster_found_larger_is_adopted_at_its_size(
    operator: tuple[OperatorStandIn, Client],
) -> None:
    standin, client = operator
    started(standin, client, 2)
    again = ReplicaPool(standin)  # a server started again: it asked for none
    assert again.asked(joined(client)) == sorted(joined(client))
    assert again.replicas == 2
    again.grow(1)
    assert standin.counts == [2, 3]
