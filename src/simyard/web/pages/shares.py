"""The Share panel of the run and sweep pages: whom the run or sweep is shared with, and the
owner's forms to share and unshare it (the decisions are domain/access.py's, the changes
domain/shares.py's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from simyard.api.deps import RowId
from simyard.domain import shares as share_service
from simyard.domain.access import Action, ReadOnly, Role, run_standing, sweep_standing
from simyard.domain.runs import RunNotFound, get_run
from simyard.domain.sweeps import SweepNotFound, get_sweep
from simyard.domain.tables import Run, Share, Sweep, User
from simyard.errors import ValidationFailed
from simyard.web.pages.common import Csrf, PageDb, PageUser
from simyard.web.session import check_csrf

router = APIRouter()
NOTICE = "share_notice"  # in the signed session, so no link can make the page say anything

UserField = Annotated[str, Form(alias="user")]
EveryoneField = Annotated[str, Form()]


@dataclass(frozen=True)
class SharePanel:
    """What the run or sweep page shows of its sharing to this user."""

    what: str  # "run" or "sweep"
    path: str  # its page, "/runs/12": the forms post below it
    read_only: bool  # a reader: no cancel, rerun or share controls
    reason: str  # for a reader: "shared with you by alice", "in project ocean"
    may_share: bool
    project: str | None = None  # who else reads it when it is not shared
    shares: list[Share] = field(default_factory=list)
    notice: str = ""
    error: str = ""


def share_panel(request: Request, db: Session, user: User, thing: Run | Sweep) -> SharePanel:
    """The panel for ``user`` on the page of ``thing`` (they may read it: the page checked)."""
    if isinstance(thing, Run):
        standing = run_standing(db, user, thing)
        what, project = "run", thing.project.name if thing.project else None
    else:
        standing = sweep_standing(db, user, thing)
        what, project = "sweep", None
    told = request.session.pop(NOTICE, None)
    notice, error = told if isinstance(told, list) and len(told) == 2 else ["", ""]
    may_share = standing.may(Action.share)
    return SharePanel(
        what=what,
        path=f"/{what}s/{thing.id}",
        read_only=standing.role is Role.reader,
        reason=standing.reason,
        may_share=may_share,
        project=project,
        shares=share_service.list_shares(db=db, thing=thing) if may_share else [],
        notice=str(notice) if may_share else "",
        error=str(error) if may_share else "",
    )


def _to_share(db: Session, user: User, what: str, thing_id: int) -> Run | Sweep:
    """The run or sweep if ``user`` may share it: 404 when they may not see it, 403 when
    they may only read it."""
    try:
        if what == "run":
            return get_run(db=db, run_id=thing_id, user=user, action=Action.share)
        return get_sweep(db=db, sweep_id=thing_id, user=user, action=Action.share)
    except (RunNotFound, SweepNotFound):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {thing_id} not found") from None
    except ReadOnly as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(exc)) from None


def _back(request: Request, thing: Run | Sweep, notice: str = "", error: str = "") -> Response:
    request.session[NOTICE] = [notice, error]
    what = "run" if isinstance(thing, Run) else "sweep"
    return RedirectResponse(f"/{what}s/{thing.id}#shares", status_code=303)


def _share_from_form(
    request: Request, db: Session, user: User, thing: Run | Sweep, name: str, everyone: str
) -> Response:
    body = {"everyone": True} if everyone else {"user": name.strip()}
    try:
        audience = share_service.Audience.read(db, body)
        share_service.share(db=db, thing=thing, audience=audience, by=user)
    except ValidationFailed as exc:
        return _back(request, thing, error=exc.problems[0].message)
    whom = audience.user.name if audience.user else "every signed-in user"
    return _back(request, thing, notice=f"Shared read-only with {whom}.")


def _unshare_from_form(
    request: Request, db: Session, thing: Run | Sweep, name: str, everyone: str
) -> Response:
    body = {"everyone": True} if everyone else {"user": name}
    try:
        audience = share_service.Audience.read(db, body, unshare=True)
    except ValidationFailed as exc:
        return _back(request, thing, error=exc.problems[0].message)
    share_service.unshare(db=db, thing=thing, audience=audience)
    whom = audience.user.name if audience.user else "every signed-in user"
    return _back(request, thing, notice=f"No longer shared with {whom}.")


@router.post("/runs/{run_id}/shares")
def share_run(
    request: Request, run_id: RowId, db: PageDb, user: PageUser, csrf_token: Csrf = "",
    shared_with: UserField = "", everyone: EveryoneField = "",
) -> Response:  # fmt: skip
    """The run page's Share form: a user's name, or the button for every signed-in user."""
    check_csrf(request, csrf_token)
    run = _to_share(db, user, "run", run_id)
    return _share_from_form(request, db, user, run, shared_with, everyone)


@router.post("/runs/{run_id}/shares/remove")
def unshare_run(
    request: Request, run_id: RowId, db: PageDb, user: PageUser, csrf_token: Csrf = "",
    shared_with: UserField = "", everyone: EveryoneField = "",
) -> Response:  # fmt: skip
    """An Unshare button of the run page's list of shares."""
    check_csrf(request, csrf_token)
    run = _to_share(db, user, "run", run_id)
    return _unshare_from_form(request, db, run, shared_with, everyone)


@router.post("/sweeps/{sweep_id}/shares")
def share_sweep(
    request: Request, sweep_id: RowId, db: PageDb, user: PageUser, csrf_token: Csrf = "",
    shared_with: UserField = "", everyone: EveryoneField = "",
) -> Response:  # fmt: skip
    """The sweep page's Share form (sharing the sweep shares each of its runs)."""
    check_csrf(request, csrf_token)
    sweep = _to_share(db, user, "sweep", sweep_id)
    return _share_from_form(request, db, user, sweep, shared_with, everyone)


@router.post("/sweeps/{sweep_id}/shares/remove")
def unshare_sweep(
    request: Request, sweep_id: RowId, db: PageDb, user: PageUser, csrf_token: Csrf = "",
    shared_with: UserField = "", everyone: EveryoneField = "",
) -> Response:  # fmt: skip
    """An Unshare button of the sweep page's list of shares."""
    check_csrf(request, csrf_token)
    sweep = _to_share(db, user, "sweep", sweep_id)
    return _unshare_from_form(request, db, sweep, shared_with, everyone)
