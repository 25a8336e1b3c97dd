"""The page comparing 2 to 10 runs side by side: parameters, inputs, parameter files,
metrics and the plots overlaid, each run in one colour on every chart and table.

``/compare?run=12&run=14&run=15`` (what the runs list's checkboxes send; ``run=12,14,15``
too); the two-run form ``/compare?a=12&b=14`` still works.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from simyard.api.deps import PlatformDep
from simyard.api.schemas import RunOut, run_out
from simyard.domain.access import Action, run_standing
from simyard.domain.registry import manifest_of, model_dir_of
from simyard.domain.runs import run_files
from simyard.domain.states import RunState
from simyard.domain.tables import Run
from simyard.errors import SimyardError
from simyard.manifest.paramfile import render_parameter_file
from simyard.manifest.placeholders import pick_file
from simyard.manifest.schema import Manifest, ParameterFileFormat
from simyard.manifest.units import format_size
from simyard.web.pages.common import PageDb, PageUser
from simyard.web.pages.run import _output_files, _visible_run
from simyard.web.templating import render
from simyard.wiring import Platform

router = APIRouter()

MAX_COMPARED = 10  # runs side by side; more would not fit a table or a chart's legend
# One colour per run, the same on every chart, in the legend and on the tables' swatches
# (plotly's default sequence, which lists.css repeats as .run-c0 ... .run-c9).
RUN_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]  # fmt: skip


@dataclass(frozen=True)
class DiffRow:
    """One row of a side-by-side table: a name, each run's value shown as text, and which
    of them differ from the first run's."""

    name: str
    values: list[str]
    differs: list[bool]
    note: str = ""

    @property
    def changed(self) -> bool:
        return any(self.differs)


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _ordered_names(*groups: Any) -> list[str]:
    return list(dict.fromkeys(name for group in groups for name in group))


def _row(name: str, raw: list[Any], shown: list[str], note: str = "") -> DiffRow:
    return DiffRow(name, shown, [value != raw[0] for value in raw], note)


def parameter_rows(manifests: list[Manifest], runs: list[Run]) -> list[DiffRow]:
    """Every parameter of any run, in manifest order; a missing value shows as ``—``."""
    names = _ordered_names(*(m.parameters for m in manifests), *(r.params for r in runs))
    rows = []
    for name in names:
        raw = [run.params.get(name) for run in runs]
        rows.append(_row(name, raw, [_shown(v) for v in raw]))
    return rows


def input_rows(db: Session, runs: list[Run]) -> list[DiffRow]:
    """Every input slot of any run: its file name, size and hash; changed when the contents
    differ (two runs that differ only in their forcing file are not the same)."""
    given = [{f.slot or f.path: f for f in run_files(db=db, run=run, kind="input")} for run in runs]
    rows = []
    for slot in _ordered_names(*given):
        files = [each.get(slot) for each in given]
        shown = [
            f"{f.filename or f.path} ({format_size(f.size)}, sha256 {f.sha256[:12]}…)" if f else "—"
            for f in files
        ]
        row = _row(slot, [f.sha256 if f else None for f in files], shown)
        names = {f.filename for f in files if f}
        if not row.changed and all(files) and len(names) > 1:
            row = DiffRow(row.name, row.values, row.differs, "same contents")
        rows.append(row)
    return rows


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def metric_rows(manifests: list[Manifest], runs: list[Run]) -> list[DiffRow]:
    """Every metric of any run; ``note`` is the difference last - first for two runs, the
    spread (max - min) for more, when the values are numbers."""
    given = [run.metrics or {} for run in runs]
    names = _ordered_names(*(m.results.metrics for m in manifests), *given)
    rows = []
    for name in names:
        raw = [each.get(name) for each in given]
        numbers = [n for n in map(_number, raw) if n is not None]
        note = ""
        if len(numbers) == len(raw) and len(set(numbers)) > 1:
            spread = numbers[1] - numbers[0] if len(raw) == 2 else max(numbers) - min(numbers)
            note = f"{spread:+.6g}" if len(raw) == 2 else f"{spread:.6g}"
        rows.append(_row(name, raw, [_shown(v) for v in raw], note))
    return rows


@dataclass(frozen=True)
class ParameterFileDiff:
    """The unified diff of two runs' parameter files, as (CSS class, line) pairs."""

    path: str
    first: int
    other: int
    lines: list[tuple[str, str]]
    problems: list[str]


def _parameter_file(run: Run, manifest: Manifest, platform: Platform) -> str:
    """The run's parameter file as the model got it: stored with the run at submission
    (older runs: rendered again from their stored values)."""
    spec = manifest.parameter_file
    assert spec is not None
    if run.parameter_file is not None:
        return run.parameter_file.decode("utf-8", "replace")
    model_dir = Path()
    if spec.format is ParameterFileFormat.template:  # only a template reads the model folder
        model_dir = model_dir_of(
            run.model_version, store=platform.store, cache_root=platform.cache_root
        )
    return render_parameter_file(manifest, run.params, model_dir).decode("utf-8", "replace")


def parameter_file_diff(
    manifests: tuple[Manifest, Manifest], runs: tuple[Run, Run], platform: Platform
) -> ParameterFileDiff | None:
    """None when neither model has a parameter file."""
    specs = [m.parameter_file for m in manifests]
    if specs[0] is None and specs[1] is None:
        return None
    texts: list[str] = []
    problems: list[str] = []
    for run, manifest in zip(runs, manifests, strict=True):
        if manifest.parameter_file is None:
            texts.append("")
            problems.append(f"Run #{run.id}: its model has no parameter file.")
            continue
        try:
            texts.append(_parameter_file(run, manifest, platform))
        except (SimyardError, OSError) as exc:
            texts.append("")
            problems.append(f"Run #{run.id}: the parameter file cannot be shown: {exc}")
    path = next(s.path for s in specs if s is not None)
    names = [f"#{run.id}/{s.path if s else path}" for run, s in zip(runs, specs, strict=True)]
    diff = difflib.unified_diff(
        texts[0].splitlines(), texts[1].splitlines(), names[0], names[1], lineterm=""
    )
    lines = [(_diff_class(line), line) for line in diff]
    return ParameterFileDiff(path, runs[0].id, runs[1].id, lines, problems)


def _diff_class(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "diff-file"
    if line.startswith("@@"):
        return "diff-hunk"
    if line.startswith("+"):
        return "diff-add"
    if line.startswith("-"):
        return "diff-del"
    return ""


def _plots_of(manifests: list[Manifest]) -> list[dict[str, Any]]:
    """The first run's plots, then those of the others that chart something else."""
    plots: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for manifest in manifests:
        for plot in manifest.results.plots:
            if (plot.file, plot.x) not in seen:
                seen.add((plot.file, plot.x))
                plots.append(plot.model_dump(mode="json"))
    return plots


def with_run_files(
    plots: list[dict[str, Any]], runs: list[Run], outputs: list[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Each plot with ``files``, by run id: the output of that run its ``file`` names (the
    run's own values in its placeholders, a glob's last match); a run with none is left out."""
    paths = [[o["path"] for o in each if o["kind"] == "output"] for each in outputs]
    shown = []
    for plot in plots:
        files = {}
        for run, own in zip(runs, paths, strict=True):
            if (found := pick_file(plot["file"], run.params or {}, own)) is not None:
                files[run.id] = found
        shown.append({**plot, "files": files})
    return shown


def chosen_ids(a: str, b: str, run: list[str]) -> tuple[list[int], str]:
    """The run ids asked for, in order, or a problem in words."""
    words = [a, b, *(part for given in run for part in re.split(r"[\s,]+", given))]
    words = [w.strip().lstrip("#") for w in words if w.strip().lstrip("#")]
    if not all(w.isdigit() and len(w) < 10 for w in words):
        return [], "Run ids are numbers, e.g. 12."
    ids = [int(w) for w in words]  # as given: a run may be compared with itself
    if len(ids) == 1:
        return [], "Choose at least two runs to compare."
    if len(ids) > MAX_COMPARED:
        return [], f"At most {MAX_COMPARED} runs can be compared at once; {len(ids)} were chosen."
    return ids, ""


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    db: PageDb,
    user: PageUser,
    platform: PlatformDep,
    a: str = "",
    b: str = "",
    run: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI reads it, never changes it
) -> HTMLResponse:
    """Two to ten runs side by side; without them, a form to choose them."""
    ids, problem = chosen_ids(a, b, run)
    if not ids:
        code = status.HTTP_400_BAD_REQUEST if problem else status.HTTP_200_OK
        typed = ", ".join(w for w in (a, b, *run) if w.strip())
        return render(
            request, "compare.html", user, status_code=code, nav="runs", chosen=False,
            typed=typed, problem=problem, max_compared=MAX_COMPARED,
        )  # fmt: skip
    runs = [_visible_run(db, user, run_id) for run_id in ids]
    manifests = [manifest_of(r.model_version) for r in runs]
    shaped: list[RunOut] = [run_out(r, []) for r in runs]
    colours = [RUN_COLOURS[i % len(RUN_COLOURS)] for i in range(len(runs))]
    outputs = [_output_files(db, r) for r in runs]
    plots = with_run_files(_plots_of(manifests), runs, outputs)
    page_data = {
        "runs": [
            {
                "id": r.id,
                "label": f"#{r.id}" + (f" {r.name}" if r.name else ""),
                "color": colour,
                "outputs": own,
                "final": RunState(r.state).final,
            }
            for r, colour, own in zip(runs, colours, outputs, strict=True)
        ],
        "plots": plots,
    }
    diffs = [
        diff
        for i in range(1, len(runs))
        if (diff := parameter_file_diff((manifests[0], manifests[i]), (runs[0], runs[i]), platform))
    ]
    return render(
        request, "compare.html", user, nav="runs", chosen=True, problem="",
        typed=", ".join(str(i) for i in ids), runs=shaped, max_compared=MAX_COMPARED,
        params=parameter_rows(manifests, runs), inputs=input_rows(db, runs),
        metrics=metric_rows(manifests, runs), paramfiles=diffs, plots=plots,
        page_data=page_data, models=sorted({r.model for r in shaped}),
        reruns=[run_standing(db, user, r).may(Action.rerun) for r in runs],
    )  # fmt: skip
