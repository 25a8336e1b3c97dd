"""The embedded database under concurrent writers: clients creating and cancelling runs."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.chaos import NotApplicable, ProcessWatch, assert_clean_outcome
from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

WRITERS = 20
ROUNDS = 2
QUICK = """\
simyard: 1
name: quick
version: "1"
tasks:
  run: {command: [python3, -c, "print('ok')"]}
"""
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}
NO_OUTPUT = NotApplicable("the model writes no output")
NO_SMTP = NotApplicable("no SMTP server in this scenario")
WatchFactory = Callable[..., ProcessWatch]


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Server]:
    yield from _server(tmp_path, {"SIMYARD_RUN_RATE": ""})  # the load, not the rate limit


def test_concurrent_writers_get_no_5xx_and_the_database_is_never_locked(
    sqlite_server: Server, make_model: MakeModel, process_watch: WatchFactory
) -> None:
    server = sqlite_server
    watch = process_watch(server.work_root)
    assert server.cli("models", "add", make_model(QUICK)).returncode == 0
    answers: Counter[str] = Counter()
    created: list[int] = []
    start = threading.Barrier(WRITERS)

    def writer() -> None:
        with server.http() as api:
            start.wait()
            for _ in range(ROUNDS):
                answer = api.post("/runs", json={"model": "quick"})
                answers[f"create {answer.status_code}"] += 1
                if answer.status_code == 503:
                    assert answer.headers["retry-after"].isdigit()
                if answer.status_code != 201:
                    continue
                created.append(answer.json()["id"])
                cancel = api.post(f"/runs/{created[-1]}/cancel")
                answers[f"cancel {cancel.status_code}"] += 1

    with ThreadPoolExecutor(WRITERS) as pool:
        for future in [pool.submit(writer) for _ in range(WRITERS)]:
            future.result()  # a dropped connection or a client timeout fails here
    assert not [k for k in answers if k.split()[1].startswith("5") and k.split()[1] != "503"]
    assert answers["create 201"] >= WRITERS, answers  # a 503 now and then, not a refusal of all
    for run_id in created:  # every run final, with its reason
        run = server.wait_for_run(run_id, timeout=120)
        assert run["state"] in FINAL
        assert run["state"] == "succeeded" or run["error"], run
    log = (server.home / "server.log").read_text()
    assert "database is locked" not in log
    assert "Traceback" not in log
    with httpx.Client(base_url=server.url) as web:
        assert web.get("/readyz").status_code == 200
    assert_clean_outcome(server, created, watch, kills=False, outputs=NO_OUTPUT, smtp=NO_SMTP)


def test_fifty_writers_at_once_are_all_answered_and_none_refused(
    sqlite_server: Server, make_model: MakeModel, process_watch: WatchFactory
) -> None:
    """More clients than the server's thread pool had threads: a transaction holding the
    write gate must still find a thread to finish in (before, every thread waited at the
    gate while its holder waited for a thread, and clients got 503 after 30 s)."""
    server = sqlite_server
    watch = process_watch(server.work_root)
    created: list[int] = []
    assert server.cli("models", "add", make_model(QUICK)).returncode == 0
    clients, rounds = 50, 3
    answers: Counter[str] = Counter()
    start = threading.Barrier(clients)

    def writer() -> None:
        with server.http() as api:
            start.wait()
            for _ in range(rounds):
                answer = api.post("/runs", json={"model": "quick"})
                answers[f"create {answer.status_code}"] += 1
                if answer.status_code == 201:
                    created.append(answer.json()["id"])
                    cancel = api.post(f"/runs/{created[-1]}/cancel")
                    answers[f"cancel {cancel.status_code}"] += 1

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(writer) for _ in range(clients)]:
            future.result()
    assert answers == {"create 201": clients * rounds, "cancel 200": clients * rounds}
    assert_clean_outcome(server, created, watch, kills=False, outputs=NO_OUTPUT, smtp=NO_SMTP)
