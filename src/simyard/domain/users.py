"""Users and API tokens: passwords hashed with argon2, tokens stored only as their sha256."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session, joinedload, make_transient_to_detached, sessionmaker

from simyard.domain.sessions import end_user_sessions
from simyard.domain.tables import ApiToken, User, aware, utcnow
from simyard.errors import Problem, SimyardError, ValidationFailed

TOKEN_PREFIX = "sy_"  # noqa: S105 - a marker, not a secret
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_EMAIL_RE = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
_hasher = PasswordHash((Argon2Hasher(),))


class UserExists(SimyardError):
    """A user of that name exists already."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(
    *, db: Session, name: str, email: str, password: str | None, is_admin: bool = False
) -> User:
    """Add a user; ValidationFailed names the bad field, UserExists a taken name."""
    problems = []
    if not _NAME_RE.match(name):
        problems.append(Problem("name", "letters, digits, '.', '_' and '-' only, up to 64"))
    if not _EMAIL_RE.match(email) or len(email) > 254:
        problems.append(Problem("email", "not an email address"))
    if password is not None and len(password) < 8:
        problems.append(Problem("password", "must be at least 8 characters"))
    if problems:
        raise ValidationFailed(problems)
    if db.scalar(select(User).where(User.name == name)) is not None:
        raise UserExists(f"user {name!r} exists already")
    user = User(
        name=name,
        email=email,
        password_hash=hash_password(password) if password else None,
        is_admin=is_admin,
    )
    db.add(user)
    db.flush()
    return user


def authenticate(*, db: Session, name: str, password: str) -> User | None:
    """The user when name and password match and the account is enabled; else None."""
    user = get_user(db=db, name=name)
    if user is None or user.password_hash is None or user.disabled:
        _hasher.hash(password)  # spend the same time whether or not the user exists
        return None
    valid, updated = _hasher.verify_and_update(password, user.password_hash)
    if not valid:
        return None
    if updated:
        user.password_hash = updated
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


TOKEN_SCOPES = ("run", "read")  # run: the user's full rights; read: GET requests only


def create_token(
    *,
    db: Session,
    user: User,
    name: str = "cli",
    scope: str = "run",
    expires_at: dt.datetime | None = None,
) -> str:
    """A new API token for ``user``; the plain token is returned once and never stored."""
    problems = []
    if scope not in TOKEN_SCOPES:
        problems.append(Problem("scope", f"use one of: {', '.join(TOKEN_SCOPES)}"))
    if not name.strip() or len(name) > 100:
        problems.append(Problem("name", "give the token a name of up to 100 characters"))
    if expires_at is not None and aware(expires_at) <= utcnow():
        problems.append(Problem("expires_at", "must lie in the future"))
    if problems:
        raise ValidationFailed(problems)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.add(
        ApiToken(
            user_id=user.id,
            name=name.strip(),
            token_hash=_token_hash(token),
            prefix=token[:8],
            scope=scope,
            expires_at=expires_at,
        )
    )
    db.flush()
    return token


def token_for(*, db: Session, token: str) -> ApiToken | None:
    """The live token row (not expired, its user enabled), noting when it was last used."""
    row = db.scalar(
        select(ApiToken)
        .options(joinedload(ApiToken.user))  # every caller reads the user
        .where(ApiToken.token_hash == _token_hash(token))
    )
    if row is None or row.user.disabled:
        return None
    now = utcnow()
    if row.expires_at is not None and aware(row.expires_at) <= now:
        return None
    if row.last_used_at is None or (now - aware(row.last_used_at)).total_seconds() > 60:
        row.last_used_at = now
    return row


_CHANGED = "simyard.users_changed"  # a session's mark: it flushed a user or token change


def _changes_access(row: object) -> bool:
    """Whether a change to ``row`` may change what a token lets through: any change to a
    user or a token, but the note of a token's last use."""
    if isinstance(row, User):
        return True
    if not isinstance(row, ApiToken):
        return False
    changed = inspect(row).attrs
    return any(a.history.has_changes() for a in changed if a.key != "last_used_at")


@dataclass(frozen=True)
class VerifiedToken:
    """What a token lookup found: its scope, and its user as a copy of the row."""

    scope: str
    user: User


class VerifiedTokens:
    """Tokens verified in the last ``ttl`` seconds: a lookup within it reads nothing.

    Issue 13 allows it "as long as a revocation takes effect within 1 s": a revoked or
    expired token, a disabled or changed user, is seen at the next lookup after ``ttl``.
    Each hit gets a User of its own, built from the row's values (never an object another
    request may hold or attach to its session). Tokens are kept by their sha256.
    """

    def __init__(self, ttl: float = 1.0) -> None:
        self.ttl = ttl
        self._seen: dict[str, tuple[float, str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def follow(self, sessions: sessionmaker[Session]) -> None:
        """Forget every token once a session of ``sessions`` commits a change to a user or a
        token: a revocation or a disabled account in this process counts at once (one made
        by another process, the CLI, within ``ttl``)."""

        def flushing(session: Session, _context: Any, _instances: Any) -> None:
            gone = any(isinstance(row, (User, ApiToken)) for row in session.deleted)
            if gone or any(_changes_access(row) for row in session.dirty):
                session.info[_CHANGED] = True

        def committed(session: Session) -> None:
            if session.info.pop(_CHANGED, False):
                self.clear()

        event.listen(sessions, "before_flush", flushing)
        event.listen(sessions, "after_commit", committed)
        event.listen(sessions, "after_rollback", lambda session: session.info.pop(_CHANGED, 0))

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def lookup(self, token: str) -> VerifiedToken | None:
        key = _token_hash(token)
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and seen[0] <= time.monotonic():
                del self._seen[key]
                seen = None
        if seen is None:
            return None
        user = User(**seen[2])
        make_transient_to_detached(user)
        return VerifiedToken(seen[1], user)

    def remember(self, token: str, row: ApiToken) -> None:
        """Keep a live token row's scope and user for ``ttl`` (less, if it expires sooner)."""
        until = time.monotonic() + self.ttl
        if row.expires_at is not None:
            until = min(
                until, time.monotonic() + (aware(row.expires_at) - utcnow()).total_seconds()
            )
        values = {c.key: getattr(row.user, c.key) for c in User.__mapper__.column_attrs}
        with self._lock:
            if len(self._seen) > 10_000:  # a flood of distinct tokens: keep only live ones
                now = time.monotonic()
                self._seen = {k: v for k, v in self._seen.items() if v[0] > now}
            self._seen[_token_hash(token)] = (until, row.scope, values)


def list_tokens(*, db: Session, user: User | None = None) -> list[ApiToken]:
    """The tokens of ``user`` (every user's when None), newest first."""
    query = select(ApiToken).order_by(ApiToken.id.desc())
    if user is not None:
        query = query.where(ApiToken.user_id == user.id)
    return list(db.scalars(query))


def revoke_token(*, db: Session, token_id: int, by: User | None) -> ApiToken | None:
    """Revoke a token of ``by`` (any user's token when ``by`` is an admin, or None: the
    operator); None when there is no such token ``by`` may see."""
    row = db.get(ApiToken, token_id)
    if row is None or (by is not None and row.user_id != by.id and not by.is_admin):
        return None
    db.delete(row)
    db.flush()
    return row


def change_password(*, db: Session, user: User, current: str, new: str) -> None:
    """The user's own change: the current password must match; ends the other sessions
    (the caller keeps its own by ending them itself with ``keep``)."""
    valid = user.password_hash is not None and _hasher.verify(current, user.password_hash)
    problems = [] if valid else [Problem("current_password", "this is not your password")]
    problems += _new_password_problems(new, user, current)
    if problems:
        raise ValidationFailed(problems)
    user.password_hash = hash_password(new)
    user.must_change_password = False
    db.flush()


def set_password(*, db: Session, user: User, password: str, temporary: bool = False) -> None:
    """An operator or admin sets the password; ``temporary``: it must be changed at the next
    login. Every session of the user ends."""
    if problems := _new_password_problems(password, user, None):
        raise ValidationFailed(problems)
    user.password_hash = hash_password(password)
    user.must_change_password = temporary
    end_user_sessions(db=db, user=user)


def _new_password_problems(new: str, user: User, current: str | None) -> list[Problem]:
    if len(new) < 8:
        return [Problem("new_password", "must be at least 8 characters")]
    if new == current:
        return [Problem("new_password", "must differ from the current password")]
    if new.strip().lower() == user.name.lower():
        return [Problem("new_password", "must not be your user name")]
    return []


def get_user(*, db: Session, name: str) -> User | None:
    """The user of this name; None for a name no user can have (PostgreSQL would refuse
    to compare text holding a NUL character)."""
    if "\x00" in name:
        return None
    return db.scalar(select(User).where(User.name == name))


def set_disabled(*, db: Session, user: User, disabled: bool) -> None:
    """Disable or enable an account. Disabling ends the user's sessions and revokes their
    tokens at once (open streams notice within a poll); their runs are the caller's choice."""
    user.disabled = disabled
    if disabled:
        end_user_sessions(db=db, user=user)
        for row in list_tokens(db=db, user=user):
            db.delete(row)
    db.flush()


MAX_QUOTA = 10_000


def set_quota(*, db: Session, user: User, max_running: int | None) -> None:
    """At most ``max_running`` of the user's tasks run at once; None lifts the quota."""
    if max_running is not None and not 1 <= max_running <= MAX_QUOTA:
        raise ValidationFailed(
            [Problem("max_running", f"give a whole number from 1 to {MAX_QUOTA:,}, or nothing")]
        )
    user.max_running = max_running
    db.flush()


def set_admin(*, db: Session, user: User, is_admin: bool) -> None:
    """Grant or withdraw the admin role."""
    user.is_admin = is_admin
    db.flush()
