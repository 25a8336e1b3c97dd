"""Sharing a run or a sweep read-only with a user or with every signed-in user.

Only who may ``Action.share`` (the owner, an admin; see domain/access.py) shares, unshares
or lists the shares; the callers have checked that. Sharing twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from simyard.domain.tables import Run, Share, Sweep, User
from simyard.domain.users import get_user
from simyard.errors import Problem, ValidationFailed


@dataclass(frozen=True)
class Audience:
    """Whom a share is for: one user, or (``user`` None) every signed-in user."""

    user: User | None

    @classmethod
    def read(cls, db: Session, body: Mapping[str, Any], *, unshare: bool = False) -> Audience:
        """``{"user": NAME}`` or ``{"everyone": true}``; ValidationFailed naming the field.
        A disabled user is not shared with, but may be unshared."""
        name, everyone = body.get("user"), body.get("everyone")
        if everyone is not None and not isinstance(everyone, bool):
            raise ValidationFailed([Problem("everyone", "must be true or false")])
        if everyone and name not in (None, ""):
            raise ValidationFailed([Problem("user", "give a user or everyone, not both")])
        if everyone:
            return cls(None)
        if name is None or name == "":
            raise ValidationFailed(
                [Problem("user", 'name the user to share with, or give {"everyone": true}')]
            )
        user = get_user(db=db, name=name) if isinstance(name, str) else None
        if user is None or (user.disabled and not unshare):
            raise ValidationFailed([Problem("user", f"no user {str(name)[:64]!r}")])
        return cls(user)


def _target(thing: Run | Sweep) -> Any:
    return Share.run_id == thing.id if isinstance(thing, Run) else Share.sweep_id == thing.id


def _audience(audience: Audience) -> Any:
    return Share.user_id.is_(None) if audience.user is None else Share.user_id == audience.user.id


def list_shares(*, db: Session, thing: Run | Sweep) -> list[Share]:
    """The run's or sweep's shares, the one for everyone first, then by user name."""
    shares = db.scalars(select(Share).where(_target(thing)).options(selectinload(Share.user))).all()
    return sorted(shares, key=lambda s: (s.user is not None, s.user.name if s.user else ""))


def share(*, db: Session, thing: Run | Sweep, audience: Audience, by: User) -> Share:
    """Share ``thing`` with the audience (already shared: the share there is)."""
    if audience.user is not None and audience.user.id == thing.user_id:
        raise ValidationFailed([Problem("user", "the owner reads it already")])
    found = db.scalar(select(Share).where(_target(thing), _audience(audience)))
    if found is not None:
        return found
    row = Share(
        run_id=thing.id if isinstance(thing, Run) else None,
        sweep_id=thing.id if isinstance(thing, Sweep) else None,
        user_id=audience.user.id if audience.user else None,
        shared_by=by.id,
    )
    db.add(row)
    db.flush()
    return row


def unshare(*, db: Session, thing: Run | Sweep, audience: Audience) -> bool:
    """Withdraw the share; False when there was none."""
    found = db.scalar(select(Share).where(_target(thing), _audience(audience)))
    if found is None:
        return False
    db.delete(found)
    db.flush()
    return True
