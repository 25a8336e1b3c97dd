"""Runs: create (JSON or multipart with uploads), validate only, list, get, cancel, rerun."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from simyard.api.deps import (
    DbDep,
    PlatformDep,
    RowId,
    UserDep,
    json_answer,
    problem_dicts,
    problems_response,
    reading,
)
from simyard.api.runrequest import read_run_request, submit_request, upload_scratch
from simyard.api.schemas import REFUSED, RunOut, SweepOut, run_out, sweep_out
from simyard.domain import runs as run_service
from simyard.domain import sweeps as sweep_service
from simyard.domain.access import Action, ReadOnly
from simyard.domain.projects import check_project_quota, find_project, is_member
from simyard.domain.submission import (
    RunRateSpent,
    RunSubmission,
    Submission,
    Submitted,
    SweepSubmission,
    spend_run_rate,
)
from simyard.domain.tables import User
from simyard.domain.waiting import waiting_reason
from simyard.errors import Problem, ValidationFailed
from simyard.wiring import Platform

router = APIRouter(prefix="/runs", tags=["runs"])


def rate_refusal(exc: RunRateSpent) -> JSONResponse:
    """A 429 answer naming the limit, with Retry-After."""
    refused = problems_response([exc.problem], status_code=429)
    refused.headers["Retry-After"] = exc.retry_after
    return refused


async def submit(
    request: Request,
    platform: Platform,
    user: User,
    create: bool,
    kind: type[Submission],
    *,
    json_fields: tuple[str, ...] = ("params",),
    side_files: tuple[str, ...] = (),
) -> Any:
    """Read a request with its uploads into a scratch folder, hand it to the domain's
    ``kind`` of submission (201 with what it created, or its refusal), and remove the
    scratch folder."""
    with upload_scratch(platform) as scratch:
        read = await read_run_request(
            request, platform, scratch, json_fields=json_fields, side_files=side_files
        )
        if read.problems:
            return problems_response(read.problems)

        def answer(submitted: Submitted) -> JSONResponse:
            assert submitted.id is not None
            if submitted.view is not None:  # a run: as created, read from memory
                shaped: RunOut | SweepOut = run_out(submitted.view, [])
            else:
                with platform.readers() as db:
                    shaped = answer_of(kind, db, user, submitted.id)
            shaped.warnings = problem_dicts(submitted.warnings)
            return JSONResponse(shaped.model_dump(mode="json"), status_code=status.HTTP_201_CREATED)

        try:
            # The answer is read in the thread pool, in the same trip as the submission:
            # a database call on the event loop stalls every request meanwhile.
            submitted, created = await submit_request(
                kind, platform, user_id=user.id, fields=read.fields, uploads=read.uploads,
                create=create, answer=answer,
            )  # fmt: skip
        except ValidationFailed as exc:
            return problems_response(exc.problems, exc.warnings)
        except RunRateSpent as exc:
            return rate_refusal(exc)
    if created is not None:
        return created
    warnings = problem_dicts(submitted.warnings)
    return JSONResponse({"errors": [], "warnings": warnings, **submitted.checked})


def answer_of(
    kind: type[Submission], db: Session, user: User, created_id: int
) -> RunOut | SweepOut:
    """What a submission created, as the API shows it."""
    if issubclass(kind, SweepSubmission):
        return sweep_out(sweep_service.get_sweep(db=db, sweep_id=created_id, user=user))
    return run_out(run_service.get_run(db=db, run_id=created_id, user=user), [])


@router.post("", response_model=RunOut, status_code=201, responses={422: REFUSED})
async def create_run(request: Request, platform: PlatformDep, user: UserDep) -> Any:
    """Start a run: JSON ``{"model", "version"?, "params"}`` or a multipart form whose file
    fields are named ``inputs.<slot>`` and whose ``params`` field holds a JSON object."""
    return await submit(request, platform, user, True, RunSubmission)


@router.post("/validate", responses={422: REFUSED})
async def validate_run(request: Request, platform: PlatformDep, user: UserDep) -> Any:
    """Check a run request exactly as creating it would, without creating anything."""
    return await submit(request, platform, user, False, RunSubmission)


@router.get("", response_model=list[RunOut])
async def list_runs(
    platform: PlatformDep,
    user: UserDep,
    state: str | None = None,
    model: str | None = None,
    before: Annotated[RowId | None, Query(description="Only runs with a smaller id")] = None,
    limit: int = Query(default=50, ge=1, le=500),
    shared: Annotated[
        bool, Query(description="Instead: the runs others shared with the caller (read-only)")
    ] = False,
    project: Annotated[
        str | None, Query(description="Instead: the runs of this project (members, admins)")
    ] = None,
) -> Any:
    """The caller's runs (every run for an admin), newest first; ``shared=1``: the runs
    shared with the caller (by a user, with everyone, through a sweep or a project);
    ``project=NAME``: that project's runs."""

    def shaped(db: Session) -> list[RunOut] | None:
        chosen = None
        if project:
            chosen = find_project(db=db, name=project)
            if chosen is None or not (user.is_admin or is_member(db=db, project=chosen, user=user)):
                return None
        runs = run_service.list_runs(
            db=db, user=user, state=state, model=model, before_id=before, limit=limit,
            shared=shared, project=chosen,
        )  # fmt: skip
        return [run_out(run, []) for run in runs]

    answer = await reading(platform, shaped)
    if answer is None:
        assert project is not None
        problem = Problem("project", f"you are not a member of a project {project[:64]!r}")
        return problems_response([problem])
    return json_answer(answer)


def load_run(db: DbDep, user: UserDep, run_id: RowId, action: Action = Action.read) -> Any:
    """The run if the user may do ``action`` to it: 404 when they may not see it, 403
    when it is shared with them read-only (domain/access.py decides)."""
    try:
        return run_service.get_run(db=db, run_id=run_id, user=user, action=action)
    except run_service.RunNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"run {run_id} not found") from None
    except ReadOnly as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(exc)) from None


@router.get("/{run_id}", response_model=RunOut)
async def get_run(run_id: RowId, user: UserDep, platform: PlatformDep) -> Response:
    def shaped(db: Session) -> RunOut:
        run = load_run(db, user, run_id)
        outputs = run_service.run_files(db=db, run=run, kind="output")
        answer = run_out(run, outputs, run_service.queue_position(db=db, run=run))
        says = platform.dispatcher.executor.waiting()
        answer.waiting = waiting_reason(db=db, run=run, executor_says=says, viewer=user)
        return answer

    return json_answer(await reading(platform, shaped))


@router.post("/{run_id}/cancel", response_model=RunOut)
def cancel_run(run_id: RowId, db: DbDep, user: UserDep, platform: PlatformDep) -> RunOut:
    run = load_run(db, user, run_id, Action.cancel)
    run_service.cancel_run(db=db, run=run)
    answer = run_out(run, [])  # before the commit: after it, a read would begin a writer
    db.commit()
    platform.dispatcher.wake()
    return answer


@router.post("/{run_id}/rerun", response_model=RunOut, status_code=201)
def rerun(
    run_id: RowId, db: DbDep, user: UserDep, platform: PlatformDep, from_failed: bool = False
) -> Any:
    run = load_run(db, user, run_id, Action.rerun)
    try:
        if run.project is not None:
            check_project_quota(db=db, project=run.project)
        spend_run_rate(db, platform.settings.run_rate_limit(), user)
    except RunRateSpent as exc:
        return rate_refusal(exc)
    except ValidationFailed as exc:
        return problems_response(exc.problems)
    new_id = run_service.rerun(db=db, run=run, user=user, from_failed=from_failed).id
    db.commit()
    platform.dispatcher.wake(created=True)
    return run_out(run_service.get_run(db=db, run_id=new_id, user=user), [])
