"""The run page (live state, task timeline, logs, failure, outputs, metrics, plots) and the
page comparing two runs (parameters, parameter file, metrics, overlaid plots).

Both pages render everything already known on the server, so a finished run reads without
JavaScript; ``run.js`` adds the liveness from the API's event and log streams.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from simyard.api.deps import RowId, get_platform
from simyard.api.schemas import RunOut, TaskOut, run_out
from simyard.domain.registry import manifest_of, model_dir_of
from simyard.domain.runs import RunNotFound, get_run, queue_position, run_files
from simyard.domain.states import RunState, TaskRunState
from simyard.domain.tables import Run, StoredFile, User
from simyard.domain.waiting import waiting_reason
from simyard.engine.result import FAILURE_WORDS
from simyard.errors import SimyardError, TaskRefused
from simyard.manifest.paramfile import render_parameter_file
from simyard.manifest.placeholders import fill, pick_file
from simyard.manifest.schema import Manifest, ParameterFileFormat
from simyard.manifest.units import format_size
from simyard.web.pages.common import PageDb, PageUser
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
    run = _visible_run(db, user, run_id)
    shaped = run_out(run, run_files(db=db, run=run, kind="output"), queue_position(db=db, run=run))
    says = platform.dispatcher.executor.waiting()
    shaped.waiting = waiting_reason(db=db, run=run, executor_says=says)
    manifest = manifest_of(run.model_version)
    plots = _plots_of_run(manifest, run, [o.path for o in shaped.outputs])
    outputs = _output_files(db, run)
    page_data = {
        "run": shaped.model_dump(mode="json"),
        "outputs": outputs,
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
        outputs=outputs, plots=plots, metric_names=list(manifest.results.metrics),
        metric_units={n: m.unit for n, m in manifest.results.metrics.items() if m.unit},
        failure_words=FAILURE_TEXT, page_data=page_data, time_left=time_left,
        title=manifest.display_title, inputs=run_files(db=db, run=run, kind="input"),
        model_hash=run.model_version.content_hash,
    )  # fmt: skip


# --------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class DiffRow:
    """One row of a side-by-side table: a name, both runs' values shown as text."""

    name: str
    a: str
    b: str
    changed: bool
    note: str = ""


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _ordered_names(*groups: Any) -> list[str]:
    return list(dict.fromkeys(name for group in groups for name in group))


def parameter_rows(manifests: tuple[Manifest, Manifest], runs: tuple[Run, Run]) -> list[DiffRow]:
    """Every parameter of either run, in manifest order; a missing value shows as ``—``."""
    a, b = runs
    names = _ordered_names(manifests[0].parameters, manifests[1].parameters, a.params, b.params)
    return [
        DiffRow(
            name,
            _shown(a.params.get(name)),
            _shown(b.params.get(name)),
            a.params.get(name) != b.params.get(name),
        )
        for name in names
    ]


def input_rows(db: Session, runs: tuple[Run, Run]) -> list[DiffRow]:
    """Every input slot of either run: its file name, size and hash; changed when the
    contents differ (two runs that differ only in their forcing file are not the same)."""
    given = [{f.slot or f.path: f for f in run_files(db=db, run=run, kind="input")} for run in runs]
    rows = []
    for slot in _ordered_names(*given):
        a, b = (files.get(slot) for files in given)
        shown = [
            f"{f.filename or f.path} ({format_size(f.size)}, sha256 {f.sha256[:12]}…)" if f else "—"
            for f in (a, b)
        ]
        changed = (a.sha256 if a else None) != (b.sha256 if b else None)
        note = "same contents" if not changed and a and b and a.filename != b.filename else ""
        rows.append(DiffRow(slot, shown[0], shown[1], changed, note))
    return rows


def metric_rows(manifests: tuple[Manifest, Manifest], runs: tuple[Run, Run]) -> list[DiffRow]:
    """Every metric of either run; ``note`` is the difference b - a when both are numbers."""
    a, b = (run.metrics or {} for run in runs)
    names = _ordered_names(manifests[0].results.metrics, manifests[1].results.metrics, a, b)
    rows = []
    for name in names:
        va, vb = a.get(name), b.get(name)
        note = ""
        numbers = [v for v in (va, vb) if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == 2 and va != vb:
            note = f"{numbers[1] - numbers[0]:+.6g}"
        rows.append(DiffRow(name, _shown(va), _shown(vb), va != vb, note))
    return rows


@dataclass(frozen=True)
class ParameterFileDiff:
    """The unified diff of two runs' parameter files, as (CSS class, line) pairs."""

    path: str
    lines: list[tuple[str, str]]
    problems: list[str]


def _parameter_file(run: Run, manifest: Manifest, platform: Platform) -> str:
    """The run's parameter file as the model got it: stored with the run at submission
    (older runs: rendered again from their stored values)."""
    spec = manifest.parameter_file
    assert spec is not None
    if run.parameter_file is not None:
        return run.parameter_file.decode("utf-8", "replace")
    model_dir = Path()
    if spec.format is ParameterFileFormat.template:  # only a template reads the model folder
        model_dir = model_dir_of(
            run.model_version, store=platform.store, cache_root=platform.cache_root
        )
    return render_parameter_file(manifest, run.params, model_dir).decode("utf-8", "replace")


def parameter_file_diff(
    manifests: tuple[Manifest, Manifest], runs: tuple[Run, Run], platform: Platform
) -> ParameterFileDiff | None:
    """None when neither model has a parameter file."""
    specs = [m.parameter_file for m in manifests]
    if specs[0] is None and specs[1] is None:
        return None
    texts: list[str] = []
    problems: list[str] = []
    for run, manifest in zip(runs, manifests, strict=True):
        if manifest.parameter_file is None:
            texts.append("")
            problems.append(f"Run #{run.id}: its model has no parameter file.")
            continue
        try:
            texts.append(_parameter_file(run, manifest, platform))
        except (SimyardError, OSError) as exc:
            texts.append("")
            problems.append(f"Run #{run.id}: the parameter file cannot be shown: {exc}")
    path = next(s.path for s in specs if s is not None)
    names = [f"#{run.id}/{s.path if s else path}" for run, s in zip(runs, specs, strict=True)]
    diff = difflib.unified_diff(
        texts[0].splitlines(), texts[1].splitlines(), names[0], names[1], lineterm=""
    )
    return ParameterFileDiff(path, [(_diff_class(line), line) for line in diff], problems)


def _diff_class(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "diff-file"
    if line.startswith("@@"):
        return "diff-hunk"
    if line.startswith("+"):
        return "diff-add"
    if line.startswith("-"):
        return "diff-del"
    return ""


def _plots_of(manifests: tuple[Manifest, Manifest]) -> list[dict[str, Any]]:
    """The first run's plots, then those of the second that chart something else."""
    plots: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for manifest in manifests:
        for plot in manifest.results.plots:
            if (plot.file, plot.x) not in seen:
                seen.add((plot.file, plot.x))
                plots.append(plot.model_dump(mode="json"))
    return plots


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request, db: PageDb, user: PageUser, platform: PlatformDep, a: str = "", b: str = ""
) -> HTMLResponse:
    """``/compare?a=ID&b=ID``; without two run ids, a form to choose them."""
    a, b = a.strip().lstrip("#"), b.strip().lstrip("#")
    if not (a.isdigit() and b.isdigit()):
        problem = "Run ids are numbers, e.g. 12." if a or b else ""
        code = status.HTTP_400_BAD_REQUEST if problem else status.HTTP_200_OK
        return render(
            request, "compare.html", user, status_code=code, nav="runs", chosen=False,
            a=a, b=b, problem=problem,
        )  # fmt: skip
    runs = (_visible_run(db, user, int(a)), _visible_run(db, user, int(b)))
    manifests = (manifest_of(runs[0].model_version), manifest_of(runs[1].model_version))
    shaped: list[RunOut] = [run_out(run, []) for run in runs]
    plots = _plots_of(manifests)
    page_data = {
        "runs": [
            {"id": run.id, "outputs": _output_files(db, run), "final": RunState(run.state).final}
            for run in runs
        ],
        "plots": plots,
    }
    return render(
        request, "compare.html", user, nav="runs", chosen=True, a=a, b=b, problem="",
        runs=shaped, params=parameter_rows(manifests, runs), inputs=input_rows(db, runs),
        metrics=metric_rows(manifests, runs),
        paramfile=parameter_file_diff(manifests, runs, platform), plots=plots,
        page_data=page_data,
    )  # fmt: skip
