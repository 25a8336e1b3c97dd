"""The model catalog and each model's page."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from simyard.domain.registry import find_version, list_versions, manifest_of
from simyard.domain.tables import ModelVersion
from simyard.web.pages.common import PageDb, PageUser
from simyard.web.templating import render

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def catalog(request: Request, db: PageDb, user: PageUser) -> HTMLResponse:
    """The newest version of every model."""
    newest: dict[str, ModelVersion] = {}
    for version in list_versions(db=db):
        newest[version.name] = version
    return render(request, "models.html", user, nav="models", models=list(newest.values()))


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(
    request: Request, name: str, db: PageDb, user: PageUser, version: str | None = None
) -> HTMLResponse:
    found = find_version(db=db, name=name, version=version)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no model {name!r}")
    versions = db.scalars(
        select(ModelVersion).where(ModelVersion.name == name).order_by(ModelVersion.id.desc())
    ).all()
    return render(
        request, "model.html", user, nav="models", version=found,
        manifest=manifest_of(found), versions=versions,
    )  # fmt: skip
