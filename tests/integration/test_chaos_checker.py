"""The chaos checker finds what it looks for (tests/chaos.py), on real processes and folders:
a check that can never fail would pass every scenario."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.chaos import (
    ProcessWatch,
    leftover_attempt_folders,
    leftover_processes,
    recorded_attempts,
    records_overlap,
)


def attempt_folder(root: Path, run_id: int, task: str, attempt: int) -> Path:
    folder = root / f"run{run_id}" / f"{task}.a{attempt}"
    (folder / "work").mkdir(parents=True)
    return folder


def test_two_attempts_of_one_task_alive_at_once_are_seen(tmp_path: Path) -> None:
    first = attempt_folder(tmp_path, 7, "sim", 1)
    second = attempt_folder(tmp_path, 7, "sim", 2)
    other = attempt_folder(tmp_path, 8, "sim", 1)
    with ProcessWatch(tmp_path) as watch:
        # The first attempt's model has left its folder; its parent, still in it, names it.
        old = subprocess.Popen(["sh", "-c", "(cd /; exec sleep 0.6); true"], cwd=first / "work")
        time.sleep(0.2)
        new = subprocess.Popen(["sleep", "0.3"], cwd=second)
        alone = subprocess.Popen(["sleep", "0.3"], cwd=other)
        for proc in (old, new, alone):
            proc.wait()
        time.sleep(0.1)
    assert watch.seen == {(7, "sim", 1), (7, "sim", 2), (8, "sim", 1)}
    assert watch.overlaps, "the two attempts of run 7's sim were never seen together"
    assert {attempts for _, attempts in watch.overlaps} == {((7, "sim", 1), (7, "sim", 2))}


def test_leftovers_are_found_by_cwd_and_by_the_session_of_a_dead_leader(tmp_path: Path) -> None:
    folder = attempt_folder(tmp_path, 3, "work", 1)
    (folder.parent / "work.a2.lock").touch()  # a lock file beside no folder is no folder
    in_folder = subprocess.Popen(["sleep", "5"], cwd=folder)
    leader = subprocess.Popen(["sh", "-c", "sleep 5 & wait"], start_new_session=True)
    try:
        time.sleep(0.2)
        os.kill(leader.pid, signal.SIGKILL)
        leader.wait()
        found = leftover_processes([tmp_path], [], {leader.pid})
        assert len(found) == 2, found
        assert any(f"cwd {folder}" in f for f in found)
        assert any(f"session {leader.pid}" in f for f in found)
        assert leftover_attempt_folders([tmp_path]) == [str(folder)]
    finally:
        in_folder.kill()
        in_folder.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)


def test_a_retry_claimed_before_its_previous_attempt_ended_is_an_overlap() -> None:
    def event(kind: str, attempt: int, at: str) -> dict[str, object]:
        return {"kind": kind, "run_id": 1, "task": "sim", "attempt": attempt,
                "at": f"2026-12-01T10:00:{at}+00:00"}  # fmt: skip

    in_order = [event("task.running", 1, "00"), event("task.retry", 1, "05"),
                event("task.running", 2, "06"), event("task.succeeded", 2, "09")]  # fmt: skip
    assert records_overlap(recorded_attempts(in_order)) == []
    overlapping = [event("task.running", 1, "00"), event("task.running", 2, "04"),
                   event("task.retry", 1, "05"), event("task.succeeded", 2, "09")]  # fmt: skip
    (problem,) = records_overlap(recorded_attempts(overlapping))
    assert "attempt 2 started" in problem
    assert "before attempt 1 ended" in problem
    unended = [event("task.running", 1, "00")]
    assert "never ended" in records_overlap(recorded_attempts(unended))[0]
