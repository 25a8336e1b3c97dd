"""Browser sessions: a server-side session (see domain/sessions.py) whose random id travels in
a signed cookie, beside the CSRF token for every form and fetch.

The signed cookie only carries the session id, the CSRF token and one-time notices; who
is logged in is decided by the session row in the database, so logging out, expiry, a
password change or disabling the user ends the session even for a copied cookie.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request, status
from sqlalchemy.orm import Session

from simyard.db.session import read_then_write
from simyard.domain.sessions import end_session, open_session, session_for
from simyard.domain.tables import BrowserSession, User

if TYPE_CHECKING:
    from simyard.config import Settings
    from simyard.wiring import Platform

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
PASSWORD_PAGE = "/account/password"  # noqa: S105 - a page's address, not a password


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


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.platform.settings
    return settings


def log_in(request: Request, db: Session, user: User) -> None:
    """Open a new session for ``user`` (a new id, whatever this browser had before)."""
    log_out(request, db)
    client = request.client.host if request.client else ""
    agent = request.headers.get("user-agent", "")
    secret = open_session(
        db=db,
        user=user,
        max_age=dt.timedelta(seconds=_settings(request).session_max_age),
        client=f"{client} {agent}".strip(),
    )
    request.session["sid"] = secret
    csrf_token(request)


def log_out(request: Request, db: Session) -> None:
    """End this browser's session, on the server too."""
    secret = request.session.get("sid")
    if isinstance(secret, str):
        end_session(db=db, secret=secret)
    request.session.clear()


def current_session(request: Request, db: Session) -> BrowserSession | None:
    """This browser's live session, or None."""
    if "session" not in request.scope:
        return None
    secret = request.session.get("sid")
    if not isinstance(secret, str):
        return None
    idle = dt.timedelta(seconds=_settings(request).session_idle_timeout)
    return session_for(db=db, secret=secret, idle=idle)


def session_user(request: Request, db: Session) -> User | None:
    """The logged-in, enabled user of this browser session, or None."""
    found = current_session(request, db)
    return None if found is None else found.user


def session_user_id(request: Request, platform: Platform) -> int | None:
    """The id of this browser session's user, looked up in a transaction of its own: a
    reader, and a writer only when the lookup notes a use or removes an expired session
    (pages read in snapshots that may not write)."""

    def lookup(db: Session) -> int | None:
        found = current_session(request, db)
        request.state.browser_session_id = None if found is None else found.id
        return None if found is None else found.user.id

    return read_then_write(platform.readers, platform.sessions, lookup)


def this_session_id(request: Request) -> int | None:
    """The id of the session :func:`session_user_id` found for this request, if any.

    A page reads it instead of looking the session up again in its own snapshot: a second
    lookup may note a use or remove an expired session, a write the snapshot may not make.
    """
    found: int | None = getattr(request.state, "browser_session_id", None)
    return found
