"""What page routes share: the logged-in user (or a redirect to the login page)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Form, HTTPException, Request, status
from sqlalchemy.orm import Session

from simyard.api.deps import get_platform
from simyard.domain.tables import User
from simyard.web.session import CSRF_FIELD, PASSWORD_PAGE, session_user
from simyard.wiring import Platform


class LoginRequired(Exception):
    """Raised by a page dependency; answered with a redirect to /login."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def page_db(platform: Annotated[Platform, Depends(get_platform)]) -> Iterator[Session]:
    with platform.sessions() as session:
        yield session
        session.commit()


PageDb = Annotated[Session, Depends(page_db)]


def page_user(request: Request, db: PageDb) -> User:
    """The logged-in user; a user with a temporary password sees only the page to change it."""
    user = session_user(request, db)
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(quote(target, safe="/?=&"))
    if user.must_change_password and request.url.path != PASSWORD_PAGE:
        raise PasswordChangeRequired()
    return user


class PasswordChangeRequired(Exception):
    """Raised by a page dependency; answered with a redirect to the password page."""


PageUser = Annotated[User, Depends(page_user)]
Csrf = Annotated[str, Form(alias=CSRF_FIELD)]  # a form's CSRF token, for check_csrf


def admin_page_user(user: PageUser) -> User:
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only an admin may open this page")
    return user


AdminPageUser = Annotated[User, Depends(admin_page_user)]
