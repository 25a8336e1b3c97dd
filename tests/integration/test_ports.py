"""The test harness's ports: never given twice in a run, and a server that could not listen
on its own is never taken for started (another server answering there, say)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Server
from tests.ports import CLAIMS, free_port

pytestmark = pytest.mark.slow

TAKE = "import json; from tests.ports import free_ports; print(json.dumps(free_ports(300)))"


def test_two_processes_asking_at_once_are_never_given_the_same_port(tmp_path: Path) -> None:
    env = {**os.environ, CLAIMS: str(tmp_path)}
    root = Path(__file__).resolve().parents[2]
    takers = [
        subprocess.Popen([sys.executable, "-c", TAKE], cwd=root, env=env, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    given = [json.loads(taker.communicate(timeout=60)[0]) for taker in takers]

    assert [len(ports) for ports in given] == [300, 300]
    assert set(given[0]).isdisjoint(given[1])
    assert len(list(tmp_path.iterdir())) == 600  # each one claimed


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def squatter() -> Iterator[int]:
    """Something else answering ``/healthz`` with 200 on a port; the port."""
    port = free_port()
    other = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Healthy)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    yield port
    other.shutdown()
    other.server_close()


def test_a_server_whose_port_another_holds_is_not_taken_for_started(
    tmp_path: Path, squatter: int
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "SIMYARD_HOME": str(home)}
    server = Server(home=home, port=squatter, env=env)
    try:
        with pytest.raises(RuntimeError, match="server did not start"):
            server.start()  # something answers /healthz on the port: not this server
    finally:
        server.stop()
