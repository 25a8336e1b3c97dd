"""Run a model's whole task graph in this process, without a server (``simyard models test``).

Independent tasks run in parallel threads, each through the engine's :func:`run_task`;
a task starts when every task it needs has succeeded, and is skipped when one failed.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from simyard import taskgraph
from simyard.engine import EngineOptions, TaskRequest, TaskResult, run_task
from simyard.engine.result import Failure, FailureKind, TaskOutcome
from simyard.errors import EngineError
from simyard.images.cache import UnpackedImage
from simyard.manifest.results import read_metrics
from simyard.manifest.schema import Manifest
from simyard.taskgraph import Readiness, Standing


class TaskState(StrEnum):
    """Where a task of a local run stands."""

    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"
    cancelled = "cancelled"
    skipped = "skipped"


@dataclass
class TaskStatus:
    """Live view of one task, updated while the run goes on."""

    name: str
    state: TaskState = TaskState.pending
    progress: float | None = None
    last_line: str = ""
    result: TaskResult | None = None


@dataclass
class LocalRun:
    """The outcome of a whole local run."""

    tasks: dict[str, TaskStatus]
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return all(t.state is TaskState.succeeded for t in self.tasks.values())

    def failures(self) -> list[tuple[str, Failure]]:
        """The failed tasks with their failures, in graph order."""
        return [
            (name, t.result.failure)
            for name, t in self.tasks.items()
            if t.result is not None and t.result.failure is not None
        ]


def upstream_outputs(
    manifest: Manifest, task: str, results: dict[str, TaskResult]
) -> dict[str, Path]:
    """Outputs of every task ``task`` needs (transitively), nearer tasks winning on a clash."""
    staged: dict[str, Path] = {}
    for name in manifest.ancestors(task):
        for output in results[name].outputs:
            staged[output.path] = output.source
    return staged


def run_locally(
    manifest: Manifest,
    model_dir: Path,
    *,
    params: dict[str, Any],
    inputs: dict[str, Path],
    work_root: Path,
    options: EngineOptions,
    max_parallel: int,
    on_change: Callable[[TaskStatus], None] | None = None,
    cancel: threading.Event | None = None,
    images: Mapping[str, UnpackedImage] | None = None,
) -> LocalRun:
    """Run every task of ``manifest`` in dependency order; return when all have ended.

    ``images``: each task's unpacked image (simyard.images.local), for a model that has one.
    """
    statuses = {name: TaskStatus(name) for name in manifest.task_order()}
    results: dict[str, TaskResult] = {}
    cancel = cancel or threading.Event()

    def changed(status: TaskStatus) -> None:
        if on_change is not None:
            on_change(status)

    def start(name: str) -> TaskResult:
        status = statuses[name]

        def on_line(line: str) -> None:
            status.last_line = line
            changed(status)

        def on_progress(percent: float) -> None:
            status.progress = percent

        request = TaskRequest(
            manifest=manifest,
            model_dir=model_dir,
            task=name,
            params=params,
            workdir=work_root / name,
            log_path=work_root / "logs" / f"{name}.log",
            inputs=inputs,
            upstream=upstream_outputs(manifest, name, results),
            image=(images or {}).get(name),
        )
        return run_task(request, options, cancel=cancel, on_line=on_line, on_progress=on_progress)

    with ThreadPoolExecutor(max_workers=max_parallel) as pool:
        running: dict[Future[TaskResult], str] = {}
        while True:
            for name, status in statuses.items():
                if status.state is not TaskState.pending:
                    continue
                ready = taskgraph.readiness(
                    _standing(statuses[d].state) for d in manifest.tasks[name].needs
                )
                if ready is Readiness.skip:
                    status.state = TaskState.skipped
                    changed(status)
                elif ready is Readiness.start and not cancel.is_set():
                    status.state = TaskState.running
                    changed(status)
                    running[pool.submit(start, name)] = name
                elif cancel.is_set():
                    status.state = TaskState.cancelled
                    changed(status)
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                status = statuses[name]
                try:
                    result = future.result()
                except EngineError as exc:
                    status.state = TaskState.failed
                    status.result = None
                    status.last_line = f"simyard: {exc}"
                    _record_infrastructure(status, exc, work_root)
                else:
                    results[name] = result
                    status.result = result
                    status.state = TaskState(result.outcome.value)
                    if result.progress is not None:
                        status.progress = result.progress
                changed(status)
    run = LocalRun(statuses)
    files = {o.path: o.source for r in results.values() for o in r.outputs}
    logs = {name: r.log_path for name, r in results.items()}
    run.metrics = read_metrics(manifest, files, logs, params)
    return run


def _standing(state: TaskState) -> Standing:
    """A local task's state as the task graph sees it."""
    if state is TaskState.succeeded:
        return Standing.ok
    if state in (TaskState.pending, TaskState.running):
        return Standing.open
    return Standing.bad


def _record_infrastructure(status: TaskStatus, exc: EngineError, work_root: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    status.result = TaskResult(
        task=status.name,
        outcome=TaskOutcome.failed,
        workdir=work_root / status.name,
        log_path=work_root / "logs" / f"{status.name}.log",
        started_at=now,
        finished_at=now,
        failure=Failure(FailureKind.infrastructure, str(exc)),
    )
