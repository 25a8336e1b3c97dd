"""The engine runs real model processes: limits, kills, logs, outputs and failure kinds."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from simyard.engine import (
    EngineOptions,
    FailureKind,
    TaskOutcome,
    TaskRequest,
    TaskResult,
    run_task,
)
from simyard.engine.sandbox import find_bwrap
from simyard.manifest import load_manifest
from simyard.manifest.params import validate_parameters
from tests.conftest import MakeModel
from tests.unit.engine.conftest import model_python

needs_bwrap = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap is not installed")

HEAD = 'simyard: 1\nname: t\nversion: "1"\n'

Run = Callable[..., TaskResult]


@pytest.fixture
def run(make_model: MakeModel, tmp_path: Path) -> Run:
    """Run task ``task`` of a model built from a manifest body and files."""

    def go(
        body: str,
        files: dict[str, str | bytes] | None = None,
        *,
        params: dict[str, Any] | None = None,
        task: str = "run",
        options: EngineOptions | None = None,
        **kwargs: Any,
    ) -> TaskResult:
        model_dir = make_model(HEAD + body, files)
        manifest = load_manifest(model_dir)
        check = validate_parameters(manifest, params or {})
        assert check.ok, check.problems
        request = TaskRequest(
            manifest=manifest,
            model_dir=model_dir,
            task=task,
            params=check.values,
            workdir=tmp_path / "work" / model_dir.name / task,
            log_path=tmp_path / "logs" / model_dir.name / f"{task}.log",
        )
        return run_task(request, options or EngineOptions(kill_grace=0.5), **kwargs)

    return go


def python_task(script: str, extra: str = "") -> tuple[str, dict[str, str | bytes]]:
    body = f"tasks:\n  run:\n    command: [python3, model.py]\n{extra}"
    return body, {"model.py": script}


def assert_all_dead(pids: list[int]) -> None:
    deadline = time.monotonic() + 5
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and _not_zombie(p)]
        time.sleep(0.05)
    assert alive == [], f"processes still alive: {alive}"


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


FORKER = """
import os, subprocess, sys, time
pids = [os.getpid()]
for _ in range(2):
    pids.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"]).pid)
# a daemon that leaves the process group and session, as some legacy launchers do
pids.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                             start_new_session=True).pid)
# the engine sees pids as the host numbers them only outside a pid namespace
open("pids.json", "w").write(__import__("json").dumps(pids))
print("children started", flush=True)
time.sleep(300)
"""


def host_pids_of_children(result: TaskResult) -> list[int]:
    """Sleepers started by FORKER, found in the host's process table by their workdir."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if proc.info["cwd"] == str(result.workdir):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def test_success_collects_outputs_with_size_and_sha256(run: Run) -> None:
    script = "import os\nos.makedirs('out/sub')\nopen('out/sub/a.txt','w').write('hello')\n"
    result = run(*python_task(script, "    outputs: [out/]\n"))
    assert result.outcome is TaskOutcome.succeeded, result.failure
    (output,) = result.outputs
    assert output.path == "out/sub/a.txt"
    assert output.size == 5
    assert output.sha256 == hashlib.sha256(b"hello").hexdigest()


BUSY_CHILD = """
import subprocess, sys, time
spin = "import time\\nend = time.process_time() + 0.6\\nwhile time.process_time() < end: pass"
subprocess.run([sys.executable, "-c", spin])  # in a child: the whole tree's CPU is measured
time.sleep(0.3)
"""


@needs_bwrap
def test_the_cpu_seconds_the_processes_used_are_measured(run: Run) -> None:
    """Usage counts what a task's processes used (user + system), not its wall time."""
    busy = run(*python_task(BUSY_CHILD))
    assert busy.outcome is TaskOutcome.succeeded, busy.failure
    assert busy.cpu_seconds is not None
    assert 0.55 <= busy.cpu_seconds < 2.0
    idle = run(*python_task("import time\ntime.sleep(1.0)\n"))
    assert idle.cpu_seconds is not None
    assert idle.cpu_seconds < 0.5  # a second asleep: only Python's start-up


def test_placeholders_with_shell_metacharacters_reach_the_model_literally(run: Run) -> None:
    hostile = "x; rm -rf / && echo $(whoami) `id` | cat > /tmp/p * ' \""
    body = (
        "parameters:\n  label: {type: string}\n"
        "tasks:\n  run:\n    command: [python3, model.py, '{label}', '--tag={label}!']\n"
        "    outputs: [argv.json]\n"
    )
    script = "import json, sys\njson.dump(sys.argv[1:], open('argv.json', 'w'))\n"
    result = run(body, {"model.py": script}, params={"label": hostile})
    assert result.succeeded, result.failure
    argv = json.loads(Path(result.outputs[0].source).read_text())
    assert argv == [hostile, f"--tag={hostile}!"]


def test_timeout_kills_the_whole_process_tree(run: Run) -> None:
    body, files = python_task(FORKER, "    timeout: 1.5s\n")
    result = run(body, files)
    assert result.outcome is TaskOutcome.timed_out
    assert result.failure is not None
    assert result.failure.kind is FailureKind.timeout
    assert "time limit of 1.5 s" in result.failure.summary("run")
    assert host_pids_of_children(result) == []


def test_cancel_kills_the_whole_process_tree(run: Run, tmp_path: Path) -> None:
    body, files = python_task(FORKER)
    cancel = threading.Event()
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        if "children started" in line:
            cancel.set()

    result = run(body, files, cancel=cancel, on_line=on_line)
    assert result.outcome is TaskOutcome.cancelled
    assert seen == ["children started"]
    assert host_pids_of_children(result) == []


def test_unsandboxed_timeout_kills_a_daemon_that_left_the_session(
    make_model: MakeModel, open_work_root: Path
) -> None:
    # A root engine runs the model as its own uid: it needs a Python and a working
    # directory every user may reach (see conftest.py).
    body = f"tasks:\n  run:\n    command: [{model_python('none')}, model.py]\n    timeout: 1.5s\n"
    model_dir = make_model(HEAD + body, {"model.py": FORKER})
    request = TaskRequest(
        manifest=load_manifest(model_dir),
        model_dir=model_dir,
        task="run",
        params={},
        workdir=open_work_root / "run",
        log_path=open_work_root / "run.log",
    )
    result = run_task(request, EngineOptions(sandbox="none", kill_grace=0.5))
    assert result.outcome is TaskOutcome.timed_out
    pids = json.loads((result.workdir / "pids.json").read_text())
    assert len(pids) == 4
    assert_all_dead(pids)


def test_flooded_output_is_capped_keeping_the_tail(run: Run) -> None:
    script = (
        "import sys\nline = 'x' * 99 + '\\n'\n"
        "for i in range(200_000):\n    sys.stdout.write(line)\n"
        "print('THE LAST LINE')\n"
    )
    cap = 256 * 1024
    result = run(*python_task(script), options=EngineOptions(max_log_bytes=cap, kill_grace=0.5))
    assert result.succeeded
    text = result.log_path.read_text()
    assert result.log_bytes > 20_000_000
    assert len(text) < cap + 200
    assert "bytes of output cut here" in text
    assert text.rstrip().endswith("THE LAST LINE")


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroups-where-available", "watchdog"])
def test_memory_eater_is_stopped_as_out_of_memory(run: Run, cgroups: bool) -> None:
    script = (
        "import time\nblocks = []\nwhile True:\n"
        "    blocks.append(bytearray(20 * 2**20))\n    time.sleep(0.02)\n"
    )
    options = EngineOptions(kill_grace=0.5, cgroups=cgroups)
    body, files = python_task(script, "    resources: {memory: 100MiB}\n    timeout: 60s\n")
    result = run(body, files, options=options)
    assert result.outcome is TaskOutcome.failed
    assert result.failure is not None
    assert result.failure.kind is FailureKind.out_of_memory, result.failure


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroups-where-available", "watchdog"])
def test_fork_bomb_is_stopped_as_resource_limit(run: Run, cgroups: bool) -> None:
    script = (
        "import os, time\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "    except OSError:\n"
        "        time.sleep(0.01)\n"
    )
    options = EngineOptions(kill_grace=0.5, cgroups=cgroups)
    body, files = python_task(script, "    resources: {processes: 20}\n    timeout: 60s\n")
    result = run(body, files, options=options)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.resource_limit, result.failure
    assert "limit of" in result.failure.reason
    assert host_pids_of_children(result) == []


def test_file_size_limit_is_a_resource_limit(run: Run) -> None:
    script = "f = open('big.bin', 'wb')\nwhile True:\n    f.write(b'0' * 2**20)\n"
    result = run(*python_task(script, "    resources: {file_size: 5MiB}\n    timeout: 60s\n"))
    assert result.failure is not None
    assert result.failure.kind is FailureKind.resource_limit
    assert "file larger than 5.0 MiB" in result.failure.reason


def test_disk_limit_is_a_resource_limit(run: Run) -> None:
    script = (
        "import time\ni = 0\nwhile True:\n"
        "    open(f'f{i}.bin', 'wb').write(b'0' * 2**20)\n    i += 1\n    time.sleep(0.01)\n"
    )
    result = run(*python_task(script, "    resources: {disk: 20MiB}\n    timeout: 60s\n"))
    assert result.failure is not None
    assert result.failure.kind is FailureKind.resource_limit
    assert "disk limit" in result.failure.reason


def test_non_zero_exit_is_a_model_error_with_the_log_tail(run: Run) -> None:
    script = "import sys\nprint('reading forcing')\nsys.exit(3)\n"
    result = run(*python_task(script))
    assert result.outcome is TaskOutcome.failed
    assert result.exit_code == 3
    assert result.failure is not None
    summary = result.failure.summary("run")
    assert "exited with code 3" in summary
    assert "reading forcing" in summary


def test_error_pattern_fails_the_task_even_with_exit_zero(run: Run) -> None:
    script = "print('ok so far')\nprint('ERROR: lake froze on day 12')\nprint('a')\nprint('b')\n"
    result = run(*python_task(script, "    error_patterns: ['^ERROR']\n"))
    assert result.outcome is TaskOutcome.failed
    assert result.failure is not None
    assert result.failure.kind is FailureKind.model_error
    assert result.failure.error_lines == ["ERROR: lake froze on day 12\na\nb"]


def test_missing_success_requires_is_a_model_error(run: Run) -> None:
    result = run(*python_task("print('done')\n", "    success_requires: [results/summary.json]\n"))
    assert result.failure is not None
    assert result.failure.kind is FailureKind.model_error
    assert "results/summary.json" in result.failure.reason


def test_progress_lines_become_percent_done(run: Run) -> None:
    script = (
        "import time\nfor d in range(1, 5):\n    print(f'day {d} of 4')\n    time.sleep(0.05)\n"
    )
    seen: list[float] = []
    body, files = python_task(script, "    progress: 'day ([0-9]+) of ([0-9]+)'\n")
    result = run(body, files, on_progress=seen.append)
    assert result.succeeded
    assert seen == [25.0, 50.0, 75.0, 100.0]


def test_host_environment_does_not_leak(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    body = (
        "parameters:\n  mode: {type: string, default: fast}\n"
        "tasks:\n  run:\n    command: [python3, model.py]\n    env: {MODE: 'x-{mode}'}\n"
        "    outputs: [env.json]\n"
    )
    script = "import json, os\njson.dump(dict(os.environ), open('env.json', 'w'))\n"
    result = run(body, {"model.py": script})
    env = json.loads(result.outputs[0].source.read_text())
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "s3cr3t" not in json.dumps(env)
    assert env["MODE"] == "x-fast"


def test_model_editing_its_own_file_does_not_touch_the_model_folder(
    run: Run, tmp_path: Path
) -> None:
    script = "open('table.dat', 'a').write('appended by the model\\n')\n"
    body, files = python_task(script)
    result = run(body, {**files, "table.dat": "original\n"})
    assert result.succeeded
    assert (result.workdir / "table.dat").read_text() == "original\nappended by the model\n"
    assert (tmp_path / "model0" / "table.dat").read_text() == "original\n"


def test_on_failure_runs_in_the_failed_tasks_directory(run: Run) -> None:
    body = (
        "tasks:\n  run:\n    command: [python3, model.py]\n"
        "on_failure:\n  command: [python3, diag.py]\n  outputs: [diagnostics/]\n"
    )
    files = {
        "model.py": "open('state.txt', 'w').write('day 7')\nraise SystemExit(1)\n",
        "diag.py": "import os, shutil\nos.makedirs('diagnostics')\n"
        "shutil.copy('state.txt', 'diagnostics/last_state.txt')\n",
    }
    result = run(body, files)
    assert result.outcome is TaskOutcome.failed
    assert [d.path for d in result.diagnostics] == ["diagnostics/last_state.txt"]
    assert result.diagnostics[0].source.read_text() == "day 7"


def test_missing_program_is_reported_as_a_model_error(run: Run) -> None:
    result = run("tasks:\n  run:\n    command: [no-such-program-xyz]\n")
    assert result.failure is not None
    assert result.failure.kind is FailureKind.model_error
    assert "no-such-program-xyz" in result.failure.reason


@pytest.fixture
def listener() -> Any:
    """A TCP server on loopback that records whether anyone connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    connections: list[Any] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                connections.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], connections
    stop.set()
    thread.join()
    server.close()
    for conn in connections:
        conn.close()


NET_SCRIPT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
    print("connected")
except OSError as exc:
    print("no network:", exc)
    sys.exit(4)
"""


@needs_bwrap
@pytest.mark.sandbox
def test_model_without_network_cannot_connect(run: Run, listener: Any) -> None:
    port, connections = listener
    body = f"tasks:\n  run:\n    command: [python3, net.py, '{port}']\n"
    result = run(body, {"net.py": NET_SCRIPT})
    assert result.exit_code == 4
    assert "no network" in result.log_path.read_text()
    assert connections == []


@needs_bwrap
@pytest.mark.sandbox
def test_model_with_network_true_can_connect(run: Run, listener: Any) -> None:
    port, _ = listener
    body = (
        f"tasks:\n  run:\n    command: [python3, net.py, '{port}']\n"
        "environment: {network: true}\n"
    )
    result = run(body, {"net.py": NET_SCRIPT})
    assert result.succeeded, result.log_path.read_text()
    assert "connected" in result.log_path.read_text()


@needs_bwrap
@pytest.mark.sandbox
def test_sandboxed_model_cannot_read_secrets_or_write_outside(run: Run) -> None:
    script = (
        "import os\nres = []\n"
        "for path in ['/etc/shadow', '/root/.bash_history']:\n"
        "    try:\n        res.append(open(path).read()[:5])\n"
        "    except OSError as exc:\n        res.append(type(exc).__name__)\n"
        "try:\n    open('/usr/evil', 'w')\n    res.append('wrote')\n"
        "except OSError as exc:\n    res.append(type(exc).__name__)\n"
        "print(res)\n"
    )
    result = run(*python_task(script))
    log = result.log_path.read_text()
    assert result.succeeded, log
    assert "root:" not in log
    assert "wrote" not in log
    assert not Path("/usr/evil").exists()
