"""Log in for a token, and who am I."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from simyard.api.deps import DbDep, UserDep
from simyard.domain.users import authenticate, create_token

router = APIRouter(tags=["users and tokens"])


class Credentials(BaseModel):
    username: str
    password: str
    token_name: str = "cli"  # noqa: S105 - a label, not a secret


@router.post("/tokens", status_code=201)
def new_token(body: Credentials, db: DbDep) -> dict[str, Any]:
    """Exchange a user name and password for a new API token (shown once)."""
    user = authenticate(db=db, name=body.username, password=body.password)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="wrong user name or password")
    token = create_token(db=db, user=user, name=body.token_name[:100])
    return {"token": token, "user": user.name}


@router.get("/users/me")
def me(user: UserDep) -> dict[str, Any]:
    return {"name": user.name, "email": user.email, "is_admin": user.is_admin}
