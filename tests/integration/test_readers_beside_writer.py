"""Reading the embedded database waits for no writer: while another process holds
SQLite's write lock (a CLI command, a long transaction), the API and the pages still
answer from a snapshot."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Server, _server, logged_in

HELD = 8.0  # seconds the write lock is held; every read must answer well within it


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Server]:
    yield from _server(tmp_path, {})


def hold_write_lock(database: Path, released: threading.Event) -> threading.Thread:
    taken = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(database, isolation_level=None, timeout=30)
        connection.execute("BEGIN IMMEDIATE")
        taken.set()
        released.wait(HELD)
        connection.execute("ROLLBACK")
        connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(30), "the test could not take the write lock"
    return thread


def test_the_api_and_pages_answer_while_another_process_holds_the_write_lock(
    sqlite_server: Server,
) -> None:
    with sqlite_server.http() as api, logged_in(sqlite_server) as browser:
        # Used once before the lock is taken: the token and the browser session are
        # noted as used now, so the reads below have nothing to write.
        assert api.get("/runs").status_code == 200
        assert browser.get("/runs").status_code == 200
        released = threading.Event()
        holder = hold_write_lock(sqlite_server.home / "simyard.db", released)
        try:
            took = {}
            for name, get in [
                ("GET /api/v1/runs", lambda: api.get("/runs")),
                ("GET /api/v1/models", lambda: api.get("/models")),
                ("GET /runs page", lambda: browser.get("/runs")),
                ("GET / (the models page)", lambda: browser.get("/")),
            ]:
                began = time.monotonic()
                answer = get()
                took[name] = time.monotonic() - began
                assert answer.status_code == 200, (name, answer.text[:300])
            slow = {name: f"{s:.1f} s" for name, s in took.items() if s > HELD / 2}
            assert not slow, f"reads waited for the writer: {slow}"
        finally:
            released.set()
            holder.join(30)
