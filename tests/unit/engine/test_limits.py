"""A runaway model stays inside its limits and its own uid: the host keeps room to breathe.

Every stress model here is bounded by itself (a fork quota, a memory cap, a deadline),
so a broken engine makes a test fail, never the machine starve.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from simyard.engine import EngineOptions, FailureKind, TaskRequest, TaskResult, run_task
from simyard.engine.hostuser import DEFAULT_FIRST_UID, DEFAULT_UID_COUNT, ModelUsers, UidLease
from simyard.engine.sandbox import find_bwrap
from simyard.manifest import load_manifest
from tests.conftest import MakeModel
from tests.unit.engine.conftest import model_python
from tests.unit.engine.uids import runs_as

HEAD = 'simyard: 1\nname: t\nversion: "1"\n'
PROCESS_LIMIT = 50
SANDBOXES = ["auto", "none"] if find_bwrap() else ["none"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the uid switch is for a root engine")

Run = Callable[..., TaskResult]


@pytest.fixture
def run(make_model: MakeModel, tmp_path: Path, open_work_root: Path) -> Run:
    """Run task ``run`` of a model whose command is ``python model.py ARGS``.

    The working directory lies where every user may reach it, as an unsandboxed model
    run as its own uid needs (pytest's tmp_path is root's alone).
    """

    def go(script: str, *, args: str = "", extra: str = "", **options: Any) -> TaskResult:
        python = model_python(options.get("sandbox", "auto"))
        body = f"tasks:\n  run:\n    command: [{python}, model.py{args}]\n{extra}"
        model_dir = make_model(HEAD + body, {"model.py": script})
        request = TaskRequest(
            manifest=load_manifest(model_dir),
            model_dir=model_dir,
            task="run",
            params={},
            workdir=open_work_root / model_dir.name,
            log_path=tmp_path / "logs" / f"{model_dir.name}.log",
        )
        return run_task(request, EngineOptions(**{"kill_grace": 2.0, **options}))

    return go


def descendant_count() -> int:
    """How many processes descend from this one: what the test started, and nothing a
    neighbouring test (another pytest-xdist worker) runs at the same time."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                parent = int(stat.read().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(parent, []).append(int(name))
    count, pending = 0, [os.getpid()]
    while pending:
        below = children.get(pending.pop(), [])
        count += len(below)
        pending.extend(below)
    return count


@contextmanager
def peak_process_count() -> Iterator[dict[str, int]]:
    """This test's process count before (``baseline``) and at its highest (``peak``)."""
    seen = {"baseline": descendant_count(), "peak": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen["peak"] = max(seen["peak"], descendant_count())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        stop.set()
        sampler.join()


# A bounded fork bomb: every process forks on, each child taking half of its parent's
# quota, so the tree never holds more than QUOTA processes; EAGAIN is retried until the
# deadline, as a runaway launcher would. SIGTERM is ignored, so a grace period only helps it.
BOMB = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
quota, deadline = int(sys.argv[1]), time.time() + float(sys.argv[2])
while quota > 1 and time.time() < deadline:
    share = max(1, (quota - 1) // 2)
    try:
        pid = os.fork()
    except OSError:
        time.sleep(0.005)
        continue
    quota = share if pid == 0 else quota - share
time.sleep(max(0.0, deadline - time.time()))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_fork_bomb_is_stopped_within_its_process_limit(run: Run, sandbox: str) -> None:
    extra = f"    resources: {{processes: {PROCESS_LIMIT}}}\n    timeout: 30s\n"
    started = time.monotonic()
    with peak_process_count() as seen:
        result = run(BOMB, args=", '600', '8'", extra=extra, sandbox=sandbox, cgroups=False)
    duration = time.monotonic() - started
    print(f"fork bomb: {duration:.2f} s, peak {seen['peak'] - seen['baseline']} over baseline")
    assert result.failure is not None
    assert result.failure.kind is FailureKind.resource_limit, result.failure
    # The manifest's number, not what the sandbox's own processes add to it.
    assert f"limit of {PROCESS_LIMIT} processes" in result.failure.reason
    assert duration <= 10
    assert seen["peak"] - seen["baseline"] <= PROCESS_LIMIT + 50


# A bounded memory eater: 20 MiB every 10 ms up to 1.5 GiB, SIGTERM ignored.
EATER = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
blocks = []
for _ in range(75):
    blocks.append(bytearray(20 * 2**20))
    time.sleep(0.01)
time.sleep(8)
"""


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemAvailable in /proc/meminfo")


@pytest.mark.timeout(60)
def test_memory_eater_is_killed_without_grace(run: Run) -> None:
    baseline, lowest = available_memory(), available_memory()
    stop = threading.Event()

    def sample() -> None:
        nonlocal lowest
        while not stop.is_set():
            lowest = min(lowest, available_memory())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    extra = "    resources: {memory: 100MiB}\n    timeout: 30s\n"
    try:
        result = run(EATER, extra=extra, cgroups=False)
    finally:
        stop.set()
        sampler.join()
    duration = time.monotonic() - started
    assert result.failure is not None
    assert result.failure.kind is FailureKind.out_of_memory, result.failure
    assert duration <= 10
    assert baseline - lowest < 600 * 2**20, f"the host lost {(baseline - lowest) >> 20} MiB"


UID_SCRIPT = """
import json, os, sys, time
json.dump([os.getuid(), os.getgid(), os.getgroups()], open("who.json", "w"))
deadline = time.time() + 20
while not os.path.exists("go") and time.time() < deadline:
    time.sleep(0.01)
"""


@needs_root
@pytest.mark.timeout(60)
@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_models_run_as_their_own_unprivileged_uid(
    run: Run, open_work_root: Path, sandbox: str
) -> None:
    results: list[TaskResult] = []
    runs = [
        threading.Thread(target=lambda: results.append(run(UID_SCRIPT, sandbox=sandbox)))
        for _ in range(2)
    ]
    for thread in runs:
        thread.start()
    whos = [open_work_root / f"model{i}" / "who.json" for i in range(2)]
    deadline = time.monotonic() + 20
    while not all(w.exists() and w.stat().st_size for w in whos) and time.monotonic() < deadline:
        time.sleep(0.01)
    ids = [__import__("json").loads(w.read_text()) for w in whos]  # both models are running
    for who in whos:
        (who.parent / "go").touch()
    for thread in runs:
        thread.join()
    assert all(r.succeeded for r in results), [r.failure for r in results]
    (uid_a, gid_a, groups_a), (uid_b, gid_b, groups_b) = ids
    model_uids = range(DEFAULT_FIRST_UID, DEFAULT_FIRST_UID + DEFAULT_UID_COUNT)
    assert uid_a in model_uids
    assert uid_b in model_uids
    assert uid_a != uid_b
    assert (gid_a, gid_b) == (uid_a, uid_b)
    assert groups_a == groups_b == []


OVERWRITER = """
import os
open("model.py", "a").write("# edited by the model\\n")
os.makedirs("results/deep", exist_ok=True)
open("results/deep/out.txt", "w").write("made")
os.replace("results/deep/out.txt", "out.txt")
os.chmod(".", 0o755)
"""


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_model_can_overwrite_its_own_files(run: Run, sandbox: str) -> None:
    result = run(OVERWRITER, sandbox=sandbox, extra="    outputs: [out.txt, model.py]\n")
    assert result.succeeded, (result.failure, result.log_path.read_text())
    assert (result.workdir / "model.py").read_text().endswith("# edited by the model\n")
    assert sorted(o.path for o in result.outputs) == ["model.py", "out.txt"]


PLANTER = """
import os
os.makedirs("out")
open("out/real.txt", "w").write("mine")
os.symlink("/etc/shadow", "out/shadow")
os.symlink(os.path.abspath("{secret}"), "out/secret")
os.mkfifo("out/pipe")
"""


@pytest.mark.timeout(30)
def test_outputs_never_follow_a_planted_symlink_out_of_the_working_directory(
    run: Run, tmp_path: Path
) -> None:
    secret = tmp_path / "root-only.txt"
    secret.write_text("server secret")
    secret.chmod(0o600)
    result = run(PLANTER.format(secret=secret), sandbox="none", extra="    outputs: [out/]\n")
    assert result.succeeded, (result.failure, result.log_path.read_text())
    assert [o.path for o in result.outputs] == ["out/real.txt"]


@needs_root
def test_a_uid_is_never_leased_twice_at_once(tmp_path: Path) -> None:
    users = ModelUsers(first=DEFAULT_FIRST_UID + DEFAULT_UID_COUNT - 2, count=2, lock_dir=tmp_path)
    with UidLease.acquire(users) as first, UidLease.acquire(users) as second:
        assert first.uid != second.uid
        with pytest.raises(Exception, match="in use"):
            UidLease.acquire(users)
    with UidLease.acquire(users) as again:
        assert again.uid == first.uid


@needs_root
@pytest.mark.timeout(30)
def test_leasing_a_uid_kills_what_a_crashed_run_left(tmp_path: Path) -> None:
    uid = DEFAULT_FIRST_UID + DEFAULT_UID_COUNT - 1
    leftover = subprocess.Popen(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sleep", "30"]
    )
    try:
        assert runs_as(leftover, uid), "the leftover never ran as the model's uid"
        with UidLease.acquire(ModelUsers(first=uid, count=1, lock_dir=tmp_path)):
            assert leftover.wait(timeout=5) == -9
    finally:
        leftover.kill()
        leftover.wait()


SHOW_LIMITS = """\
import re
limits = open("/proc/self/limits").read()
for name in ("Max core file size", "Max file size", "Max address space"):
    print(name, re.search(name + r" +(\\S+) +(\\S+)", limits).groups())
"""


@pytest.mark.sandbox
@pytest.mark.skipif(not find_bwrap(), reason="needs bubblewrap")
def test_a_sandboxed_model_gets_its_limits_and_group_without_a_fork_of_the_engine(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started by vfork (no code between fork and exec: a fork copies the engine's page
    tables), the sandboxed model still runs with its limits (its group: the fork bombs)."""
    calls: list[dict[str, Any]] = []
    real = subprocess.Popen

    class Spy(real):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            calls.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Spy)
    extra = "    resources: {file_size: 5MiB, memory: 1GiB}\n"
    result = run(SHOW_LIMITS, extra=extra, sandbox="auto")
    assert result.failure is None, result.log_path.read_text()
    log = result.log_path.read_text()
    assert "Max core file size ('0', '0')" in log
    assert f"Max file size ('{5 * 2**20}', '{5 * 2**20}')" in log
    assert f"Max address space ('{4 * 2**30}', '{4 * 2**30}')" in log  # 4x: a backstop
    assert calls, "the model was not started through subprocess.Popen"
    assert all(c.get("preexec_fn") is None for c in calls)
