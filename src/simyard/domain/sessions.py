"""Browser sessions kept on the server, so that logging out really ends one.

The browser's cookie carries a random id; the database keeps only its sha256, so a copy
of the database opens no session. A session ends at logout, after ``idle`` without a
request, at its absolute expiry, when its user changes password or is disabled, or by
"log out everywhere". Logging in always opens a new session (a new id).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, joinedload

from simyard.domain.tables import BrowserSession, User, aware, utcnow

TOUCH_EVERY = dt.timedelta(seconds=60)  # last_seen_at is written at most this often (or idle/10)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def open_session(*, db: Session, user: User, max_age: dt.timedelta, client: str = "") -> str:
    """A new session of ``user``; returns the secret id for the cookie (never stored)."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    db.add(
        BrowserSession(
            user_id=user.id,
            id_hash=_hash(secret),
            created_at=now,
            last_seen_at=now,
            expires_at=now + max_age,
            client=client[:200],
        )
    )
    db.flush()
    return secret


def session_for(*, db: Session, secret: str, idle: dt.timedelta) -> BrowserSession | None:
    """The live session with this secret id (its user enabled), or None; an expired one is
    removed on sight."""
    found = db.scalar(
        select(BrowserSession)
        .options(joinedload(BrowserSession.user))  # every caller reads the user
        .where(BrowserSession.id_hash == _hash(secret))
    )
    if found is None:
        return None
    now = utcnow()
    if aware(found.expires_at) <= now or now - aware(found.last_seen_at) > idle:
        db.delete(found)
        db.flush()
        return None
    if found.user.disabled:
        return None
    if now - aware(found.last_seen_at) > min(TOUCH_EVERY, idle / 10):
        found.last_seen_at = now
    return found


def end_session(*, db: Session, secret: str) -> None:
    """Log this session out (nothing happens for an unknown id)."""
    db.execute(delete(BrowserSession).where(BrowserSession.id_hash == _hash(secret)))


def end_user_sessions(*, db: Session, user: User, keep: int | None = None) -> int:
    """End every session of ``user`` but the one with id ``keep``; how many ended."""
    query = delete(BrowserSession).where(BrowserSession.user_id == user.id)
    if keep is not None:
        query = query.where(BrowserSession.id != keep)
    ended = db.execute(query).rowcount  # type: ignore[attr-defined]
    db.flush()
    return int(ended or 0)


def list_sessions(*, db: Session, user: User) -> list[BrowserSession]:
    """The user's sessions, the most recently used first."""
    query = select(BrowserSession).where(BrowserSession.user_id == user.id)
    return list(db.scalars(query.order_by(BrowserSession.last_seen_at.desc())))
