"""The executor contract (executors/base.py), run against every executor: the local one
(a child process per attempt) and Dask (a real scheduler and two worker processes).

Each test submits real work orders of a small real model, through the executor's four
methods, and looks only at what the contract promises: the events ``poll`` hands back
and what the attempt stored. A new executor proves itself by passing this file.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path

import pytest

from simyard.engine.bundles import make_bundle
from simyard.engine.result import FailureKind, TaskOutcome
from simyard.engine.task import EngineOptions
from simyard.engine.workorder import WorkOrder, WorkResult
from simyard.executors.base import EventKind, Executor, ExecutorEvent
from simyard.manifest import load_manifest
from simyard.storage.file import FileStore
from tests.daskcluster import DaskCluster

MODEL = """\
simyard: 1
name: contract
version: "1"
parameters:
  seconds: {type: number, default: 0}
  code: {type: integer, default: 0}
tasks:
  run:
    command: [python3, run.py, "{seconds}", "{code}"]
    outputs: [results/]
results:
  metrics:
    total: {file: results/summary.json, key: total}
    steps: {log: run, pattern: "steps=([0-9]+)"}
"""
RUN_PY = """\
import json, os, sys, time
seconds, code = float(sys.argv[1]), int(sys.argv[2])
print("hello from the model", flush=True)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    print("working", flush=True)
    time.sleep(0.1)
os.makedirs("results", exist_ok=True)
json.dump({"total": 42}, open("results/summary.json", "w"))
print("steps=7", flush=True)
sys.exit(code)
"""
OPTIONS = EngineOptions(kill_grace=2.0)
WAIT = 90.0  # seconds any one event may take on a loaded 2-core machine


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    cluster = DaskCluster(tmp_path_factory.mktemp("dask"))
    cluster.start_scheduler()
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    try:
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FileStore:
    return FileStore(tmp_path_factory.mktemp("store"))


@pytest.fixture(params=["local", "dask"])
def executor(
    request: pytest.FixtureRequest, tmp_path: Path, store: FileStore
) -> Iterator[Executor]:
    if request.param == "local":
        from simyard.executors.local import LocalExecutor

        made: Executor = LocalExecutor(
            store=store, work_root=tmp_path / "work", cache_root=tmp_path / "cache",
            options=OPTIONS, slots=2,
        )  # fmt: skip
    else:
        from simyard.executors.dask import DaskExecutor

        cluster = request.getfixturevalue("dask_cluster")
        made = DaskExecutor(address=cluster.address, store=store, options=OPTIONS)
    try:
        yield made
    finally:
        made.close()


_ids = count(1)


@pytest.fixture(scope="module")
def order_of(
    tmp_path_factory: pytest.TempPathFactory, store: FileStore
) -> Callable[..., WorkOrder]:
    """A new work order of the model (a task run id of its own), with these parameters."""
    model = tmp_path_factory.mktemp("model")
    (model / "simyard.yaml").write_text(MODEL)
    (model / "run.py").write_text(RUN_PY)
    manifest = load_manifest(model)
    tar, digest = make_bundle(model, tmp_path_factory.mktemp("bundle"))
    key = f"models/{digest}.tar"
    store.put(key, tar)

    def make(**params: object) -> WorkOrder:
        task_run_id = next(_ids)
        return WorkOrder(run_id=task_run_id, task_run_id=task_run_id, task="run", attempt=1,
                         manifest=manifest, bundle_key=key, bundle_hash=digest,
                         params=dict(params))  # fmt: skip

    return make


def events_until(
    executor: Executor, order: WorkOrder, done: Callable[[ExecutorEvent], bool]
) -> list[ExecutorEvent]:
    """The order's events, polled until one satisfies ``done`` (that one included)."""
    seen: list[ExecutorEvent] = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for event in executor.poll(timeout=0.2):
            if (event.task_run_id, event.attempt) != (order.task_run_id, order.attempt):
                continue
            seen.append(event)
            if done(event):
                return seen
    raise AssertionError(f"no such event within {WAIT} s; saw {[e.kind for e in seen]}")


def ended(event: ExecutorEvent) -> bool:
    return event.kind in (EventKind.result, EventKind.lost, EventKind.refused)


def lines_of(events: list[ExecutorEvent]) -> list[str]:
    return [line for e in events if e.kind is EventKind.lines for line in e.payload["lines"]]


def test_an_attempt_reports_start_lines_and_its_result_with_outputs_and_metrics(
    executor: Executor, order_of: Callable[..., WorkOrder], store: FileStore
) -> None:
    order = order_of(seconds=0.3)
    executor.submit(order)
    events = events_until(executor, order, ended)
    assert events[0].kind is EventKind.started
    assert events[0].payload["worker"]
    assert "hello from the model" in lines_of(events)
    assert events[-1].kind is EventKind.result
    result: WorkResult = events[-1].payload["result"]
    assert result.outcome is TaskOutcome.succeeded
    assert result.exit_code == 0
    assert [o.path for o in result.outputs] == ["results/summary.json"]
    assert store.exists(result.outputs[0].key)
    assert result.outputs[0].key.startswith(order.prefix)  # the attempt's own prefix
    assert result.log is not None
    assert store.exists(result.log.key)
    assert result.metrics == {"total": 42, "steps": 7}  # read on the worker, by the files


def test_a_model_that_fails_is_a_result_not_a_lost_attempt(
    executor: Executor, order_of: Callable[..., WorkOrder]
) -> None:
    order = order_of(code=3)
    executor.submit(order)
    last = events_until(executor, order, ended)[-1]
    assert last.kind is EventKind.result
    result: WorkResult = last.payload["result"]
    assert result.outcome is TaskOutcome.failed
    assert result.exit_code == 3
    assert result.failure_kind == FailureKind.model_error


def test_an_order_that_can_never_run_is_refused_not_lost(
    executor: Executor, order_of: Callable[..., WorkOrder]
) -> None:
    order = order_of(seconds="soon")  # stored parameters the manifest refuses
    executor.submit(order)
    last = events_until(executor, order, ended)[-1]
    assert last.kind is EventKind.refused
    assert "seconds" in last.payload["reason"]


def test_cancel_stops_a_running_attempt_and_poll_waits_no_longer_than_asked(
    executor: Executor, order_of: Callable[..., WorkOrder]
) -> None:
    started = time.monotonic()
    assert executor.poll(timeout=0.2) == []
    assert time.monotonic() - started < 5
    order = order_of(seconds=120)
    executor.submit(order)
    events_until(executor, order, lambda e: "working" in lines_of([e]))
    asked = time.monotonic()
    executor.cancel(order.task_run_id, order.attempt)
    last = events_until(executor, order, ended)[-1]
    assert time.monotonic() - asked < 60  # not the model's two minutes
    assert last.kind is EventKind.result
    assert last.payload["result"].outcome is TaskOutcome.cancelled


def test_an_attempt_whose_worker_dies_is_lost(
    executor: Executor, order_of: Callable[..., WorkOrder], request: pytest.FixtureRequest
) -> None:
    order = order_of(seconds=60)
    executor.submit(order)
    first = events_until(executor, order, lambda e: e.kind is EventKind.started)[-1]
    pid = int(first.payload["worker"].split(":")[2])  # "<kind>:<host>:<pid>[:<address>]"
    events_until(executor, order, lambda e: "working" in lines_of([e]))
    os.kill(pid, signal.SIGKILL)
    last = events_until(executor, order, ended)[-1]
    assert last.kind is EventKind.lost
    if "dask" in request.node.callspec.id:  # give the cluster its worker back
        cluster: DaskCluster = request.getfixturevalue("dask_cluster")
        name = next(n for n, p in cluster.workers.items() if p.pid == pid)
        cluster.workers[name].wait()
        cluster.start_worker(name)
        cluster.wait_for_workers(2)


def test_past_the_fence_an_attempt_stops_itself(
    executor: Executor, order_of: Callable[..., WorkOrder], request: pytest.FixtureRequest
) -> None:
    if "dask" in request.node.callspec.id:
        pytest.skip("the Dask executor does not implement fence (docs/architecture.md)")
    order = order_of(seconds=120)
    executor.submit(order)
    events_until(executor, order, lambda e: "working" in lines_of([e]))
    executor.fence(time.time() - 1)  # the lease this attempt was handed under is over
    last = events_until(executor, order, ended)[-1]
    # Lost, to be retried by whoever holds the lease: nobody asked for it to stop.
    assert last.kind is EventKind.lost
    assert "lease" in last.payload["reason"]


def test_interrupt_ends_a_waiting_poll_at_once_and_adds_no_event(executor: Executor) -> None:
    """The dispatcher waits in ``poll``; a new run must not wait out its timeout."""
    timer = threading.Timer(0.3, executor.interrupt)
    timer.start()
    began = time.monotonic()
    try:
        events = executor.poll(timeout=20)
    finally:
        timer.cancel()
    assert time.monotonic() - began < 10
    assert events == []
