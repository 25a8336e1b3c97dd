"""A finished run's metrics, read from its stored files before the finishing transaction.

Storage reads (an S3 download) never happen while a transaction is open: the dispatcher
asks for these first, then finishes the run with them in one short transaction.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from simyard.domain.registry import manifest_of
from simyard.domain.tables import Run, StoredFile, TaskRun
from simyard.manifest.results import read_metrics
from simyard.storage.base import StorageError, Store


class RunMetrics:
    """Reads the files the manifest's metrics name, caching remote ones under ``cache``."""

    def __init__(self, *, sessions: sessionmaker[Session], store: Store, cache: Path) -> None:
        self.sessions = sessions
        self.store = store
        self.cache = cache

    def of_runs(self, run_ids: list[int]) -> dict[int, dict[str, Any] | None]:
        """Metrics per run (None where the manifest declares none); no transaction held."""
        wanted: dict[int, tuple[Any, dict[str, str], dict[str, str]]] = {}
        with self.sessions() as db, db.begin():  # a short read: which files, where
            for run in db.scalars(select(Run).where(Run.id.in_(run_ids))):
                manifest = manifest_of(run.model_version)
                if not manifest.results.metrics:
                    continue
                names = dict(
                    db.execute(
                        select(TaskRun.id, TaskRun.name).where(TaskRun.run_id == run.id)
                    ).all()
                )
                files = {m.file for m in manifest.results.metrics.values() if m.file}
                logs = {m.log for m in manifest.results.metrics.values() if m.log}
                by_path: dict[str, str] = {}
                by_log: dict[str, str] = {}
                for f in db.scalars(
                    select(StoredFile).where(
                        StoredFile.run_id == run.id, StoredFile.kind.in_(["output", "log"])
                    )
                ):
                    if f.kind == "output" and f.path in files:
                        by_path[f.path] = f.key
                    elif f.kind == "log" and names.get(f.task_run_id or 0) in logs:
                        by_log[names[f.task_run_id or 0]] = f.key
                wanted[run.id] = (manifest, by_path, by_log)
        metrics: dict[int, dict[str, Any] | None] = {}
        for run_id, (manifest, by_path, by_log) in wanted.items():
            local: dict[str, Path] = {}
            logs_local: dict[str, Path] = {}
            with contextlib.suppress(StorageError, OSError):
                for path, key in by_path.items():
                    local[path] = self._local(key)
                for task, key in by_log.items():
                    logs_local[task] = self._local(key)
            metrics[run_id] = read_metrics(manifest, local, logs_local)
        return metrics

    def _local(self, key: str) -> Path:
        path = self.store.local_path(key)
        if path is not None:
            return path
        dest = self.cache / key
        if not dest.exists():
            self.store.get(key, dest)
        return dest
