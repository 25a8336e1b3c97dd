"""The audit log page (admins only): security events with filters and paging."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from simyard.api.deps import RowId, refuse_nul_characters
from simyard.domain.audit import AuditAction, list_entries
from simyard.web.pages.common import AdminPageUser, PageDb
from simyard.web.templating import render

router = APIRouter()
PAGE = 50


def _moment(text: str) -> dt.datetime | None:
    """A time typed in the filter (``2026-12-01T13:00``, UTC); None when empty or not one."""
    try:
        return dt.datetime.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        return None


@router.get(
    "/admin/audit",
    response_class=HTMLResponse,
    dependencies=[Depends(refuse_nul_characters)],  # PostgreSQL cannot compare text with one
)
def audit_page(
    request: Request,
    db: PageDb,
    user: AdminPageUser,
    who: str = Query(default="", alias="user", max_length=64),
    action: str = "",
    since: str = Query(default="", max_length=40),
    until: str = Query(default="", max_length=40),
    before: RowId | None = None,
) -> HTMLResponse:
    """Who did what, to whom, from where, when: newest first, filtered by user (done by or
    to them), action and time (UTC)."""
    chosen = action if action in set(AuditAction) else ""
    found = list_entries(
        db=db, user=who.strip() or None, action=chosen or None, since=_moment(since),
        until=_moment(until), before_id=before, limit=PAGE + 1,
    )  # fmt: skip
    filters = {"user": who.strip(), "action": chosen, "since": since, "until": until}
    query = urlencode({key: value for key, value in filters.items() if value})
    typed = {"since": since, "until": until}
    bad_times = [name for name, text in typed.items() if text.strip() and not _moment(text)]
    return render(
        request, "admin_audit.html", user, nav="admin", entries=found[:PAGE],
        more=len(found) > PAGE, before=before, filters=filters, query=query,
        actions=[str(a) for a in AuditAction],
        bad_times=bad_times,
    )  # fmt: skip
