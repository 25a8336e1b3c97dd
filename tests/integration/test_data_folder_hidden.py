"""A real server whose data folder lies under a folder the sandbox shows: models cannot see it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from simyard.engine.sandbox import find_bwrap
from tests.conftest import MakeModel
from tests.integration.conftest import Server, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap is not installed"),
]

PEEK_MANIFEST = """\
simyard: 1
name: peek
version: "1"
tasks:
  run:
    command: [python3, peek.py]
"""
PEEK = """\
import os, pathlib
home = pathlib.Path({home!r})
for rel in ["secret_key", "simyard.db", "server.log"]:
    try:
        print("READ", rel, (home / rel).read_bytes()[:40])
    except OSError as exc:
        print("DENIED", rel, type(exc).__name__)
for rel in ["storage", "cache"]:
    try:
        print("LISTED", rel, sorted(os.listdir(home / rel)))
    except OSError as exc:
        print("DENIED", rel, type(exc).__name__)
pathlib.Path("own.txt").write_text("mine")
print("OWN", pathlib.Path("own.txt").read_text())
"""


def server_env(home: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "SIMYARD_HOME": str(home),
        "SIMYARD_SANDBOX": "bwrap",
        "SIMYARD_KILL_GRACE": "1",
        "SIMYARD_CREDENTIALS_FILE": str(tmp_path / "credentials.json"),
        **extra,
    }
    env.pop("SIMYARD_URL", None)
    env.pop("SIMYARD_TOKEN", None)
    return env


@pytest.fixture
def opt_server(tmp_path: Path) -> Iterator[Server]:
    """A server with SIMYARD_HOME=/opt/simyard-test-<uuid>, removed afterwards."""
    home = Path("/opt") / f"simyard-test-{uuid.uuid4().hex}"
    home.mkdir()
    srv = Server(home=home, port=free_port(), env=server_env(home, tmp_path))
    try:
        srv.add_user("admin", admin=True)
        srv.start()
        yield srv
    finally:
        srv.stop()
        for root, dirs, _files in os.walk(home):  # the bundle cache is frozen (0555)
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)
        shutil.rmtree(home, ignore_errors=True)


def test_model_on_a_server_under_opt_cannot_read_its_data(
    opt_server: Server, make_model: MakeModel
) -> None:
    model = make_model(PEEK_MANIFEST, {"peek.py": PEEK.format(home=str(opt_server.home))})
    added = opt_server.cli("models", "add", model)
    assert added.returncode == 0, added.stderr
    done = opt_server.cli("run", "peek", "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads(done.stdout)
    log = opt_server.cli("runs", "logs", str(run["id"])).stdout
    assert "DENIED secret_key" in log
    assert "DENIED simyard.db" in log
    assert "DENIED server.log" in log
    assert "DENIED storage" in log
    assert "DENIED cache" in log
    assert "READ" not in log
    assert "LISTED" not in log
    assert "OWN mine" in log


def test_serve_refuses_a_data_folder_the_sandbox_cannot_hide(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = server_env(home, tmp_path, SIMYARD_STORAGE_URL="file:///usr")
    done = subprocess.run(
        [sys.executable, "-m", "simyard", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "SIMYARD_STORAGE_URL" in done.stderr
    assert "cannot hide" in done.stderr
    assert not home.exists()  # refused before anything was made
