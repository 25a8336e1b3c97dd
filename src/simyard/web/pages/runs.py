"""The runs list: the user's runs (every run for an admin), filtered, paged by id."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Select, and_, false, or_, select
from sqlalchemy.orm import Session, selectinload

from simyard.api.deps import RowId
from simyard.domain.access import readable_runs
from simyard.domain.projects import find_project, list_projects
from simyard.domain.runs import progress_of
from simyard.domain.runsearch import Search, parse_search
from simyard.domain.states import RunState, TaskRunState
from simyard.domain.tables import ModelVersion, Project, Run, User
from simyard.web.pages.common import PageDb, PageUser
from simyard.web.pages.compare import MAX_COMPARED
from simyard.web.templating import render

router = APIRouter()
PAGE = 50
SCAN_LIMIT = 20_000  # runs looked through for a search by tag or parameter
SCAN_BATCH = 500


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    db: PageDb,
    user: PageUser,
    state: str = "",
    model: str = "",
    q: str = "",
    before: RowId | None = None,
    show: str = "",
) -> HTMLResponse:
    query = select(Run).options(
        selectinload(Run.model_version), selectinload(Run.user), selectinload(Run.task_runs)
    )
    projects = list_projects(db=db, user=user)
    whose = whose_runs(db, user, show, projects)
    if whose is not None:
        query = query.where(whose)
    if state in {s.value for s in RunState}:
        query = query.where(Run.state == state)
    if model:
        query = query.where(
            Run.model_version_id.in_(select(ModelVersion.id).where(ModelVersion.name == model))
        )
    search = parse_search(q)
    if search.run_id is not None:
        query = query.where(Run.id == search.run_id)
    for word in search.words:
        like = f"%{word}%"
        # "+ 0" keeps the database from answering through the two columns' indexes: it
        # would gather every match and sort them all (70 ms with 100,000 runs). Walking
        # the runs newest first stops at a full page (under 1 ms when most runs match;
        # a search matching nothing reads every run once, about 20 ms).
        query = query.where(
            or_(
                Run.name.like(like),
                (Run.model_version_id + 0).in_(
                    select(ModelVersion.id).where(ModelVersion.name.like(like))
                ),
                (Run.user_id + 0).in_(select(User.id).where(User.name.like(like))),
            )
        )
    if before is not None:
        query = query.where(Run.id < before)
    runs, more = _page(db, query.order_by(Run.id.desc()), search)
    names = sorted({v for v in db.scalars(select(ModelVersion.name).distinct())})
    param_columns, metric_columns = offered_columns(runs)
    return render(
        request, "runs.html", user, nav="runs", runs=runs, more=more, states=list(RunState),
        models=names, state=state, model=model, q=q, before=before,
        changed=lambda run: changed_params(run), progress=run_progress, waits=waits_for_slot,
        param_columns=param_columns, metric_columns=metric_columns,
        final={s.value for s in RunState if s.final}, max_compared=MAX_COMPARED,
        show=show, projects=projects,
    )  # fmt: skip


def whose_runs(db: Session, user: User, show: str, projects: list[Project]) -> Any:
    """Which runs the list shows: the user's own (every run for an admin); ``shared``: the
    runs others shared with them; ``project:NAME``: a project's they are a member of."""
    if show == "shared":
        return and_(Run.user_id != user.id, readable_runs(user))
    if show.startswith("project:"):
        name = show.removeprefix("project:")
        project = find_project(db=db, name=name)
        member = project is not None and (user.is_admin or project in projects)
        return Run.project_id == project.id if member and project else false()
    return None if user.is_admin else Run.user_id == user.id


def offered_columns(runs: list[Run]) -> tuple[list[str], list[str]]:
    """The parameters and the metrics of the page's runs' models, in manifest order: the
    columns the column chooser offers."""
    params: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for run in runs:
        manifest = run.model_version.manifest
        params |= dict.fromkeys(manifest.get("parameters") or {})
        metrics |= dict.fromkeys((manifest.get("results") or {}).get("metrics") or {})
    return list(params), list(metrics)


def waits_for_slot(run: Run) -> bool:
    """A running run none of whose tasks runs now, one of them queued for a free slot."""
    states = {t.state for t in run.task_runs}
    return (
        run.state == RunState.running
        and TaskRunState.running not in states
        and TaskRunState.queued in states
    )


def run_progress(run: Run) -> float | None:
    """How far a running run is, in percent over its tasks (an ended task counts whole);
    None when it is not running."""
    progress = progress_of(run.state, run.task_runs)
    return progress.percent if progress and run.state == RunState.running else None


def _page(db: Session, query: Select[Run], search: Search) -> tuple[list[Run], bool]:
    """A page of runs, and whether older ones follow. Tags and parameter conditions are
    checked on the runs, newest first, looking through at most SCAN_LIMIT of them."""
    if not search.needs_runs:
        runs = list(db.scalars(query.limit(PAGE + 1)))
        return runs[:PAGE], len(runs) > PAGE
    found: list[Run] = []
    for offset in range(0, SCAN_LIMIT, SCAN_BATCH):
        batch = list(db.scalars(query.offset(offset).limit(SCAN_BATCH)))
        found += [run for run in batch if search.matches(run)]
        if len(found) > PAGE or len(batch) < SCAN_BATCH:
            break
    return found[:PAGE], len(found) > PAGE


def changed_params(run: Run) -> dict[str, object]:
    """The run's parameters that differ from its model's defaults (all when none do)."""
    defaults = {
        name: spec.get("default")
        for name, spec in (run.model_version.manifest.get("parameters") or {}).items()
        if isinstance(spec, dict)
    }
    params = run.params or {}
    return {k: v for k, v in params.items() if k not in defaults or defaults[k] != v}
