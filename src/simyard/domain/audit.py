"""The audit log: security events, recorded in the transaction of the change they record.

Who (a user name, ``operator`` for the server's own commands, ``anonymous`` before a
login), what (an ``AuditAction``), the account it concerns, its target, the client's
address, when, and a small JSON detail. Never a secret: ``record`` refuses a detail key
that names one (password, secret, token, url), and callers cut URLs to scheme and host
(``notify.base.shown_target``). A failed login for a name that is no user records no name:
people type their password into the user name field. Entries older than the retention
(``SIMYARD_AUDIT_RETENTION_DAYS``) are deleted by ``prune_entries``.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from simyard.domain.tables import AuditEntry, NotificationSettings, utcnow
from simyard.notify.base import shown_target

OPERATOR = "operator"  # the server's own command line (simyard users|tokens ...)
ANONYMOUS = "anonymous"  # nobody logged in (a failed login)
_SECRET_WORDS = ("password", "secret", "token", "url")


class AuditAction(StrEnum):
    """Every event the audit log knows."""

    login_succeeded = "login.succeeded"
    login_failed = "login.failed"
    logout = "logout"
    sessions_ended = "sessions.ended"  # "log out everywhere else"
    token_created = "token.created"  # noqa: S105 - an event name
    token_revoked = "token.revoked"  # noqa: S105 - an event name
    user_added = "user.added"
    user_disabled = "user.disabled"
    user_enabled = "user.enabled"
    admin_granted = "user.admin_granted"
    admin_removed = "user.admin_removed"
    quota_changed = "user.quota_changed"
    password_changed = "user.password_changed"  # noqa: S105 - by the user, knowing the old one
    password_set = "user.password_set"  # noqa: S105 - by an admin or the operator
    model_registered = "model.registered"
    notifications_changed = "notifications.changed"


def record(
    *,
    db: Session,
    actor: str,
    action: AuditAction,
    account: str | None = None,
    target: str = "",
    client: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add one entry to the caller's transaction (it commits or rolls back with the change)."""
    detail = detail or {}
    for key in detail:
        if any(word in key.lower() for word in _SECRET_WORDS):
            raise ValueError(f"audit detail {key!r} sounds like a secret; record what, not it")
    entry = AuditEntry(
        actor=actor[:64],
        action=str(action),
        account=account[:64] if account else None,
        target=target[:200],
        client=client[:64],
        detail=detail,
    )
    db.add(entry)
    db.flush()
    return entry


def notification_detail(prefs: NotificationSettings, *, signing_changed: bool) -> dict[str, Any]:
    """What an audit entry tells of a user's notification settings: channels cut to scheme
    and host, whether the webhook's signing secret changed, never the secret or a path."""
    return {
        "email": prefs.email,
        "outcomes": list(prefs.outcomes or []),
        "webhook": shown_target("webhook", prefs.webhook_url) if prefs.webhook_url else None,
        "webhook_signing": "changed" if signing_changed else "unchanged",
        "chat": [shown_target("apprise", target) for target in prefs.apprise_urls or []],
    }


def list_entries(
    *,
    db: Session,
    user: str | None = None,
    action: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[AuditEntry]:
    """Entries newest first; ``user`` matches the actor or the account concerned, ``since``
    is inclusive and ``until`` exclusive, ``before_id`` pages on."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if user:
        query = query.where(or_(AuditEntry.actor == user, AuditEntry.account == user))
    if action:
        query = query.where(AuditEntry.action == action)
    if since is not None:
        query = query.where(AuditEntry.at >= _utc(since))
    if until is not None:
        query = query.where(AuditEntry.at < _utc(until))
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(db.scalars(query))


def _utc(when: dt.datetime) -> dt.datetime:
    """A time without a zone is taken as UTC (the page's inputs send none)."""
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def prune_entries(*, db: Session, keep_days: int, now: dt.datetime | None = None) -> int:
    """Delete entries older than ``keep_days``; how many."""
    cutoff = (now or utcnow()) - dt.timedelta(days=keep_days)
    done = db.execute(delete(AuditEntry).where(AuditEntry.at < cutoff))
    return int(done.rowcount or 0)  # type: ignore[attr-defined]
