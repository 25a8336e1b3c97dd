"""The admin Usage page: worker-seconds, CPU-seconds (and money) by user, sweep or run."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRouter

from simyard.api.deps import PlatformDep
from simyard.domain.usage import Grouping, usage_by
from simyard.times import utcnow
from simyard.web.pages.common import AdminPageUser, PageDb
from simyard.web.templating import render

router = APIRouter()

PERIODS = {"day": 1, "week": 7, "month": 30, "all": None}


@router.get("/admin/usage", response_class=HTMLResponse)
def usage_page(
    request: Request,
    db: PageDb,
    user: AdminPageUser,
    platform: PlatformDep,
    by: Grouping = "user",
    period: Annotated[str, Query(pattern="^(day|week|month|all)$")] = "month",
) -> HTMLResponse:
    """Usage of the task runs that ended in the period, largest first."""
    days = PERIODS[period]
    since = utcnow() - dt.timedelta(days=days) if days else None
    price = platform.dispatcher.executor.price_per_worker_hour
    rows = usage_by(db=db, group=by, since=since)
    return render(request, "admin_usage.html", user, nav="admin", rows=rows, by=by,
                  period=period, periods=list(PERIODS), price=price)  # fmt: skip
