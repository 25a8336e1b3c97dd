"""Runs: create (JSON or multipart with uploads), validate only, list, get, cancel, rerun."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from simyard.api.deps import (
    DbDep,
    PlatformDep,
    RowId,
    UserDep,
    problem_dicts,
    problems_response,
)
from simyard.api.runrequest import read_run_request, upload_scratch
from simyard.api.schemas import REFUSED, RunOut, SweepOut, run_out
from simyard.domain import runs as run_service
from simyard.domain.ratelimit import retry_after, spend_run
from simyard.domain.registry import find_version, model_dir_of
from simyard.domain.tables import ModelVersion, User
from simyard.errors import Problem, ValidationFailed
from simyard.wiring import Platform

router = APIRouter(prefix="/runs", tags=["runs"])


def notify_choice(value: Any) -> bool | None:
    """The run's own notification choice: true, false, or None for the owner's preferences."""
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    return None


def resolve_model(
    db: Session, platform: Platform, fields: dict[str, Any]
) -> tuple[ModelVersion, Path] | JSONResponse:
    """The model version a request names and its unpacked folder; a 422 answer when no
    such model is registered."""
    model = fields.get("model")
    if not isinstance(model, str) or not model:
        return problems_response([Problem("model", "name the model to run")])
    version_name = fields.get("version")
    if not isinstance(version_name, str | None):
        return problems_response([Problem("version", "must be a version string")])
    version = find_version(db=db, name=model, version=version_name or None)
    if version is None:
        what = f"{model} {version_name}" if version_name else model
        return problems_response([Problem("model", f"no model {what!r} is registered")])
    model_dir = model_dir_of(version, store=platform.store, cache_root=platform.cache_root)
    return version, model_dir


def over_run_rate(db: Session, platform: Platform, user: User) -> JSONResponse | None:
    """Count one run (or sweep) against the user's SIMYARD_RUN_RATE; a 429 answer naming
    the limit, with Retry-After, when it is spent."""
    rate = platform.settings.run_rate_limit()
    if rate is None:
        return None
    wait = spend_run(db=db, rate=rate, user_id=user.id)
    if wait is None:
        return None
    seconds = retry_after(wait)
    message = f"you may create at most {rate.text} (runs and sweeps); try again in {seconds} s"
    refused = problems_response([Problem("run_rate", message)], status_code=429)
    refused.headers["Retry-After"] = seconds
    return refused


class Submission(ABC):
    """A run or sweep request between reading it and answering it: the model it names,
    its checks, and (unless only validated) what it creates, all in one transaction; then
    the dispatcher is woken and the answer read back. Subclasses say what is checked,
    created and answered."""

    def __init__(
        self, platform: Platform, fields: dict[str, Any], uploads: dict[str, run_service.Upload]
    ) -> None:
        self.platform = platform
        self.fields = fields
        self.uploads = uploads

    @abstractmethod
    def check(self, version: ModelVersion, model_dir: Path) -> tuple[Any, list[Problem]]:
        """What was checked and its warnings; ValidationFailed when refused."""

    def validated(self, checked: Any) -> dict[str, Any]:
        """Keys the validate-only answer adds to errors and warnings."""
        return {}

    @abstractmethod
    def create(self, db: Session, user: User, version: ModelVersion, checked: Any) -> int:
        """Create what was checked; its id."""

    @abstractmethod
    def answer(self, db: Session, user: User, created_id: int) -> RunOut | SweepOut:
        """What was created, as the API shows it."""

    def __call__(self, user_id: int, create: bool) -> JSONResponse | RunOut | SweepOut:
        with self.platform.sessions() as db, db.begin():
            user = db.get(User, user_id)
            assert user is not None
            found = resolve_model(db, self.platform, self.fields)
            if isinstance(found, JSONResponse):
                return found
            version, model_dir = found
            try:
                checked, warned = self.check(version, model_dir)
            except ValidationFailed as exc:
                return problems_response(exc.problems, exc.warnings)
            warnings = problem_dicts(warned)
            if not create:
                return JSONResponse({"errors": [], "warnings": warnings, **self.validated(checked)})
            if (refused := over_run_rate(db, self.platform, user)) is not None:
                return refused
            created_id = self.create(db, user, version, checked)
        self.platform.dispatcher.wake()
        with self.platform.sessions() as db:
            user = db.get(User, user_id)
            assert user is not None
            shaped = self.answer(db, user, created_id)
            shaped.warnings = warnings
            return shaped


class RunSubmission(Submission):
    """``POST /runs``: one run."""

    def check(self, version: ModelVersion, model_dir: Path) -> tuple[Any, list[Problem]]:
        checked = run_service.check_run_input(
            version=version,
            model_dir=model_dir,
            params=self.fields.get("params", {}),
            uploads=self.uploads,
            max_input_size=self.platform.settings.max_input_size,
            max_unpacked_size=self.platform.settings.max_unpacked_size,
        )
        return checked, checked.warnings

    def create(self, db: Session, user: User, version: ModelVersion, checked: Any) -> int:
        return run_service.create_run(
            db=db,
            store=self.platform.store,
            user=user,
            version=version,
            checked=checked,
            uploads=self.uploads,
            notify=notify_choice(self.fields.get("notify")),
        ).id

    def answer(self, db: Session, user: User, created_id: int) -> RunOut:
        return run_out(run_service.get_run(db=db, run_id=created_id, user=user), [])


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
    """Read a request with its uploads into a scratch folder, hand it to a ``kind`` of
    submission in the thread pool (201 with what it created, or its refusal), and remove
    the scratch folder."""
    with upload_scratch(platform) as scratch:
        read = await read_run_request(
            request, platform, scratch, json_fields=json_fields, side_files=side_files
        )
        if read.problems:
            return problems_response(read.problems)
        result = await run_in_threadpool(kind(platform, read.fields, read.uploads), user.id, create)
        if isinstance(result, BaseModel):
            return JSONResponse(result.model_dump(mode="json"), status_code=status.HTTP_201_CREATED)
        return result


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
def list_runs(
    db: DbDep,
    user: UserDep,
    state: str | None = None,
    model: str | None = None,
    before: Annotated[RowId | None, Query(description="Only runs with a smaller id")] = None,
    limit: int = Query(default=50, ge=1, le=500),
) -> list[RunOut]:
    """The caller's runs (every run for an admin), newest first."""
    runs = run_service.list_runs(
        db=db, user=user, state=state, model=model, before_id=before, limit=limit
    )
    return [run_out(run, []) for run in runs]


def load_run(db: DbDep, user: UserDep, run_id: RowId) -> Any:
    try:
        return run_service.get_run(db=db, run_id=run_id, user=user)
    except run_service.RunNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"run {run_id} not found") from None


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: RowId, db: DbDep, user: UserDep) -> RunOut:
    run = load_run(db, user, run_id)
    outputs = run_service.run_files(db=db, run=run, kind="output")
    return run_out(run, outputs, run_service.queue_position(db=db, run=run))


@router.post("/{run_id}/cancel", response_model=RunOut)
def cancel_run(run_id: RowId, db: DbDep, user: UserDep, platform: PlatformDep) -> RunOut:
    run = load_run(db, user, run_id)
    run_service.cancel_run(db=db, run=run)
    db.commit()
    platform.dispatcher.wake()
    return run_out(run, [])


@router.post("/{run_id}/rerun", response_model=RunOut, status_code=201)
def rerun(
    run_id: RowId, db: DbDep, user: UserDep, platform: PlatformDep, from_failed: bool = False
) -> Any:
    run = load_run(db, user, run_id)
    if (refused := over_run_rate(db, platform, user)) is not None:
        return refused
    new_id = run_service.rerun(db=db, run=run, user=user, from_failed=from_failed).id
    db.commit()
    platform.dispatcher.wake()
    return run_out(run_service.get_run(db=db, run_id=new_id, user=user), [])
