"""The audit log (admins only): security events, newest first, filtered and paged."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from simyard.api.deps import AdminDep, DbDep, RowId
from simyard.api.schemas import Timestamp
from simyard.domain.audit import AuditAction, list_entries
from simyard.domain.tables import AuditEntry

router = APIRouter(tags=["audit"])


class AuditOut(BaseModel):
    id: int
    at: Timestamp
    actor: str  # a user name, "operator" (the server's command line) or "anonymous"
    action: AuditAction
    account: str | None  # the user the event concerns
    target: str
    client: str  # the client's address ("" for the operator's commands)
    detail: dict[str, Any]


def audit_out(entry: AuditEntry) -> AuditOut:
    return AuditOut(
        id=entry.id, at=entry.at, actor=entry.actor, action=AuditAction(entry.action),
        account=entry.account, target=entry.target, client=entry.client, detail=entry.detail,
    )  # fmt: skip


@router.get("/audit", response_model=list[AuditOut])
def get_audit(
    db: DbDep,
    admin: AdminDep,
    user: Annotated[str | None, Query(description="By or to this user", max_length=64)] = None,
    action: AuditAction | None = None,
    since: Annotated[dt.datetime | None, Query(description="From (UTC if no zone)")] = None,
    until: Annotated[dt.datetime | None, Query(description="Before this time")] = None,
    before: Annotated[RowId | None, Query(description="Only entries with a smaller id")] = None,
    limit: int = Query(default=50, ge=1, le=500),
) -> list[AuditOut]:
    """Logins (with the client's address), logouts, tokens, user changes, model
    registrations and notification settings, newest first; page on with ``before`` set
    to the last id shown. Never holds a secret."""
    found = list_entries(
        db=db, user=user, action=action, since=since, until=until, before_id=before, limit=limit
    )
    return [audit_out(entry) for entry in found]
