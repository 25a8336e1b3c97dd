"""``/healthz`` and ``/metrics`` (Prometheus text format) for operators."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func, select, text

from simyard.api.deps import PlatformDep
from simyard.domain.tables import Run, TaskRun

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz(platform: PlatformDep) -> dict[str, str]:
    """200 when the database answers."""
    with platform.sessions() as db:
        db.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get("/metrics", responses={200: {"content": {"text/plain": {}}}})
def metrics(platform: PlatformDep) -> Response:
    """Runs and task runs by state, and executor slots."""
    registry = CollectorRegistry()
    runs = Gauge("simyard_runs", "Runs by state", ["state"], registry=registry)
    tasks = Gauge("simyard_task_runs", "Task runs by state", ["state"], registry=registry)
    slots = Gauge("simyard_executor_slots", "Executor slots", registry=registry)
    with platform.sessions() as db:
        for state, count in db.execute(select(Run.state, func.count()).group_by(Run.state)):
            runs.labels(state).set(count)
        for state, count in db.execute(select(TaskRun.state, func.count()).group_by(TaskRun.state)):
            tasks.labels(state).set(count)
    slots.set(platform.dispatcher.executor.slots)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
