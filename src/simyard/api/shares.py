"""Sharing a run or a sweep read-only: list, share, unshare (its owner or an admin only).

``POST /runs/{id}/shares`` with ``{"user": NAME}`` or ``{"everyone": true}``; ``DELETE``
the same path with the same body, or with the query ``?user=NAME`` / ``?everyone=true``
(for clients that send no body with a DELETE). Sweeps alike under ``/sweeps/{id}/shares``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from simyard.api.deps import DbDep, RowId, UserDep, problems_response
from simyard.api.runs import load_run
from simyard.api.schemas import REFUSED
from simyard.api.sweeps import load_sweep
from simyard.domain import shares as share_service
from simyard.domain.access import Action
from simyard.domain.tables import Run, Share, Sweep, User
from simyard.errors import Problem, ValidationFailed
from simyard.schemas import ShareOut

router = APIRouter(tags=["shares"])
EXAMPLES = [{"user": "bob"}, {"everyone": True}]
ShareBody = Annotated[Any, Body(examples=EXAMPLES)]
UnshareBody = Annotated[Any, Body(examples=EXAMPLES)]


def share_out(share: Share) -> ShareOut:
    return ShareOut(
        user=share.user.name if share.user else None,
        everyone=share.user_id is None,
        shared_by=share.sharer.name if share.sharer else None,
        created_at=share.created_at,
    )


def _listed(db: Session, thing: Run | Sweep) -> list[ShareOut]:
    return [share_out(s) for s in share_service.list_shares(db=db, thing=thing)]


def _share(db: Session, user: User, thing: Run | Sweep, body: Any) -> Any:
    try:
        if not isinstance(body, dict):
            raise ValidationFailed([Problem("user", "send a JSON object")])
        audience = share_service.Audience.read(db, body)
        share_service.share(db=db, thing=thing, audience=audience, by=user)
    except ValidationFailed as exc:
        return problems_response(exc.problems)
    answer = [s.model_dump(mode="json") for s in _listed(db, thing)]
    return JSONResponse(answer, status_code=201)


def _unshare(db: Session, thing: Run | Sweep, body: Any, query: dict[str, Any]) -> Any:
    given = {k: v for k, v in query.items() if v is not None} or body
    try:
        if not isinstance(given, dict):
            raise ValidationFailed([Problem("user", "send a JSON object")])
        audience = share_service.Audience.read(db, given, unshare=True)
    except ValidationFailed as exc:
        return problems_response(exc.problems)
    share_service.unshare(db=db, thing=thing, audience=audience)
    return [s.model_dump(mode="json") for s in _listed(db, thing)]


@router.get("/runs/{run_id}/shares", response_model=list[ShareOut])
def run_shares(run_id: RowId, db: DbDep, user: UserDep) -> list[ShareOut]:
    """Whom the run is shared with (its owner or an admin asks)."""
    return _listed(db, load_run(db, user, run_id, Action.share))


@router.post(
    "/runs/{run_id}/shares", response_model=list[ShareOut], status_code=201,
    responses={422: REFUSED},
)  # fmt: skip
def share_run(run_id: RowId, db: DbDep, user: UserDep, body: ShareBody) -> Any:
    """Share the run read-only with ``{"user": NAME}`` or ``{"everyone": true}``; answers
    every share of the run."""
    return _share(db, user, load_run(db, user, run_id, Action.share), body)


@router.delete("/runs/{run_id}/shares", response_model=list[ShareOut], responses={422: REFUSED})
def unshare_run(
    run_id: RowId,
    db: DbDep,
    user: UserDep,
    body: UnshareBody = None,
    shared_with: Annotated[str | None, Query(alias="user")] = None,
    everyone: bool | None = None,
) -> Any:
    """Withdraw a share: the body as for sharing, or ``?user=NAME`` / ``?everyone=true``."""
    run = load_run(db, user, run_id, Action.share)
    return _unshare(db, run, body, {"user": shared_with, "everyone": everyone})


@router.get("/sweeps/{sweep_id}/shares", response_model=list[ShareOut])
def sweep_shares(sweep_id: RowId, db: DbDep, user: UserDep) -> list[ShareOut]:
    """Whom the sweep is shared with (its owner or an admin asks)."""
    return _listed(db, load_sweep(db, user, sweep_id, Action.share))


@router.post(
    "/sweeps/{sweep_id}/shares", response_model=list[ShareOut], status_code=201,
    responses={422: REFUSED},
)  # fmt: skip
def share_sweep(sweep_id: RowId, db: DbDep, user: UserDep, body: ShareBody) -> Any:
    """Share the sweep, and so each of its runs, read-only."""
    return _share(db, user, load_sweep(db, user, sweep_id, Action.share), body)


@router.delete("/sweeps/{sweep_id}/shares", response_model=list[ShareOut], responses={422: REFUSED})
def unshare_sweep(
    sweep_id: RowId,
    db: DbDep,
    user: UserDep,
    body: UnshareBody = None,
    shared_with: Annotated[str | None, Query(alias="user")] = None,
    everyone: bool | None = None,
) -> Any:
    """Withdraw a share of the sweep, as for a run."""
    sweep = load_sweep(db, user, sweep_id, Action.share)
    return _unshare(db, sweep, body, {"user": shared_with, "everyone": everyone})
