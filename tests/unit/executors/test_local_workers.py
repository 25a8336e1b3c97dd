"""The local executor's worker processes: one attempt at a time, many in a row.

A worker runs the attempts sent to it one after the other (a process per attempt cost
more CPU than the engine's work), is replaced after its share of attempts, and honours
a cancel sent before its attempt even started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path

import psutil
import pytest

from simyard.engine.bundles import make_bundle
from simyard.engine.result import TaskOutcome
from simyard.engine.workorder import WorkOrder
from simyard.executors import local
from simyard.executors.base import EventKind, ExecutorEvent
from simyard.executors.local import LocalExecutor
from simyard.manifest import load_manifest
from simyard.storage.file import FileStore
from tests.contract.test_executors import MODEL, OPTIONS, RUN_PY, ended, events_until

_ids = count(1000)


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store")


@pytest.fixture
def order_of(tmp_path: Path, store: FileStore) -> Callable[..., WorkOrder]:
    model = tmp_path / "model"
    model.mkdir()
    (model / "simyard.yaml").write_text(MODEL)
    (model / "run.py").write_text(RUN_PY)
    manifest = load_manifest(model)
    tar, digest = make_bundle(model, tmp_path / "bundle")
    store.put(f"models/{digest}.tar", tar)

    def make(**params: object) -> WorkOrder:
        task_run_id = next(_ids)
        return WorkOrder(run_id=task_run_id, task_run_id=task_run_id, task="run", attempt=1,
                         manifest=manifest, bundle_key=f"models/{digest}.tar",
                         bundle_hash=digest, params=dict(params))  # fmt: skip

    return make


@pytest.fixture
def executor(tmp_path: Path, store: FileStore) -> Iterator[LocalExecutor]:
    made = LocalExecutor(store=store, work_root=tmp_path / "work", cache_root=tmp_path / "cache",
                         options=OPTIONS, slots=1)  # fmt: skip
    try:
        yield made
    finally:
        made.close()


def run_to_end(executor: LocalExecutor, order: WorkOrder) -> tuple[int, ExecutorEvent]:
    """The pid of the worker that ran ``order``, and its last event."""
    executor.submit(order)
    events = events_until(executor, order, ended)
    assert events[0].kind is EventKind.started
    return int(events[0].payload["worker"].split(":")[2]), events[-1]


def test_one_worker_runs_attempts_one_after_the_other(
    executor: LocalExecutor, order_of: Callable[..., WorkOrder], tmp_path: Path
) -> None:
    pids = set()
    for _ in range(3):
        pid, last = run_to_end(executor, order_of())
        assert last.kind is EventKind.result
        assert last.payload["result"].outcome is TaskOutcome.succeeded
        pids.add(pid)
    assert len(pids) == 1, "each attempt should not need a process of its own"
    assert list((tmp_path / "work").glob("run*/*")) == [], "an attempt's folder was left"


def test_a_worker_is_replaced_after_its_share_of_attempts(
    executor: LocalExecutor, order_of: Callable[..., WorkOrder], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "MAX_ATTEMPTS_PER_WORKER", 2)
    first, _ = run_to_end(executor, order_of())
    second, _ = run_to_end(executor, order_of())
    third, last = run_to_end(executor, order_of())
    assert first == second != third
    assert last.payload["result"].outcome is TaskOutcome.succeeded
    deadline = time.monotonic() + 30
    while psutil.pid_exists(first) and time.monotonic() < deadline:
        executor.poll(timeout=0.1)  # reaps the retired worker
    assert not psutil.pid_exists(first), "the retired worker is still running"


def test_a_cancel_sent_before_the_attempt_started_is_not_lost(
    executor: LocalExecutor, order_of: Callable[..., WorkOrder]
) -> None:
    run_to_end(executor, order_of())  # a worker is up and idle
    order = order_of(seconds=120)
    executor.submit(order)
    executor.cancel(order.task_run_id, order.attempt)  # before the worker took it up
    started = time.monotonic()
    last = events_until(executor, order, ended)[-1]
    assert last.kind is EventKind.result
    assert last.payload["result"].outcome is TaskOutcome.cancelled
    assert time.monotonic() - started < 60  # not the model's two minutes


def test_a_worker_killed_while_idle_costs_no_attempt(
    executor: LocalExecutor, order_of: Callable[..., WorkOrder]
) -> None:
    pid, _ = run_to_end(executor, order_of())
    worker = psutil.Process(pid)  # one handle: the executor may reap the pid meanwhile
    worker.kill()
    worker.wait(timeout=10)
    assert [e for e in executor.poll(timeout=0.2) if e.kind is EventKind.lost] == []
    second, last = run_to_end(executor, order_of())
    assert second != pid
    assert last.payload["result"].outcome is TaskOutcome.succeeded


def test_interrupt_ends_a_waiting_poll_at_once(executor: LocalExecutor) -> None:
    """The dispatcher wakes the executor's poll when a run is created: it is claimed then,
    not when the poll's wait runs out."""
    import threading

    timer = threading.Timer(0.2, executor.interrupt)
    timer.start()
    started = time.monotonic()
    assert executor.poll(timeout=30) == []
    assert time.monotonic() - started < 5
    timer.join()


def test_interrupts_nobody_polls_for_never_block_the_caller(executor: LocalExecutor) -> None:
    """A standby server wakes its executor on every run created but never polls it: the
    wakes must not fill a pipe and hang the API thread that sends them."""
    started = time.monotonic()
    for _ in range(100_000):  # far more than a pipe holds
        executor.interrupt()
    assert time.monotonic() - started < 30
    assert executor.poll(timeout=0.1) == []  # the pending wake is read, nothing else
