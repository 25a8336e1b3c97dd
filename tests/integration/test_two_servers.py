"""Two API servers on one PostgreSQL database: one dispatches; the other takes over."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chaos import NotApplicable, ProcessWatch, assert_clean_outcome, toy_outputs
from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


@pytest.fixture
def pair(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Server, Server]]:
    shared = {"SIMYARD_DATABASE_URL": postgres_url,
              "SIMYARD_STORAGE_URL": f"file://{tmp_path / 'shared-storage'}"}  # fmt: skip
    first_gen = _server(tmp_path / "a", shared)
    first = next(first_gen)
    second_gen = _server(tmp_path / "b", shared, add_admin=False)
    second = next(second_gen)
    second.tokens = dict(first.tokens)
    yield first, second
    for gen in (second_gen, first_gen):
        for _ in gen:
            pass


def dispatching(server: Server) -> bool:
    """Whether this server's model processes are the ones running (it holds the lease)."""
    return bool(list((server.home / "work").glob("run*")))


def test_the_other_server_takes_over_when_the_dispatching_one_dies(
    pair: tuple[Server, Server], make_model: MakeModel, tmp_path: Path
) -> None:
    first, second = pair
    assert first.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
    forcing = tmp_path / "forcing.csv"
    forcing.write_text(FORCING)
    with ProcessWatch(first.work_root, second.work_root) as watch:
        ids, follower = leader_killed(pair, forcing)
        assert_clean_outcome(
            follower, ids, watch, kills=True, states=dict.fromkeys(ids, "succeeded"),
            outputs=toy_outputs, smtp=NotApplicable("no SMTP server in this scenario"),
            also=[first, second],
        )  # fmt: skip


def leader_killed(pair: tuple[Server, Server], forcing: Path) -> tuple[list[int], Server]:
    """Three runs taken by either server; the dispatching one killed; the runs and the other."""
    first, second = pair
    ids = []
    for server in (first, second, first):  # either server takes runs
        done = server.cli("run", "toy", "-p", "days=20", "-p", "pace=0.1",
                          "-i", f"forcing={forcing}", "--json")  # fmt: skip
        assert done.returncode == 0, done.stderr
        ids.append(json.loads(done.stdout)["id"])
    deadline = time.monotonic() + 60
    while not (dispatching(first) or dispatching(second)) and time.monotonic() < deadline:
        time.sleep(0.1)
    leader, follower = (first, second) if dispatching(first) else (second, first)
    assert not dispatching(follower), "both servers dispatched"
    leader.stop(signal.SIGKILL)
    started = time.monotonic()
    for run_id in ids:
        run = follower.wait_for_run(run_id, timeout=180)
        assert run["state"] == "succeeded", run
    assert list((follower.home / "live").glob("*.log")), "the follower never dispatched"
    assert time.monotonic() - started < 120
    with httpx.Client(base_url=follower.url) as api:
        assert api.get("/healthz").status_code == 200
    return ids, follower


SLOW = """\
simyard: 1
name: slow
version: "1"
tasks:
  crunch:
    command: [python3, slow.py]
"""
SLOW_FILES = {"slow.py": "import time\nfor i in range(60):\n    print(i, flush=True)\n"
                         "    time.sleep(0.25)\n"}  # fmt: skip
LEASE_TTL = 4.0


@pytest.fixture
def stalling_pair(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Server, Server]]:
    """Two servers on one PostgreSQL database with a short dispatch lease."""
    shared = {"SIMYARD_DATABASE_URL": postgres_url,
              "SIMYARD_STORAGE_URL": f"file://{tmp_path / 'shared-storage'}",
              "SIMYARD_LEASE_TTL": str(LEASE_TTL)}  # fmt: skip
    first_gen = _server(tmp_path / "a", shared)
    first = next(first_gen)
    second_gen = _server(tmp_path / "b", shared, add_admin=False)
    second = next(second_gen)
    second.tokens = dict(first.tokens)
    yield first, second
    for server in (first, second):
        if server.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.process.pid, signal.SIGCONT)
    for gen in (second_gen, first_gen):
        for _ in gen:
            pass


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def model_processes(servers: tuple[Server, ...]) -> dict[int, int]:
    """pid -> index of the server whose attempt runs this model process (by ancestry)."""
    roots = {s.process.pid: i for i, s in enumerate(servers) if s.process is not None}
    found: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:2] != [b"slow.py"]:  # the model itself, not bwrap or the exit reporter
            continue
        pid = ancestor = int(proc.name)
        while ancestor > 1 and ancestor not in roots:
            ancestor = _parent(ancestor)
        if ancestor in roots:
            found[pid] = roots[ancestor]
    return found


def test_a_stalled_dispatcher_past_its_lease_never_runs_attempts_beside_the_new_holder(
    stalling_pair: tuple[Server, Server], make_model: MakeModel
) -> None:
    servers = stalling_pair
    first = servers[0]
    assert first.cli("models", "add", make_model(SLOW, SLOW_FILES)).returncode == 0
    with ProcessWatch(*(s.work_root for s in servers)) as watch:
        ids, follower = leader_stalled_past_its_lease(servers)
        assert_clean_outcome(
            follower, ids, watch, kills=False, states=dict.fromkeys(ids, "succeeded"),
            outputs=NotApplicable("the model writes no output"),
            smtp=NotApplicable("no SMTP server in this scenario"),
            also=servers,
        )  # fmt: skip


def leader_stalled_past_its_lease(servers: tuple[Server, Server]) -> tuple[list[int], Server]:
    """Two runs; the dispatching server stopped past its lease, then woken; the runs and
    the server that took over."""
    first = servers[0]
    ids = []
    for _ in range(2):
        done = first.cli("run", "slow", "--json")
        assert done.returncode == 0, done.stderr
        ids.append(json.loads(done.stdout)["id"])
    deadline = time.monotonic() + 60
    while len(running := model_processes(servers)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(running) == 2, running
    leader_index = next(iter(running.values()))
    leader, follower = servers[leader_index], servers[1 - leader_index]
    assert leader.process is not None
    seen: dict[int, tuple[int, float, float]] = {}  # pid -> (server, first seen, last seen)

    def sample() -> None:
        now = time.monotonic()
        for pid, index in model_processes(servers).items():
            first_seen = seen[pid][1] if pid in seen else now
            seen[pid] = (index, first_seen, now)

    os.kill(leader.process.pid, signal.SIGSTOP)  # the dispatching server stalls
    stopped = time.monotonic()
    while time.monotonic() - stopped < 90:  # generous: a loaded CI machine takes over slowly
        sample()
        taken_over = [s for s in seen.values() if s[0] != leader_index]
        if taken_over and time.monotonic() - min(s[1] for s in taken_over) > 2:
            break
        time.sleep(0.02)
    os.kill(leader.process.pid, signal.SIGCONT)  # ... and wakes up without its lease
    woke = time.monotonic()
    while time.monotonic() - woke < 3:
        sample()
        time.sleep(0.02)

    old = [s for s in seen.values() if s[0] == leader_index]
    new = [s for s in seen.values() if s[0] != leader_index]
    assert len(new) == 2, "the other server did not take the attempts over"
    assert old, "the stalled server's attempts were never seen"
    # Its models stopped by themselves once its lease could no longer be renewed: the
    # new holder's attempts started only after the last of them was gone.
    assert max(s[2] for s in old) < min(s[1] for s in new), seen
    assert max(s[2] for s in old) - stopped < LEASE_TTL
    assert all(s[1] < woke for s in old), "the woken server started attempts again"
    for run_id in ids:
        run = follower.wait_for_run(run_id, timeout=120)
        assert run["state"] == "succeeded", run
        assert [t["attempt"] for t in run["tasks"]] == [2], run  # the stalled one's never counted
    assert "dispatch lease lost" in (leader.home / "server.log").read_text()
    return ids, follower
