"""A finishing run's metrics: as its tasks read them on the worker, from their own files.

The engine reads the metrics a task's outputs or log hold where the files are and
returns them with its result (``task_runs.metrics``); here they are put together inside
the finishing transaction (:meth:`RunMetrics.read`, no I/O). Only a run with a task whose
result came without them (a worker of an older version) has its metrics read from
storage (:meth:`RunMetrics.of_runs`): downloaded while no transaction is open, cached
under ``cache``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from simyard.domain.registry import manifest_of, version_of
from simyard.domain.tables import Run, StoredFile, TaskRun
from simyard.manifest.results import metric_source, read_metrics
from simyard.manifest.schema import Manifest
from simyard.storage.base import StorageError, Store


def merged_metrics(
    manifest: Manifest, by_task: list[dict[str, Any] | None]
) -> tuple[dict[str, Any], bool]:
    """Every declared metric from the tasks' own (in task order, a later task's value
    over an earlier one's), and whether a task that did not read its own leaves one unknown."""
    found: dict[str, Any] = {}
    unread = False
    for metrics in by_task:
        if metrics is None:
            unread = True
            continue
        found |= {name: value for name, value in metrics.items() if value is not None}
    values = {name: found.get(name) for name in manifest.results.metrics}
    return values, unread and any(value is None for value in values.values())


# Built once, values bound at each execution (see snapshot.py).
_RUNS = select(Run).where(Run.id.in_(bindparam("ids", expanding=True))).order_by(Run.id)
_TASK_METRICS = (
    select(TaskRun.metrics, TaskRun.started_at, TaskRun.reused_from)
    .where(TaskRun.run_id == bindparam("run_id"))
    .order_by(TaskRun.position)
)


class RunMetrics:
    """A finishing run's metrics, from its task runs; from storage only for older results."""

    def __init__(self, *, sessions: sessionmaker[Session], store: Store, cache: Path) -> None:
        self.sessions = sessions
        self.store = store
        self.cache = cache

    def read(
        self, db: Session, run_ids: list[int]
    ) -> tuple[dict[int, dict[str, Any] | None], list[int]]:
        """In ``db``'s transaction, no I/O: the metrics of the runs whose tasks all read
        their own (a run whose manifest declares none is left out: it gets None), and the
        ids of the others, whose metrics must come from storage (:meth:`of_runs`)."""
        metrics: dict[int, dict[str, Any] | None] = {}
        unread: list[int] = []
        for run in db.scalars(_RUNS, {"ids": run_ids}):
            manifest = manifest_of(version_of(db, run))
            if not manifest.results.metrics:
                continue
            rows = db.execute(_TASK_METRICS, {"run_id": run.id})
            by_task: list[dict[str, Any] | None] = []
            for found, started, reused in rows:
                never_ran = started is None and reused is None  # skipped, cancelled
                by_task.append({} if found is None and never_ran else found)
            values, missing = merged_metrics(manifest, by_task)
            if missing:
                unread.append(run.id)
            else:
                metrics[run.id] = values
        return metrics, unread

    def of_runs(self, run_ids: list[int]) -> dict[int, dict[str, Any] | None]:
        """Metrics per run (None where the manifest declares none), downloading what the
        tasks did not read themselves; no transaction held while anything is downloaded."""
        wanted: dict[int, tuple[Manifest, dict[str, Any], dict[str, str], dict[str, str]]] = {}
        with self.sessions() as db, db.begin():  # a short read
            metrics, unread = self.read(db, run_ids)
            for run in db.scalars(select(Run).where(Run.id.in_(unread))):
                manifest = manifest_of(version_of(db, run))
                sources = self._stored_sources(db, run.id, run.params, manifest)
                wanted[run.id] = (manifest, run.params, *sources)
        for run_id, (manifest, params, by_path, by_log) in wanted.items():
            local: dict[str, Path] = {}
            logs_local: dict[str, Path] = {}
            with contextlib.suppress(StorageError, OSError):
                for path, key in by_path.items():
                    local[path] = self._local(key)
                for task, key in by_log.items():
                    logs_local[task] = self._local(key)
            metrics[run_id] = read_metrics(manifest, local, logs_local, params)
        return metrics

    @staticmethod
    def _stored_sources(
        db: Session, run_id: int, params: dict[str, Any], manifest: Manifest
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The storage keys of the files (placeholders filled, a glob's last match) and
        logs the manifest's metrics name."""
        query = select(TaskRun.id, TaskRun.name).where(TaskRun.run_id == run_id)
        names: dict[int, str] = {task_id: name for task_id, name in db.execute(query)}
        logs = {m.log for m in manifest.results.metrics.values() if m.log}
        outputs: dict[str, str] = {}
        by_log: dict[str, str] = {}
        for f in db.scalars(
            select(StoredFile).where(
                StoredFile.run_id == run_id, StoredFile.kind.in_(["output", "log"])
            )
        ):
            if f.kind == "output":
                outputs[f.path] = f.key
            elif names.get(f.task_run_id or 0) in logs:
                by_log[names[f.task_run_id or 0]] = f.key
        paths = dict.fromkeys(outputs, Path())
        by_path: dict[str, str] = {}
        for metric in manifest.results.metrics.values():
            chosen = metric_source(metric, paths, params)
            if chosen is not None:
                by_path[chosen] = outputs[chosen]
        return by_path, by_log

    def _local(self, key: str) -> Path:
        path = self.store.local_path(key)
        if path is not None:
            return path
        dest = self.cache / key
        if not dest.exists():
            self.store.get(key, dest)
        return dest
