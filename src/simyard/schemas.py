"""The JSON shapes the API answers with: the same objects ``simyard run --json`` prints.

Plain pydantic models, light to import: the server shapes its answers with them
(api/schemas.py fills them from the tables) and the Python client reads answers into them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel

from simyard.times import in_utc

# A time in an answer: always with its zone (RFC 3339 "date-time", as the document says),
# also where SQLite gave it back without one, and in UTC, which pydantic writes with "Z"
# (as utc_text does; a serializer of our own cost a seventh of a runs list's answer).
Timestamp = Annotated[dt.datetime, AfterValidator(in_utc)]


class ProblemOut(BaseModel):
    field: str
    message: str


class ProblemsOut(BaseModel):
    """A refusal (SPEC.md, "HTTP API"): every problem and warning, each naming its field."""

    errors: list[ProblemOut]
    warnings: list[ProblemOut]


class DetailOut(BaseModel):
    """Any other error: what went wrong, in words."""

    detail: str


class TaskOut(BaseModel):
    name: str
    state: str
    attempt: int
    exit_code: int | None
    signal: int | None = None  # the signal that killed the model (exit_code is then None)
    warnings: list[str] = []  # the lines that matched the task's warning_patterns
    progress: float | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    heartbeat_at: Timestamp | None
    failure_kind: str | None
    failure_summary: str | None
    image_digest: str | None = None  # the image the task ran in (docs/environments.md)


class OutputOut(BaseModel):
    task: str
    path: str
    size: int
    sha256: str


class ErrorOut(BaseModel):
    kind: str | None
    task: str | None
    summary: str | None


class RunOut(BaseModel):
    id: int
    model: str
    version: str
    state: str
    owner: str
    params: dict[str, Any]
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    tasks: list[TaskOut]
    outputs: list[OutputOut]
    metrics: dict[str, Any] | None
    error: ErrorOut | None
    queue_position: int | None = None
    waiting: str | None = None  # why it is queued: a quota, a worker starting, a free slot
    worker_seconds: float | None = None  # usage so far, summed over its task runs' attempts
    cpu_seconds: float | None = None
    rerun_of: int | None = None
    sweep_id: int | None = None
    notify: bool | None = None  # the run's own choice; None: the owner's settings
    image_digest: str | None = None  # the model version's image (each task's: in tasks)
    warnings: list[dict[str, str]] = []  # as when it was created: soft limits, hooks
    name: str | None = None
    notes: str | None = None
    tags: list[str] = []
    project: str | None = None  # the project it was started in (its members read it)


class ShareOut(BaseModel):
    """A run or sweep shared read-only with ``user``, or with every signed-in user."""

    user: str | None
    everyone: bool
    shared_by: str | None
    created_at: Timestamp


class ProjectOut(BaseModel):
    name: str
    members: list[str]
    max_active_runs: int | None  # at most this many of its runs not yet ended; None: any
    created_at: Timestamp


class SweepOut(BaseModel):
    id: int
    model: str
    version: str
    owner: str
    mode: str
    base_params: dict[str, Any]
    axes: dict[str, list[Any]]
    state: str  # running | finished
    counts: dict[str, int]
    created_at: Timestamp
    finished_at: Timestamp | None
    runs: list[RunOut] = []
    warnings: list[dict[str, str]] = []


class ModelOut(BaseModel):
    name: str
    version: str
    title: str
    description: str
    content_hash: str
    image_digest: str | None = None  # the environment's image (docs/environments.md)
    task_images: dict[str, str] = {}  # each task run in an image: its digest
    created_at: Timestamp
    parameters_schema: dict[str, Any]
    inputs: dict[str, Any]
    tasks: list[str]
