"""The API's answers filled from the tables (the shapes themselves live in simyard.schemas),
and the error answers every operation may give."""

from __future__ import annotations

from typing import Any

from simyard.domain.runs import ListedRun
from simyard.domain.states import RunState
from simyard.domain.sweeps import counts as sweep_counts
from simyard.domain.tables import ModelVersion, Run, StoredFile, Sweep
from simyard.domain.usage import run_usage
from simyard.schemas import (
    DetailOut,
    ErrorOut,
    ModelOut,
    OutputOut,
    ProblemOut,
    ProblemsOut,
    RunOut,
    SweepOut,
    TaskOut,
    Timestamp,
)

# The shapes, as the routers have always imported them from here.
__all__ = [
    "API_ERRORS", "REFUSED", "DetailOut", "ErrorOut", "ModelOut", "OutputOut", "ProblemOut",
    "ProblemsOut", "RunOut", "SweepOut", "TaskOut", "Timestamp", "parameters_schema",
    "run_out", "sweep_out",
]  # fmt: skip

REFUSED: dict[str, Any] = {"model": ProblemsOut, "description": "Refused: every problem, named"}
# What any API operation may answer besides its own successes, declared once for all.
API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": DetailOut, "description": "A body that cannot be read as what it claims"},
    401: {"model": DetailOut, "description": "No valid token or session"},
    403: {"model": DetailOut, "description": "Not allowed for this user or token"},
    404: {"model": DetailOut, "description": "No such thing, or not yours to see"},
    413: {"model": ProblemsOut, "description": "The body is over the server's size limit"},
    422: REFUSED,
    429: {"description": "Too many requests: try again after Retry-After seconds"},
}


def run_out(
    run: Run | ListedRun, outputs: list[StoredFile], queue_position: int | None = None
) -> RunOut:
    """Shape a run (with its task runs and model version loaded, or a list's rows) for the API."""
    names = {t.id: t.name for t in run.task_runs}
    row = run.row if isinstance(run, ListedRun) else run  # a list's columns, read directly
    error = None
    if row.error_kind:
        error = ErrorOut(kind=row.error_kind, task=row.error_task, summary=row.error_summary)
    usage = run_usage(run) or (None, None)
    return RunOut(
        id=row.id,
        model=run.model_version.name,
        version=run.model_version.version,
        state=row.state,
        owner=run.user.name,
        params=row.params,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        tasks=[
            TaskOut(
                name=t.name,
                state=t.state,
                attempt=t.attempt,
                exit_code=t.exit_code,
                signal=t.signal,
                warnings=t.warnings or [],
                progress=t.progress,
                started_at=t.started_at,
                finished_at=t.finished_at,
                heartbeat_at=t.heartbeat_at,
                failure_kind=t.failure_kind,
                failure_summary=t.failure_summary,
                image_digest=t.image_digest,
            )
            for t in run.task_runs
        ],
        outputs=[
            OutputOut(
                task=names.get(f.task_run_id or 0, ""), path=f.path, size=f.size, sha256=f.sha256
            )
            for f in outputs
        ],
        metrics=row.metrics,
        error=error,
        queue_position=queue_position,
        rerun_of=row.rerun_of,
        sweep_id=row.sweep_id,
        notify=row.notify,
        image_digest=run.model_version.image_digest,
        warnings=row.warnings or [],
        name=row.name,
        notes=row.notes,
        tags=row.tags or [],
        project=run.project.name if run.project else None,
        worker_seconds=usage[0],
        cpu_seconds=usage[1],
    )


def sweep_out(sweep: Sweep, *, with_runs: bool = True) -> SweepOut:
    """Shape a sweep (with its runs loaded) for the API; finished once every run has ended."""
    runs = sweep.runs
    ended = all(RunState(run.state).final for run in runs)
    finished = [run.finished_at for run in runs if run.finished_at]
    return SweepOut(
        id=sweep.id,
        model=sweep.model_version.name,
        version=sweep.model_version.version,
        owner=sweep.user.name,
        mode=sweep.mode,
        base_params=sweep.base_params,
        axes=sweep.axes,
        state="finished" if ended else "running",
        counts=sweep_counts(sweep),
        created_at=sweep.created_at,
        finished_at=max(finished) if ended and finished else None,
        runs=[run_out(run, []) for run in runs] if with_runs else [],
    )


def parameters_schema(version: ModelVersion) -> dict[str, Any]:
    """The model's parameters as a JSON Schema object (for forms and API clients)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    kinds = {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean"}
    for name, spec in version.manifest.get("parameters", {}).items():
        kind = spec["type"]
        prop: dict[str, Any] = {"title": spec.get("label") or name}
        if spec.get("help"):
            prop["description"] = spec["help"]
        if kind in kinds:
            prop["type"] = kinds[kind]
        elif kind == "choice":
            prop["enum"] = spec["choices"]
        elif kind == "date":
            prop |= {"type": "string", "format": "date"}
        for key, target in (
            ("min", "minimum"),
            ("max", "maximum"),
            ("pattern", "pattern"),
            ("max_length", "maxLength"),
            ("min_length", "minLength"),
            ("default", "default"),
        ):
            if spec.get(key) is not None:
                prop[target] = spec[key]
        for key in ("unit", "group", "warn_min", "warn_max"):
            if spec.get(key) is not None:
                prop[f"x-{key.replace('_', '-')}"] = spec[key]
        properties[name] = prop
        if spec.get("default") is None:
            required.append(name)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
