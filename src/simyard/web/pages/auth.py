"""Log in and log out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from simyard.api.deps import client_address
from simyard.domain.audit import AuditAction, record
from simyard.domain.logins import Throttled, password_login
from simyard.domain.ratelimit import retry_after
from simyard.web.pages.common import PageDb
from simyard.web.session import (
    CSRF_FIELD,
    check_csrf,
    log_in,
    log_out,
    session_user,
    session_user_id,
)
from simyard.web.templating import render

router = APIRouter()


def safe_next(target: str) -> str:
    """Only a path on this site: never an open redirect to another host."""
    # A browser reads a backslash as a slash and drops tabs and newlines, so "/\\evil.example"
    # and "/\t/evil.example" would leave the site as "//evil.example" does.
    local = target.startswith("/") and not target.startswith("//")
    plain = "\\" not in target and not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target)
    return target if local and plain else "/"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    if session_user_id(request, request.app.state.platform) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", None, next=safe_next(next))


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    db: PageDb,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    check_csrf(request, csrf_token)
    if not request.app.state.platform.settings.local_passwords:
        return render(
            request, "login.html", None, status_code=403, next=safe_next(next),
            error="Passwords are switched off on this server: log in with single sign-on.",
        )  # fmt: skip
    rule = request.app.state.platform.settings.login_rule()
    user = password_login(
        db=db, rule=rule, name=username, password=password, client=client_address(request),
        via="form",
    )  # fmt: skip
    if isinstance(user, Throttled):
        wait = retry_after(user.seconds)
        refused = render(
            request, "login.html", None, status_code=429, next=safe_next(next), username=username,
            error=f"Too many failed logins for this account or from your address: try again "
            f"in {wait} seconds.",
        )  # fmt: skip
        refused.headers["Retry-After"] = wait
        return refused
    if user is None:
        return render(
            request, "login.html", None, status_code=401, next=safe_next(next),
            username=username, error="Wrong username or password.",
        )  # fmt: skip
    log_in(request, db, user)
    if user.must_change_password:
        return RedirectResponse("/account/password", status_code=303)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
def logout(
    request: Request, db: PageDb, csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = ""
) -> Response:
    check_csrf(request, csrf_token)
    if (user := session_user(request, db)) is not None:
        record(db=db, actor=user.name, action=AuditAction.logout, account=user.name,
               client=client_address(request))  # fmt: skip
    log_out(request, db)
    return RedirectResponse("/login", status_code=303)
