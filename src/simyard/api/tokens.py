"""API tokens: exchange a password for one, list them, revoke them.

A token has a scope: ``run`` (its user's full rights) or ``read`` (GET requests only), and
optionally an expiry. Only its sha256 is stored; the token itself is shown once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from simyard.api.deps import (
    DbDep,
    PlatformDep,
    RowId,
    UserDep,
    client_address,
    problems_response,
)
from simyard.api.schemas import Timestamp
from simyard.domain.audit import AuditAction, record
from simyard.domain.logins import Throttled, password_login
from simyard.domain.ratelimit import retry_after
from simyard.domain.tables import ApiToken, User, utcnow
from simyard.domain.users import create_token, list_tokens, revoke_token
from simyard.errors import ValidationFailed

router = APIRouter(tags=["users and tokens"])


class Credentials(BaseModel):
    username: str
    password: str
    token_name: str = "cli"  # noqa: S105 - a label, not a secret
    scope: str = "run"
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(BaseModel):
    id: int
    name: str
    user: str
    prefix: str
    scope: str
    created_at: Timestamp
    last_used_at: Timestamp | None
    expires_at: Timestamp | None


def token_out(row: ApiToken) -> TokenOut:
    return TokenOut(
        id=row.id, name=row.name, user=row.user.name, prefix=row.prefix, scope=row.scope,
        created_at=row.created_at, last_used_at=row.last_used_at, expires_at=row.expires_at,
    )  # fmt: skip


@router.post(
    "/tokens",
    status_code=201,
    responses={422: {"description": "refused"}, 429: {"description": "too many failed logins"}},
)
def new_token(body: Credentials, db: DbDep, platform: PlatformDep, request: Request) -> Any:
    """Exchange a user name and password for a new API token (shown once). Failed attempts
    are throttled per account and per address: 429 with Retry-After (seconds)."""
    if not platform.settings.local_passwords:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="passwords are switched off on this server (single sign-on): "
            "create a token on your Account page (/account) and set SIMYARD_TOKEN",
        )
    client = client_address(request)
    user = password_login(
        db=db, rule=platform.settings.login_rule(), name=body.username,
        password=body.password, client=client, via="api",
    )  # fmt: skip
    if isinstance(user, Throttled):
        wait = retry_after(user.seconds)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many failed logins for this account or from this address: "
            f"try again in {wait} seconds",
            headers={"Retry-After": wait},
        )
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="wrong user name or password")
    if user.must_change_password:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="choose a new password first (log in in a browser)"
        )
    expires = None
    if body.expires_in_days is not None:
        expires = utcnow() + dt.timedelta(days=body.expires_in_days)
    try:
        token = create_token(
            db=db, user=user, name=body.token_name[:100], scope=body.scope, expires_at=expires
        )
    except ValidationFailed as exc:
        return problems_response(exc.problems)
    _record_created(db, user, client, body.token_name[:100], body.scope, expires)
    return {"token": token, "user": user.name, "scope": body.scope, "expires_at": expires}


def _record_created(
    db: DbDep, user: User, client: str, label: str, scope: str, expires: dt.datetime | None
) -> None:
    record(
        db=db, actor=user.name, action=AuditAction.token_created, account=user.name,
        target=f"token {label!r}", client=client,
        detail={"label": label, "scope": scope,
                "expires_at": expires.isoformat() if expires else None},
    )  # fmt: skip


@router.get("/tokens", response_model=list[TokenOut])
def get_tokens(db: DbDep, user: UserDep, all_users: bool = False) -> list[TokenOut]:
    """Your tokens, newest first; an admin with ``all_users=true`` sees everyone's."""
    if all_users and not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only an admin may list all tokens")
    return [token_out(row) for row in list_tokens(db=db, user=None if all_users else user)]


@router.delete("/tokens/{token_id}", status_code=204)
def delete_token(token_id: RowId, db: DbDep, user: UserDep, request: Request) -> Response:
    """Revoke one of your tokens (an admin: anyone's); it stops working at once."""
    row = revoke_token(db=db, token_id=token_id, by=user)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no token {token_id}")
    record(
        db=db, actor=user.name, action=AuditAction.token_revoked, account=row.user.name,
        target=f"token {token_id} {row.name!r}", client=client_address(request),
    )  # fmt: skip
    return Response(status_code=204)
