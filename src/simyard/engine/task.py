"""Run ONE task run: prepare its working directory, run its command, collect what it made.

:func:`run_task` is the engine's single entry point; the local executor calls it in a
child process, the Dask executor on a worker, ``simyard models test`` in a thread.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simyard.engine.hostuser import DEFAULT_FIRST_UID, DEFAULT_UID_COUNT, ModelUsers
from simyard.engine.limits import Limits
from simyard.engine.logcapture import LogCapture
from simyard.engine.outputs import collect_outputs, missing_files
from simyard.engine.process import CommandOutcome, CommandSpec, StopReason, run_command, signal_name
from simyard.engine.result import Failure, FailureKind, OutputFile, TaskOutcome, TaskResult
from simyard.engine.sandbox import find_bwrap, image_program
from simyard.engine.workdir import StagedFiles, inside, place_file, place_tree
from simyard.errors import EngineError, Refusal, TaskRefused
from simyard.images.cache import UnpackedImage
from simyard.manifest.archives import safe_unpack
from simyard.manifest.inputs import unpacked_limit
from simyard.manifest.paramfile import render_parameter_file
from simyard.manifest.placeholders import fill
from simyard.manifest.schema import Manifest, OnFailureSpec, TaskSpec
from simyard.manifest.units import format_size

ON_FAILURE = "on_failure"
_OOM_WORDS = re.compile(r"MemoryError|std::bad_alloc|Cannot allocate memory|[Oo]ut of memory")
_EFBIG_WORDS = re.compile(r"File too large|File size limit exceeded")
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What an image's Env may replace of simyard's own environment (the manifest's env wins).
_IMAGE_MAY_SET = frozenset(
    {"PATH", "HOME", "LANG", "TMPDIR", "PYTHONUNBUFFERED", "OMP_NUM_THREADS"}
)
_DISK_WORDS = "It wrote more than its disk limit of"


@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs every task (built from Settings at the edge)."""

    sandbox: str = "auto"  # auto: bubblewrap when installed | bwrap: required | none
    max_log_bytes: int = 16 * 2**20
    kill_grace: float = 5.0
    max_processes: int | None = 1024
    max_disk: int | None = None
    max_file_size: int | None = None
    max_unpacked_bytes: int = 4 * 2**30
    max_unpacked_files: int = 10_000
    cgroups: bool = True  # use control groups where the platform allows; else a watchdog
    # Host folders no sandboxed model may see: the data folder, storage, database, caches.
    hidden_dirs: tuple[Path, ...] = ()
    # When the engine runs as root, each attempt runs as a uid of its own from this range.
    model_uid_first: int = DEFAULT_FIRST_UID
    model_uid_count: int = DEFAULT_UID_COUNT
    image_cache_bytes: int = 20 * 2**30  # unpacked images a worker keeps (least recently used go)

    def model_users(self) -> ModelUsers:
        """The uids a task attempt may lease when the engine runs as root (hostuser.py)."""
        return ModelUsers(self.model_uid_first, self.model_uid_count)

    def bwrap(self, network: bool) -> str | None:
        """The bubblewrap to use, or None to run unsandboxed."""
        if self.sandbox == "none":
            return None
        found = find_bwrap()
        if found is None and self.sandbox == "bwrap":
            raise EngineError("sandbox 'bwrap' is required but bubblewrap is not installed")
        return found


@dataclass
class TaskRequest:
    """One task run to execute. Picklable: it travels to child processes and Dask workers."""

    manifest: Manifest
    model_dir: Path
    task: str
    params: dict[str, Any]
    workdir: Path
    log_path: Path
    inputs: dict[str, Path] = field(default_factory=dict)  # slot -> uploaded file
    upstream: dict[str, Path] = field(default_factory=dict)  # path in workdir -> file
    run_id: str = ""
    parameter_file: bytes | None = None  # as rendered at submission; None: render it now
    image: UnpackedImage | None = None  # the task's root filesystem (simyard.images.cache)


LineCallback = Callable[[str], None]
ProgressCallback = Callable[[float], None]


def substitute(template: str, params: Mapping[str, Any]) -> str:
    """Replace ``{name}`` with the parameter's value; ``{{``/``}}`` are literal braces."""
    return fill(template, params)


def prepare_workdir(request: TaskRequest, options: EngineOptions) -> StagedFiles:
    """Fill the working directory: model files, parameter file, inputs, upstream outputs."""
    manifest, workdir = request.manifest, request.workdir
    staged = StagedFiles()
    may_link = options.bwrap(manifest.environment.network) is not None
    try:
        workdir.mkdir(parents=True, exist_ok=False)
        place_tree(request.model_dir, workdir, staged, may_link=may_link)
        if manifest.parameter_file is not None:
            target = inside(workdir, manifest.parameter_file.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            rendered = request.parameter_file
            if rendered is None:
                rendered = render_parameter_file(
                    manifest, request.params, request.model_dir, inputs=request.inputs
                )
            target.write_bytes(rendered)
        for file_spec in manifest.parameter_files:  # several files (OpenFOAM's dictionaries)
            target = inside(workdir, file_spec.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            target.write_bytes(
                render_parameter_file(
                    manifest, request.params, request.model_dir, file_spec, inputs=request.inputs
                )
            )
        for slot, source in request.inputs.items():
            spec = manifest.inputs[slot]
            place_file(source, inside(workdir, spec.path), staged, may_link=False)
            if spec.unpack is not None:
                safe_unpack(
                    source,
                    inside(workdir, spec.unpack),
                    max_bytes=unpacked_limit(spec, max_unpacked_size=options.max_unpacked_bytes),
                    max_files=options.max_unpacked_files,
                )
        for rel, source in request.upstream.items():
            place_file(source, inside(workdir, rel), staged, may_link=may_link)
    except (EngineError, Refusal):  # a refused archive stays a refusal: it is not retried
        raise
    except Exception as exc:
        reason = relative_paths(str(exc), workdir)
        raise EngineError(f"cannot prepare the working directory: {reason}") from exc
    return staged


def task_env(
    spec: TaskSpec | OnFailureSpec, request: TaskRequest, *, sandboxed: bool, tmpdir: Path
) -> dict[str, str]:
    """The clean environment of the model: nothing of the host's but a minimal PATH."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:{BASE_PATH}",
        "HOME": str(request.workdir),
        "TMPDIR": "/tmp" if sandboxed else str(tmpdir),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        # gfortran's runtime buffers stdout on a pipe: a crash would lose the log's end,
        # and stdout would come after stderr. C stdio needs `tty: true` for the same.
        "GFORTRAN_UNBUFFERED_PRECONNECTED": "y",
        "SIMYARD_TASK": request.task,
        "SIMYARD_RUN_ID": request.run_id,
    }
    if isinstance(spec, TaskSpec):
        env["OMP_NUM_THREADS"] = str(max(1, math.ceil(spec.resources.cpus)))
    values = {"workdir": str(request.workdir), **request.params}
    for extra in (request.manifest.env, spec.env):  # the manifest's for all, then the task's
        env.update({k: substitute(v, values) for k, v in extra.items()})
    return env


def _task_spec(request: TaskRequest) -> TaskSpec | OnFailureSpec:
    if request.task == ON_FAILURE:
        if request.manifest.on_failure is None:
            raise EngineError("the manifest has no on_failure step")
        return request.manifest.on_failure
    return request.manifest.tasks[request.task]


def run_task(
    request: TaskRequest,
    options: EngineOptions,
    *,
    cancel: threading.Event | None = None,
    on_line: LineCallback | None = None,
    on_progress: ProgressCallback | None = None,
    on_start: Callable[[int], None] | None = None,
) -> TaskResult:
    """Run one task run to its end and report what happened.

    Raises EngineError only for infrastructure failures (the working directory cannot be
    prepared, the program cannot be started by the platform); everything the model does
    ends in a TaskResult.
    """
    spec = _task_spec(request)
    started_at = dt.datetime.now(dt.UTC)
    staged = prepare_workdir(request, options)
    result = _execute(
        request,
        spec,
        staged,
        options,
        cancel=cancel,
        on_line=on_line,
        on_progress=on_progress,
        on_start=on_start,
        started_at=started_at,
    )
    if (
        result.outcome in (TaskOutcome.failed, TaskOutcome.timed_out)
        and request.manifest.on_failure is not None
        and request.task != ON_FAILURE
    ):
        result.diagnostics = run_on_failure(request, options, cancel=cancel)
    return result


def run_on_failure(
    request: TaskRequest, options: EngineOptions, *, cancel: threading.Event | None = None
) -> list[OutputFile]:
    """Run the manifest's ``on_failure`` step in the failed task's directory; its outputs."""
    assert request.manifest.on_failure is not None
    diag = TaskRequest(
        manifest=request.manifest,
        model_dir=request.model_dir,
        task=ON_FAILURE,
        params=request.params,
        workdir=request.workdir,
        log_path=request.log_path.with_name(request.log_path.stem + ".on_failure.log"),
        run_id=request.run_id,
        image=request.image,  # it runs where the failed task ran
    )
    result = _execute(
        diag,
        request.manifest.on_failure,
        StagedFiles(),
        options,
        cancel=cancel,
        started_at=dt.datetime.now(dt.UTC),
    )
    return result.outputs


def _execute(
    request: TaskRequest,
    spec: TaskSpec | OnFailureSpec,
    staged: StagedFiles,
    options: EngineOptions,
    *,
    started_at: dt.datetime,
    cancel: threading.Event | None = None,
    on_line: LineCallback | None = None,
    on_progress: ProgressCallback | None = None,
    on_start: Callable[[int], None] | None = None,
) -> TaskResult:
    manifest, workdir = request.manifest, request.workdir
    bwrap = options.bwrap(manifest.environment.network)
    resources = spec.resources if isinstance(spec, TaskSpec) else None
    limits = Limits(
        memory=resources.memory if resources else None,
        processes=(resources.processes if resources else None) or options.max_processes,
        disk=(resources.disk if resources else None) or options.max_disk,
        file_size=(resources.file_size if resources else None) or options.max_file_size,
    )
    enforced = enforced_limits(limits, sandboxed=bwrap is not None)
    tmpdir = workdir.with_name(workdir.name + ".tmp")
    tmpdir.mkdir(exist_ok=True)
    argv = [substitute(arg, request.params) for arg in spec.command]
    env = task_env(spec, request, sandboxed=bwrap is not None, tmpdir=tmpdir)
    if request.image is not None:
        env = image_env(env, request.image)
    request.log_path.parent.mkdir(parents=True, exist_ok=True)
    capture = LogCapture(
        request.log_path,
        max_bytes=options.max_log_bytes,
        error_patterns=spec.error_patterns if isinstance(spec, TaskSpec) else [],
        progress=spec.progress_pattern if isinstance(spec, TaskSpec) else None,
        warning_patterns=spec.warning_patterns if isinstance(spec, TaskSpec) else None,
        progress_total=_progress_total(spec, request) if isinstance(spec, TaskSpec) else None,
        on_line=on_line,
        on_progress=on_progress,
    )
    command = CommandSpec(
        argv=argv,
        workdir=workdir,
        env=env,
        limits=enforced,
        timeout=spec.timeout,
        kill_grace=options.kill_grace,
        bwrap=bwrap,
        network=manifest.environment.network,
        read_only_files=frozenset(staged.read_only),
        hidden_dirs=options.hidden_dirs,
        model_users=options.model_users(),
        model_folders=(tmpdir,),
        stdin=_stdin_path(spec, request) if isinstance(spec, TaskSpec) else None,
        tty=isinstance(spec, TaskSpec) and spec.tty,
        image_root=request.image.rootfs if request.image is not None else None,
        # A control group costs ~15 ms per start: make one when the manifest sets a limit the
        # kernel should enforce; the watchdog covers the installation's defaults.
        use_cgroups=options.cgroups
        and resources is not None
        and (resources.memory is not None or resources.processes is not None),
    )
    try:
        if request.image is not None:
            if bwrap is None:
                raise EngineError("a task in an image needs bubblewrap, which is not installed")
            argv[0] = resolve_in_image(argv[0], request.image, workdir, env.get("PATH", ""))
        else:
            argv[0] = resolve_program(argv[0], workdir, env["PATH"])
        outcome = run_command(command, capture, cancel=cancel, on_start=on_start)
    except EngineError as exc:
        reason = relative_paths(str(exc), workdir)
        capture.feed(f"simyard: {reason}\n".encode())
        capture.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
        return TaskResult(
            task=request.task,
            outcome=TaskOutcome.failed,
            workdir=workdir,
            log_path=request.log_path,
            started_at=started_at,
            finished_at=dt.datetime.now(dt.UTC),
            failure=Failure(FailureKind.model_error, reason),
        )
    capture.close()
    shutil.rmtree(tmpdir, ignore_errors=True)
    failure = classify(outcome, capture, limits, spec, workdir, params=request.params)
    if failure is None:
        state = TaskOutcome.succeeded
    elif failure.kind is FailureKind.cancelled:
        state = TaskOutcome.cancelled
    elif failure.kind is FailureKind.timeout:
        state = TaskOutcome.timed_out
    else:
        state = TaskOutcome.failed
    # A run stopped for its disk limit made files past that limit: none of them is stored.
    over_disk = failure is not None and failure.reason.startswith(_DISK_WORDS)
    keep = (failure is None or spec.outputs) and not over_disk
    declared = [substitute(out, request.params) for out in spec.outputs]
    outputs = collect_outputs(workdir, declared) if keep else []
    return TaskResult(
        task=request.task,
        outcome=state,
        workdir=workdir,
        log_path=request.log_path,
        started_at=started_at,
        finished_at=dt.datetime.now(dt.UTC),
        exit_code=outcome.returncode if outcome.signal is None else None,
        signal=outcome.signal,
        warnings=[relative_paths(w, workdir) for w in capture.warning_lines],
        failure=failure,
        outputs=outputs,
        log_bytes=capture.total_bytes,
        log_cut_bytes=capture.cut_bytes,
        progress=100.0 if failure is None and capture.progress is not None else capture.progress,
        peak_memory=outcome.peak_memory,
        cpu_seconds=outcome.cpu_seconds,
        copied_bytes=staged.copied_bytes,
        shared_bytes=staged.shared_bytes,
    )


def _progress_total(spec: TaskSpec, request: TaskRequest) -> float | None:
    """The number ``progress.total`` stands for in this run (``"{end_time}"`` filled)."""
    if spec.progress_total is None:
        return None
    text = substitute(spec.progress_total, request.params)
    try:
        total = float(text)
    except ValueError:
        raise TaskRefused(f"progress.total: {text!r} is not a number") from None
    return total if total > 0 else None


def _stdin_path(spec: TaskSpec, request: TaskRequest) -> Path | None:
    """The task's ``stdin`` file in its working directory (placeholders filled), or None."""
    if spec.stdin is None:
        return None
    try:
        return inside(request.workdir, substitute(spec.stdin, request.params))
    except ValueError as exc:
        raise TaskRefused(f"stdin: {exc}") from exc


def enforced_limits(limits: Limits, *, sandboxed: bool) -> Limits:
    """The limits the kernel and the watchdog apply for the manifest's ``limits``.

    No single file may outgrow the disk limit (RLIMIT_FSIZE stops its writes at once,
    where the once-a-second look at the folder would let it grow for a second). The
    sandbox's own processes (bubblewrap's two, setpriv and the exit-status reporter of
    exitstatus.py) do not count against the run.
    """
    file_size = limits.file_size
    if limits.disk is not None and (file_size is None or limits.disk < file_size):
        file_size = limits.disk
    processes = limits.processes
    if sandboxed and processes is not None:
        processes += 4
    return Limits(limits.memory, processes, limits.disk, file_size)


def relative_paths(text: str, workdir: Path) -> str:
    """``text`` with the working directory's absolute paths shown relative to it: a
    modeller knows the files of the run, not where this server keeps them."""
    for root in dict.fromkeys((str(workdir.resolve()), str(workdir))):
        text = text.replace(root + "/", "").replace(root, ".")
    return text


def image_env(env: dict[str, str], image: UnpackedImage) -> dict[str, str]:
    """``env`` in an image: the image's ``Env`` replaces simyard's defaults (its PATH, ...)
    and adds its own variables; what the manifest set stays, and so do ``SIMYARD_*``."""
    merged = {**env, "PATH": IMAGE_PATH, "TMPDIR": "/tmp"}
    for key, value in image.env.items():
        if key in _IMAGE_MAY_SET or key not in env:
            merged[key] = value
    return merged


def resolve_in_image(program: str, image: UnpackedImage, workdir: Path, path: str) -> str:
    """The path (as the task sees it) of the program to run in ``image``; EngineError if none.

    A name is looked up on the image's PATH; a relative path in the working directory,
    then in the image's ``WorkingDir``; an absolute one in the image.
    """
    if "/" not in program:
        for folder in path.split(":"):
            found = image_program(image.rootfs, f"{folder}/{program}") if folder else None
            if found is not None and os.access(found, os.X_OK):
                return f"{folder.rstrip('/')}/{program}"
        raise EngineError(f"cannot start {program!r}: not found on the image's PATH ({path})")
    if not os.path.isabs(program):
        local = inside(workdir, program)
        if local.is_file():
            if not os.access(local, os.X_OK):
                reason = "the file is not executable (chmod +x)"
                raise EngineError(f"cannot start {program!r}: {reason}")
            return str(local)
        if not image.working_dir:
            raise EngineError(f"cannot start {program!r}: no such file in the working directory")
        program = f"{image.working_dir.rstrip('/')}/{program}"
    if image_program(image.rootfs, program) is None:
        raise EngineError(f"cannot start {program!r}: no such file in the image")
    return program


def programs_not_found(manifest: Manifest) -> list[tuple[str, str]]:
    """(field, program) of each task program named without a path that this machine's
    task PATH does not hold (a task in an image brings its own programs)."""
    found = []
    for name, task in manifest.tasks.items():
        program = task.command[0]
        if "/" in program or "{" in program or manifest.image_of(name) is not None:
            continue
        path = {**manifest.env, **task.env}.get(
            "PATH", f"{Path(sys.executable).parent}:{BASE_PATH}"
        )
        if shutil.which(program, path=path) is None:
            found.append((f"tasks.{name}.command[0]", program))
    return found


def resolve_program(program: str, workdir: Path, path: str) -> str:
    """The absolute path of the program to run; EngineError when there is none."""
    if "/" in program:
        candidate = Path(program) if os.path.isabs(program) else inside(workdir, program)
        if not candidate.is_file():
            raise EngineError(f"cannot start {program!r}: no such file in the working directory")
        if not os.access(candidate, os.X_OK):
            raise EngineError(f"cannot start {program!r}: the file is not executable (chmod +x)")
        return str(candidate)
    found = shutil.which(program, path=path)
    if found is None:
        raise EngineError(f"cannot start {program!r}: not found on the PATH ({path})")
    return found


def classify(
    outcome: CommandOutcome,
    capture: LogCapture,
    limits: Limits,
    spec: TaskSpec | OnFailureSpec,
    workdir: Path,
    *,
    params: Mapping[str, Any] | None = None,
) -> Failure | None:
    """Decide whether the task failed, and why, from how its process ended and what it said."""
    quotes = [relative_paths(q.text(), workdir) for q in capture.error_quotes]
    tail = relative_paths(capture.tail_text(), workdir)

    def failed(kind: FailureKind, reason: str) -> Failure:
        return Failure(kind, reason, quotes, tail)

    disk_reason = (FailureKind.resource_limit, f"{_DISK_WORDS} {format_size(limits.disk or 0)}.")

    stop_reasons = {
        StopReason.cancelled: (FailureKind.cancelled, "It was stopped on request."),
        StopReason.timeout: (
            FailureKind.timeout,
            f"It was stopped after its time limit of {_seconds(spec.timeout)}.",
        ),
        StopReason.memory: (
            FailureKind.out_of_memory,
            f"It used more than its memory limit of {format_size(limits.memory or 0)}.",
        ),
        StopReason.processes: (
            FailureKind.resource_limit,
            f"It started more than its limit of {limits.processes} processes.",
        ),
        StopReason.disk: disk_reason,
    }
    if outcome.stopped is not None:
        return failed(*stop_reasons[outcome.stopped])
    if outcome.oom_killed:
        return failed(*stop_reasons[StopReason.memory])
    if outcome.process_limit_hit and outcome.returncode != 0:
        return failed(*stop_reasons[StopReason.processes])
    # Python and many runtimes ignore SIGXFSZ and see the write fail with EFBIG instead.
    file_limit = enforced_limits(limits, sandboxed=False).file_size
    if outcome.signal == signal.SIGXFSZ or (
        outcome.returncode != 0 and file_limit is not None and _EFBIG_WORDS.search(tail)
    ):
        if file_limit != limits.file_size:  # the disk limit, applied to each file
            return failed(*disk_reason)
        size = format_size(file_limit or 0)
        return failed(FailureKind.resource_limit, f"It wrote a file larger than {size}.")
    if outcome.returncode != 0 and _OOM_WORDS.search(tail) and limits.memory is not None:
        return failed(*stop_reasons[StopReason.memory])
    if outcome.signal is not None:
        return failed(FailureKind.model_error, f"It was killed by {signal_name(outcome.signal)}.")
    if outcome.returncode != 0:
        return failed(FailureKind.model_error, f"It exited with code {outcome.returncode}.")
    if capture.error_matches:
        return failed(FailureKind.model_error, "It printed an error line (see below).")
    if isinstance(spec, TaskSpec):
        required = [substitute(rel, params or {}) for rel in spec.success_requires]
        missing = missing_files(workdir, required)
        if missing:
            return failed(
                FailureKind.model_error,
                "It ended without writing " + ", ".join(repr(m) for m in missing) + ".",
            )
    return None


def _seconds(value: float | None) -> str:
    if value is None:
        return "none"
    if value >= 3600:
        return f"{value / 3600:g} h"
    if value >= 60:
        return f"{value / 60:g} min"
    return f"{value:g} s"
