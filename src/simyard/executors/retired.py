"""The scheduler plugin of the dask-kubernetes operator's clusters (see deploy.py, ReplicaPool)."""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin


class RetiredWorkersOnly(SchedulerPlugin):
    """Downscaling may close only workers simyard retired (closing gracefully) that run nothing.

    Runs inside the scheduler, so the scheduler's image needs simyard (the workers' image).
    """

    name = "simyard-retired-workers-only"
    idempotent = True

    def valid_workers_downscaling(self, scheduler: Any, workers: list[Any]) -> list[Any]:
        from distributed.core import Status

        return [
            ws for ws in workers if ws.status == Status.closing_gracefully and not ws.processing
        ]
