"""The dispatch lease: one row saying which server dispatches, until when.

Several API servers may share one database; exactly one holds the lease and
dispatches. It renews the lease well before it expires; when it dies, the lease runs
out and another server takes it over.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from simyard.domain.tables import DispatcherLease, utcnow

LEASE_ID = 1


def acquire_lease(db: Session, holder: str, ttl: float) -> bool:
    """Take or renew the lease for ``holder``; False while another holder's is still valid."""
    now = utcnow()
    until = now + dt.timedelta(seconds=ttl)
    taken = cast(
        CursorResult[Any],
        db.execute(
            update(DispatcherLease)
            .where(
                DispatcherLease.id == LEASE_ID,
                (DispatcherLease.holder == holder) | (DispatcherLease.expires_at < now),
            )
            .values(holder=holder, expires_at=until)
        ),
    ).rowcount
    if taken:
        return True
    if db.scalar(select(DispatcherLease.id).where(DispatcherLease.id == LEASE_ID)) is None:
        try:
            with db.begin_nested():
                db.add(DispatcherLease(id=LEASE_ID, holder=holder, expires_at=until))
        except IntegrityError:  # another server created it first
            return False
        return True
    return False


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
