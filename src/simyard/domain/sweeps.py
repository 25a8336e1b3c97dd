"""Sweeps: many runs from one base configuration and parameter axes, launched together.

An axis is a parameter with a list of values. ``grid`` runs every combination (the
cartesian product), ``zip`` pairs the lists element by element, and ``table`` takes
the runs from the rows of an uploaded CSV whose header names parameters. Every run is
validated with the same rules as a single run before any is created: a sweep starts
whole or not at all.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from simyard.domain.access import Action, readable_sweeps, require, sweep_standing
from simyard.domain.registry import manifest_of
from simyard.domain.runs import (
    StoredInput,
    Upload,
    cancel_run,
    check_run_input,
    jsonable,
    queue_run,
)
from simyard.domain.states import RunState
from simyard.domain.tables import ModelVersion, Run, Sweep, User, utcnow
from simyard.errors import Problem, SimyardError, ValidationFailed
from simyard.manifest.inputs import DEFAULT_MAX_UNPACKED_SIZE, check_inputs
from simyard.manifest.runinput import RunInput

MODES = ("grid", "zip", "table")
MAX_SWEEP_RUNS = 1000
ACTIVE_STATES = [s.value for s in RunState if not s.final]


class SweepNotFound(SimyardError):
    """No such sweep, or not one the user may see (the two are not told apart)."""


@dataclass(frozen=True)
class SweepPlan:
    """The runs of a sweep: each combination holds the axis values of one run."""

    mode: str
    axes: dict[str, list[Any]]
    combinations: list[dict[str, Any]]
    table_name: str | None = None  # the uploaded table's file name, for messages

    def where(self, index: int) -> str:
        """Where run ``index`` (0-based) came from, in the words of the request."""
        if self.mode == "table":
            return f"{self.table_name or 'table'} row {index + 2}"  # row 1 is the header
        values = ", ".join(f"{k}={v}" for k, v in self.combinations[index].items())
        return f"run {index + 1} ({values})"


def plan_axes(mode: str, axes: Mapping[str, Any], parameters: Sequence[str]) -> SweepPlan:
    """The runs of a ``grid`` or ``zip`` sweep; ValidationFailed names each bad axis."""
    problems: list[Problem] = []
    if mode not in ("grid", "zip"):
        raise ValidationFailed([Problem("mode", "must be grid, zip or table")])
    if not isinstance(axes, Mapping) or not axes:
        raise ValidationFailed([Problem("axes", "give at least one parameter with its values")])
    lists: dict[str, list[Any]] = {}
    for name, values in axes.items():
        if name not in parameters:
            known = ", ".join(parameters) or "none"
            problems.append(Problem(f"axes.{name}", f"unknown parameter (this model has: {known})"))
        elif not isinstance(values, list) or not values:
            problems.append(Problem(f"axes.{name}", "must be a non-empty list of values"))
        else:
            lists[name] = values
    if problems:
        raise ValidationFailed(problems)
    if mode == "zip":
        lengths = {name: len(values) for name, values in lists.items()}
        if len(set(lengths.values())) > 1:
            told = ", ".join(f"{name} has {n}" for name, n in lengths.items())
            raise ValidationFailed(
                [Problem("axes", f"zip pairs the lists, so they need the same length: {told}")]
            )
        rows = [
            dict(zip(lists, values, strict=True)) for values in zip(*lists.values(), strict=True)
        ]
    else:
        count = 1
        for values in lists.values():
            count *= len(values)
        _check_count(count, "axes")
        rows = [
            dict(zip(lists, values, strict=True)) for values in itertools.product(*lists.values())
        ]
    _check_count(len(rows), "axes")
    return SweepPlan(mode, lists, rows)


def plan_table(data: bytes, filename: str, parameters: Sequence[str]) -> SweepPlan:
    """The runs of a ``table`` sweep: one per row of a CSV whose header names parameters.

    An empty cell keeps the base value of that parameter for that run.
    """
    where = f"table ({filename})"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(
            [Problem("table", f"{filename} is not UTF-8 text ({exc.reason})")]
        ) from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise ValidationFailed(
            [Problem("table", f"{filename} is empty: a header row names parameters")]
        )
    header = [name.strip() for name in rows[0]]
    problems = [
        Problem("table", f"{where}: column {name!r} is not a parameter of this model")
        for name in header
        if name not in parameters
    ]
    if len(set(header)) != len(header):
        problems.append(Problem("table", f"{where}: a column name is repeated"))
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            problems.append(
                Problem(
                    "table", f"{where} row {line}: {len(row)} fields, the header has {len(header)}"
                )
            )
    if len(rows) < 2:
        problems.append(Problem("table", f"{where}: no rows below the header"))
    if problems:
        raise ValidationFailed(problems[:20])
    _check_count(len(rows) - 1, "table")
    combos = [
        {name: cell.strip() for name, cell in zip(header, row, strict=True) if cell.strip()}
        for row in rows[1:]
    ]
    axes = {name: [c.get(name) for c in combos] for name in header}
    return SweepPlan("table", axes, combos, table_name=filename)


def _check_count(count: int, field: str) -> None:
    if count > MAX_SWEEP_RUNS:
        raise ValidationFailed(
            [Problem(field, f"would make {count} runs; a sweep holds at most {MAX_SWEEP_RUNS}")]
        )
    if count == 0:
        raise ValidationFailed([Problem(field, "makes no run")])


def check_sweep(
    *,
    version: ModelVersion,
    model_dir: Path,
    base: Mapping[str, Any],
    plan: SweepPlan,
    uploads: Mapping[str, Upload],
    max_input_size: int,
    max_unpacked_size: int = DEFAULT_MAX_UNPACKED_SIZE,
) -> list[RunInput]:
    """Validate every run of the sweep; ValidationFailed lists each problem once.

    The shared input files are checked once. A problem with an axis value names the
    axis (``axes.days``, or ``table`` with the row) and the run it made; the same
    problem in many runs is told once.
    """
    manifest = manifest_of(version)
    file_problems = check_inputs(
        manifest,
        {slot: u.path for slot, u in uploads.items()},
        filenames={slot: u.filename for slot, u in uploads.items()},
        default_max_size=max_input_size,
        max_unpacked_size=max_unpacked_size,
    )
    problems: dict[Problem, list[int]] = {}
    warnings: dict[Problem, list[int]] = {}
    checked: list[RunInput] = []
    for index, combo in enumerate(plan.combinations):
        try:
            run_input = check_run_input(
                version=version,
                model_dir=model_dir,
                params={**base, **combo},
                uploads=uploads,
                max_input_size=max_input_size,
                file_problems=file_problems,
            )
        except ValidationFailed as exc:
            for problem in exc.problems:
                problems.setdefault(_placed(problem, plan, index, combo), []).append(index)
            for warning in exc.warnings:
                warnings.setdefault(_placed(warning, plan, index, combo), []).append(index)
            continue
        for warning in run_input.warnings:
            warnings.setdefault(_placed(warning, plan, index, combo), []).append(index)
        checked.append(run_input)
    if problems:
        raise ValidationFailed(_told(problems, plan), _told(warnings, plan))
    return checked


def _placed(problem: Problem, plan: SweepPlan, index: int, combo: Mapping[str, Any]) -> Problem:
    """One run's problem, said about the axis value (or table row) that caused it."""
    name = problem.field.removeprefix("params.")
    if problem.field.startswith("params.") and name in combo:
        if plan.mode == "table":
            return Problem(
                "table", f"{plan.where(index)}: {name} = {combo[name]}: {problem.message}"
            )
        return Problem(f"axes.{name}", f"{combo[name]}: {problem.message}")
    return problem


def _told(found: dict[Problem, list[int]], plan: SweepPlan) -> list[Problem]:
    """Each problem once; one that only some runs have says the first of them."""
    told: list[Problem] = []
    for problem, indexes in found.items():
        if len(indexes) < len(plan.combinations) and not problem.field.startswith(
            ("axes.", "table")
        ):
            more = f" and {len(indexes) - 1} more" if len(indexes) > 1 else ""
            where = f"(in {plan.where(indexes[0])}{more})"
            problem = Problem(problem.field, f"{problem.message} {where}", problem.file)
        told.append(problem)
    return told


def create_sweep(
    *,
    db: Session,
    user: User,
    version: ModelVersion,
    base: Mapping[str, Any],
    plan: SweepPlan,
    checked: Sequence[RunInput],
    inputs: list[StoredInput],
    notify: bool | None = None,
) -> Sweep:
    """Queue every run of the sweep, in one transaction, with the shared inputs stored
    already (once for all its runs)."""
    sweep = Sweep(
        user_id=user.id,
        model_version_id=version.id,
        mode=plan.mode,
        base_params=jsonable(base),
        axes=plan.axes,
        notify=notify,
    )
    db.add(sweep)
    db.flush()
    for run_input in checked:
        queue_run(
            db=db, user=user, version=version, checked=run_input, inputs=inputs,
            sweep_id=sweep.id, warnings=run_input.warnings,
        )  # fmt: skip
    return sweep


def get_sweep(*, db: Session, sweep_id: int, user: User, action: Action = Action.read) -> Sweep:
    """The sweep with its runs, if ``user`` may do ``action`` to it (see domain/access.py):
    SweepNotFound when they may not see it, ReadOnly when they may only read it."""
    sweep = db.scalar(
        select(Sweep)
        .where(Sweep.id == sweep_id)
        .options(
            selectinload(Sweep.model_version),
            selectinload(Sweep.runs).selectinload(Run.task_runs),
            selectinload(Sweep.runs).selectinload(Run.model_version),
        )
    )
    missing = SweepNotFound(f"sweep {sweep_id} not found")
    if sweep is None:
        raise missing
    require(sweep_standing(db, user, sweep), action, f"sweep {sweep_id}", missing)
    return sweep


def list_sweeps(
    *,
    db: Session,
    user: User,
    before_id: int | None = None,
    limit: int = 50,
    shared: bool = False,
) -> list[Sweep]:
    """The user's sweeps (every sweep for an admin), newest first; keyset pagination by id.
    ``shared``: instead, the sweeps others shared with the user."""
    query = select(Sweep).options(selectinload(Sweep.model_version), selectinload(Sweep.runs))
    if shared:
        query = query.where(Sweep.user_id != user.id, readable_sweeps(user))
    elif not user.is_admin:
        query = query.where(Sweep.user_id == user.id)
    if before_id is not None:
        query = query.where(Sweep.id < before_id)
    return list(db.scalars(query.order_by(Sweep.id.desc()).limit(min(max(limit, 1), 500))))


def cancel_sweep(*, db: Session, sweep: Sweep) -> int:
    """Ask every run of the sweep that has not ended to stop; how many were asked."""
    return sum(cancel_run(db=db, run=run) for run in sweep.runs)


def counts(sweep: Sweep) -> dict[str, int]:
    """How many of the sweep's runs are in each state."""
    return dict(Counter(run.state for run in sweep.runs))


def close_if_done(db: Session, sweep_id: int) -> bool:
    """Mark the sweep finished if its last run has ended.

    True for exactly one caller, however many servers ask at once: the conditional
    update is the claim, so the summary is made once.
    """
    active = db.scalar(
        select(func.count(Run.id)).where(Run.sweep_id == sweep_id, Run.state.in_(ACTIVE_STATES))
    )
    if active:
        return False
    claimed = db.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.finished_at.is_(None))
        .values(finished_at=utcnow())
    )
    return bool(getattr(claimed, "rowcount", 0) == 1)
