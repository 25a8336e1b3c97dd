"""The user's own page: password, where they are logged in, and their API tokens."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from simyard.api.deps import RowId, client_address
from simyard.domain.audit import AuditAction, record
from simyard.domain.sessions import end_user_sessions, list_sessions
from simyard.domain.tables import User, utcnow
from simyard.domain.users import (
    TOKEN_SCOPES,
    change_password,
    create_token,
    list_tokens,
    revoke_token,
)
from simyard.errors import ValidationFailed
from simyard.web.pages.common import Csrf, PageDb, PageUser
from simyard.web.session import PASSWORD_PAGE, check_csrf, this_session_id
from simyard.web.templating import render

router = APIRouter()


def _account_page(
    request: Request,
    db: Session,
    user: User,
    *,
    errors: dict[str, str] | None = None,
    notice: str = "",
    new_token: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request, "account.html", user, nav="account", errors=errors or {}, notice=notice,
        sessions=list_sessions(db=db, user=user), this_session=this_session_id(request),
        tokens=list_tokens(db=db, user=user), scopes=TOKEN_SCOPES, new_token=new_token,
        status_code=status_code,
    )  # fmt: skip


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, db: PageDb, user: PageUser, notice: str = "") -> Response:
    """Change the password, see and end sessions, create and revoke tokens."""
    known = {"password": "Password changed; your other sessions ended",
             "sessions": "Your other sessions ended", "revoked": "Token revoked"}  # fmt: skip
    return _account_page(request, db, user, notice=known.get(notice, ""))


@router.get(PASSWORD_PAGE, response_class=HTMLResponse)
def password_page(request: Request, user: PageUser) -> Response:
    """The password form alone: where a user with a temporary password is sent."""
    return render(request, "password.html", user, nav="account", errors={})


@router.post(PASSWORD_PAGE, response_class=HTMLResponse)
def set_own_password(
    request: Request,
    db: PageDb,
    user: PageUser,
    current_password: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
    repeat_password: Annotated[str, Form()] = "",
    csrf_token: Csrf = "",
) -> Response:
    """Change the password; every other session of the user ends."""
    check_csrf(request, csrf_token)
    errors: dict[str, str] = {}
    if new_password != repeat_password:
        errors["repeat_password"] = "the two new passwords differ"  # noqa: S105 - a message
    else:
        try:
            change_password(db=db, user=user, current=current_password, new=new_password)
        except ValidationFailed as exc:
            errors = {p.field: p.message for p in exc.problems}
    if errors:
        return render(request, "password.html", user, nav="account", errors=errors,
                      status_code=422)  # fmt: skip
    ended = end_user_sessions(db=db, user=user, keep=this_session_id(request))
    record(
        db=db, actor=user.name, action=AuditAction.password_changed, account=user.name,
        target=f"user {user.name}", client=client_address(request),
        detail={"other_sessions_ended": ended},
    )  # fmt: skip
    return RedirectResponse("/account?notice=password", status_code=303)


@router.post("/account/sessions/end")
def end_other_sessions(
    request: Request, db: PageDb, user: PageUser, csrf_token: Csrf = ""
) -> Response:
    """Log out everywhere else (this browser stays logged in)."""
    check_csrf(request, csrf_token)
    ended = end_user_sessions(db=db, user=user, keep=this_session_id(request))
    record(
        db=db, actor=user.name, action=AuditAction.sessions_ended, account=user.name,
        client=client_address(request), detail={"sessions_ended": ended},
    )  # fmt: skip
    return RedirectResponse("/account?notice=sessions", status_code=303)


@router.post("/account/tokens", response_class=HTMLResponse)
def new_token(
    request: Request,
    db: PageDb,
    user: PageUser,
    label: Annotated[str, Form()] = "",
    scope: Annotated[str, Form()] = "run",
    expires_in_days: Annotated[str, Form()] = "",
    csrf_token: Csrf = "",
) -> Response:
    """Create a token and show it once."""
    check_csrf(request, csrf_token)
    errors: dict[str, str] = {}
    expires = None
    if expires_in_days.strip():
        if not expires_in_days.strip().isdigit() or not 1 <= int(expires_in_days) <= 3650:
            errors["expires_in_days"] = "give a number of days from 1 to 3650, or nothing"
        else:
            expires = utcnow() + dt.timedelta(days=int(expires_in_days))
    token = ""
    if not errors:
        try:
            token = create_token(db=db, user=user, name=label, scope=scope, expires_at=expires)
        except ValidationFailed as exc:
            errors = {p.field: p.message for p in exc.problems}
    if errors:
        return _account_page(request, db, user, errors=errors, status_code=422)
    record(
        db=db, actor=user.name, action=AuditAction.token_created, account=user.name,
        target=f"token {label.strip()!r}", client=client_address(request),
        detail={"label": label.strip(), "scope": scope,
                "expires_at": expires.isoformat() if expires else None},
    )  # fmt: skip
    return _account_page(request, db, user, new_token=token)


@router.post("/account/tokens/{token_id}/revoke")
def revoke(
    request: Request, token_id: RowId, db: PageDb, user: PageUser, csrf_token: Csrf = ""
) -> Response:
    """Revoke one of the user's tokens."""
    check_csrf(request, csrf_token)
    row = revoke_token(db=db, token_id=token_id, by=user)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such token")
    record(
        db=db, actor=user.name, action=AuditAction.token_revoked, account=row.user.name,
        target=f"token {token_id} {row.name!r}", client=client_address(request),
    )  # fmt: skip
    return RedirectResponse("/account?notice=revoked", status_code=303)
