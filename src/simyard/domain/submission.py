"""Submitting a run or a sweep: the one service the API and the web pages both call.

A submission names a model (and maybe a version), carries parameters and uploads, and
is either only checked or created. It answers a :class:`Submitted` (the id it created,
the warnings) or raises: :class:`~simyard.errors.ValidationFailed` naming every problem,
:class:`RunRateSpent` when the user's SIMYARD_RUN_RATE is used up. Everything it writes
happens in one short transaction; the caller wakes the dispatcher and shapes the answer.

The checks read a snapshot (a read-only transaction) and the uploads are stored before
that transaction: on SQLite only one transaction writes at a time, and the checks of a
large upload, or a model's own hook, would otherwise hold every other writer up.
"""

from __future__ import annotations

import difflib
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from simyard.config import Settings
from simyard.domain import runs as run_service
from simyard.domain import sweeps as sweep_service
from simyard.domain.access import Action, ReadOnly
from simyard.domain.projects import project_for_run
from simyard.domain.ratelimit import RunRate, retry_after, spend_run
from simyard.domain.registry import find_version, manifest_of, model_dir_of
from simyard.domain.runs import StoredInput
from simyard.domain.tables import ModelVersion, User
from simyard.errors import Problem, Refusal, ValidationFailed
from simyard.manifest.inputs import DEFAULT_MAX_UNPACKED_SIZE
from simyard.manifest.runinput import RunInput
from simyard.storage.base import Store

Stored = list[StoredInput]  # a submission's uploads as the store holds them


class RunRateSpent(Refusal):
    """The user may create no more runs (or sweeps) for now; ``retry_after`` seconds."""

    def __init__(self, problem: Problem, retry_after: str) -> None:
        self.problem = problem
        self.retry_after = retry_after
        super().__init__(str(problem))


@dataclass(frozen=True)
class Limits:
    """The server's limits a submission is checked against."""

    max_input_size: int
    max_unpacked_size: int = DEFAULT_MAX_UNPACKED_SIZE
    run_rate: RunRate | None = None
    # What no worker can ever give a task (Executor.unsatisfiable); None: anything may run.
    unsatisfiable: Callable[[float, int | None], str | None] | None = None

    @classmethod
    def of(
        cls,
        settings: Settings,
        unsatisfiable: Callable[[float, int | None], str | None] | None = None,
    ) -> Limits:
        return cls(
            max_input_size=settings.max_input_size,
            max_unpacked_size=settings.max_unpacked_size,
            run_rate=settings.run_rate_limit(),
            unsatisfiable=unsatisfiable,
        )


@dataclass(frozen=True)
class Submitted:
    """What a submission did: the id it created (None when only checked), its warnings,
    and what a check-only answer adds (a sweep's number of runs)."""

    id: int | None
    warnings: list[Problem] = field(default_factory=list)
    checked: dict[str, Any] = field(default_factory=dict)
    view: Any = None  # what was created, readable with no session (a run's), or None


def notify_choice(value: Any) -> bool | None:
    """The run's own notification choice: true, false, or None for the owner's preferences."""
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    return None


def resolve_model(db: Session, fields: Mapping[str, Any]) -> ModelVersion:
    """The model version a request names; ValidationFailed when no such model is registered."""
    model = fields.get("model")
    if not isinstance(model, str) or not model:
        raise ValidationFailed([Problem("model", "name the model to run")])
    version_name = fields.get("version")
    if not isinstance(version_name, str | None):
        raise ValidationFailed([Problem("version", "must be a version string")])
    version = find_version(db=db, name=model, version=version_name or None)
    if version is None:
        what = f"{model} {version_name}" if version_name else model
        if version_name and find_version(db=db, name=model) is not None:
            hint = f"; {model!r} has no version {version_name!r}"
        else:
            names = db.scalars(select(ModelVersion.name).distinct()).all()
            close = difflib.get_close_matches(model, names, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
        raise ValidationFailed([Problem("model", f"no model {what!r} is registered{hint}")])
    return version


def spend_run_rate(db: Session, rate: RunRate | None, user: User) -> None:
    """Count one run (or sweep) against the user's rate; RunRateSpent when it is used up."""
    if rate is None:
        return
    wait = spend_run(db=db, rate=rate, user_id=user.id)
    if wait is None:
        return
    seconds = retry_after(wait)
    message = f"you may create at most {rate.text} (runs and sweeps); try again in {seconds} s"
    raise RunRateSpent(Problem("run_rate", message), seconds)


def refuse_unrunnable_tasks(version: ModelVersion, limits: Limits) -> None:
    """Refuse a model with a task whose resources no worker can ever give, naming it."""
    if limits.unsatisfiable is None:
        return
    problems = []
    for name, task in manifest_of(version).tasks.items():
        why = limits.unsatisfiable(task.resources.cpus, task.resources.memory)
        if why is not None:
            problems.append(
                Problem(f"tasks.{name}.resources", f"task {name!r} can never run: {why}")
            )
    if problems:
        raise ValidationFailed(problems)


class Scratch:
    """A folder for one request's files, named by the server; made on first use, removed
    at the end of its ``with`` block (most requests fetch and upload nothing: they never
    make one)."""

    def __init__(self, root: Path | None = None, *, prefix: str = "simyard-") -> None:
        self._root = root
        self._prefix = prefix
        self._folder: Path | None = None

    def file(self, name: str) -> Path:
        """The path of the server-named file ``name`` in the folder (made now if need be)."""
        if self._folder is None:
            root = None if self._root is None else self._root.resolve()
            self._folder = Path(tempfile.mkdtemp(prefix=self._prefix, dir=root))
        return self._folder / name

    def remove(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class Submission(ABC):
    """A run or sweep request between reading it and answering it: the model it names,
    its checks, and (unless only checked) what it creates, all in one transaction.
    Subclasses say what is checked and created."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        readers: sessionmaker[Session],
        store: Store,
        cache_root: Path,
        limits: Limits,
        fields: Mapping[str, Any],
        uploads: Mapping[str, run_service.Upload],
    ) -> None:
        self.sessions = sessions
        self.readers = readers
        self.store = store
        self.cache_root = cache_root
        self.limits = limits
        self.fields = fields
        self.uploads = uploads

    @abstractmethod
    def check(self, version: ModelVersion, model_dir: Path) -> tuple[Any, list[Problem]]:
        """What was checked and its warnings; ValidationFailed when refused."""

    def checked_keys(self, checked: Any) -> dict[str, Any]:
        """Keys a check-only answer adds to errors and warnings."""
        return {}

    @abstractmethod
    def create(
        self, db: Session, user: User, version: ModelVersion, checked: Any, inputs: Stored
    ) -> tuple[int, Any]:
        """Create what was checked, its uploads stored as ``inputs``; its id, and a view of
        it that an answer can read with no session (or None: the answer reads it again)."""

    def prepare(self, db: Session, user: User, scratch: Scratch) -> None:  # noqa: B027 - a hook
        """Read what the request adds before its model is resolved (``scratch``: a folder
        for files it fetches, removed when the submission ends)."""

    def __call__(self, *, user_id: int, create: bool) -> Submitted:
        # The scratch holds what prepare fetched (a rerun's kept inputs) until they are stored.
        with Scratch(prefix="simyard-submit-") as scratch:
            with self.readers() as db, db.begin():
                user = db.get(User, user_id)
                assert user is not None
                self.prepare(db, user, scratch)
                version = resolve_model(db, self.fields)
                refuse_unrunnable_tasks(version, self.limits)
                model_dir = model_dir_of(version, store=self.store, cache_root=self.cache_root)
                checked, warnings = self.check(version, model_dir)
            if not create:
                return Submitted(None, warnings, self.checked_keys(checked))
            # Content-addressed: a file stored for a create that is then refused (its rate
            # spent meanwhile) is one that a later run of the same file finds stored.
            inputs = run_service.store_inputs(
                store=self.store, version=version, uploads=self.uploads
            )
            with self.sessions() as db, db.begin():
                user = db.get(User, user_id)
                assert user is not None
                spend_run_rate(db, self.limits.run_rate, user)
                created, view = self.create(db, user, version, checked, inputs)
            return Submitted(created, warnings, view=view)


class RunSubmission(Submission):
    """One run; with ``from_run``, edited from that run: its model version, parameters and
    inputs unless the request gives others (an input kept is the same stored file)."""

    def prepare(self, db: Session, user: User, scratch: Scratch) -> None:
        self.labels = run_service.Labels.read(self.fields)
        self.project = project_for_run(db=db, user=user, name=self.fields.get("project"))
        self.source = None
        given = self.fields.get("from_run")
        if given is None or given == "":
            return
        try:
            source_id = int(given)
            if not 1 <= source_id <= run_service.MAX_ROW_ID:  # an INTEGER column's range
                raise run_service.RunNotFound(given)
            self.source = run_service.get_run(
                db=db, run_id=source_id, user=user, action=Action.rerun
            )
        except (TypeError, ValueError, OverflowError, run_service.RunNotFound, ReadOnly):
            raise ValidationFailed([Problem("from_run", f"no run {given!r} of yours")]) from None
        old = self.source
        model = self.fields.get("model") or old.model_version.name
        same_model = model == old.model_version.name  # then its version, unless one is named
        self.fields = {
            **self.fields,
            "model": model,
            "version": self.fields.get("version")
            or (old.model_version.version if same_model else None),
            "params": {**old.params, **(self.fields.get("params") or {})},
        }
        kept: dict[str, run_service.Upload] = {}
        for stored in run_service.run_files(db=db, run=old, kind="input"):
            if stored.slot and stored.slot not in self.uploads:
                path = scratch.file(f"{len(kept)}.input")
                self.store.get(stored.key, path)
                kept[stored.slot] = run_service.Upload(path, stored.filename or stored.path)
        self.uploads = {**kept, **self.uploads}

    def check(self, version: ModelVersion, model_dir: Path) -> tuple[Any, list[Problem]]:
        checked = run_service.check_run_input(
            version=version,
            model_dir=model_dir,
            params=self.fields.get("params", {}),
            uploads=self.uploads,
            max_input_size=self.limits.max_input_size,
            max_unpacked_size=self.limits.max_unpacked_size,
        )
        return checked, checked.warnings

    def create(
        self, db: Session, user: User, version: ModelVersion, checked: Any, inputs: Stored
    ) -> tuple[int, Any]:
        run = run_service.create_run(
            db=db,
            user=user,
            version=version,
            checked=checked,
            inputs=inputs,
            notify=notify_choice(self.fields.get("notify")),
            labels=self.labels,
            warnings=checked.warnings,
            from_run=self.source,
            project=self.project,
        )
        return run.id, run_service.created_view(run, version, user, self.project)


def sweep_plan(fields: Mapping[str, Any], version: ModelVersion) -> sweep_service.SweepPlan:
    """The runs a sweep request asks for: a ``table`` upload, or ``axes`` with ``mode``."""
    parameters = list(manifest_of(version).parameters)
    table = fields.get("table")
    if isinstance(table, run_service.Upload):
        return sweep_service.plan_table(table.path.read_bytes(), table.filename, parameters)
    mode = fields.get("mode") or "grid"
    if mode == "table":
        raise ValidationFailed([Problem("table", "upload the table as a CSV file")])
    return sweep_service.plan_axes(str(mode), fields.get("axes") or {}, parameters)


def told_once(checked: list[RunInput]) -> list[Problem]:
    """The runs' warnings, each told once."""
    return list(dict.fromkeys(w for run_input in checked for w in run_input.warnings))


class SweepSubmission(Submission):
    """A sweep: every run checked before any is created (all or none)."""

    def check(self, version: ModelVersion, model_dir: Path) -> tuple[Any, list[Problem]]:
        plan = sweep_plan(self.fields, version)
        checked = sweep_service.check_sweep(
            version=version,
            model_dir=model_dir,
            base=self.fields.get("params", {}),
            plan=plan,
            uploads=self.uploads,
            max_input_size=self.limits.max_input_size,
            max_unpacked_size=self.limits.max_unpacked_size,
        )
        return (plan, checked), told_once(checked)

    def checked_keys(self, checked: Any) -> dict[str, Any]:
        return {"runs": len(checked[1])}

    def create(
        self, db: Session, user: User, version: ModelVersion, checked: Any, inputs: Stored
    ) -> tuple[int, Any]:
        plan, runs = checked
        sweep = sweep_service.create_sweep(
            db=db,
            user=user,
            version=version,
            base=self.fields.get("params", {}),
            plan=plan,
            checked=runs,
            inputs=inputs,
            notify=notify_choice(self.fields.get("notify")),
        )
        return sweep.id, None
