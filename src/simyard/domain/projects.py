"""Projects: a named group of users who read each other's runs in it, with its own quota.

An admin creates a project and adds or removes members; a member may start a run in it
(``project`` on a run request), which every member then reads (only its owner changes it).
The quota, ``max_active_runs``, is checked when a run is started in the project.
"""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from simyard.domain.states import RunState
from simyard.domain.tables import Project, ProjectMember, Run, User
from simyard.domain.users import MAX_QUOTA, get_user
from simyard.errors import Problem, ValidationFailed

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NOT_ENDED = [s.value for s in RunState if not s.final]


def find_project(*, db: Session, name: str) -> Project | None:
    """The project of this name (with its members), None when there is none."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return None
    return db.scalar(
        select(Project).where(Project.name == name).options(selectinload(Project.members))
    )


def list_projects(*, db: Session, user: User | None = None) -> list[Project]:
    """Every project by name; with ``user``, those they are a member of."""
    query = select(Project).options(selectinload(Project.members)).order_by(Project.name)
    if user is not None:
        query = query.where(
            Project.id.in_(select(ProjectMember.project_id).where(ProjectMember.user_id == user.id))
        )
    return list(db.scalars(query))


def _check_quota_value(max_active_runs: int | None) -> None:
    if max_active_runs is not None and (
        isinstance(max_active_runs, bool)
        or not isinstance(max_active_runs, int)
        or not 1 <= max_active_runs <= MAX_QUOTA
    ):
        raise ValidationFailed(
            [Problem("max_active_runs", f"give a whole number from 1 to {MAX_QUOTA:,}, or null")]
        )


def create_project(*, db: Session, name: object, max_active_runs: int | None = None) -> Project:
    """A new project without members; ValidationFailed naming ``name`` or ``max_active_runs``."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        rule = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        raise ValidationFailed([Problem("name", rule)])
    if find_project(db=db, name=name) is not None:
        raise ValidationFailed([Problem("name", f"a project {name!r} exists already")])
    _check_quota_value(max_active_runs)
    project = Project(name=name, max_active_runs=max_active_runs)
    db.add(project)
    db.flush()
    return project


def set_project_quota(*, db: Session, project: Project, max_active_runs: int | None) -> None:
    """At most ``max_active_runs`` of the project's runs not yet ended; None: no quota."""
    _check_quota_value(max_active_runs)
    project.max_active_runs = max_active_runs
    db.flush()


def _member(db: Session, name: object) -> User:
    user = get_user(db=db, name=name) if isinstance(name, str) else None
    if user is None:
        raise ValidationFailed([Problem("user", f"no user {str(name)[:64]!r}")])
    return user


def add_member(*, db: Session, project: Project, name: object) -> User:
    """Make the user of this name a member (again: nothing changes); ValidationFailed
    naming ``user`` when there is no such user."""
    user = _member(db, name)
    if db.get(ProjectMember, (project.id, user.id)) is None:
        db.add(ProjectMember(project_id=project.id, user_id=user.id))
        db.flush()
        db.refresh(project)
    return user


def remove_member(*, db: Session, project: Project, name: object) -> User:
    """The user is no longer a member (their runs stay in the project, theirs)."""
    user = _member(db, name)
    row = db.get(ProjectMember, (project.id, user.id))
    if row is not None:
        db.delete(row)
        db.flush()
        db.refresh(project)
    return user


def is_member(*, db: Session, project: Project, user: User) -> bool:
    return db.get(ProjectMember, (project.id, user.id)) is not None


def project_for_run(*, db: Session, user: User, name: object) -> Project | None:
    """The project a run is started in: None for none; ValidationFailed naming ``project``
    when there is no such project, the user is not a member, or its quota is full."""
    if name is None or name == "":
        return None
    project = find_project(db=db, name=name) if isinstance(name, str) else None
    if project is None or not is_member(db=db, project=project, user=user):
        raise ValidationFailed(
            [Problem("project", f"you are not a member of a project {str(name)[:64]!r}")]
        )
    check_project_quota(db=db, project=project)
    return project


def check_project_quota(*, db: Session, project: Project) -> None:
    """ValidationFailed naming ``project`` when as many of its runs as its quota allows have
    not ended yet."""
    limit = project.max_active_runs
    if limit is None:
        return
    active = db.scalar(
        select(func.count(Run.id)).where(Run.project_id == project.id, Run.state.in_(NOT_ENDED))
    )
    if (active or 0) >= limit:
        raise ValidationFailed(
            [Problem("project", f"project {project.name!r} has {active} runs not yet ended, "
                     f"at most {limit} at once: wait for one to end")]
        )  # fmt: skip
