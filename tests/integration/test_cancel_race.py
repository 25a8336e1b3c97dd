"""A cancel racing the claim on PostgreSQL: ordered by the database, never a 5xx."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.chaos import NotApplicable, ProcessWatch, assert_clean_outcome
from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

RACE = """\
simyard: 1
name: race
version: "1"
parameters:
  tag: {type: string}
tasks:
  work:
    command: [python3, race.py, "{tag}"]
"""
RACE_FILES = {"race.py": "import sys, time\nfor i in range(30):\n    time.sleep(0.1)\n"
                         "print('ran to the end', sys.argv[1])\n"}  # fmt: skip
MODEL_SECONDS = 3.0


@pytest.fixture
def pg_server(tmp_path: Path, postgres_url: str) -> Iterator[Server]:
    yield from _server(tmp_path, {"SIMYARD_DATABASE_URL": postgres_url,
                                  "SIMYARD_MAX_PARALLEL": "6"})  # fmt: skip


class Lifetimes:
    """Samples the process table: how long each tagged model process was alive."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Lifetimes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            now = time.monotonic()
            for proc in Path("/proc").iterdir():
                try:
                    argv = (proc / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if len(argv) > 2 and argv[-3].endswith(b"race.py") and b"bwrap" not in argv[0]:
                    tag = argv[-2].decode()
                    self.seen[tag] = (self.seen.get(tag, (now, now))[0], now)

    def alive_for(self, tag: str) -> float:
        first, last = self.seen.get(tag, (0.0, 0.0))
        return last - first


def test_forty_runs_cancelled_right_after_creation_end_cancelled_or_honestly_succeeded(
    pg_server: Server, make_model: MakeModel, process_watch: Callable[..., ProcessWatch]
) -> None:
    server = pg_server
    watch = process_watch(server.work_root)
    assert server.cli("models", "add", make_model(RACE, RACE_FILES)).returncode == 0
    errors: list[str] = []
    answers: dict[str, tuple[int, str]] = {}  # tag -> (run id, state the cancel answered)
    rng = random.Random(18)

    def create_and_cancel(index: int) -> None:
        tag = f"t{index}"
        with server.http() as api:
            created = api.post("/runs", json={"model": "race", "params": {"tag": tag}})
            if created.status_code != 201:
                errors.append(f"create {created.status_code}: {created.text}")
                return
            run_id = created.json()["id"]
            time.sleep(rng.uniform(0, 0.1))
            cancelled = api.post(f"/runs/{run_id}/cancel")
            if cancelled.status_code >= 500 or cancelled.status_code != 200:
                errors.append(f"cancel {cancelled.status_code}: {cancelled.text}")
            answers[tag] = (run_id, cancelled.json().get("state", ""))

    with Lifetimes() as lifetimes:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create_and_cancel, range(40)))
        finals = {tag: server.wait_for_run(run_id, timeout=180)
                  for tag, (run_id, _) in answers.items()}  # fmt: skip
        time.sleep(0.5)

    assert errors == []
    assert len(answers) == 40
    log = (server.home / "server.log").read_text()
    assert "DeadlockDetected" not in log
    for tag, run in finals.items():
        answered = answers[tag][1]
        assert run["state"] in ("cancelled", "succeeded"), run
        if run["state"] == "cancelled":
            # Stopped, not left to run: a model that started was killed well before its end.
            assert lifetimes.alive_for(tag) < MODEL_SECONDS - 0.5, (tag, run, lifetimes.seen)
        else:
            assert answered != "cancelled", (tag, run)
    assert_clean_outcome(
        server, [run_id for run_id, _ in answers.values()], watch, kills=False,
        outputs=NotApplicable("the model writes no output"),
        smtp=NotApplicable("no SMTP server in this scenario"),
    )  # fmt: skip
