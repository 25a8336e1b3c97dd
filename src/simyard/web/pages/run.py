"""The run page (live state, task timeline, logs, failure, outputs, metrics, plots).

It renders everything already known on the server, so a finished run reads without
JavaScript; ``run.js`` adds the liveness from the API's event and log streams. Comparing
runs is ``compare.py``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from simyard.api.deps import RowId, get_platform
from simyard.api.schemas import RunOut, TaskOut, run_out
from simyard.domain.registry import manifest_of
from simyard.domain.runs import RunNotFound, get_run, progress_of, queue_position, run_files
from simyard.domain.states import RunState, TaskRunState
from simyard.domain.tables import Run, StoredFile, User
from simyard.domain.waiting import waiting_reason
from simyard.engine.result import FAILURE_WORDS
from simyard.errors import TaskRefused
from simyard.manifest.placeholders import fill, pick_file
from simyard.manifest.schema import Manifest
from simyard.web.pages.common import PageDb, PageUser
from simyard.web.pages.shares import share_panel
from simyard.web.templating import duration, render
from simyard.wiring import Platform

router = APIRouter()

PlatformDep = Annotated[Platform, Depends(get_platform)]
FAILURE_TEXT = {kind.value: words for kind, words in FAILURE_WORDS.items()}


def _visible_run(db: Session, user: User, run_id: int) -> Run:
    """The run if ``user`` may see it; 404 (never 403: another user's run does not exist)."""
    try:
        return get_run(db=db, run_id=run_id, user=user)
    except RunNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"run {run_id} not found") from None


def _output_files(db: Session, run: Run) -> list[dict[str, Any]]:
    """Outputs and diagnostics, shaped like ``GET /api/v1/runs/{id}/outputs``."""
    names = {t.id: t.name for t in run.task_runs}
    files = db.scalars(
        select(StoredFile)
        .where(StoredFile.run_id == run.id, StoredFile.kind.in_(["output", "diagnostic"]))
        .order_by(StoredFile.task_run_id, StoredFile.path)
    )
    return [
        {"task": names.get(f.task_run_id or 0, ""), "kind": f.kind, "path": f.path, "size": f.size}
        for f in files
    ]


FLAT_OUTPUTS = 100  # up to this many outputs the page lists each; more are shown by folder
MAX_FOLDERS = 200  # more folders than this: they are merged into their parents


@dataclass(frozen=True)
class OutputFolder:
    """The outputs of one task under one folder (``""``: the task's top level)."""

    task: str
    path: str
    files: list[dict[str, Any]]

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files)


def output_folders(outputs: list[dict[str, Any]]) -> list[OutputFolder]:
    """The outputs grouped by task and folder, as deep as keeps the folders at most
    MAX_FOLDERS (OpenFOAM's 1,600 files in a folder per time step group by time step)."""
    depth = max((o["path"].count("/") for o in outputs), default=0)
    while True:
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for o in outputs:
            folder = "/".join(o["path"].split("/")[:-1][:depth])
            groups.setdefault((o["task"], folder), []).append(o)
        if len(groups) <= MAX_FOLDERS or depth == 0:
            return [OutputFolder(task, path, files) for (task, path), files in groups.items()]
        depth -= 1


def progress_bar(run: RunOut, now: dt.datetime | None = None) -> tuple[float, str] | None:
    """The run's one progress bar while it has not ended: the running task that is least
    far (``simulate 40 % · about 3 min 10 s left``), else the share of tasks done."""
    progress = progress_of(run.state, run.tasks)
    if progress is None:
        return None
    if progress.slowest is None:
        done = f"{progress.ended} of {progress.tasks} tasks done"
        return 100 * progress.ended / progress.tasks, done
    task = progress.slowest
    left = time_left(task, now)
    return task.progress or 0, f"{task.name} {round(task.progress or 0)} %" + (
        f" · {left}" if left else ""
    )


def _log_sizes(db: Session, run: Run) -> dict[str, int]:
    """Bytes of each task's stored log (known once the task has ended), by task name."""
    names = {t.id: t.name for t in run.task_runs}
    return {
        names[f.task_run_id]: f.size
        for f in run_files(db=db, run=run, kind="log")
        if f.task_run_id in names
    }


def time_left(task: TaskOut, now: dt.datetime | None = None) -> str:
    """``about 3 min 10 s left``, from a running task's progress and elapsed time."""
    progress = task.progress
    if task.state != TaskRunState.running or task.started_at is None or not progress:
        return ""
    if progress >= 100:
        return ""
    now = now or dt.datetime.now(dt.UTC)
    started = task.started_at
    if started.tzinfo is None:
        started = started.replace(tzinfo=dt.UTC)
    elapsed = max((now - started).total_seconds(), 0.0)
    left = elapsed * (100 - progress) / progress
    return f"about {duration(now, now + dt.timedelta(seconds=left))} left"


def _progress_totals(manifest: Manifest, run: Run) -> dict[str, float]:
    """Each task's ``progress.total`` in this run, where it has one."""
    totals = {}
    for name, task in manifest.tasks.items():
        if task.progress_total is not None:
            with contextlib.suppress(TaskRefused, ValueError):
                totals[name] = float(fill(task.progress_total, run.params or {}))
    return totals


def _plots_of_run(manifest: Manifest, run: Run, paths: list[str]) -> list[dict[str, Any]]:
    """The manifest's plots, each ``file`` (placeholders, a glob) as the output it names."""
    plots = []
    for plot in manifest.results.plots:
        shown = plot.model_dump(mode="json")
        shown["file"] = pick_file(plot.file, run.params or {}, paths) or plot.file
        plots.append(shown)
    return plots


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request, run_id: RowId, db: PageDb, user: PageUser, platform: PlatformDep
) -> HTMLResponse:
    from simyard.web.pages.preview import first_rows  # preview.py imports this module

    run = _visible_run(db, user, run_id)
    shaped = run_out(run, run_files(db=db, run=run, kind="output"), queue_position(db=db, run=run))
    says = platform.dispatcher.executor.waiting()
    shaped.waiting = waiting_reason(db=db, run=run, executor_says=says, viewer=user)
    manifest = manifest_of(run.model_version)
    plots = _plots_of_run(manifest, run, [o.path for o in shaped.outputs])
    outputs = _output_files(db, run)
    inputs = run_files(db=db, run=run, kind="input")
    folders = output_folders(outputs) if len(outputs) > FLAT_OUTPUTS else None
    plotted = {p["file"] for p in plots}
    shown_run = shaped.model_dump(mode="json")
    shown_run["outputs"] = []  # the page lists them itself; a long list would weigh on it
    page_data = {
        "run": shown_run,
        # what the plots need; every output only while the list is short enough to show
        "outputs": [o for o in outputs if folders is None or o["path"] in plotted],
        "flat_outputs": FLAT_OUTPUTS,
        "log_sizes": _log_sizes(db, run),
        "plots": plots,
        "failure_words": FAILURE_TEXT,
        "metric_names": list(manifest.results.metrics),
        # the tasks' progress patterns, so the page reads progress from the live log lines
        "progress_patterns": {
            n: t.progress_pattern for n, t in manifest.tasks.items() if t.progress_pattern
        },
        "progress_totals": _progress_totals(manifest, run),
        "metric_units": {n: m.unit for n, m in manifest.results.metrics.items() if m.unit},
    }
    return render(
        request, "run.html", user, nav="runs", run=shaped, final=RunState(run.state).final,
        outputs=outputs, folders=folders, plots=plots, metric_names=list(manifest.results.metrics),
        metric_units={n: m.unit for n, m in manifest.results.metrics.items() if m.unit},
        failure_words=FAILURE_TEXT, page_data=page_data, time_left=time_left,
        progress=progress_bar(shaped), title=manifest.display_title,
        inputs=inputs, heads={i.slot: first_rows(platform, i) for i in inputs},
        model_hash=run.model_version.content_hash, sharing=share_panel(request, db, user, run),
    )  # fmt: skip


@router.get("/runs/{run_id}/folder", response_class=HTMLResponse)
def folder_page(
    request: Request, run_id: RowId, db: PageDb, user: PageUser, task: str, path: str = ""
) -> HTMLResponse:
    """The outputs of one folder of a run with many outputs (``?task=T&path=out/t07``)."""
    run = _visible_run(db, user, run_id)
    if task not in {t.name for t in run.task_runs}:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"task: run {run_id} has no task {task!r}"
        )
    for folder in output_folders(_output_files(db, run)):
        if folder.task == task and folder.path == path:
            return render(
                request, "run_folder.html", user, nav="runs", run_id=run.id, folder=folder
            )
    raise HTTPException(
        status.HTTP_404_NOT_FOUND,
        detail=f"path: task {task!r} of run {run_id} has no folder {path!r}",
    )
