"""The runs list: the user's runs (every run for an admin), filtered, paged by id."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from simyard.api.deps import RowId
from simyard.domain.states import RunState
from simyard.domain.tables import ModelVersion, Run, User
from simyard.web.pages.common import PageDb, PageUser
from simyard.web.templating import render

router = APIRouter()
PAGE = 50


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    db: PageDb,
    user: PageUser,
    state: str = "",
    model: str = "",
    q: str = "",
    before: RowId | None = None,
) -> HTMLResponse:
    query = select(Run).options(selectinload(Run.model_version), selectinload(Run.user))
    if not user.is_admin:
        query = query.where(Run.user_id == user.id)
    if state in {s.value for s in RunState}:
        query = query.where(Run.state == state)
    if model:
        query = query.where(
            Run.model_version_id.in_(select(ModelVersion.id).where(ModelVersion.name == model))
        )
    text = q.strip()
    if text.isdigit():
        query = query.where(Run.id == int(text))
    elif text:
        like = f"%{text}%"
        # "+ 0" keeps the database from answering through the two columns' indexes: it
        # would gather every match and sort them all (70 ms with 100,000 runs). Walking
        # the runs newest first stops at a full page (under 1 ms when most runs match;
        # a search matching nothing reads every run once, about 20 ms).
        query = query.where(
            or_(
                (Run.model_version_id + 0).in_(
                    select(ModelVersion.id).where(ModelVersion.name.like(like))
                ),
                (Run.user_id + 0).in_(select(User.id).where(User.name.like(like))),
            )
        )
    if before is not None:
        query = query.where(Run.id < before)
    runs = list(db.scalars(query.order_by(Run.id.desc()).limit(PAGE + 1)))
    more = len(runs) > PAGE
    runs = runs[:PAGE]
    names = sorted({v for v in db.scalars(select(ModelVersion.name).distinct())})
    return render(
        request, "runs.html", user, nav="runs", runs=runs, more=more, states=list(RunState),
        models=names, state=state, model=model, q=q, before=before,
    )  # fmt: skip
