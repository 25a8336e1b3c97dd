"""Models: list, get (with the parameter JSON Schema), add (admin: a tar of the folder)."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, UploadFile, status
from fastapi.responses import JSONResponse

from simyard.api.deps import (
    AdminDep,
    DbDep,
    PlatformDep,
    UserDep,
    client_address,
    problems_response,
)
from simyard.api.schemas import ModelOut, parameters_schema
from simyard.domain.audit import AuditAction, record
from simyard.domain.registry import (
    ModelVersionConflict,
    find_version,
    list_versions,
    register_model,
)
from simyard.domain.tables import ModelVersion
from simyard.errors import ManifestError, UnsafeArchive
from simyard.manifest.archives import safe_unpack

router = APIRouter(prefix="/models", tags=["models"])


def model_out(version: ModelVersion) -> ModelOut:
    manifest = version.manifest
    return ModelOut(
        name=version.name,
        version=version.version,
        title=manifest.get("title") or version.name,
        description=manifest.get("description", ""),
        content_hash=version.content_hash,
        image_digest=version.image_digest,
        task_images=version.task_images or {},
        created_at=version.created_at,
        parameters_schema=parameters_schema(version),
        inputs=manifest.get("inputs", {}),
        tasks=list(manifest.get("tasks", {})),
    )


@router.get("", response_model=list[ModelOut])
def list_models(db: DbDep, user: UserDep) -> list[ModelOut]:
    """Every registered model version."""
    return [model_out(v) for v in list_versions(db=db)]


@router.get("/{name}", response_model=ModelOut)
def get_model(name: str, db: DbDep, user: UserDep, version: str | None = None) -> ModelOut:
    """A model (its newest version unless ``version`` is given)."""
    found = find_version(db=db, name=name, version=version)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no model {name!r}")
    return model_out(found)


@router.post("", response_model=ModelOut, status_code=201, responses={200: {"model": ModelOut}})
def add_model(
    bundle: UploadFile, db: DbDep, admin: AdminDep, platform: PlatformDep, request: Request
) -> Any:
    """Register a model version from a tar or zip of its folder (admin only).

    The same content again answers 200; the same version with other content 409.
    """
    with tempfile.TemporaryDirectory(dir=platform.settings.home.resolve()) as tmp:
        archive = Path(tmp) / "upload"
        with open(archive, "wb") as handle:
            shutil.copyfileobj(bundle.file, handle)
        folder = Path(tmp) / "model"
        try:
            # An admin's bundle: the size and member limits apply, not the compression
            # ratio one meant for modellers' uploads (a model's data may be mostly zeros).
            name = bundle.filename or "model.tar.gz"
            safe_unpack(archive, folder, filename=name, max_ratio=math.inf)
            version, created = register_model(
                db=db, store=platform.store, model_dir=folder, user=admin,
                max_image_layer_bytes=platform.settings.image_max_layer_size,
            )  # fmt: skip
        except UnsafeArchive as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
        except ManifestError as exc:
            return problems_response(exc.problems)
        except ModelVersionConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    if created:
        record(
            db=db, actor=admin.name, action=AuditAction.model_registered,
            target=f"model {version.name} {version.version}", client=client_address(request),
            detail={"model": version.name, "version": version.version,
                    "content_hash": version.content_hash},
        )  # fmt: skip
    db.commit()
    shaped = model_out(version)
    if not created:
        return JSONResponse(shaped.model_dump(mode="json"), status_code=200)
    return shaped


@router.get("/{name}/manifest")
def get_manifest(name: str, db: DbDep, user: UserDep, version: str | None = None) -> dict[str, Any]:
    """The model's manifest (its interface; the model's files are never served)."""
    found = find_version(db=db, name=name, version=version)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no model {name!r}")
    return dict(found.manifest)
