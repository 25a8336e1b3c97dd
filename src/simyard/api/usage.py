"""``GET /api/v1/usage``: worker-seconds and CPU-seconds by user, run or sweep, over a period."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from simyard.api.deps import DbDep, PlatformDep, UserDep, problems_response
from simyard.domain.usage import Grouping, usage_by
from simyard.errors import Problem
from simyard.times import aware

router = APIRouter(tags=["usage"])


class UsageRowOut(BaseModel):
    key: str  # the user's name, or the run's or sweep's id
    task_runs: int
    worker_seconds: float
    cpu_seconds: float
    cost: float | None  # worker-hours times price_per_worker_hour, when the cluster has one


class UsageOut(BaseModel):
    by: Grouping
    since: dt.datetime | None
    until: dt.datetime | None
    price_per_worker_hour: float | None
    rows: list[UsageRowOut]


@router.get("/usage", response_model=UsageOut)
def get_usage(
    db: DbDep,
    user: UserDep,
    platform: PlatformDep,
    by: Grouping = "user",
    since: Annotated[dt.datetime | None, Query(description="Task runs ended from (UTC)")] = None,
    until: Annotated[dt.datetime | None, Query(description="Task runs ended before")] = None,
) -> Any:
    """Usage of the task runs that ended in the period; an admin sees everyone's, a user
    their own. With the cluster's ``price_per_worker_hour``, also as money."""
    for name, when in (("since", since), ("until", until)):
        try:
            if when is not None:
                aware(when).astimezone(dt.UTC)
        except OverflowError:  # a zone pushing the year past 1..9999
            return problems_response([Problem(name, "out of range: give a time in UTC")])
    price = platform.dispatcher.executor.price_per_worker_hour
    rows = usage_by(db=db, group=by, since=since, until=until,
                    user=None if user.is_admin else user)  # fmt: skip
    return UsageOut(
        by=by, since=since, until=until, price_per_worker_hour=price,
        rows=[UsageRowOut(key=r.key, task_runs=r.task_runs, worker_seconds=r.worker_seconds,
                          cpu_seconds=r.cpu_seconds, cost=r.cost(price)) for r in rows],
    )  # fmt: skip
