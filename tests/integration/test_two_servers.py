"""Two API servers on one PostgreSQL database: one dispatches; the other takes over."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow


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
    assert dispatching(follower)
    assert time.monotonic() - started < 120
    with httpx.Client(base_url=follower.url) as api:
        assert api.get("/healthz").status_code == 200
