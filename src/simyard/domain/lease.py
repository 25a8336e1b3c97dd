"""The dispatch lease: one row saying which server dispatches, until when.

Several API servers may share one database; exactly one holds the lease and
dispatches. It renews the lease well before it expires; when it dies, the lease runs
out and another server takes it over. Each term of leadership has its own holder
token (the fencing token): every dispatcher write checks, in its own transaction,
that its term still holds the lease (:func:`holds_lease`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from simyard.domain.tables import DispatcherLease, utcnow
from simyard.times import limit_ms

LEASE_ID = 1


def end_if_stalled(db: Session, seconds: float) -> None:
    """Have the database end this transaction once ``seconds`` pass without a statement.

    A server stopped with a transaction open (SIGSTOP, a paused VM) would otherwise keep
    its row locks, the lease's first, for as long as it stays stopped: no other server
    could take the lease over. PostgreSQL only; SQLite has no row locks.
    """
    if db.get_bind().dialect.name == "postgresql":
        timeout = str(limit_ms(seconds))
        db.execute(select(func.set_config("idle_in_transaction_session_timeout", timeout, True)))


def take_lease(db: Session, term: str, ttl: float) -> bool:
    """Start a new term for ``term`` if the lease is free (never held, or run out)."""
    now = utcnow()
    until = now + dt.timedelta(seconds=ttl)
    taken = cast(
        CursorResult[Any],
        db.execute(
            update(DispatcherLease)
            .where(DispatcherLease.id == LEASE_ID, DispatcherLease.expires_at < now)
            .values(holder=term, expires_at=until)
        ),
    ).rowcount
    if taken:
        return True
    if db.scalar(select(DispatcherLease.id).where(DispatcherLease.id == LEASE_ID)) is None:
        try:
            with db.begin_nested():
                db.add(DispatcherLease(id=LEASE_ID, holder=term, expires_at=until))
        except IntegrityError:  # another server created it first
            return False
        return True
    return False


def renew_lease(db: Session, term: str, ttl: float) -> bool:
    """Extend ``term``'s lease; False once it has run out or another term holds it.

    A lease that ran out is never renewed, even when nobody took it meanwhile: the
    stalled holder cannot know what happened while it slept, so its term is over.
    """
    now = utcnow()
    renewed = cast(
        CursorResult[Any],
        db.execute(
            update(DispatcherLease)
            .where(
                DispatcherLease.id == LEASE_ID,
                DispatcherLease.holder == term,
                DispatcherLease.expires_at >= now,
            )
            .values(expires_at=now + dt.timedelta(seconds=ttl))
        ),
    ).rowcount
    return bool(renewed)


_LOCK_LEASE = select(DispatcherLease).where(DispatcherLease.id == LEASE_ID).with_for_update()


def holds_lease(db: Session, term: str) -> bool:
    """Whether ``term`` holds the lease now, locking its row until the transaction ends.

    This is the fencing check of every dispatcher write: while the caller's transaction
    is open no other server can take the lease over (its UPDATE waits on the row lock),
    so writes made after a True answer cannot land beside a new holder's.
    """
    row = db.scalar(_LOCK_LEASE)
    if row is None or row.holder != term:
        return False
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=dt.UTC)
    return expires >= utcnow()


def release_lease(db: Session, holder: str) -> None:
    """Give the lease up at once (a clean shutdown), so another server need not wait."""
    db.execute(
        update(DispatcherLease)
        .where(DispatcherLease.id == LEASE_ID, DispatcherLease.holder == holder)
        .values(expires_at=utcnow() - dt.timedelta(seconds=1))
    )


def lease_holder(db: Session) -> str | None:
    row = db.get(DispatcherLease, LEASE_ID)
    if row is None:
        return None
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=dt.UTC)
    return row.holder if expires > utcnow() else None
