"""``/healthz`` (liveness), ``/readyz`` (database and storage), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func, select, text

from simyard.api.deps import PlatformDep
from simyard.api.outages import outage_reason
from simyard.domain.tables import Run, TaskRun
from simyard.storage.base import ObjectNotFound
from simyard.storage.registry import file_store_root
from simyard.wiring import Platform

router = APIRouter(tags=["operations"])

READY_TIMEOUT = 5.0  # seconds a component may take to answer the readiness check
LOW_SPACE = 1 << 20  # bytes: less free space than this on a data file system is "full"
_probes = ThreadPoolExecutor(max_workers=4, thread_name_prefix="simyard-readyz")


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """200 while the server process serves (liveness): it asks nothing of the database or
    the storage, see ``/readyz`` for those."""
    return {"status": "ok"}


def _space_left(folder: Path | None) -> str:
    if folder is None:
        return "ok"
    try:
        stats = os.statvfs(folder)
    except OSError:
        return "ok"
    return "disk full" if stats.f_bavail * stats.f_frsize < LOW_SPACE else "ok"


def _database(platform: Platform) -> str:
    try:
        with platform.readers() as db:
            db.execute(text("SELECT 1"))
    except Exception as exc:  # any failure is the answer
        return outage_reason(exc) or f"database error: {type(exc).__name__}"
    database = platform.database.engine.url.database
    if platform.database.engine.url.get_backend_name() == "sqlite" and database:
        return "database disk full" if _space_left(Path(database).parent) != "ok" else "ok"
    return "ok"


def _storage(platform: Platform) -> str:
    try:
        platform.store.stat("readyz-probe")
    except ObjectNotFound:
        pass  # it answered
    except Exception as exc:  # any failure is the answer
        return outage_reason(exc) or f"storage error: {type(exc).__name__}"
    root = file_store_root(platform.settings.resolved_storage_url)
    return "storage disk full" if _space_left(root) != "ok" else "ok"


def _within(check: Callable[[Platform], str], platform: Platform, what: str) -> str:
    future = _probes.submit(check, platform)
    try:
        return future.result(timeout=READY_TIMEOUT)
    except FutureTimeout:
        return f"{what} unreachable: no answer within {READY_TIMEOUT:g} s"


@router.get("/readyz", responses={503: {"description": "Not ready: the reasons"}})
def readyz(platform: PlatformDep) -> JSONResponse:
    """200 when the database and the storage answer (and have room); else 503 with each
    component's state (readiness, for a load balancer)."""
    answer = {
        "database": _within(_database, platform, "database"),
        "storage": _within(_storage, platform, "storage"),
    }
    ready = all(v == "ok" for v in answer.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", **answer},
        status_code=200 if ready else 503,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/metrics", responses={200: {"content": {"text/plain": {}}}})
def metrics(platform: PlatformDep) -> Response:
    """Runs and task runs by state, and executor slots."""
    registry = CollectorRegistry()
    runs = Gauge("simyard_runs", "Runs by state", ["state"], registry=registry)
    tasks = Gauge("simyard_task_runs", "Task runs by state", ["state"], registry=registry)
    slots = Gauge("simyard_executor_slots", "Executor slots", registry=registry)
    with platform.readers() as db:
        for state, count in db.execute(select(Run.state, func.count()).group_by(Run.state)):
            runs.labels(state).set(count)
        for state, count in db.execute(select(TaskRun.state, func.count()).group_by(TaskRun.state)):
            tasks.labels(state).set(count)
    slots.set(platform.dispatcher.executor.slots)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
