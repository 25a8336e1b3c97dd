"""Read a run or sweep request — its fields and its uploads — without letting a client name a path.

The rule (SPEC.md, "Security model"): a path on the server is built only from manifest
names and ids the server made. A multipart body is parsed by Starlette, which spools file
parts to anonymous temporary files; then the model the request names is looked up, and
each file field is matched against that model's input slots *before* a byte of it is
written anywhere we name. A matched upload is copied to ``scratch/input-<n>``, a name the
server made; an unknown slot becomes a problem naming it, and nothing of it is written.
The scratch folder is made for the first file written into it: a request with no file
(every JSON one) makes and removes no folder.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from simyard.api.deps import problem_dicts
from simyard.api.jsonbody import BODY, parse_json_object
from simyard.domain.registry import find_version, manifest_of
from simyard.domain.runs import Upload
from simyard.domain.submission import Limits, RunRateSpent, Scratch, Submission, Submitted
from simyard.errors import Problem, Refusal, ValidationFailed
from simyard.wiring import Platform

MAX_FORM_FILES = 100
_SHOWN_NAME = 200  # a hostile field name is echoed in a problem, but only this much of it
INPUT_PREFIX = "inputs."
COPY_CHUNK = 1 << 20
T = TypeVar("T")


@dataclass
class RunRequest:
    """What a request said: plain fields, uploads by slot (and side files such as a sweep's
    table among the fields), and the problems found while reading it."""

    fields: dict[str, Any] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def upload_scratch(platform: Platform) -> Scratch:
    """A folder for one request's uploads (made when the first is written), removed when
    the ``with`` block ends."""
    return Scratch(platform.settings.home, prefix="upload-")


def parse_json(text: str | bytes, where: str) -> tuple[Any, Problem | None]:
    """The JSON object of ``text``, or None and a problem naming ``where`` (too deep, not
    JSON, not an object); the rules live in :mod:`simyard.api.jsonbody`."""
    try:
        return parse_json_object(text, where), None
    except ValidationFailed as exc:
        return None, exc.problems[0]


async def submit_request(
    kind: type[Submission],
    platform: Platform,
    *,
    user_id: int,
    fields: dict[str, Any],
    uploads: dict[str, Upload],
    create: bool,
    answer: Callable[[Submitted], T] | None = None,
) -> tuple[Submitted, T | None]:
    """Hand a request read here to the domain's ``kind`` of submission (in the thread
    pool) and wake the dispatcher when it created something; its refusals pass through.
    ``answer`` (of what was created) runs in the same trip to the thread pool: each trip
    costs the event loop about as much as a small request."""
    submission = kind(
        sessions=platform.sessions,
        readers=platform.readers,
        store=platform.store,
        cache_root=platform.cache_root,
        limits=Limits.of(platform.settings, platform.dispatcher.executor.unsatisfiable),
        fields=fields,
        uploads=uploads,
    )

    def submit() -> tuple[Submitted, T | None]:
        submitted = submission(user_id=user_id, create=create)
        if submitted.id is None:
            return submitted, None
        platform.dispatcher.wake(created=True)
        return submitted, None if answer is None else answer(submitted)

    return await run_in_threadpool(submit)


def refusal_answer(exc: Refusal) -> dict[str, list[dict[str, str]]]:
    """A submission's refusal as the answers show it: ``{"errors", "warnings"}``."""
    if isinstance(exc, ValidationFailed):
        return {"errors": problem_dicts(exc.problems), "warnings": problem_dicts(exc.warnings)}
    if isinstance(exc, RunRateSpent):
        return {"errors": problem_dicts([exc.problem]), "warnings": []}
    raise exc


def input_slots(platform: Platform, model: Any, version: Any) -> frozenset[str] | None:
    """The input slots of the model version a request names; None when it names none."""
    if not isinstance(model, str) or not model or not isinstance(version, str | None):
        return None
    with platform.readers() as db, db.begin():
        found = find_version(db=db, name=model, version=version or None)
        return None if found is None else frozenset(manifest_of(found).inputs)


async def read_run_request(
    request: Request,
    platform: Platform,
    scratch: Scratch,
    *,
    json_fields: tuple[str, ...] = ("params",),
    side_files: tuple[str, ...] = (),
    slots: Collection[str] | None = None,
) -> RunRequest:
    """The request's fields and uploads, from a JSON body or a form.

    In a form, ``json_fields`` hold JSON objects; a file in one of ``side_files`` (such as a
    sweep's table) is put among the fields as an Upload. ``slots`` are the model's input
    slots when the caller knows the model already; otherwise the model the request names
    is looked up. A file field with no file name (a browser's empty file input) is ignored.
    """
    read = RunRequest()
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        value, problem = parse_json(await request.body(), BODY)
        if problem is None and not isinstance(value, dict):
            problem = Problem("body", "must be a JSON object")
        read.fields = value if problem is None else {}
        read.problems += [problem] if problem else []
        _check_params(read)
        return read
    form = await request.form(max_files=MAX_FORM_FILES)  # cached: a page may have parsed it
    read.fields = {k: v for k, v in form.items() if isinstance(v, str)}
    for name in json_fields:
        value, problem = parse_json(read.fields.get(name) or "{}", name)
        if problem is not None:
            read.problems.append(problem)
        read.fields[name] = value if problem is None else {}
    files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile) and v.filename]
    if files and slots is None:
        found = await run_in_threadpool(
            input_slots, platform, read.fields.get("model"), read.fields.get("version")
        )
        if found is None:  # no such model: the submission says so, and nothing is kept
            files = []
        slots = found
    for index, (key, upload) in enumerate(files):
        await _take_upload(read, key, upload, index, scratch, platform, side_files, slots or ())
    _check_params(read)
    return read


async def _take_upload(
    read: RunRequest,
    key: str,
    upload: UploadFile,
    index: int,
    scratch: Scratch,
    platform: Platform,
    side_files: tuple[str, ...],
    slots: Collection[str],
) -> None:
    """Copy one file part to a server-named file, if its field is one the request may have."""
    slot = key.removeprefix(INPUT_PREFIX) if key.startswith(INPUT_PREFIX) else None
    if key in side_files:
        target, field_name = scratch.file(f"side-{index}"), key
    elif slot is not None and slot in slots:
        if slot in read.uploads:
            read.problems.append(Problem(key, "more than one file for this input"))
            return
        target, field_name = scratch.file(f"input-{index}"), key
    else:
        shown = key[:_SHOWN_NAME] + ("…" if len(key) > _SHOWN_NAME else "")
        message = "unknown input slot" if slot is not None else "not a file field of this request"
        read.problems.append(Problem(shown, message))
        return
    limit = platform.settings.max_input_size
    written = 0
    with open(target, "xb") as out:
        while chunk := await upload.read(COPY_CHUNK):
            written += len(chunk)
            if written > limit:  # stop reading: no limit of a model allows more
                read.problems.append(Problem(field_name, "file is over the size limit"))
                break
            out.write(chunk)
    filename = PurePath(upload.filename or "").name or "upload"
    if slot is not None and key not in side_files:
        read.uploads[slot] = Upload(target, filename)
    else:
        read.fields[key] = Upload(target, filename)


def _check_params(read: RunRequest) -> None:
    if not isinstance(read.fields.get("params", {}), dict):
        read.problems.append(Problem("params", "must be an object of parameter values"))
        read.fields["params"] = {}
