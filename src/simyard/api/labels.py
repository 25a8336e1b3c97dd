"""A run's name, notes and tags, changed after it was created."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from simyard.api.deps import DbDep, PlatformDep, RowId, UserDep, problems_response
from simyard.api.runs import load_run
from simyard.api.schemas import RunOut, run_out
from simyard.domain.access import Action
from simyard.domain.runs import Labels, queue_position, run_files
from simyard.errors import Problem, ValidationFailed

router = APIRouter(prefix="/runs/{run_id}", tags=["runs"])
EDITABLE = ("name", "notes", "tags")


@router.patch("", response_model=RunOut, responses={422: {"description": "A bad label"}})
def label_run(
    run_id: RowId,
    db: DbDep,
    user: UserDep,
    platform: PlatformDep,
    changes: dict[str, Any] = Body(examples=[{"name": "calibrated", "tags": ["calibration"]}]),  # noqa: B008
) -> Any:
    """Change a run's ``name``, ``notes`` and ``tags``; a key left out stays as it is."""
    run = load_run(db, user, run_id, Action.relabel)
    unknown = [Problem(k, "not a label of a run (name, notes, tags)") for k in changes
               if k not in EDITABLE]  # fmt: skip
    current = {"name": run.name, "notes": run.notes, "tags": run.tags or []}
    try:
        if unknown:
            raise ValidationFailed(unknown)
        labels = Labels.read({**current, **changes})
    except ValidationFailed as exc:
        return problems_response(exc.problems)
    labels.apply(run)
    db.flush()
    shaped = run_out(run, run_files(db=db, run=run, kind="output"), queue_position(db=db, run=run))
    return JSONResponse(shaped.model_dump(mode="json"))
