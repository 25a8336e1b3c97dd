"""A work order: one task-run attempt as an executor ships it, with everything in object storage.

:func:`execute_work_order` is what runs on the worker (a local child process or a Dask
worker): fetch the model bundle (cached by hash) and the files, run the task through
:func:`~simyard.engine.task.run_task`, and store outputs, diagnostics and the log under
the attempt's own prefix, so that a late result of a lost attempt overwrites nothing.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from simyard.engine.bundles import stored_model_dir
from simyard.engine.result import OutputFile, TaskOutcome
from simyard.engine.task import EngineOptions, LineCallback, ProgressCallback, TaskRequest, run_task
from simyard.errors import EngineError
from simyard.manifest.params import validate_parameters
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
    failure_kind: str | None = None
    failure_reason: str | None = None
    failure_summary: str | None = None
    outputs: list[StoredOutput] = field(default_factory=list)
    diagnostics: list[StoredOutput] = field(default_factory=list)
    log: StoredOutput | None = None
    progress: float | None = None


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
    dispatcher retries; a model failure is a WorkResult like a success.
    """
    # This worker's own folders are data too (other runs, the shared cache): hidden from models.
    options = replace(options, hidden_dirs=(*options.hidden_dirs, work_root, cache_root))
    attempt_dir = work_root / f"run{order.run_id}" / f"{order.task}.a{order.attempt}"
    if attempt_dir.exists():
        shutil.rmtree(attempt_dir)
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
        raise EngineError("stored parameters no longer valid: " + str(checked.problems[0]))
    request = TaskRequest(
        manifest=order.manifest,
        model_dir=model_dir,
        task=order.task,
        params=checked.values,
        workdir=attempt_dir / "work",
        log_path=attempt_dir / "task.log",
        inputs=inputs,
        upstream=upstream,
        run_id=str(order.run_id),
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
    finally:
        if not keep_workdir:
            shutil.rmtree(attempt_dir, ignore_errors=True)
    failure = result.failure
    return WorkResult(
        task_run_id=order.task_run_id,
        attempt=order.attempt,
        outcome=result.outcome,
        started_at=result.started_at,
        finished_at=result.finished_at,
        exit_code=result.exit_code,
        failure_kind=failure.kind if failure else None,
        failure_reason=failure.reason if failure else None,
        failure_summary=failure.summary(order.task) if failure else None,
        outputs=outputs,
        diagnostics=diagnostics,
        log=log,
        progress=result.progress,
    )
