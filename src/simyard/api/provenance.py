"""A run's provenance (an RO-Crate, see domain/provenance.py) and the inputs it ran with."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import StreamingResponse

from simyard.api.deps import DbDep, PlatformDep, RowId, UserDep
from simyard.api.files import answers, stream_stored
from simyard.api.runs import load_run
from simyard.domain.provenance import run_crate
from simyard.domain.runs import run_files

router = APIRouter(prefix="/runs/{run_id}", tags=["provenance"])


@router.get(
    "/provenance",
    responses=answers("application/ld+json", "The run's RO-Crate metadata (JSON-LD)"),
)
def provenance(run_id: RowId, db: DbDep, user: UserDep, platform: PlatformDep) -> Any:
    """What went in (inputs with sha256, parameters, the rendered parameter file), what ran
    (the model version's content hash, the image digest), who ran it, when and where, and
    what came out, as the ``ro-crate-metadata.json`` of the run's outputs zip."""
    run = load_run(db, user, run_id)
    return run_crate(db=db, run=run, base_url=platform.settings.base_url)


@router.get(
    "/inputs/{slot}", responses=answers("application/octet-stream", "The input file as given")
)
def download_input(
    run_id: RowId, slot: str, db: DbDep, user: UserDep, platform: PlatformDep
) -> StreamingResponse:
    """One input of the run, as it was uploaded."""
    run = load_run(db, user, run_id)
    for stored in run_files(db=db, run=run, kind="input"):
        if stored.slot == slot:
            break
    else:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"run {run_id} has no input {slot}")
    db.commit()  # release the database before streaming
    return stream_stored(platform, stored.key, stored.size, stored.filename or stored.path)
