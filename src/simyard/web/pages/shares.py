"""The run page's Share panel: whom the run is shared with, and the owner's forms to share
and unshare it (the decisions are domain/access.py's, the changes domain/shares.py's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from simyard.api.deps import RowId
from simyard.domain import shares as share_service
from simyard.domain.access import Action, ReadOnly, Role, run_standing
from simyard.domain.runs import RunNotFound, get_run
from simyard.domain.tables import Run, Share, User
from simyard.errors import ValidationFailed
from simyard.web.pages.common import Csrf, PageDb, PageUser
from simyard.web.session import check_csrf

router = APIRouter()
NOTICE = "share_notice"  # in the signed session, so no link can make the page say anything


@dataclass(frozen=True)
class SharePanel:
    """What the run page shows of the run's sharing to this user."""

    read_only: bool  # a reader: no cancel, rerun or share controls
    reason: str  # for a reader: "shared with you by alice", "in project ocean"
    may_share: bool
    shares: list[Share] = field(default_factory=list)
    notice: str = ""
    error: str = ""


def share_panel(request: Request, db: Session, user: User, run: Run) -> SharePanel:
    """The panel for ``user`` on ``run``'s page (they may read it: the page checked)."""
    standing = run_standing(db, user, run)
    told = request.session.pop(NOTICE, None)
    notice, error = told if isinstance(told, list) and len(told) == 2 else ["", ""]
    may_share = standing.may(Action.share)
    return SharePanel(
        read_only=standing.role is Role.reader,
        reason=standing.reason,
        may_share=may_share,
        shares=share_service.list_shares(db=db, thing=run) if may_share else [],
        notice=str(notice) if may_share else "",
        error=str(error) if may_share else "",
    )


def _runs_to_share(db: Session, user: User, run_id: int) -> Run:
    try:
        return get_run(db=db, run_id=run_id, user=user, action=Action.share)
    except RunNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"run {run_id} not found") from None
    except ReadOnly as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(exc)) from None


def _back(request: Request, run_id: int, notice: str = "", error: str = "") -> Response:
    request.session[NOTICE] = [notice, error]
    return RedirectResponse(f"/runs/{run_id}#shares", status_code=303)


@router.post("/runs/{run_id}/shares")
def share_run(
    request: Request,
    run_id: RowId,
    db: PageDb,
    user: PageUser,
    csrf_token: Csrf = "",
    shared_with: Annotated[str, Form(alias="user")] = "",
    everyone: Annotated[str, Form()] = "",
) -> Response:
    """The Share form: a user's name, or the button for every signed-in user."""
    check_csrf(request, csrf_token)
    run = _runs_to_share(db, user, run_id)
    body = {"everyone": True} if everyone else {"user": shared_with.strip()}
    try:
        audience = share_service.Audience.read(db, body)
        share_service.share(db=db, thing=run, audience=audience, by=user)
    except ValidationFailed as exc:
        return _back(request, run_id, error=exc.problems[0].message)
    whom = audience.user.name if audience.user else "every signed-in user"
    return _back(request, run_id, notice=f"Shared read-only with {whom}.")


@router.post("/runs/{run_id}/shares/remove")
def unshare_run(
    request: Request,
    run_id: RowId,
    db: PageDb,
    user: PageUser,
    csrf_token: Csrf = "",
    shared_with: Annotated[str, Form(alias="user")] = "",
    everyone: Annotated[str, Form()] = "",
) -> Response:
    """An Unshare button of the list of shares."""
    check_csrf(request, csrf_token)
    run = _runs_to_share(db, user, run_id)
    body = {"everyone": True} if everyone else {"user": shared_with}
    try:
        audience = share_service.Audience.read(db, body, unshare=True)
    except ValidationFailed as exc:
        return _back(request, run_id, error=exc.problems[0].message)
    share_service.unshare(db=db, thing=run, audience=audience)
    whom = audience.user.name if audience.user else "every signed-in user"
    return _back(request, run_id, notice=f"No longer shared with {whom}.")
