"""Admin pages: the users (add, disable, grant admin, quota) and the executor's health."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from simyard.api.deps import PlatformDep, RowId, client_address
from simyard.domain.audit import AuditAction, record
from simyard.domain.runs import cancel_run
from simyard.domain.states import TaskRunState
from simyard.domain.tables import Run, TaskRun, User
from simyard.domain.users import (
    UserExists,
    create_user,
    set_admin,
    set_disabled,
    set_password,
    set_quota,
)
from simyard.errors import Problem, ValidationFailed
from simyard.web.pages.common import AdminPageUser, Csrf, PageDb
from simyard.web.session import check_csrf
from simyard.web.templating import render

router = APIRouter()


def _users_page(
    request: Request,
    db: Session,
    user: User,
    *,
    errors: dict[str, str] | None = None,
    typed: dict[str, Any] | None = None,
    notice: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    users = list(db.scalars(select(User).order_by(User.name)))
    return render(
        request, "admin_users.html", user, nav="admin", users=users, errors=errors or {},
        typed=typed or {}, notice=notice, status_code=status_code,
    )  # fmt: skip


@router.get("/admin", response_class=HTMLResponse)
def users_page(request: Request, db: PageDb, user: AdminPageUser) -> Response:
    """Every account, a form to add one, and the buttons to disable or promote it."""
    notice = request.session.pop("admin_notice", "")
    return _users_page(request, db, user, notice=notice if isinstance(notice, str) else "")


def _back_to_users(request: Request, notice: str) -> Response:
    # The notice travels in the signed session, so no link can make this page say anything.
    request.session["admin_notice"] = notice
    return RedirectResponse("/admin", status_code=303)


@router.post("/admin/users", response_class=HTMLResponse)
def add_user(
    request: Request,
    db: PageDb,
    user: AdminPageUser,
    name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    is_admin: Annotated[bool, Form()] = False,
    csrf_token: Csrf = "",
) -> Response:
    check_csrf(request, csrf_token)
    typed = {"name": name, "email": email, "is_admin": is_admin}
    errors: dict[str, str] = {}
    try:  # an empty password is refused like a short one: every account needs one here
        added = create_user(
            db=db, name=name.strip(), email=email.strip(), password=password, is_admin=is_admin
        )
        record(
            db=db, actor=user.name, action=AuditAction.user_added, account=added.name,
            target=f"user {added.name}", client=client_address(request),
            detail={"email": added.email, "admin": added.is_admin},
        )  # fmt: skip
    except ValidationFailed as exc:
        errors = {p.field: p.message for p in exc.problems}
    except UserExists:
        errors["name"] = "this name is taken"
    if errors:
        return _users_page(request, db, user, errors=errors, typed=typed, status_code=422)
    return _back_to_users(request, f"Added user {name.strip()}")


def _target(db: PageDb, user_id: RowId) -> User:
    target = db.get(User, user_id)
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such user")
    return target


Target = Annotated[User, Depends(_target)]


@router.post("/admin/users/{user_id}/disabled")
def change_disabled(
    request: Request,
    db: PageDb,
    platform: PlatformDep,
    user: AdminPageUser,
    target: Target,
    disabled: Annotated[bool, Form()] = False,
    runs: Annotated[str, Form()] = "leave",
    csrf_token: Csrf = "",
) -> Response:
    """Disable (their sessions, tokens and streams end at once; their unfinished runs are
    cancelled or left to finish, as the admin chose) or enable an account."""
    check_csrf(request, csrf_token)
    if target.id == user.id and disabled:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="you cannot disable yourself")
    set_disabled(db=db, user=target, disabled=disabled)
    if not disabled:
        _record_change(request, db, user, target, AuditAction.user_enabled)
        return _back_to_users(request, f"Enabled {target.name}")
    cancelled = 0
    if runs == "cancel":
        unfinished = select(Run).where(Run.user_id == target.id)
        cancelled = sum(cancel_run(db=db, run=run) for run in db.scalars(unfinished))
        platform.dispatcher.wake()
    choice = "cancel" if runs == "cancel" else "leave"
    _record_change(
        request, db, user, target, AuditAction.user_disabled, runs=choice, cancelled=cancelled
    )
    what = f"{cancelled} unfinished run(s) cancelled" if runs == "cancel" else "runs left to finish"
    return _back_to_users(request, f"Disabled {target.name}: logged out everywhere, {what}")


def _record_change(
    request: Request, db: Session, admin: User, target: User, action: AuditAction, **detail: Any
) -> None:
    record(
        db=db, actor=admin.name, action=action, account=target.name, target=f"user {target.name}",
        client=client_address(request), detail=detail,
    )  # fmt: skip


@router.post("/admin/users/{user_id}/password")
def set_temporary_password(
    request: Request,
    db: PageDb,
    user: AdminPageUser,
    target: Target,
    password: Annotated[str, Form()] = "",
    csrf_token: Csrf = "",
) -> Response:
    """Set a temporary password, to be changed by the user at the next login."""
    check_csrf(request, csrf_token)
    try:
        set_password(db=db, user=target, password=password, temporary=True)
    except ValidationFailed as exc:
        errors = {f"password-{target.id}": p.message for p in exc.problems}
        return _users_page(request, db, user, errors=errors, status_code=422)
    _record_change(request, db, user, target, AuditAction.password_set, temporary=True)
    return _back_to_users(request, f"Set a temporary password for {target.name}")


@router.post("/admin/users/{user_id}/admin")
def change_admin(
    request: Request,
    db: PageDb,
    user: AdminPageUser,
    target: Target,
    is_admin: Annotated[bool, Form()] = False,
    csrf_token: Csrf = "",
) -> Response:
    check_csrf(request, csrf_token)
    if target.id == user.id and not is_admin:
        # Otherwise the last admin could lock everyone out of these pages.
        raise HTTPException(status.HTTP_409_CONFLICT, detail="you cannot remove your own admin")
    set_admin(db=db, user=target, is_admin=is_admin)
    granted = AuditAction.admin_granted if is_admin else AuditAction.admin_removed
    _record_change(request, db, user, target, granted)
    word = "Made admin:" if is_admin else "Removed admin from"
    return _back_to_users(request, f"{word} {target.name}")


@router.post("/admin/users/{user_id}/quota", response_class=HTMLResponse)
def change_quota(
    request: Request,
    db: PageDb,
    user: AdminPageUser,
    target: Target,
    max_running: Annotated[str, Form()] = "",
    csrf_token: Csrf = "",
) -> Response:
    check_csrf(request, csrf_token)
    text = max_running.strip()
    try:
        if text and not text.isdigit():
            raise ValidationFailed([Problem("max_running", "give a whole number, or nothing")])
        set_quota(db=db, user=target, max_running=int(text) if text else None)
    except ValidationFailed as exc:
        errors = {f"quota-{target.id}": exc.problems[0].message}
        typed = {f"quota-{target.id}": text}
        return _users_page(request, db, user, errors=errors, typed=typed, status_code=422)
    _record_change(request, db, user, target, AuditAction.quota_changed,
                   max_running=int(text) if text else None)  # fmt: skip
    told = f"at most {text} task(s) at once" if text else "no quota"
    return _back_to_users(request, f"{target.name}: {told}")


@router.get("/admin/health", response_class=HTMLResponse)
def health_page(
    request: Request, db: PageDb, user: AdminPageUser, platform: PlatformDep
) -> Response:
    """Executor slots, the queue, and every task run that is running now."""
    running = list(
        db.scalars(
            select(TaskRun)
            .where(TaskRun.state == TaskRunState.running)
            .options(selectinload(TaskRun.run).selectinload(Run.user))
            .order_by(TaskRun.started_at, TaskRun.id)
        )
    )
    queued = db.scalar(
        select(func.count()).select_from(TaskRun).where(TaskRun.state == TaskRunState.queued)
    )
    total = platform.dispatcher.executor.slots
    used = len(running)
    return render(
        request, "admin_health.html", user, nav="admin", running=running, queued=queued or 0,
        slots={"total": total, "used": used, "free": max(total - used, 0)},
        executor=platform.settings.executor,
    )  # fmt: skip
