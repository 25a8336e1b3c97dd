"""A model that ignores SIGTERM and double-forks a ``setsid`` daemon: timeout and cancel kill it.

The daemon's parent exits at once, so the daemon is nobody's child in the run's tree and
has left its session and process group; it ignores SIGTERM and changes to ``/``, as real
daemons do. Run with and without the sandbox.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from simyard.engine import EngineOptions, TaskOutcome, TaskRequest, run_task
from simyard.engine.sandbox import find_bwrap
from simyard.manifest import load_manifest
from tests.conftest import MakeModel
from tests.unit.engine.conftest import model_python

GRACE = 1.0
TIMEOUT = 2.0
SLACK = 1.5  # seconds for starting Python, looking at the process table, reaping

DOUBLE_FORK = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
marker = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.chdir("/")
        daemon = "import signal, time; signal.signal(15, signal.SIG_IGN); time.sleep(300)"
        os.execv(sys.executable, [sys.executable, "-c", daemon, marker])
    os._exit(0)
os.wait()
print("daemon started", flush=True)
while True:
    time.sleep(1)
"""

SANDBOXES = [
    "none",
    pytest.param(
        "bwrap",
        marks=pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap is not installed"),
    ),
]


def daemons(marker: str) -> list[psutil.Process]:
    """Living processes whose command line holds ``marker`` (the model's daemon)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if marker in (proc.info["cmdline"] or []) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def request_for(make_model: MakeModel, root: Path, sandbox: str, timeout: str) -> TaskRequest:
    body = (
        f"tasks:\n  run:\n    command: [{model_python(sandbox)}, model.py, '{{marker}}']\n"
        f"    timeout: {timeout}\n"
        "parameters:\n  marker: {type: string}\n"
    )
    model_dir = make_model('simyard: 1\nname: t\nversion: "1"\n' + body, {"model.py": DOUBLE_FORK})
    return TaskRequest(
        manifest=load_manifest(model_dir),
        model_dir=model_dir,
        task="run",
        params={"marker": "simyard-daemon-" + uuid.uuid4().hex},
        workdir=root / "run",
        log_path=root / "run.log",
    )


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_timeout_kills_a_double_forked_daemon_within_the_grace(
    make_model: MakeModel, open_work_root: Path, sandbox: str
) -> None:
    request = request_for(make_model, open_work_root, sandbox, f"{TIMEOUT}s")
    started = time.monotonic()
    result = run_task(request, EngineOptions(sandbox=sandbox, kill_grace=GRACE))
    took = time.monotonic() - started
    assert result.outcome is TaskOutcome.timed_out, result.failure
    assert daemons(request.params["marker"]) == []
    assert took < TIMEOUT + GRACE + SLACK, f"the timeout of {TIMEOUT} s took {took:.1f} s"


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_cancel_kills_a_double_forked_daemon_within_the_grace(
    make_model: MakeModel, open_work_root: Path, sandbox: str
) -> None:
    request = request_for(make_model, open_work_root, sandbox, "60s")
    cancel = threading.Event()
    cancelled_at: list[float] = []

    def on_line(line: str) -> None:
        if "daemon started" in line:
            assert daemons(request.params["marker"]), "the daemon should be running"
            cancelled_at.append(time.monotonic())
            cancel.set()

    result = run_task(
        request, EngineOptions(sandbox=sandbox, kill_grace=GRACE), cancel=cancel, on_line=on_line
    )
    took = time.monotonic() - cancelled_at[0]
    assert result.outcome is TaskOutcome.cancelled, result.failure
    assert daemons(request.params["marker"]) == []
    assert took < GRACE + SLACK, f"the cancel took {took:.1f} s"


def _attempt_process(request: TaskRequest, sandbox: str, answer: Any) -> None:
    """As the local executor's child runs an attempt: a process of its own that adopts
    orphans; here without a uid of its own, as a non-root engine runs."""
    from simyard.engine import hostuser
    from simyard.engine.limits import adopt_orphans

    hostuser.engine_is_root = lambda: False  # type: ignore[assignment]
    adopt_orphans()
    started = time.monotonic()
    result = run_task(request, EngineOptions(sandbox=sandbox, kill_grace=GRACE))
    answer.send((result.outcome, time.monotonic() - started))


def test_an_attempt_process_without_a_uid_of_its_own_kills_the_daemon(
    make_model: MakeModel, open_work_root: Path
) -> None:
    request = request_for(make_model, open_work_root, "none", f"{TIMEOUT}s")
    context = multiprocessing.get_context("fork")
    answer, send = context.Pipe(duplex=False)
    child = context.Process(target=_attempt_process, args=(request, "none", send))
    child.start()
    try:
        assert answer.poll(60), "the attempt did not end"
        outcome, took = answer.recv()
        assert outcome is TaskOutcome.timed_out
        assert daemons(request.params["marker"]) == []
        assert took < TIMEOUT + GRACE + SLACK, f"the timeout of {TIMEOUT} s took {took:.1f} s"
    finally:
        child.join(10)
        for proc in daemons(request.params["marker"]):
            proc.kill()
