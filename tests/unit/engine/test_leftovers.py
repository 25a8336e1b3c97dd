"""What a dead engine left is found and removed: processes of unleased model uids, and the
folders of attempts no live engine holds, with what still runs in them."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from simyard.engine.hostuser import ModelUsers, UidLease, kill_unleased_processes
from simyard.engine.workorder import attempt_folder, sweep_dead_attempts
from tests.unit.engine.uids import runs_as

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="model uids need a root engine")


def gone(proc: subprocess.Popen[bytes], within: float = 5.0) -> bool:
    try:
        proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        return False
    return True


def sleeper(cwd: Path, *prefix: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*prefix, "sleep", "300"], cwd=cwd, start_new_session=True)


def test_a_dead_attempts_folder_is_removed_with_what_runs_in_it(tmp_path: Path) -> None:
    dead = tmp_path / "run7" / "simulate.a1"
    (dead / "work").mkdir(parents=True)
    (dead / "work" / "big.bin").write_bytes(b"0" * 1000)
    (tmp_path / "run7" / "simulate.a1.lock").touch()  # its engine died: nobody holds it
    left = sleeper(dead / "work")
    try:
        assert sweep_dead_attempts(tmp_path) == [dead]
        assert gone(left), "a process of the dead attempt survived the sweep"
        assert list(tmp_path.iterdir()) == []  # the emptied run folder went too
    finally:
        left.kill()


def test_a_live_attempts_folder_and_processes_are_left_alone(tmp_path: Path) -> None:
    live = tmp_path / "run8" / "simulate.a2"
    with attempt_folder(live) as folder:
        (folder / "work").mkdir(parents=True)
        running = sleeper(folder / "work")
        try:
            assert sweep_dead_attempts(tmp_path) == []
            assert running.poll() is None
            assert (folder / "work").is_dir()
        finally:
            running.kill()
            running.wait()
    assert not live.exists()  # removed when it ended
    assert not (tmp_path / "run8").exists()


def test_an_empty_folder_of_a_failed_fetch_is_removed_when_the_attempt_ends(
    tmp_path: Path,
) -> None:
    attempt = tmp_path / "run9" / "prep.a1"

    def fetch_fails() -> None:
        with attempt_folder(attempt) as folder:
            (folder / "fetched").mkdir(parents=True)
            raise OSError("the store is unreachable")

    with pytest.raises(OSError):
        fetch_fails()
    assert list(tmp_path.iterdir()) == []


@needs_root
def test_processes_of_an_unleased_model_uid_are_killed_leased_ones_kept(tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not installed")
    lock_dir = tmp_path / "uids"
    users = ModelUsers(first=3_900_000_000, count=2, lock_dir=lock_dir)
    lock_dir.mkdir(mode=0o700)
    as_uid = [setpriv, "--reuid=3900000000", "--regid=3900000000", "--clear-groups", "--"]
    orphan = sleeper(Path("/"), *as_uid)
    with UidLease._try(users, 3_900_000_001) as lease:  # type: ignore[union-attr]
        assert lease is not None
        kept = sleeper(Path("/"), *[a.replace("3900000000", "3900000001") for a in as_uid])
        try:
            assert runs_as(orphan, users.first)
            assert runs_as(kept, users.first + 1)
            kill_unleased_processes(users)
            assert gone(orphan), "a process of a uid no engine leases survived"
            assert kept.poll() is None, "a process of a leased uid was killed"
        finally:
            for proc in (orphan, kept):
                proc.kill()
                proc.wait()


@needs_root
def test_a_uid_whose_dead_are_not_yet_reaped_is_passed_over(tmp_path: Path) -> None:
    """An unreaped process still counts against the uid's process limit: a model given that
    uid with a small limit could not even start its program (setpriv exits 126)."""
    users = ModelUsers(first=3_900_000_010, count=2, lock_dir=tmp_path / "uids")
    pid = os.fork()
    if pid == 0:  # the child dies as the lowest uid and stays unreaped until we wait
        os.setresgid(users.first, users.first, users.first)
        os.setresuid(users.first, users.first, users.first)
        os._exit(0)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and psutil.Process(pid).status() != "zombie":
            time.sleep(0.01)
        with UidLease.acquire(users) as lease:
            assert lease.uid == users.first + 1
    finally:
        os.waitpid(pid, 0)
    with UidLease.acquire(users) as lease:
        assert lease.uid == users.first  # reaped, it is free again


@needs_root
def test_a_uid_left_clean_is_leased_at_once_and_a_crashed_holders_is_looked_at(
    tmp_path: Path,
) -> None:
    """A holder that saw nothing of its uid left says so in the lock file; the next lease
    takes that mark away at once, so a holder that dies mid-attempt (its leftovers still
    running) leaves the uid to be looked at and cleaned by whoever leases it next."""
    users = ModelUsers(first=3_900_000_020, count=1, lock_dir=tmp_path / "uids")
    mark = users.lock_dir / str(users.first)
    with UidLease.acquire(users) as lease:
        lease.clean = True
    assert mark.read_text() == "clean\n"
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    as_uid = [setpriv, f"--reuid={users.first}", f"--regid={users.first}", "--clear-groups", "--"]
    with UidLease.acquire(users) as lease:
        assert mark.read_text() == "", "the mark stays while the uid is in use"
        leftover = sleeper(Path("/"), *as_uid)  # then its holder dies without a word
        started_as_uid = runs_as(leftover, users.first)
    try:
        assert started_as_uid, "the leftover never ran as the model's uid"
        with UidLease.acquire(users) as lease:
            assert lease.uid == users.first
            assert gone(leftover), "the crashed holder's process survived the next lease"
    finally:
        leftover.kill()
        leftover.wait()


def _run_as_adopter(users: ModelUsers, workdir: Path, log: Path, adopt: bool, send: Any) -> None:
    from simyard.engine.limits import Limits, adopt_orphans
    from simyard.engine.logcapture import LogCapture
    from simyard.engine.process import CommandSpec, run_command

    if adopt:
        adopt_orphans()
    spec = CommandSpec(
        argv=["/bin/sh", "-c", "setsid sleep 30 & echo hi"],  # a daemon the run must not leave
        workdir=workdir, env={"PATH": "/usr/bin:/bin"}, limits=Limits(processes=50),
        timeout=30, kill_grace=1, bwrap=None, network=False, model_users=users,
    )  # fmt: skip
    capture = LogCapture(log, max_bytes=2**20, error_patterns=[], progress=None)
    outcome = run_command(spec, capture)
    capture.close()
    send.send(outcome.returncode)


@needs_root
@pytest.mark.parametrize("adopt", [True, False])
def test_an_attempt_that_adopts_its_orphans_leaves_its_uid_marked_clean(
    tmp_path: Path, open_work_root: Path, adopt: bool
) -> None:
    """The local executor's attempt process adopts every orphan of its run, so once it has
    reaped its last child nothing of the uid can be left: the next lease may skip its look
    at the process table. An engine that adopts nothing (a Dask worker) cannot tell."""
    users = ModelUsers(first=3_900_000_030, count=1, lock_dir=tmp_path / "uids")
    workdir = open_work_root / "work"
    workdir.mkdir()
    context = multiprocessing.get_context("fork")
    answer, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_run_as_adopter, args=(users, workdir, tmp_path / "log", adopt, send)
    )
    child.start()
    try:
        assert answer.poll(60), "the command did not end"
        assert answer.recv() == 0
    finally:
        child.join(10)
    mark = (users.lock_dir / str(users.first)).read_text()
    assert mark == ("clean\n" if adopt else "")
