"""Projects: a named group of users with a shared runs list and its own quota.

An admin creates them and adds or removes members; anyone lists the projects they are a
member of (an admin: every project). A project's runs: ``GET /runs?project=NAME``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, status
from fastapi.responses import JSONResponse

from simyard.api.deps import AdminDep, DbDep, UserDep, problems_response
from simyard.api.schemas import REFUSED
from simyard.domain import projects as project_service
from simyard.domain.tables import Project
from simyard.errors import Problem, ValidationFailed
from simyard.schemas import ProjectOut

router = APIRouter(prefix="/projects", tags=["projects"])


def project_out(project: Project) -> ProjectOut:
    return ProjectOut(
        name=project.name,
        members=[m.name for m in project.members],
        max_active_runs=project.max_active_runs,
        created_at=project.created_at,
    )


def _found(db: DbDep, name: str) -> Project:
    project = project_service.find_project(db=db, name=name)
    if project is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"project {name[:64]!r} not found")
    return project


def _body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationFailed([Problem("body", "send a JSON object")])
    return body


@router.get("", response_model=list[ProjectOut])
def list_projects(db: DbDep, user: UserDep) -> list[ProjectOut]:
    """The projects the caller is a member of (every project for an admin)."""
    found = project_service.list_projects(db=db, user=None if user.is_admin else user)
    return [project_out(p) for p in found]


@router.post("", response_model=ProjectOut, status_code=201, responses={422: REFUSED})
def create_project(
    db: DbDep,
    user: AdminDep,
    body: Annotated[
        Any, Body(examples=[{"name": "ocean", "max_active_runs": 4, "members": ["bob"]}])
    ],
) -> Any:
    """Create a project: ``name``, optionally ``max_active_runs`` and ``members`` (names)."""
    try:
        fields = _body(body)
        project = project_service.create_project(
            db=db, name=fields.get("name"), max_active_runs=fields.get("max_active_runs")
        )
        members = fields.get("members") or []
        if not isinstance(members, list):
            raise ValidationFailed([Problem("members", "must be a list of user names")])
        for name in members:
            project_service.add_member(db=db, project=project, name=name)
    except ValidationFailed as exc:
        db.rollback()
        return problems_response(exc.problems)
    return JSONResponse(project_out(project).model_dump(mode="json"), status_code=201)


@router.get("/{name}", response_model=ProjectOut)
def get_project(name: str, db: DbDep, user: UserDep) -> ProjectOut:
    """A project the caller is a member of (any, for an admin)."""
    project = _found(db, name)
    if not user.is_admin and not project_service.is_member(db=db, project=project, user=user):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"project {name[:64]!r} not found")
    return project_out(project)


@router.patch("/{name}", response_model=ProjectOut, responses={422: REFUSED})
def change_project(
    name: str,
    db: DbDep,
    user: AdminDep,
    body: Annotated[Any, Body(examples=[{"max_active_runs": 2}])],
) -> Any:
    """Change the project's quota: ``{"max_active_runs": N}`` (null: none)."""
    project = _found(db, name)
    try:
        fields = _body(body)
        unknown = [Problem(k, "not a setting of a project (max_active_runs)") for k in fields
                   if k != "max_active_runs"]  # fmt: skip
        if unknown:
            raise ValidationFailed(unknown)
        project_service.set_project_quota(
            db=db, project=project, max_active_runs=fields.get("max_active_runs")
        )
    except ValidationFailed as exc:
        return problems_response(exc.problems)
    return project_out(project)


@router.post("/{name}/members", response_model=ProjectOut, responses={422: REFUSED})
def add_member(
    name: str, db: DbDep, user: AdminDep, body: Annotated[Any, Body(examples=[{"user": "bob"}])]
) -> Any:
    """Add ``{"user": NAME}`` to the project."""
    project = _found(db, name)
    try:
        project_service.add_member(db=db, project=project, name=_body(body).get("user"))
    except ValidationFailed as exc:
        return problems_response(exc.problems)
    return project_out(project)


@router.delete("/{name}/members/{member}", response_model=ProjectOut, responses={422: REFUSED})
def remove_member(name: str, member: str, db: DbDep, user: AdminDep) -> Any:
    """Remove a member (their runs stay in the project)."""
    project = _found(db, name)
    try:
        project_service.remove_member(db=db, project=project, name=member)
    except ValidationFailed as exc:
        return problems_response(exc.problems)
    return project_out(project)
