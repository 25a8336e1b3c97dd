"""Parameter files: read a modeller's existing parameter file back into values for a new run."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from fastapi import APIRouter, HTTPException, UploadFile, status
from pydantic import BaseModel

from simyard.api.deps import DbDep, UserDep, problems_response
from simyard.domain.registry import find_version, manifest_of
from simyard.domain.runs import jsonable
from simyard.errors import ParameterFileError, Problem
from simyard.manifest.paramfile import read_parameter_file
from simyard.manifest.units import format_size

router = APIRouter(prefix="/models", tags=["models"])

# A parameter file is a page of text; anything far larger is not one.
MAX_PARAMETER_FILE_SIZE = 2**20


class ParameterFileValues(BaseModel):
    values: dict[str, Any]
    unknown: list[str]


@router.post(
    "/{name}/parameter-file",
    response_model=ParameterFileValues,
    responses={404: {"description": "no such model"}, 422: {"description": "unreadable"}},
)
def read_parameter_file_values(
    name: str, db: DbDep, user: UserDep, file: UploadFile | None = None, version: str | None = None
) -> Any:
    """Typed values from an existing parameter file in the model's format (e.g. a modeller's
    ``INPUT_PARAMETERS.txt``), to pre-fill a run; ``unknown`` lists the names the model lacks.

    The file is held to the same rules as the form, the CLI and the API; a refusal answers
    422 with the field ``param_file``.
    """
    found = find_version(db=db, name=name, version=version)
    if found is None:
        what = f"{name} {version}" if version else name
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no model {what!r}")
    if file is None:
        return problems_response([Problem("param_file", "send the file as the form field 'file'")])
    data = file.file.read(MAX_PARAMETER_FILE_SIZE + 1)
    filename = PurePath(file.filename or "").name
    if len(data) > MAX_PARAMETER_FILE_SIZE:
        limit = format_size(MAX_PARAMETER_FILE_SIZE)
        message = f"{filename or 'the file'}: over {limit}; a parameter file is short text"
        return problems_response([Problem("param_file", message)])
    try:
        values, unknown = read_parameter_file(manifest_of(found), data, filename=filename)
    except ParameterFileError as exc:
        return problems_response([Problem("param_file", str(exc))])
    return ParameterFileValues(values=jsonable(values), unknown=unknown)
