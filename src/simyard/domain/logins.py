"""A password login as the login form and ``POST /api/v1/tokens`` both make it: throttled
per account and per client address (domain/ratelimit.py), checked, and recorded in the
audit log (domain/audit.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from simyard.domain.audit import ANONYMOUS, AuditAction, record
from simyard.domain.ratelimit import LoginRule, login_succeeded, reserve_login
from simyard.domain.tables import User
from simyard.domain.users import authenticate, get_user


@dataclass(frozen=True)
class Throttled:
    """Too many failed attempts: no attempt is checked for ``seconds``."""

    seconds: float


def password_login(
    *, db: Session, rule: LoginRule, name: str, password: str, client: str, via: str
) -> User | Throttled | None:
    """The user, when the attempt is allowed and the password matches; ``Throttled`` when
    it must wait; None when refused. The attempt is counted and committed before the
    password is checked; a failure is recorded and committed (the caller's answer may roll
    back); a success is recorded in the caller's transaction, which goes on to open the
    session or make the token."""
    wait = reserve_login(db=db, rule=rule, account=name, address=client)
    db.commit()
    if wait is not None:
        return Throttled(wait)
    user = authenticate(db=db, name=name, password=password)
    if user is None:
        known = get_user(db=db, name=name)
        reason = (
            "no such user" if known is None
            else "account disabled" if known.disabled
            else "no password set" if known.password_hash is None
            else "wrong password"
        )  # fmt: skip
        record(
            db=db, actor=ANONYMOUS, action=AuditAction.login_failed,
            account=known.name if known else None, client=client,
            detail={"reason": reason, "via": via},
        )  # fmt: skip
        db.commit()
        return None
    login_succeeded(db=db, rule=rule, account=name, address=client)
    record(
        db=db, actor=user.name, action=AuditAction.login_succeeded, account=user.name,
        client=client, detail={"via": via},
    )  # fmt: skip
    return user
