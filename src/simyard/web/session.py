"""Browser sessions: a signed cookie naming the user, and a CSRF token for every form and fetch."""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request, status
from sqlalchemy.orm import Session

from simyard.domain.tables import User

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, sent: str | None) -> None:
    """403 unless ``sent`` is the session's CSRF token."""
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(expected, sent):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="the form expired or came from another site; reload"
        )


def log_in(request: Request, user: User) -> None:
    request.session.clear()
    request.session["user_id"] = user.id
    csrf_token(request)


def log_out(request: Request) -> None:
    request.session.clear()


def session_user(request: Request, db: Session) -> User | None:
    """The logged-in, enabled user of this browser session, or None."""
    if "session" not in request.scope:
        return None
    user_id = request.session.get("user_id")
    if not isinstance(user_id, int):
        return None
    user = db.get(User, user_id)
    if user is None or user.disabled:
        return None
    return user
