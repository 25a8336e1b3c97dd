"""Sweeps: create (every run validated first; all or none), validate only, list, get, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from simyard.api.deps import DbDep, PlatformDep, RowId, UserDep
from simyard.api.runs import submit
from simyard.api.schemas import REFUSED, SweepOut, sweep_out
from simyard.domain import sweeps as sweep_service
from simyard.domain.access import Action, ReadOnly
from simyard.domain.submission import SweepSubmission
from simyard.domain.tables import Sweep

router = APIRouter(prefix="/sweeps", tags=["sweeps"])


@router.post("", response_model=SweepOut, status_code=201, responses={422: REFUSED})
async def create_sweep(request: Request, platform: PlatformDep, user: UserDep) -> Any:
    """Start a sweep: JSON ``{"model", "version"?, "params", "axes": {name: [values]},
    "mode": "grid"|"zip"}``, or a multipart form with the same fields (``params`` and
    ``axes`` as JSON text), ``inputs.<slot>`` files shared by every run, and optionally a
    ``table`` CSV file whose header names parameters and whose rows are the runs."""
    return await submit(
        request, platform, user, True, SweepSubmission,
        json_fields=("params", "axes"), side_files=("table",),
    )  # fmt: skip


@router.post("/validate", responses={422: REFUSED})
async def validate_sweep(request: Request, platform: PlatformDep, user: UserDep) -> Any:
    """Check a sweep request exactly as creating it would; answers how many runs it makes."""
    return await submit(
        request, platform, user, False, SweepSubmission,
        json_fields=("params", "axes"), side_files=("table",),
    )  # fmt: skip


@router.get("", response_model=list[SweepOut])
def list_sweeps(
    db: DbDep,
    user: UserDep,
    before: Annotated[RowId | None, Query(description="Only sweeps with a smaller id")] = None,
    limit: int = Query(default=50, ge=1, le=500),
    shared: Annotated[
        bool, Query(description="Instead: the sweeps others shared with the caller")
    ] = False,
) -> list[SweepOut]:
    """The caller's sweeps (every sweep for an admin), newest first, without their runs;
    ``shared=1``: the sweeps shared with the caller."""
    found = sweep_service.list_sweeps(
        db=db, user=user, before_id=before, limit=limit, shared=shared
    )
    return [sweep_out(sweep, with_runs=False) for sweep in found]


def load_sweep(db: DbDep, user: UserDep, sweep_id: RowId, action: Action = Action.read) -> Sweep:
    """The sweep if the user may do ``action`` to it: 404 when they may not see it, 403
    when it is shared with them read-only (domain/access.py decides)."""
    try:
        return sweep_service.get_sweep(db=db, sweep_id=sweep_id, user=user, action=action)
    except sweep_service.SweepNotFound:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"sweep {sweep_id} not found"
        ) from None
    except ReadOnly as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(exc)) from None


@router.get("/{sweep_id}", response_model=SweepOut)
def get_sweep(sweep_id: RowId, db: DbDep, user: UserDep) -> SweepOut:
    """The sweep with every run (state, parameters, metrics)."""
    return sweep_out(load_sweep(db, user, sweep_id))


@router.post("/{sweep_id}/cancel", response_model=SweepOut)
def cancel_sweep(sweep_id: RowId, db: DbDep, user: UserDep, platform: PlatformDep) -> SweepOut:
    """Stop every run of the sweep that has not ended."""
    sweep = load_sweep(db, user, sweep_id, Action.cancel)
    sweep_service.cancel_sweep(db=db, sweep=sweep)
    db.commit()
    platform.dispatcher.wake()
    return sweep_out(load_sweep(db, user, sweep_id))
