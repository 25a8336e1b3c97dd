"""kill -9 of a real ``simyard serve`` with running tasks: the old attempts die with it.

SPEC.md promises "at least once, never twice at the same time": a restarted server
retries the killed server's tasks, so nothing of the old attempts (the forkserver, the
attempt processes, the models) may still be running by then.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.chaos import NotApplicable, ProcessWatch, assert_clean_outcome
from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

LONG_MODEL = """\
simyard: 1
name: long
version: "1"
tasks:
  work:
    command: [python3, work.py]
    outputs: [done.txt]
"""

# Long enough to be still running when the old server's leftovers are looked for.
LONG_FILES = {
    "work.py": """\
        import time
        print("working", flush=True)
        for _ in range(200):
            time.sleep(0.1)
        open("done.txt", "w").write("done")
    """,
}


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Server]:
    yield from _server(tmp_path, {"SIMYARD_KILL_GRACE": "1"})


def attempt_models(server: Server) -> list[psutil.Process]:
    """Processes of the models working below the server's work folder (bwrap included)."""
    work = str(server.home / "work")
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        try:
            if (proc.info["cwd"] or "").startswith(work) and "work.py" in (
                proc.info["cmdline"] or []
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def pythons(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The models themselves (not the bwrap or setpriv around them)."""
    return [p for p in procs if Path(p.info["cmdline"][0]).name.startswith("python")]


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``procs`` still running (the same process, not a reused pid)."""
    living = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                living.append(proc)
        except psutil.Error:
            continue
    return living


def test_kill_9_of_the_server_kills_its_attempts_before_the_retry(
    sqlite_server: Server, make_model: MakeModel
) -> None:
    server = sqlite_server
    assert server.cli("models", "add", make_model(LONG_MODEL, LONG_FILES)).returncode == 0
    with ProcessWatch(server.work_root) as watch:
        run_ids = killed_and_restarted(server)
        assert_clean_outcome(
            server, run_ids, watch, kills=True, states=dict.fromkeys(run_ids, "succeeded"),
            outputs=lambda run: {"work/done.txt": b"done"},
            smtp=NotApplicable("no SMTP server in this scenario"),
        )  # fmt: skip
    assert {(rid, "work", a) for rid in run_ids for a in (1, 2)} <= watch.seen  # it saw both


def killed_and_restarted(server: Server) -> list[int]:
    """Two runs started, the server killed with both models running, then restarted."""
    run_ids = [json.loads(server.cli("run", "long", "--json").stdout)["id"] for _ in range(2)]
    deadline = time.monotonic() + 60
    while len(pythons(attempt_models(server))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    old_models = attempt_models(server)
    assert len(pythons(old_models)) == 2, "both models should be running"
    assert server.process is not None
    old_server = psutil.Process(server.process.pid)
    old_tree = old_server.children(recursive=True)  # forkserver, attempt children, models

    server.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    while alive(old_tree) and time.monotonic() - killed_at < 5:
        time.sleep(0.05)
    assert alive(old_models) == [], "a model outlived its server by 5 s"
    survivors = [f"{p.pid} {' '.join(p.cmdline())}" for p in alive(old_tree)]
    assert survivors == [], "processes of the killed server survived it"
    folders = [p.name for p in (server.home / "work").glob("run*/*") if p.is_dir()]
    assert folders == [], "the killed attempts left their working folders"

    server.start()
    for run_id in run_ids:
        run = server.wait_for_run(run_id, timeout=180)
        assert run["state"] == "succeeded"
        assert run["tasks"][0]["attempt"] == 2  # retried once, after the old attempt died
    # The killed attempts' working folders were swept at start, the retries' removed.
    assert list((server.home / "work").iterdir()) == []
    return run_ids


BIG_MODEL = """\
simyard: 1
name: big
version: "1"
tasks:
  write:
    command: [python3, big.py]
    outputs: [big.bin]
"""
BIG_SIZE = 100 << 20
BIG_FILES = {"big.py": f"open('big.bin', 'wb').write(b'x' * {BIG_SIZE})\n"}


def test_kill_9_of_the_server_while_an_attempt_stores_leaves_no_partial_object(
    sqlite_server: Server, make_model: MakeModel
) -> None:
    server = sqlite_server
    assert server.cli("models", "add", make_model(BIG_MODEL, BIG_FILES)).returncode == 0
    store = server.store_root
    assert store is not None
    with ProcessWatch(server.work_root) as watch:
        run_id = json.loads(server.cli("run", "big", "--json").stdout)["id"]
        deadline = time.monotonic() + 60
        while not list(store.rglob(".part-*")) and time.monotonic() < deadline:
            time.sleep(0.002)
        if not list(store.rglob(".part-*")):
            pytest.skip("the store cloned the output at once: no storing to kill the server in")
        server.stop(signal.SIGKILL)  # while the output is being copied into the store
        server.start()
        assert_clean_outcome(
            server, [run_id], watch, kills=True, states={run_id: "succeeded"},
            outputs=lambda run: {"write/big.bin": b"x" * BIG_SIZE},
            smtp=NotApplicable("no SMTP server in this scenario"),
        )  # fmt: skip
