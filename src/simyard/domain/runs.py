"""Runs: create (validated exactly like ``models test``), cancel, rerun, find, and their events."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Integer, Select, bindparam, func, select
from sqlalchemy.orm import Session, joinedload, selectinload

from simyard import taskgraph
from simyard.domain.access import Action, readable_runs, require, run_standing
from simyard.domain.registry import manifest_of
from simyard.domain.states import RunState, TaskRunState
from simyard.domain.tables import Event, ModelVersion, Project, Run, StoredFile, TaskRun, User
from simyard.errors import Problem, SimyardError, ValidationFailed
from simyard.manifest.inputs import DEFAULT_MAX_UNPACKED_SIZE
from simyard.manifest.runinput import RunInput, validate_run_input
from simyard.storage.base import Store
from simyard.taskgraph import Readiness, Standing


class RunNotFound(SimyardError):
    """No such run, or not one the user may see (the two are not told apart)."""


MAX_ROW_ID = 2**31 - 1  # ids are INTEGER columns (32 bits on PostgreSQL)
MAX_NAME = 200
MAX_NOTES = 10_000
MAX_TAGS = 20
MAX_TAG = 50


@dataclass(frozen=True)
class Labels:
    """What a person calls a run: a name, notes, tags (all optional, editable later)."""

    name: str | None = None
    notes: str | None = None
    tags: tuple[str, ...] = ()

    @classmethod
    def read(cls, fields: Mapping[str, Any], *, partial: bool = False) -> Labels:
        """The labels of a request's fields; ValidationFailed naming each bad one. Tags may
        come as a list or, in a form, as JSON text (``["calibration"]``)."""
        problems: list[Problem] = []
        name = _text(fields.get("name"), "name", MAX_NAME, problems, one_line=True)
        notes = _text(fields.get("notes"), "notes", MAX_NOTES, problems)
        tags = fields.get("tags") or []
        if isinstance(tags, str):  # a form's field: JSON, or words split by commas
            try:
                tags = json.loads(tags) if tags.strip().startswith("[") else tags.split(",")
            except ValueError:
                tags = None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            problems.append(Problem("tags", 'must be a list of words, e.g. ["calibration"]'))
            tags = []
        cleaned = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
        if len(cleaned) > MAX_TAGS:
            problems.append(Problem("tags", f"at most {MAX_TAGS} tags"))
        for tag in cleaned:
            if len(tag) > MAX_TAG or any(c.isspace() or c in ",=<>" for c in tag):
                problems.append(
                    Problem("tags", f"{tag[:60]!r}: a tag is one word of at most {MAX_TAG} "
                            "characters, without spaces, commas or = < >")
                )  # fmt: skip
        if problems:
            raise ValidationFailed(problems)
        return cls(name or None, notes or None, tuple(cleaned))

    def apply(self, run: Run) -> None:
        run.name, run.notes, run.tags = self.name, self.notes, list(self.tags)


def _text(
    value: Any, field: str, limit: int, problems: list[Problem], *, one_line: bool = False
) -> str | None:
    """Text of at most ``limit`` characters, without NUL; ``one_line``: without any control
    character either (a name goes into email subjects and terminal lines)."""
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(Problem(field, "must be text"))
        return None
    text = str(value).strip()
    controls = [c for c in text if ord(c) < 32 or ord(c) == 127] if one_line else []
    if len(text) > limit or "\x00" in text or controls:
        rule = "one line of at most {} characters" if one_line else "at most {} characters, no NUL"
        problems.append(Problem(field, rule.format(limit)))
        return None
    return text


@dataclass(frozen=True)
class Upload:
    """An uploaded input file waiting in a temporary place, with the name the user gave it."""

    path: Path
    filename: str


def jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    """Typed parameter values as JSON (dates as ISO text)."""
    return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in values.items()}


def event_row(kind: str, run: Run, task_run: TaskRun | None = None, **data: Any) -> dict[str, Any]:
    """An outbox event of ``run`` (and ``task_run``) as they are now, as a row's values."""
    payload = {"run_id": run.id, "state": run.state, **data}
    if task_run is not None:
        payload |= {
            "task": task_run.name,
            "task_state": task_run.state,
            "attempt": task_run.attempt,
        }
    return {
        "run_id": run.id,
        "task_run_id": task_run.id if task_run else None,
        "kind": kind,
        "payload": payload,
    }


def record_event(
    db: Session, kind: str, run: Run, task_run: TaskRun | None = None, **data: Any
) -> None:
    """Add an event to the outbox, in the caller's transaction."""
    db.add(Event(**event_row(kind, run, task_run, **data)))


def check_run_input(
    *,
    version: ModelVersion,
    model_dir: Path,
    params: Mapping[str, Any],
    uploads: Mapping[str, Upload],
    max_input_size: int,
    max_unpacked_size: int = DEFAULT_MAX_UNPACKED_SIZE,
    file_problems: list[Problem] | None = None,
) -> RunInput:
    """Validate parameters and files as ``models test`` does; ValidationFailed lists them all."""
    return validate_run_input(
        manifest_of(version),
        model_dir,
        params,
        {slot: u.path for slot, u in uploads.items()},
        filenames={slot: u.filename for slot, u in uploads.items()},
        max_input_size=max_input_size,
        max_unpacked_size=max_unpacked_size,
        file_problems=file_problems,
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredInput:
    """An uploaded input as stored: content-addressed, shared by every run given it."""

    slot: str
    path: str
    filename: str
    key: str
    size: int
    sha256: str


def store_inputs(
    *, store: Store, version: ModelVersion, uploads: Mapping[str, Upload]
) -> list[StoredInput]:
    """Store the uploads (content-addressed: the same file is stored once)."""
    manifest = manifest_of(version)
    stored: list[StoredInput] = []
    for slot, upload in uploads.items():
        digest = _sha256(upload.path)
        key = f"inputs/{digest}"
        if not store.exists(key):
            store.put(key, upload.path)
        stored.append(
            StoredInput(
                slot=slot,
                path=manifest.inputs[slot].path,
                filename=upload.filename,
                key=key,
                size=upload.path.stat().st_size,
                sha256=digest,
            )
        )
    return stored


def create_run(
    *,
    db: Session,
    user: User,
    version: ModelVersion,
    checked: RunInput,
    inputs: list[StoredInput],
    notify: bool | None = None,
    labels: Labels | None = None,
    warnings: list[Problem] | None = None,
    from_run: Run | None = None,
    project: Project | None = None,
) -> Run:
    """Queue the run of inputs stored already (``from_run``: edited from that run;
    ``project``: started in that project, whose membership and quota the caller checked)."""
    run = queue_run(
        db=db, user=user, version=version, checked=checked, inputs=inputs, notify=notify,
        labels=labels, warnings=warnings,
    )  # fmt: skip
    if from_run is not None:
        run.rerun_of = from_run.id
    if project is not None:
        run.project_id = project.id
    return run


def queue_run(
    *,
    db: Session,
    user: User,
    version: ModelVersion,
    checked: RunInput,
    inputs: list[StoredInput],
    notify: bool | None = None,
    sweep_id: int | None = None,
    labels: Labels | None = None,
    warnings: list[Problem] | None = None,
) -> Run:
    """Queue a run of validated input whose files are stored already."""
    manifest = manifest_of(version)
    run = Run(
        user_id=user.id,
        model_version_id=version.id,
        params=jsonable(checked.params),
        state=RunState.queued,
        cancel_requested=False,
        notify=notify,
        sweep_id=sweep_id,
        parameter_file=checked.parameter_file,
        warnings=[{"field": w.field, "message": w.message} for w in warnings or []],
        task_runs=[],  # filled below: a collection known to the session, never loaded
    )
    (labels or Labels()).apply(run)
    db.add(run)
    db.flush()
    for given in inputs:
        db.add(
            StoredFile(
                run_id=run.id,
                kind="input",
                slot=given.slot,
                path=given.path,
                filename=given.filename,
                key=given.key,
                size=given.size,
                sha256=given.sha256,
            )
        )
    _add_task_runs(db, run, manifest.task_order(), manifest.needs)
    record_event(db, "run.queued", run)
    return run


def _add_task_runs(db: Session, run: Run, order: list[str], needs: Mapping[str, list[str]]) -> None:
    for position, name in enumerate(order):
        task_run = TaskRun(
            run_id=run.id,
            name=name,
            position=position,
            needs=list(needs[name]),
            state=TaskRunState.pending,
            attempt=0,
        )
        run.task_runs.append(task_run)
        if taskgraph.readiness(Standing.open for _ in needs[name]) is Readiness.start:
            task_run.set_state(TaskRunState.queued)
    db.flush()


def created_view(run: Run, version: ModelVersion, user: User, project: Project | None) -> ListedRun:
    """A run just created in this session, with what :func:`simyard.api.schemas.run_out`
    reads of it, all in memory: its answer needs no statement, and none after the session."""
    return ListedRun(run, list(run.task_runs), version, user, project)


# One statement for the run, its model and owner; one for its task runs. Built once, its
# id bound at each execution: building it again was a third of reading a run.
_RUN = (
    select(Run)
    .where(Run.id == bindparam("id"))
    .options(joinedload(Run.model_version), joinedload(Run.user), selectinload(Run.task_runs))
)


def get_run(*, db: Session, run_id: int, user: User, action: Action = Action.read) -> Run:
    """The run, if ``user`` may do ``action`` to it (see domain/access.py): RunNotFound
    when they may not see it, ReadOnly when they may only read it."""
    run = db.scalar(_RUN, {"id": run_id})
    missing = RunNotFound(f"run {run_id} not found")
    if run is None:
        raise missing
    require(run_standing(db, user, run), action, f"run {run_id}", missing)
    return run


# What a runs list shows, read as plain rows: building ORM objects for a page of runs and
# their task runs was two thirds of a list answer's time (issue 13, the readers bars). The
# columns no answer shows (a run's parameter file and task images, a task's needs and
# metrics) are left out, and the statements are built once, their values bound at each
# execution: building them again took a fifth of a list answer.
_LISTED_RUN = tuple(
    c for c in Run.__table__.columns if c.key not in {"parameter_file", "task_images"}
)
_LISTED_TASK = tuple(c for c in TaskRun.__table__.columns if c.key not in {"needs", "metrics"})
_LISTED_TASKS = (
    select(*_LISTED_TASK)
    .where(TaskRun.run_id.in_(bindparam("ids", expanding=True)))
    .order_by(TaskRun.run_id, TaskRun.position)
)


def _by_id(table: Any, *columns: Any) -> Select[Any]:
    return select(table.id, *columns).where(table.id.in_(bindparam("ids", expanding=True)))


_BY_ID = {
    ModelVersion: _by_id(
        ModelVersion, ModelVersion.name, ModelVersion.version, ModelVersion.image_digest
    ),
    User: _by_id(User, User.name),
    Project: _by_id(Project, Project.name),
}


@functools.cache
def _listed_runs(scope: str, by_state: bool, by_model: bool, by_before: bool) -> Select[Any]:
    """The statement of a runs list: ``scope`` "all" (an admin's), "own" (bound: ``user``)
    or "project" (bound: ``project``); the filters bound as ``state``, ``model`` and
    ``before``; the page's size as ``limit``."""
    query = select(*_LISTED_RUN)
    if scope == "own":
        query = query.where(Run.user_id == bindparam("user"))
    elif scope == "project":
        query = query.where(Run.project_id == bindparam("project"))
    if by_state:
        query = query.where(Run.state == bindparam("state"))
    if by_model:
        query = query.join(ModelVersion).where(ModelVersion.name == bindparam("model"))
    if by_before:
        query = query.where(Run.id < bindparam("before"))
    return query.order_by(Run.id.desc()).limit(bindparam("limit", type_=Integer))


@dataclass(frozen=True, slots=True)
class ListedRun:
    """A run of a list: its row (the columns an answer shows, by attribute, as a
    :class:`Run` answers them) with its task runs in graph order, model version, owner and
    project, as rows too; what :func:`simyard.api.schemas.run_out` reads of a Run."""

    row: Any
    task_runs: list[Any]
    model_version: Any
    user: Any
    project: Any

    def __getattr__(self, name: str) -> Any:
        return getattr(self.row, name)


def list_runs(
    *,
    db: Session,
    user: User,
    state: str | None = None,
    model: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
    shared: bool = False,
    project: Project | None = None,
) -> list[ListedRun]:
    """The user's runs (all runs for an admin), newest first; keyset pagination by id.
    ``shared``: instead, the runs others shared with the user (directly, with everyone,
    through a sweep or a project); ``project``: the project's runs (the caller checked
    that the user may read them). Five statements, however many runs and owners."""
    scope = "project" if project is not None else "all" if shared or user.is_admin else "own"
    query = _listed_runs(scope, bool(state), bool(model), before_id is not None)
    if shared and project is None:  # who shares with whom: built for this user
        query = query.where(Run.user_id != user.id, readable_runs(user))
    values = {
        "user": user.id, "project": project.id if project is not None else None,
        "state": state, "model": model, "before": before_id, "limit": min(max(limit, 1), 500),
    }  # fmt: skip
    runs = db.execute(query, values).all()
    if not runs:
        return []
    tasks: dict[int, list[Any]] = {run.id: [] for run in runs}
    for task in db.execute(_LISTED_TASKS, {"ids": list(tasks)}):
        tasks[task.run_id].append(task)
    versions = _rows_by_id(db, ModelVersion, {run.model_version_id for run in runs})
    owners = _rows_by_id(db, User, {run.user_id for run in runs})
    projects = _rows_by_id(db, Project, {run.project_id for run in runs} - {None})
    listed = []
    for run in runs:
        version_of, owner, in_project = (
            versions[run.model_version_id],
            owners[run.user_id],
            projects.get(run.project_id),
        )
        listed.append(ListedRun(run, tasks[run.id], version_of, owner, in_project))
    return listed


def _rows_by_id(db: Session, table: Any, ids: set[Any]) -> dict[int, Any]:
    """id -> the row of ``table``'s listed columns, for ``ids`` (no statement for none)."""
    if not ids:
        return {}
    return {row.id: row for row in db.execute(_BY_ID[table], {"ids": list(ids)})}


_RUN_FILES = (
    select(StoredFile)
    .where(StoredFile.run_id == bindparam("run"), StoredFile.kind == bindparam("kind"))
    .order_by(StoredFile.task_run_id, StoredFile.path)
)


def run_files(*, db: Session, run: Run, kind: str) -> list[StoredFile]:
    return list(db.scalars(_RUN_FILES, {"run": run.id, "kind": kind}))


def cancel_run(*, db: Session, run: Run) -> bool:
    """Ask for a run to stop; False when it had ended already.

    Task runs that have not started are cancelled at once; running ones are stopped by
    the dispatcher, which kills their process trees. The run and then its task runs are
    locked and read fresh — the dispatcher's lock order — so a cancel racing a claim
    waits for it and sees the task running (then stops it) instead of overwriting it.
    """
    db.scalar(
        select(Run)
        .where(Run.id == run.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    if RunState(run.state).final:
        return False
    db.scalars(
        select(TaskRun)
        .where(TaskRun.run_id == run.id)
        .order_by(TaskRun.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    run.cancel_requested = True
    for task_run in run.task_runs:
        if TaskRunState(task_run.state) in (TaskRunState.pending, TaskRunState.queued):
            task_run.set_state(TaskRunState.cancelled)
            record_event(db, "task.cancelled", run, task_run)
    record_event(db, "run.cancel_requested", run)
    return True


def rerun(*, db: Session, run: Run, user: User, from_failed: bool = False) -> Run:
    """A new run with the same model version, parameters and inputs.

    With ``from_failed``, tasks that succeeded (and whose upstream did) are reused as
    ``cached``, with their outputs, so only the failed part runs again.
    """
    new = Run(
        user_id=user.id,
        model_version_id=run.model_version_id,
        params=dict(run.params),
        rerun_of=run.id,
        state=RunState.queued,
        cancel_requested=False,
        parameter_file=run.parameter_file,
        project_id=run.project_id,
    )
    db.add(new)
    db.flush()
    for stored in run_files(db=db, run=run, kind="input"):
        db.add(
            StoredFile(
                run_id=new.id,
                kind="input",
                slot=stored.slot,
                path=stored.path,
                filename=stored.filename,
                key=stored.key,
                size=stored.size,
                sha256=stored.sha256,
            )
        )
    old_by_name = {t.name: t for t in run.task_runs}
    reusable: set[str] = set()
    if from_failed:
        ordered = sorted(run.task_runs, key=lambda t: t.position)
        reusable = taskgraph.reusable(
            {t.name: t.needs for t in ordered},
            {t.name: TaskRunState(t.state).standing for t in ordered},
        )
    for old in sorted(run.task_runs, key=lambda t: t.position):
        task_run = TaskRun(
            run_id=new.id,
            name=old.name,
            position=old.position,
            needs=list(old.needs),
            state=TaskRunState.pending,
            attempt=0,
        )
        db.add(task_run)
        db.flush()
        if old.name in reusable:
            source = old_by_name[old.name]
            task_run.set_state(TaskRunState.cached)
            task_run.reused_from = source.reused_from or source.id
            task_run.exit_code = source.exit_code
            task_run.metrics = source.metrics
            task_run.signal = source.signal
            task_run.warnings = source.warnings
            for stored in db.scalars(select(StoredFile).where(StoredFile.task_run_id == source.id)):
                db.add(
                    StoredFile(
                        run_id=new.id,
                        task_run_id=task_run.id,
                        kind=stored.kind,
                        path=stored.path,
                        key=stored.key,
                        size=stored.size,
                        sha256=stored.sha256,
                    )
                )
        elif (
            taskgraph.readiness(Standing.ok if n in reusable else Standing.open for n in old.needs)
            is Readiness.start
        ):
            task_run.set_state(TaskRunState.queued)
    db.flush()
    record_event(db, "run.queued", new, rerun_of=run.id)
    return new


def queue_position(*, db: Session, run: Run) -> int | None:
    """How many queued task runs are ahead of this run's first queued one."""
    mine = [t for t in run.task_runs if t.state == TaskRunState.queued and t.queued_at]
    if not mine:
        return None
    first = min(t.queued_at for t in mine if t.queued_at is not None)
    ahead = db.scalar(
        select(func.count(TaskRun.id)).where(
            TaskRun.state == TaskRunState.queued, TaskRun.queued_at < first
        )
    )
    return int(ahead or 0)


class TaskProgress(Protocol):
    """What a run's progress reads of a task: a ``TaskRun`` row or its API shape."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def progress(self) -> float | None: ...


T = TypeVar("T", bound=TaskProgress)


@dataclass(frozen=True)
class RunProgress(Generic[T]):
    """How far a run that has not ended is: the runs list shows ``percent``, the run page
    the running task that is least far (``slowest``), else the share of tasks ended."""

    percent: float  # over its tasks: an ended task counts whole, another as far as it is
    ended: int
    tasks: int
    slowest: T | None  # the running task that is least far; None: none runs


def progress_of(state: str, tasks: Sequence[T]) -> RunProgress[T] | None:
    """The progress of a run in ``state`` with ``tasks``; None once it has ended or while
    it has no tasks."""
    if RunState(state).final or not tasks:
        return None
    finals = [TaskRunState(t.state).final for t in tasks]
    done = sum(
        100.0 if final else (t.progress or 0.0) for t, final in zip(tasks, finals, strict=True)
    )
    running = [t for t in tasks if t.state == TaskRunState.running]
    slowest = min(running, key=lambda t: t.progress or 0) if running else None
    return RunProgress(done / len(tasks), sum(finals), len(tasks), slowest)
