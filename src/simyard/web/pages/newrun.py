"""The new-run form, generated from the model's manifest.

With JavaScript (static/form.js) the form checks itself against ``/api/v1/runs/validate``
as the user types and starts the run through ``/api/v1/runs``. Without it, the form posts
here and the run is created through the very same code as the API's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from simyard.api.deps import PlatformDep, RowId
from simyard.api.runrequest import (
    MAX_FORM_FILES,
    read_run_request,
    refusal_answer,
    submit_request,
    upload_scratch,
)
from simyard.domain.access import Action, ReadOnly
from simyard.domain.projects import list_projects
from simyard.domain.registry import find_version, manifest_of
from simyard.domain.runs import MAX_ROW_ID, RunNotFound, get_run, run_files
from simyard.domain.submission import RunSubmission
from simyard.domain.tables import ModelVersion, Run, User
from simyard.errors import Refusal
from simyard.manifest.params import show_number
from simyard.manifest.schema import ARCHIVE_SUFFIXES, Manifest, Parameter
from simyard.web.pages.common import LoginRequired, PageDb, PageUser
from simyard.web.session import CSRF_FIELD, check_csrf, session_user
from simyard.web.templating import render
from simyard.wiring import Platform

router = APIRouter()

FieldValue = str | bool
LABEL_FIELDS = ("from_run", "name", "tags", "project")  # the fields besides parameters, files
Messages = dict[str, list[str]]


def parameter_groups(manifest: Manifest) -> list[tuple[str | None, list[tuple[str, Parameter]]]]:
    """Parameters in manifest order, gathered by ``group``: ungrouped first, then each group
    in the order it first appears."""
    groups: dict[str | None, list[tuple[str, Parameter]]] = {None: []}
    for name, spec in manifest.parameters.items():
        groups.setdefault(spec.group, []).append((name, spec))
    return [(group, members) for group, members in groups.items() if members]


def shown_value(spec: Parameter, value: Any) -> FieldValue:
    """A parameter value as the form's field holds it (a checkbox's state for booleans)."""
    if spec.type == "choice":
        return "" if value is None else str(value)  # as the option's value is written
    if isinstance(value, bool):
        return value
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return show_number(value)


def default_values(manifest: Manifest) -> dict[str, FieldValue]:
    return {
        name: shown_value(spec, getattr(spec, "default", None))
        for name, spec in manifest.parameters.items()
    }


def accepted_extensions(manifest: Manifest) -> dict[str, list[str]]:
    """Each input slot's accepted file name endings, as the server checks them."""
    return {
        slot: spec.accept or (list(ARCHIVE_SUFFIXES) if spec.unpack is not None else [])
        for slot, spec in manifest.inputs.items()
    }


def run_form_field(field: str, manifest: Manifest) -> str:
    """Which field of the new-run form a problem belongs to ('' for none)."""
    kind, _, name = field.partition(".")
    if (kind == "params" and name in manifest.parameters) or (
        kind == "inputs" and name in manifest.inputs
    ):
        return field
    return ""


def messages_by_field(
    items: list[dict[str, str]],
    manifest: Manifest,
    place: Callable[[str, Manifest], str] = run_form_field,
) -> tuple[Messages, list[str]]:
    """Messages keyed by the form field ``place`` puts them next to, and the rest
    (written with their field)."""
    placed: Messages = {}
    general: list[str] = []
    for item in items:
        field, message = item.get("field", ""), item.get("message", "")
        key = place(field, manifest)
        if key:
            placed.setdefault(key, []).append(message)
        else:
            general.append(f"{field}: {message}" if field else message)
    return placed, general


def _form_page(
    request: Request,
    user: User,
    platform: Platform,
    version: ModelVersion,
    manifest: Manifest,
    *,
    values: dict[str, FieldValue],
    errors: list[dict[str, str]] | None = None,
    warnings: list[dict[str, str]] | None = None,
    note: str = "",
    status_code: int = 200,
    notify_me: bool = True,
    from_run: int | None = None,
    kept_inputs: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    projects: list[str] | None = None,
) -> HTMLResponse:
    """The form; ``projects``: those the user may start it in (None: read them here)."""
    if projects is None:
        projects = _project_names(platform, user)
    field_errors, general_errors = messages_by_field(errors or [], manifest)
    field_warnings, general_warnings = messages_by_field(warnings or [], manifest)
    paramfile = manifest.parameter_file
    return render(
        request, "new_run.html", user, status_code=status_code, nav="models",
        version=version, manifest=manifest, groups=parameter_groups(manifest), values=values,
        errors=field_errors, warnings=field_warnings, general_errors=general_errors,
        general_warnings=general_warnings, note=note, accepted=accepted_extensions(manifest),
        default_max_size=platform.settings.max_input_size,
        can_import=paramfile is not None and paramfile.format != "template",
        notify_me=notify_me, from_run=from_run, kept_inputs=kept_inputs or {},
        labels=labels or {}, projects=projects,
    )  # fmt: skip


def _project_names(platform: Platform, user: User) -> list[str]:
    """The projects the user may start a run in (a member of), by name, read in a
    transaction of its own (no page session may be open: SQLite has one writer)."""
    with platform.readers() as db, db.begin():
        return [p.name for p in list_projects(db=db, user=user)]


def _find(db: Session, name: str, version: str | None) -> ModelVersion:
    found = find_version(db=db, name=name, version=version or None)
    if found is None:
        what = f"{name} {version}" if version else name
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no model {what!r}")
    return found


@router.get("/models/{name}/run", response_class=HTMLResponse)
def new_run_page(
    request: Request,
    name: str,
    db: PageDb,
    user: PageUser,
    platform: PlatformDep,
    version: str | None = None,
    from_run: Annotated[RowId | None, Query(alias="from")] = None,
) -> HTMLResponse:
    """The form, pre-filled with the manifest's defaults, or with ``?from=RUN``, with that
    run's model version, parameters and inputs (each input kept unless replaced)."""
    if from_run is None:
        found = _find(db, name, version)
        manifest = manifest_of(found)
        return _form_page(
            request, user, platform, found, manifest, values=default_values(manifest),
            projects=[p.name for p in list_projects(db=db, user=user)],
        )  # fmt: skip
    try:
        source = get_run(db=db, run_id=from_run, user=user, action=Action.rerun)
    except RunNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"run {from_run} not found") from None
    except ReadOnly as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(exc)) from None
    found = source.model_version
    if found.name != name:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"run {from_run} is not of {name}")
    manifest = manifest_of(found)
    values = default_values(manifest) | {
        key: shown_value(manifest.parameters[key], value)
        for key, value in source.params.items()
        if key in manifest.parameters
    }
    return _form_page(
        request, user, platform, found, manifest, values=values, from_run=source.id,
        kept_inputs=_inputs_of(db, source),
        labels={"name": source.name or "", "tags": ", ".join(source.tags or []),
                "project": source.project.name if source.project else ""},
        projects=[p.name for p in list_projects(db=db, user=user)],
    )  # fmt: skip


def _session_user(platform: Platform, request: Request) -> User | None:
    """The session's user, read in a short transaction of its own and detached.

    The run is created in a transaction of its own afterwards; on SQLite a page session
    still open at that moment would hold the write lock that one waits for.
    """
    with platform.sessions() as db, db.begin():
        user = session_user(request, db)
        if user is not None:
            db.expunge(user)
    return user


def _model_version(platform: Platform, name: str, version: str | None) -> ModelVersion:
    """The model version (detached, see :func:`_session_user`); 404 when there is none."""
    with platform.readers() as db, db.begin():
        found = _find(db, name, version)
        db.expunge(found)
    return found


@router.post("/models/{name}/run", response_class=HTMLResponse)
async def start_run_from_form(request: Request, name: str, platform: PlatformDep) -> Response:
    """The form posted without JavaScript: start the run and go to its page, or show the form
    again with what was typed and every problem next to its field."""
    user = await run_in_threadpool(_session_user, platform, request)
    if user is None:  # before reading the body: no upload is taken from a stranger
        raise LoginRequired(f"/models/{name}/run")
    form = await request.form(max_files=MAX_FORM_FILES)  # parsed once; the reader reuses it
    token = form.get(CSRF_FIELD)
    check_csrf(request, token if isinstance(token, str) else None)
    typed_version = form.get("version")
    version_name = typed_version if isinstance(typed_version, str) else None
    found = await run_in_threadpool(_model_version, platform, name, version_name)
    manifest = manifest_of(found)
    notify_me = form.get("notify_me") == "on"
    with upload_scratch(platform) as scratch:
        read = await read_run_request(request, platform, scratch, slots=manifest.inputs)
        uploads = read.uploads
        params: dict[str, Any] = dict(read.fields.get("params") or {})
        params |= {
            key.removeprefix("params."): value
            for key, value in read.fields.items()
            if key.startswith("params.")
        }
        if read.problems:
            errors = [{"field": p.field, "message": p.message} for p in read.problems]
            answer: dict[str, Any] = {"errors": errors, "warnings": []}
        else:
            labels = {k: read.fields[k] for k in LABEL_FIELDS if read.fields.get(k)}
            request_fields = {"model": name, "version": found.version, "params": params,
                              "notify": None if notify_me else False, **labels}  # fmt: skip
            try:
                submitted, _ = await submit_request(
                    RunSubmission, platform, user_id=user.id, fields=request_fields,
                    uploads=uploads, create=True,
                )  # fmt: skip
                return RedirectResponse(f"/runs/{submitted.id}", status_code=303)
            except Refusal as exc:
                answer = refusal_answer(exc)
    values = default_values(manifest) | {
        key: (value == "true" if manifest.parameters[key].type == "boolean" else value)
        for key, value in params.items()
        if key in manifest.parameters and isinstance(value, str)
    }
    note = ""
    if uploads:
        # Browsers never pre-select a file, so say it rather than let the form look complete.
        chosen = ", ".join(u.filename for u in uploads.values())
        note = f"Nothing was started, and your files were not kept: select them again ({chosen})."
    kept: dict[str, str] = {}
    given = read.fields.get("from_run")
    source = int(given) if isinstance(given, str) and given.isdigit() else None
    source = source if source is not None and 1 <= source <= MAX_ROW_ID else None
    if source is not None:
        kept = await run_in_threadpool(_kept_inputs, platform, user, source)
    return _form_page(
        request, user, platform, found, manifest, values=values, note=note,
        errors=list(answer.get("errors", [])), warnings=list(answer.get("warnings", [])),
        status_code=422, notify_me=notify_me, from_run=source if kept else None,
        kept_inputs=kept,
        labels={k: str(read.fields.get(k) or "") for k in ("name", "tags", "project")},
    )  # fmt: skip


def _kept_inputs(platform: Platform, user: User, run_id: int) -> dict[str, str]:
    """The inputs a form editing run ``run_id`` keeps, by slot; {} when not the user's."""
    with platform.readers() as db, db.begin():
        try:
            return _inputs_of(db, get_run(db=db, run_id=run_id, user=user, action=Action.rerun))
        except (RunNotFound, ReadOnly):
            return {}


def _inputs_of(db: Session, run: Run) -> dict[str, str]:
    """The run's input files' names, by slot."""
    return {f.slot: f.filename or f.path for f in run_files(db=db, run=run, kind="input") if f.slot}
