"""A work order: one task-run attempt as an executor ships it, with everything in object storage.

:func:`execute_work_order` is what runs on the worker (a local child process or a Dask
worker): fetch the model bundle (cached by hash) and the files, run the task through
:func:`~simyard.engine.task.run_task`, and store outputs, diagnostics and the log under
the attempt's own prefix, so that a late result of a lost attempt overwrites nothing.

The attempt's folder (``run<ID>/<task>.a<N>`` below the work root) is removed when the
attempt ends, however it ends; while it runs, its engine holds an exclusive ``flock``
on ``<task>.a<N>.lock`` beside it. The lock dies with its holder, so a folder whose lock
is free belongs to a dead attempt: :func:`sweep_dead_attempts` kills what still runs in
it and removes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import shutil
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from simyard.engine.bundles import stored_model_dir
from simyard.engine.proctree import ProcessTree, working_below
from simyard.engine.result import OutputFile, TaskOutcome
from simyard.engine.task import EngineOptions, LineCallback, ProgressCallback, TaskRequest, run_task
from simyard.errors import EngineError, TaskRefused
from simyard.images.cache import ImageCache, UnpackedImage
from simyard.images.store import fetch_layout
from simyard.manifest.params import validate_parameters
from simyard.manifest.results import metric_source, read_metric
from simyard.manifest.schema import Manifest
from simyard.storage.base import StorageError, Store


@dataclass(frozen=True)
class StoredOutput:
    """An output file as stored: its path in the working directory and its storage key."""

    path: str
    key: str
    size: int
    sha256: str


@dataclass
class WorkOrder:
    """One attempt of one task run. Picklable, and holds no secret."""

    run_id: int
    task_run_id: int
    task: str
    attempt: int
    manifest: Manifest
    bundle_key: str
    bundle_hash: str
    params: dict[str, Any]  # as stored (JSON): typed again on the worker
    inputs: dict[str, str] = field(default_factory=dict)  # slot -> storage key
    upstream: dict[str, str] = field(default_factory=dict)  # path in workdir -> storage key
    image: str | None = None  # digest of the image the task runs in (simyard.images)
    parameter_file: bytes | None = None  # rendered at submission; None: render it here

    @property
    def prefix(self) -> str:
        """Where this attempt's files go in storage."""
        return f"runs/{self.run_id}/tasks/{self.task}/a{self.attempt}/"


@dataclass
class WorkResult:
    """What came of a work order, ready for the dispatcher to record."""

    task_run_id: int
    attempt: int
    outcome: TaskOutcome
    started_at: dt.datetime
    finished_at: dt.datetime
    exit_code: int | None = None
    signal: int | None = None
    warnings: list[str] = field(default_factory=list)  # lines matching warning_patterns
    failure_kind: str | None = None
    failure_reason: str | None = None
    failure_summary: str | None = None
    outputs: list[StoredOutput] = field(default_factory=list)
    diagnostics: list[StoredOutput] = field(default_factory=list)
    log: StoredOutput | None = None
    progress: float | None = None
    metrics: dict[str, Any] | None = None  # the run's metrics this task's files hold
    cpu_seconds: float | None = None  # used by the model's processes, where measured


LOCK_SUFFIX = ".lock"


def attempt_dir_of(work_root: Path, order: WorkOrder) -> Path:
    """The folder of ``order``'s attempt below ``work_root``."""
    return work_root / f"run{order.run_id}" / f"{order.task}.a{order.attempt}"


def _lock_path(attempt_dir: Path) -> Path:
    return attempt_dir.with_name(attempt_dir.name + LOCK_SUFFIX)


def _take_lock(attempt_dir: Path, *, wait: bool) -> int | None:
    """A descriptor holding the attempt's lock; None when another process holds it.

    The lock file is removed by whoever ends the attempt, so after taking the lock its
    name is checked to still name the locked file (else a second holder could lock a
    new file of the same name).
    """
    path = _lock_path(attempt_dir)
    while True:
        fd = None
        for _ in range(10):  # a sweep may remove the empty run folder in between
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                break
        if fd is None:
            raise EngineError(f"cannot make the lock file of {attempt_dir.name}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _end_attempt(attempt_dir: Path, lock_fd: int) -> None:
    """Remove the attempt's folder, its lock file and an emptied run folder; unlock."""
    try:
        shutil.rmtree(attempt_dir, ignore_errors=True)
        _lock_path(attempt_dir).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            attempt_dir.parent.rmdir()  # only when no other attempt of the run is there
    finally:
        os.close(lock_fd)


@contextlib.contextmanager
def attempt_folder(attempt_dir: Path, *, keep: bool = False) -> Iterator[Path]:
    """Hold the attempt's lock while it runs; remove its folder when it ends (unless ``keep``)."""
    fd = _take_lock(attempt_dir, wait=True)
    assert fd is not None
    try:
        if attempt_dir.exists():
            shutil.rmtree(attempt_dir)
        yield attempt_dir
    finally:
        if keep:
            _lock_path(attempt_dir).unlink(missing_ok=True)
            os.close(fd)
        else:
            _end_attempt(attempt_dir, fd)


def sweep_dead_attempts(work_root: Path, only: Iterable[Path] | None = None) -> list[Path]:
    """Kill the processes left in folders of attempts that no live engine holds, and remove
    those folders; ``only`` limits the look to these attempt folders. The removed ones."""
    candidates: set[Path] = set(only) if only is not None else set()
    run_dirs: list[Path] = []
    if only is None:
        with contextlib.suppress(OSError):
            run_dirs = [d for d in work_root.iterdir() if d.name.startswith("run") and d.is_dir()]
        for run_dir in run_dirs:
            with contextlib.suppress(OSError):
                candidates |= {
                    run_dir / e.name.removesuffix(LOCK_SUFFIX) for e in run_dir.iterdir()
                }
    removed = []
    for attempt_dir in sorted(candidates):
        if not attempt_dir.exists() and not _lock_path(attempt_dir).exists():
            continue
        fd = _take_lock(attempt_dir, wait=False)
        if fd is None:
            continue  # a live engine runs this attempt
        leftovers = working_below(attempt_dir)
        if leftovers:
            ProcessTree.of(leftovers).kill()
        _end_attempt(attempt_dir, fd)
        removed.append(attempt_dir)
    for run_dir in run_dirs:  # emptied, or left empty by a failed fetch of an older version
        with contextlib.suppress(OSError):
            run_dir.rmdir()
    return removed


def _local_copy(store: Store, key: str, scratch: Path) -> Path:
    """A stored file on this machine: the store's own file, or a copy in this attempt's scratch.

    Not a cache shared between runs: the scratch folder belongs to one attempt and is
    removed with it; only model bundles are shared (see :mod:`simyard.engine.cache`).
    """
    local = store.local_path(key)
    if local is not None:
        return local
    dest = scratch / key
    if not dest.is_file():
        store.get(key, dest)
    return dest


def _store_files(store: Store, prefix: str, files: list[OutputFile]) -> list[StoredOutput]:
    """Store every file under ``prefix``; many at once where the store can (S3)."""
    pairs = [(prefix + output.path, output.source) for output in files]
    put_many = getattr(store, "put_many", None)
    if put_many is not None and len(pairs) > 1:
        put_many(pairs)
    else:
        for key, source in pairs:
            store.put(key, source)
    return [
        StoredOutput(output.path, key, output.size, output.sha256)
        for output, (key, _) in zip(files, pairs, strict=True)
    ]


def task_metrics(
    manifest: Manifest,
    task: str,
    outputs: Iterable[OutputFile],
    log_path: Path,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """The run's metrics (``results.metrics``) read from this task's own files, here where
    they are: those whose file (placeholders filled, a glob's last match) is among its
    outputs, or whose log is its log."""
    files = {output.path: output.source for output in outputs}
    return {
        name: read_metric(metric, files, {task: log_path}, params)
        for name, metric in manifest.results.metrics.items()
        if metric_source(metric, files, params) is not None or metric.log == task
    }


def execute_work_order(
    order: WorkOrder,
    *,
    store: Store,
    work_root: Path,
    cache_root: Path,
    options: EngineOptions,
    cancel: threading.Event | None = None,
    on_line: LineCallback | None = None,
    on_progress: ProgressCallback | None = None,
    keep_workdir: bool = False,
) -> WorkResult:
    """Run ``order`` on this machine and store what it produced.

    Raises EngineError (or StorageError) for infrastructure failures, which the
    dispatcher retries, and a Refusal (TaskRefused, UnsafeArchive) for what never will
    run; a model failure is a WorkResult like a success.
    """
    # This worker's own folders are data too (other runs, the shared cache): hidden from models.
    options = replace(options, hidden_dirs=(*options.hidden_dirs, work_root, cache_root))
    with attempt_folder(attempt_dir_of(work_root, order), keep=keep_workdir) as attempt_dir:
        return _execute_in(
            order, attempt_dir, store, cache_root, options, cancel, on_line, on_progress
        )


def _execute_in(
    order: WorkOrder,
    attempt_dir: Path,
    store: Store,
    cache_root: Path,
    options: EngineOptions,
    cancel: threading.Event | None,
    on_line: LineCallback | None,
    on_progress: ProgressCallback | None,
) -> WorkResult:
    scratch = attempt_dir / "fetched"
    try:
        model_dir = stored_model_dir(
            store=store,
            bundle_key=order.bundle_key,
            content_hash=order.bundle_hash,
            cache_root=cache_root,
        )
        inputs = {slot: _local_copy(store, key, scratch) for slot, key in order.inputs.items()}
        upstream = {rel: _local_copy(store, key, scratch) for rel, key in order.upstream.items()}
    except StorageError as exc:
        raise EngineError(f"cannot fetch the files of the task: {exc}") from exc
    checked = validate_parameters(order.manifest, order.params)
    if not checked.ok:
        raise TaskRefused("stored parameters no longer valid: " + str(checked.problems[0]))
    with contextlib.ExitStack() as held:
        image = None
        if order.image is not None:
            image = held.enter_context(image_for(order.image, store, cache_root, options))
        return _run_and_store(
            order, attempt_dir, model_dir, inputs, upstream, checked.values, image, store,
            options, cancel, on_line, on_progress,
        )  # fmt: skip


def image_for(
    digest: str, store: Store, cache_root: Path, options: EngineOptions
) -> contextlib.AbstractContextManager[UnpackedImage]:
    """The unpacked image ``digest`` (cached beside the bundles), held while the task runs."""
    cache = ImageCache(cache_root.parent / "images", options.image_cache_bytes)
    return cache.use(digest, lambda layout: fetch_layout(store, digest, layout))


def _run_and_store(
    order: WorkOrder,
    attempt_dir: Path,
    model_dir: Path,
    inputs: dict[str, Path],
    upstream: dict[str, Path],
    params: dict[str, Any],
    image: UnpackedImage | None,
    store: Store,
    options: EngineOptions,
    cancel: threading.Event | None,
    on_line: LineCallback | None,
    on_progress: ProgressCallback | None,
) -> WorkResult:
    request = TaskRequest(
        manifest=order.manifest,
        model_dir=model_dir,
        task=order.task,
        params=params,
        workdir=attempt_dir / "work",
        log_path=attempt_dir / "task.log",
        inputs=inputs,
        upstream=upstream,
        run_id=str(order.run_id),
        parameter_file=order.parameter_file,
        image=image,
    )
    result = run_task(request, options, cancel=cancel, on_line=on_line, on_progress=on_progress)
    try:
        outputs = _store_files(store, order.prefix + "outputs/", result.outputs)
        diagnostics = _store_files(store, order.prefix + "diagnostics/", result.diagnostics)
        log_key = order.prefix + "log.txt"
        store.put(log_key, result.log_path)
        log = StoredOutput("log.txt", log_key, result.log_path.stat().st_size, "")
    except (StorageError, OSError) as exc:
        raise EngineError(f"cannot store the outputs of the task: {exc}") from exc
    failure = result.failure
    metrics = task_metrics(
        order.manifest, order.task, result.outputs, result.log_path, request.params
    )
    return WorkResult(
        task_run_id=order.task_run_id,
        attempt=order.attempt,
        outcome=result.outcome,
        started_at=result.started_at,
        finished_at=result.finished_at,
        exit_code=result.exit_code,
        signal=result.signal,
        warnings=result.warnings,
        failure_kind=failure.kind if failure else None,
        failure_reason=failure.reason if failure else None,
        failure_summary=failure.summary(order.task) if failure else None,
        outputs=outputs,
        diagnostics=diagnostics,
        log=log,
        progress=result.progress,
        metrics=metrics,
        cpu_seconds=result.cpu_seconds,
    )
