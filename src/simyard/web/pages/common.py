"""What page routes share: the logged-in user (or a redirect to the login page)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Form, HTTPException, Request, status
from sqlalchemy.orm import Session

from simyard.api.deps import SAFE, get_platform
from simyard.domain.tables import User
from simyard.web.session import CSRF_FIELD, PASSWORD_PAGE, session_user_id
from simyard.wiring import Platform


class LoginRequired(Exception):
    """Raised by a page dependency; answered with a redirect to /login."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def page_db(
    request: Request, platform: Annotated[Platform, Depends(get_platform)]
) -> Iterator[Session]:
    """The page's session: a snapshot that waits for no writer when the page is a GET."""
    factory = platform.readers if request.method in SAFE else platform.sessions
    with factory() as session:
        yield session
        session.commit()


def page_writer_db(platform: Annotated[Platform, Depends(get_platform)]) -> Iterator[Session]:
    """A writing session for the few GET pages that change rows (a sign-in's callback)."""
    with platform.sessions() as session:
        yield session
        session.commit()


# Ended when the page's handler returns (see api.deps.DbDep).
PageDb = Annotated[Session, Depends(page_db, scope="function")]
PageWriterDb = Annotated[Session, Depends(page_writer_db, scope="function")]


def page_user(
    request: Request, platform: Annotated[Platform, Depends(get_platform)], db: PageDb
) -> User:
    """The logged-in user; a user with a temporary password sees only the page to change it."""
    user_id = session_user_id(request, platform)
    user = None if user_id is None else db.get(User, user_id)
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
