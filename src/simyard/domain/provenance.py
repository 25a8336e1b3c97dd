"""A run's provenance as an RO-Crate (https://w3id.org/ro/crate/1.1): what went in, what ran,
who ran it, when and where, and what came out.

The crate describes the run's outputs zip: each output is a ``File`` whose ``@id`` is its
path in the zip (``task/path``), so ``ro-crate-metadata.json`` at the zip's root makes the
zip a crate. Inputs are not in the zip; they are web entities with their download address.
The run itself is a ``CreateAction`` (the Process Run Crate profile's shape): the model
version is its ``instrument``, the user its ``agent``, inputs and parameters its ``object``,
outputs its ``result``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from sqlalchemy.orm import Session

from simyard.domain.runs import run_files
from simyard.domain.states import RunState
from simyard.domain.tables import Run, StoredFile
from simyard.times import utc_text

CONTEXT = "https://w3id.org/ro/crate/1.1/context"
SPEC = "https://w3id.org/ro/crate/1.1"
PROCESS_RUN_PROFILE = "https://w3id.org/ro/wfrun/process/0.5"
METADATA_FILE = "ro-crate-metadata.json"
STATUS = {
    RunState.succeeded: "http://schema.org/CompletedActionStatus",
    RunState.failed: "http://schema.org/FailedActionStatus",
    RunState.timed_out: "http://schema.org/FailedActionStatus",
    RunState.cancelled: "http://schema.org/FailedActionStatus",
}
ACTIVE = "http://schema.org/ActiveActionStatus"


def _when(value: dt.datetime | None) -> str | None:
    return None if value is None else utc_text(value)


def _ref(entity: dict[str, Any]) -> dict[str, str]:
    return {"@id": entity["@id"]}


def _parameter_file_path(manifest: dict[str, Any]) -> str | None:
    described = manifest.get("parameter_file") or {}
    return described.get("path") if isinstance(described, dict) else None


def run_crate(*, db: Session, run: Run, base_url: str) -> dict[str, Any]:
    """The RO-Crate metadata (JSON-LD) of ``run``, its task runs and model version loaded."""
    api = f"{base_url.rstrip('/')}/api/v1/runs/{run.id}"
    version = run.model_version
    names = {t.id: t.name for t in run.task_runs}
    person = {"@id": f"#user-{quote(run.user.name)}", "@type": "Person", "name": run.user.name}
    model: dict[str, Any] = {
        "@id": f"#model-{quote(version.name)}-{quote(version.version)}",
        "@type": "SoftwareApplication",
        "name": version.name,
        "softwareVersion": version.version,
        "identifier": f"sha256:{version.content_hash}",
        "description": f"the model bundle's content hash is sha256:{version.content_hash}",
    }
    entities: list[dict[str, Any]] = [person, model]
    images = sorted({t.image_digest for t in run.task_runs if t.image_digest})
    for digest in images:
        image = {"@id": f"#image-{digest}", "@type": "SoftwareApplication",
                 "identifier": digest, "name": f"OCI image {digest}"}  # fmt: skip
        entities.append(image)
    if images:
        model["softwareRequirements"] = [{"@id": f"#image-{d}"} for d in images]

    inputs = [_input(api, f) for f in run_files(db=db, run=run, kind="input")]
    parameters = [
        {"@id": f"#param-{quote(name)}", "@type": "PropertyValue", "name": name,
         "value": value if isinstance(value, str | int | float | bool) else str(value)}
        for name, value in (run.params or {}).items()
    ]  # fmt: skip
    path = _parameter_file_path(version.manifest)
    if run.parameter_file is not None and path:
        parameters.append({
            "@id": "#parameter-file", "@type": "CreativeWork", "name": path,
            "description": "the parameter file the model read, rendered from the parameters",
            "text": run.parameter_file.decode("utf-8", errors="replace"),
        })  # fmt: skip
    outputs = [_output(names, f) for f in run_files(db=db, run=run, kind="output")]
    tasks = [
        {"@id": f"#task-{quote(t.name)}", "@type": "CreateAction", "name": f"task {t.name}",
         "startTime": _when(t.started_at), "endTime": _when(t.finished_at),
         "actionStatus": _task_status(t.state),
         "description": f"{t.state}, attempt {t.attempt}"
         + (f", on worker {t.worker}" if t.worker else "")
         + (f", exit code {t.exit_code}" if t.exit_code is not None else "")
         + (f", killed by signal {t.signal}" if getattr(t, "signal", None) else ""),
         "instrument": _ref(model), "agent": _ref(person),
         "result": [_ref(o) for o in outputs if o["@id"].startswith(f"{t.name}/")]}
        for t in run.task_runs
        if t.started_at is not None
    ]  # fmt: skip
    action = {
        "@id": f"#run-{run.id}",
        "@type": "CreateAction",
        "name": f"Run {run.id} of {version.name} {version.version}",
        "url": f"{base_url.rstrip('/')}/runs/{run.id}",
        "instrument": _ref(model),
        "agent": _ref(person),
        "object": [_ref(e) for e in inputs + parameters],
        "result": [_ref(o) for o in outputs],
        "startTime": _when(run.started_at or run.created_at),
        "endTime": _when(run.finished_at),
        "actionStatus": STATUS.get(RunState(run.state), ACTIVE),
        "description": f"created {_when(run.created_at)}; {run.state}",
    }
    if run.error_summary:
        action["error"] = run.error_summary
    if tasks:
        action["hasPart"] = [_ref(t) for t in tasks]
    root = {
        "@id": "./",
        "@type": "Dataset",
        "name": f"Outputs of run {run.id} of {version.name} {version.version}",
        "description": f"What run {run.id} made, with what went into it (simyard).",
        "datePublished": _when(run.finished_at or run.created_at),
        "license": "https://spdx.org/licenses/NOASSERTION",
        "conformsTo": {"@id": PROCESS_RUN_PROFILE},
        "hasPart": [_ref(o) for o in outputs + inputs],  # inputs by their web address
        "mentions": [_ref(action)],
        "author": _ref(person),
    }
    metadata = {
        "@id": METADATA_FILE,
        "@type": "CreativeWork",
        "conformsTo": {"@id": SPEC},
        "about": {"@id": "./"},
    }
    profile = {"@id": PROCESS_RUN_PROFILE, "@type": "CreativeWork",
               "name": "Process Run Crate", "version": "0.5"}  # fmt: skip
    graph = [metadata, root, profile, action, *tasks, *entities, *inputs, *parameters, *outputs]
    return {"@context": CONTEXT, "@graph": graph}


def _task_status(state: str) -> str:
    if state == "succeeded":
        return STATUS[RunState.succeeded]
    if state in ("failed", "timed_out", "cancelled", "skipped"):
        return STATUS[RunState.failed]
    return ACTIVE


def _input(api: str, stored: StoredFile) -> dict[str, Any]:
    return {
        "@id": f"{api}/inputs/{quote(stored.slot or '')}",
        "@type": "File",
        "name": stored.filename or stored.path,
        "description": f"input slot {stored.slot}, staged as {stored.path}",
        "contentSize": str(stored.size),
        "sha256": stored.sha256,
    }


def zip_name(names: dict[int, str], stored: StoredFile) -> str:
    """The output's name in the outputs zip: ``task/path``."""
    return f"{names.get(stored.task_run_id or 0, '')}/{stored.path}"


def _output(names: dict[int, str], stored: StoredFile) -> dict[str, Any]:
    return {
        "@id": quote(zip_name(names, stored)),
        "@type": "File",
        "name": stored.path,
        "contentSize": str(stored.size),
        "sha256": stored.sha256,
        "dateCreated": _when(stored.created_at),
    }
