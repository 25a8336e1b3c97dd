"""Sweeps in the browser: the form that starts one, the sweeps list, and the sweep page
(every run in a results table, live while it runs, and the plots of the runs overlaid).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from simyard.api.deps import PlatformDep, RowId
from simyard.api.runrequest import (
    MAX_FORM_FILES,
    read_run_request,
    refusal_answer,
    submit_request,
    upload_scratch,
)
from simyard.api.schemas import sweep_out
from simyard.domain import sweeps as sweep_service
from simyard.domain.access import Action, ReadOnly, sweep_standing
from simyard.domain.registry import manifest_of
from simyard.domain.states import RunState
from simyard.domain.submission import SweepSubmission
from simyard.domain.tables import ModelVersion, Run, Sweep, User
from simyard.errors import Refusal
from simyard.manifest.schema import ChoiceParameter, Manifest
from simyard.web.pages.common import Csrf, LoginRequired, PageDb, PageUser
from simyard.web.pages.compare import RUN_COLOURS, with_run_files
from simyard.web.pages.newrun import (
    _find,
    _model_version,
    _session_user,
    accepted_extensions,
    messages_by_field,
)
from simyard.web.pages.run import FAILURE_TEXT, _output_files
from simyard.web.pages.runs import run_progress
from simyard.web.pages.shares import share_panel
from simyard.web.session import CSRF_FIELD, check_csrf
from simyard.web.templating import duration, render
from simyard.wiring import Platform

router = APIRouter()

PAGE = 50
MAX_OVERLAID = 12  # runs drawn in one chart; more would be unreadable (and many downloads)


def _form_page(
    request: Request,
    user: User,
    platform: Platform,
    version: ModelVersion,
    *,
    typed: dict[str, Any],
    errors: list[dict[str, str]] | None = None,
    warnings: list[dict[str, str]] | None = None,
    note: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    manifest = manifest_of(version)
    placed, general = messages_by_field(errors or [], manifest, _form_field)
    told_warnings = [f"{w['field']}: {w['message']}" for w in warnings or []]
    return render(
        request, "sweep_form.html", user, status_code=status_code, nav="models",
        version=version, manifest=manifest, typed=typed, errors=placed,
        general_errors=general, warnings={}, general_warnings=told_warnings, note=note,
        accepted=accepted_extensions(manifest), max_runs=sweep_service.MAX_SWEEP_RUNS,
        default_max_size=platform.settings.max_input_size,
    )  # fmt: skip


def _form_field(field: str, manifest: Manifest) -> str:
    """Which field of the sweep form a problem belongs to ('' for none)."""
    kind, _, name = field.partition(".")
    if kind in ("axes", "params") and name in manifest.parameters:
        return f"values.{name}"
    if kind == "inputs" and name in manifest.inputs:
        return field
    if field in ("table", "axes", "mode"):
        return field
    return ""


@router.get("/models/{name}/sweep", response_class=HTMLResponse)
def new_sweep_page(
    request: Request,
    name: str,
    db: PageDb,
    user: PageUser,
    platform: PlatformDep,
    version: str | None = None,
) -> HTMLResponse:
    found = _find(db, name, version)
    return _form_page(request, user, platform, found, typed={"mode": "grid", "notify_me": True})


def sweep_request(values: dict[str, str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The form's value boxes as base parameters and axes: an empty box keeps the default,
    one value applies to every run, several separated by commas make an axis."""
    params: dict[str, str] = {}
    axes: dict[str, list[str]] = {}
    for name, text in values.items():
        text = text.strip()
        if "," in text:
            axes[name] = [part.strip() for part in text.split(",")]
        elif text:
            params[name] = text
    return params, axes


@router.post("/models/{name}/sweep", response_class=HTMLResponse)
async def start_sweep_from_form(request: Request, name: str, platform: PlatformDep) -> Response:
    """Start the sweep and go to its page, or show the form again with what was typed and
    every problem next to its field."""
    user = await run_in_threadpool(_session_user, platform, request)
    if user is None:  # before reading the body: no upload is taken from a stranger
        raise LoginRequired(f"/models/{name}/sweep")
    form = await request.form(max_files=MAX_FORM_FILES)  # parsed once; the reader reuses it
    token = form.get(CSRF_FIELD)
    check_csrf(request, token if isinstance(token, str) else None)
    typed_version = form.get("version")
    found = await run_in_threadpool(
        _model_version, platform, name, typed_version if isinstance(typed_version, str) else None
    )
    with upload_scratch(platform) as scratch:
        read = await read_run_request(
            request, platform, scratch,
            json_fields=(), side_files=("table",), slots=manifest_of(found).inputs,
        )  # fmt: skip
        fields, uploads = read.fields, read.uploads
        values = {
            key.removeprefix("values."): str(value)
            for key, value in fields.items()
            if key.startswith("values.")
        }
        for param, spec in manifest_of(found).parameters.items():
            ticked = [str(v) for v in form.getlist(f"choices.{param}") if isinstance(v, str)]
            if isinstance(spec, ChoiceParameter) and ticked:  # a choice's boxes: its values
                values[param] = ", ".join(ticked)
        params, axes = sweep_request(values)
        mode = fields.get("mode") if fields.get("mode") in ("grid", "zip") else "grid"
        notify_me = fields.get("notify_me") == "on"
        typed = {"values": values, "mode": mode, "notify_me": notify_me}
        answer: dict[str, Any]
        if read.problems:
            answer = {"errors": [{"field": p.field, "message": p.message} for p in read.problems]}
        else:
            request_fields: dict[str, Any] = {
                "model": name, "version": found.version, "params": params, "axes": axes,
                "mode": mode, "notify": None if notify_me else False,
            }  # fmt: skip
            if "table" in fields:
                request_fields["table"] = fields["table"]
            try:
                submitted, _ = await submit_request(
                    SweepSubmission, platform, user_id=user.id, fields=request_fields,
                    uploads=uploads, create=True,
                )  # fmt: skip
                return RedirectResponse(f"/sweeps/{submitted.id}", status_code=303)
            except Refusal as exc:
                answer = refusal_answer(exc)
    note = ""
    chosen = [u.filename for u in uploads.values()]
    if chosen:
        # Browsers never pre-select a file, so say it rather than let the form look complete.
        again = ", ".join(chosen)
        note = f"Nothing was started, and your files were not kept: select them again ({again})."
    return _form_page(
        request, user, platform, found, typed=typed, note=note, status_code=422,
        errors=list(answer.get("errors", [])), warnings=list(answer.get("warnings", [])),
    )  # fmt: skip


@router.get("/sweeps", response_class=HTMLResponse)
def sweeps_page(
    request: Request, db: PageDb, user: PageUser, before: RowId | None = None
) -> HTMLResponse:
    """The user's sweeps (every sweep for an admin), newest first."""
    found = sweep_service.list_sweeps(db=db, user=user, before_id=before, limit=PAGE + 1)
    shaped = [sweep_out(sweep, with_runs=False) for sweep in found[:PAGE]]
    return render(
        request, "sweeps.html", user, nav="sweeps", sweeps=shaped, more=len(found) > PAGE,
        before=before,
    )  # fmt: skip


def _visible_sweep(db: Any, user: User, sweep_id: int, action: Action = Action.read) -> Sweep:
    """The sweep if ``user`` may do ``action`` to it; 404 when they may not see it (another
    user's sweep does not exist), 403 when it is shared with them read-only."""
    try:
        return sweep_service.get_sweep(db=db, sweep_id=sweep_id, user=user, action=action)
    except sweep_service.SweepNotFound:
        detail = f"sweep {sweep_id} not found"
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=detail) from None
    except ReadOnly as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(exc)) from None


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(request: Request, sweep_id: RowId, db: PageDb, user: PageUser) -> HTMLResponse:
    """Every run of the sweep with its axis values, state and metrics; its progress and
    warnings; the plots overlaid and the metrics against the parameters."""
    sweep = _visible_sweep(db, user, sweep_id)
    manifest = manifest_of(sweep.model_version)
    shaped = sweep_out(sweep)
    axes = list(sweep.axes)
    metric_names = list(manifest.results.metrics)
    succeeded = [run for run in sweep.runs if run.state == RunState.succeeded]
    overlaid = succeeded[:MAX_OVERLAID]
    charted = [plot.model_dump(mode="json") for plot in manifest.results.plots]
    outputs = [_output_files(db, run) for run in overlaid] if charted else []
    plots = with_run_files(charted, overlaid, outputs)
    page_data = {
        "sweep": sweep.id,
        "finished": shaped.state == "finished",
        "runs": [
            {
                "id": run.id,
                "label": f"#{run.id} " + " ".join(f"{a}={run.params.get(a)}" for a in axes),
                "color": RUN_COLOURS[i % len(RUN_COLOURS)],
                "outputs": own,
            }
            for i, (run, own) in enumerate(zip(overlaid, outputs, strict=True))
        ]
        if plots
        else [],
        "plots": plots,
        "axes": axes,
        "metrics": metric_names,
        "results": [
            {"id": run.id, "state": run.state, "params": run.params, "metrics": run.metrics}
            for run in sweep.runs
        ],
    }
    return render(
        request, "sweep.html", user, nav="sweeps", sweep=shaped, axes=axes,
        metric_names=metric_names, plots=plots, page_data=page_data,
        failure_text=FAILURE_TEXT, overlaid=len(overlaid), succeeded=len(succeeded),
        progress=sweep_progress(sweep.runs), warnings=sweep_warnings(sweep.runs),
        standing=sweep_standing(db, user, sweep), sharing=share_panel(request, db, user, sweep),
    )  # fmt: skip


def sweep_progress(runs: list[Run], now: dt.datetime | None = None) -> tuple[float, int, str]:
    """The whole sweep's percentage (an ended run counts whole, a running one as far as
    its tasks are), how many runs have ended, and the time left while it goes on."""
    if not runs:
        return 100.0, 0, ""
    ended = sum(1 for run in runs if RunState(run.state).final)
    done = sum(100.0 if RunState(run.state).final else (run_progress(run) or 0.0) for run in runs)
    percent = done / len(runs)
    starts = [run.started_at for run in runs if run.started_at]
    if ended == len(runs) or not starts or percent <= 0:
        return percent, ended, ""
    now = now or dt.datetime.now(dt.UTC)
    first = min(start if start.tzinfo else start.replace(tzinfo=dt.UTC) for start in starts)
    elapsed = max((now - first).total_seconds(), 0.0)
    left = elapsed * (100 - percent) / percent
    return percent, ended, f"about {duration(now, now + dt.timedelta(seconds=left))} left"


def sweep_warnings(runs: list[Run]) -> list[tuple[str, list[int]]]:
    """Each warning the runs were created with (a value above a parameter's warn_max...),
    told once with the runs it concerns."""
    told: dict[str, list[int]] = {}
    for run in runs:
        for warning in run.warnings or []:
            field = warning["field"].removeprefix("params.")
            told.setdefault(f"{field}: {warning['message']}", []).append(run.id)
    return list(told.items())


def _csv_cell(value: Any) -> str:
    """A value as a spreadsheet reads it back; text that a spreadsheet would take for a
    formula (=, +, -, @ first) is quoted with a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value).lower() if isinstance(value, bool) else str(value)
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/sweeps/{sweep_id}/results.csv")
def sweep_results_csv(sweep_id: RowId, db: PageDb, user: PageUser) -> Response:
    """One row per run: its id, name, state, every parameter and every metric."""
    sweep = _visible_sweep(db, user, sweep_id)
    manifest = manifest_of(sweep.model_version)
    runs = sweep.runs
    params = list(dict.fromkeys([*manifest.parameters, *(k for r in runs for k in r.params)]))
    metrics = list(
        dict.fromkeys([*manifest.results.metrics, *(k for r in runs for k in r.metrics or {})])
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run", "name", "state", *params, *metrics])
    for run in runs:
        values = [run.params.get(p) for p in params] + [(run.metrics or {}).get(m) for m in metrics]
        writer.writerow([run.id, _csv_cell(run.name), run.state, *map(_csv_cell, values)])
    filename = f"sweep-{sweep.id}-{sweep.model_version.name}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post("/sweeps/{sweep_id}/cancel")
def cancel_sweep_from_page(
    request: Request,
    sweep_id: RowId,
    db: PageDb,
    user: PageUser,
    platform: PlatformDep,
    csrf_token: Csrf = "",
) -> Response:
    """The sweep page's cancel button (a form: it works without JavaScript too)."""
    check_csrf(request, csrf_token)
    sweep = _visible_sweep(db, user, sweep_id, Action.cancel)
    sweep_service.cancel_sweep(db=db, sweep=sweep)
    db.commit()
    platform.dispatcher.wake()
    return RedirectResponse(f"/sweeps/{sweep_id}", status_code=303)
