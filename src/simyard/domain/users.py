"""Users and API tokens: passwords hashed with argon2, tokens stored only as their sha256."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from simyard.domain.tables import ApiToken, User, utcnow
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
    user = db.scalar(select(User).where(User.name == name))
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


def create_token(*, db: Session, user: User, name: str = "cli") -> str:
    """A new API token for ``user``; the plain token is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.add(ApiToken(user_id=user.id, name=name, token_hash=_token_hash(token), prefix=token[:8]))
    db.flush()
    return token


def user_for_token(*, db: Session, token: str) -> User | None:
    """The enabled user owning ``token``, or None."""
    row = db.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    if row is None or row.user.disabled:
        return None
    now = utcnow()
    last = row.last_used_at
    if last is None or (now - (last if last.tzinfo else last.replace(tzinfo=dt.UTC))).seconds > 60:
        row.last_used_at = now
    return row.user


def get_user(*, db: Session, name: str) -> User | None:
    return db.scalar(select(User).where(User.name == name))


def set_disabled(*, db: Session, user: User, disabled: bool) -> None:
    """Disable or enable an account; a disabled user can neither log in nor use a token."""
    user.disabled = disabled
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
