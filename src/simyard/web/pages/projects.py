"""The admin's projects page: create a project, set its quota, add and remove members
(the rules are domain/projects.py's)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from simyard.domain import projects as project_service
from simyard.domain.tables import Project, User
from simyard.errors import Problem, ValidationFailed
from simyard.web.pages.common import AdminPageUser, Csrf, PageDb
from simyard.web.session import check_csrf
from simyard.web.templating import render

router = APIRouter()
NOTICE = "projects_notice"  # in the signed session, so no link can make the page say anything


def _page(
    request: Request, db: Session, user: User, *, error: str = "", status_code: int = 200
) -> HTMLResponse:
    told = request.session.pop(NOTICE, "")
    return render(
        request, "admin_projects.html", user, nav="admin", status_code=status_code,
        projects=project_service.list_projects(db=db), notice=told if isinstance(told, str) else "",
        error=error,
    )  # fmt: skip


def _back(request: Request, notice: str) -> Response:
    request.session[NOTICE] = notice
    return RedirectResponse("/admin/projects", status_code=303)


def _quota(text: str) -> int | None:
    text = text.strip()
    if text and not text.isdigit():
        raise ValidationFailed([Problem("max_active_runs", "give a whole number, or nothing")])
    return int(text) if text else None


def _project(db: Session, name: str) -> Project:
    project = project_service.find_project(db=db, name=name)
    if project is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"project {name[:64]!r} not found")
    return project


@router.get("/admin/projects", response_class=HTMLResponse)
def projects_page(request: Request, db: PageDb, user: AdminPageUser) -> Response:
    """Every project with its members and quota, and the forms to change them."""
    return _page(request, db, user)


@router.post("/admin/projects", response_class=HTMLResponse)
def add_project(
    request: Request,
    db: PageDb,
    user: AdminPageUser,
    name: Annotated[str, Form()] = "",
    max_active_runs: Annotated[str, Form()] = "",
    csrf_token: Csrf = "",
) -> Response:
    check_csrf(request, csrf_token)
    try:
        project_service.create_project(
            db=db, name=name.strip(), max_active_runs=_quota(max_active_runs)
        )
    except ValidationFailed as exc:
        return _page(request, db, user, error=str(exc.problems[0]), status_code=422)
    return _back(request, f"Created project {name.strip()}.")


@router.post("/admin/projects/{name}/members", response_class=HTMLResponse)
def add_member(
    request: Request,
    name: str,
    db: PageDb,
    user: AdminPageUser,
    member: Annotated[str, Form(alias="user")] = "",
    csrf_token: Csrf = "",
) -> Response:
    check_csrf(request, csrf_token)
    project = _project(db, name)
    try:
        added = project_service.add_member(db=db, project=project, name=member.strip())
    except ValidationFailed as exc:
        return _page(request, db, user, error=str(exc.problems[0]), status_code=422)
    return _back(request, f"{added.name} is a member of {project.name}.")


@router.post("/admin/projects/{name}/members/remove", response_class=HTMLResponse)
def remove_member(
    request: Request,
    name: str,
    db: PageDb,
    user: AdminPageUser,
    member: Annotated[str, Form(alias="user")] = "",
    csrf_token: Csrf = "",
) -> Response:
    check_csrf(request, csrf_token)
    project = _project(db, name)
    try:
        removed = project_service.remove_member(db=db, project=project, name=member)
    except ValidationFailed as exc:
        return _page(request, db, user, error=str(exc.problems[0]), status_code=422)
    return _back(request, f"{removed.name} is no longer a member of {project.name}.")


@router.post("/admin/projects/{name}/quota", response_class=HTMLResponse)
def change_quota(
    request: Request,
    name: str,
    db: PageDb,
    user: AdminPageUser,
    max_active_runs: Annotated[str, Form()] = "",
    csrf_token: Csrf = "",
) -> Response:
    check_csrf(request, csrf_token)
    project = _project(db, name)
    try:
        quota = _quota(max_active_runs)
        project_service.set_project_quota(db=db, project=project, max_active_runs=quota)
    except ValidationFailed as exc:
        return _page(request, db, user, error=str(exc.problems[0]), status_code=422)
    told = f"at most {quota} runs not yet ended at once" if quota else "no quota"
    return _back(request, f"{project.name}: {told}.")
