"""API tokens: exchange a password for one, list them, revoke them.

A token has a scope: ``run`` (its user's full rights) or ``read`` (GET requests only), and
optionally an expiry. Only its sha256 is stored; the token itself is shown once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, Field

from simyard.api.deps import DbDep, PlatformDep, RowId, UserDep, problems_response
from simyard.api.schemas import Timestamp
from simyard.domain.tables import ApiToken, utcnow
from simyard.domain.users import authenticate, create_token, list_tokens, revoke_token
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


@router.post("/tokens", status_code=201, responses={422: {"description": "refused"}})
def new_token(body: Credentials, db: DbDep, platform: PlatformDep) -> Any:
    """Exchange a user name and password for a new API token (shown once)."""
    if not platform.settings.local_passwords:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="passwords are switched off on this server (single sign-on): "
            "create a token on your Account page (/account) and set SIMYARD_TOKEN",
        )
    user = authenticate(db=db, name=body.username, password=body.password)
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
    return {"token": token, "user": user.name, "scope": body.scope, "expires_at": expires}


@router.get("/tokens", response_model=list[TokenOut])
def get_tokens(db: DbDep, user: UserDep, all_users: bool = False) -> list[TokenOut]:
    """Your tokens, newest first; an admin with ``all_users=true`` sees everyone's."""
    if all_users and not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only an admin may list all tokens")
    return [token_out(row) for row in list_tokens(db=db, user=None if all_users else user)]


@router.delete("/tokens/{token_id}", status_code=204)
def delete_token(token_id: RowId, db: DbDep, user: UserDep) -> Response:
    """Revoke one of your tokens (an admin: anyone's); it stops working at once."""
    if revoke_token(db=db, token_id=token_id, by=user) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no token {token_id}")
    return Response(status_code=204)
