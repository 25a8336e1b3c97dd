"""What `simyard run --wait` and friends tell a person: where the run is, how far it got,
what Ctrl-C does, and why a command was refused before anything ran."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_model
from tests.integration.conftest import Server, _server
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("cli-waiting")
    for srv in _server(tmp, {}):
        assert srv.cli("models", "add", write_model(tmp / "toy", MODEL, FILES)).returncode == 0
        (tmp / "forcing.csv").write_text(FORCING)
        yield srv


def forcing(srv: Server) -> str:
    return f"forcing={srv.home.parent / 'forcing.csv'}"


def test_run_wait_names_the_run_and_its_page_first_then_progress_lines(
    cli_server: Server,
) -> None:
    done = cli_server.cli(
        "run", "toy", "-p", "days=4", "-p", "pace=0.4", "-i", forcing(cli_server), "--wait"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("Run "), lines
    run_id = lines[0].split()[1]
    assert lines[0].endswith(f"{cli_server.url}/runs/{run_id}")
    # Without a terminal: one line per state and per tenth of progress, with the time left.
    progress = [line for line in lines if line.startswith("  simulate: running ")]
    assert any("%" in line and "left)" in line for line in progress), lines
    # runs show prints the parameters the run used.
    shown = cli_server.cli("runs", "show", run_id).stdout
    assert "parameters: days=4, albedo=0.06, site=A B, pace=0.4" in shown


def test_ctrl_c_stops_waiting_and_says_the_run_goes_on(cli_server: Server) -> None:
    env = {**cli_server.env, "SIMYARD_URL": cli_server.url}
    env["SIMYARD_TOKEN"] = cli_server.tokens["admin"]
    # Long enough that it cannot end before the signal, however loaded the machine.
    args = ["run", "toy", "-p", "days=60", "-p", "pace=1", "-i", forcing(cli_server), "--wait"]
    waiting = subprocess.Popen(
        [sys.executable, "-m", "simyard", *args],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert waiting.stderr is not None
    first = waiting.stderr.readline()
    run_id = int(first.split()[1])
    deadline = time.monotonic() + 60
    with cli_server.http() as api:
        while api.get(f"/runs/{run_id}").json()["state"] != "running":
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.1)
    waiting.send_signal(signal.SIGINT)
    _, rest = waiting.communicate(timeout=30)
    assert waiting.returncode == 130
    assert f"Run {run_id} goes on on the server" in rest
    assert f"simyard runs cancel {run_id}" in rest
    with cli_server.http() as api:
        assert api.get(f"/runs/{run_id}").json()["state"] == "running"
        assert api.post(f"/runs/{run_id}/cancel").status_code == 200
    assert cli_server.wait_for_run(run_id)["state"] == "cancelled"


def test_rerun_waits_and_prints_json(cli_server: Server) -> None:
    first = cli_server.cli("run", "toy", "-p", "days=1", "-i", forcing(cli_server), "--json")
    run_id = json.loads(first.stdout)["id"]
    cli_server.wait_for_run(run_id)
    done = cli_server.cli("runs", "rerun", str(run_id), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout)
    assert again["state"] == "succeeded"
    assert again["rerun_of"] == run_id
    assert again["id"] != run_id


def test_a_missing_token_and_an_invalid_token_are_told_apart(cli_server: Server) -> None:
    missing = cli_server.cli("runs", "list", user="nobody")
    assert missing.returncode == 2
    assert f"not logged in to {cli_server.url}" in missing.stderr
    assert "simyard login" in missing.stderr
    env = {**cli_server.env, "SIMYARD_URL": cli_server.url, "SIMYARD_TOKEN": "not-a-token"}
    invalid = subprocess.run(
        [sys.executable, "-m", "simyard", "runs", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert invalid.returncode == 1
    assert "this API token is not valid" in invalid.stderr
    anonymous = httpx.get(cli_server.url + "/api/v1/runs")
    assert anonymous.status_code == 401
    assert "an API token is required" in anonymous.json()["detail"]


def test_login_to_a_page_address_explains_the_server_address(
    cli_server: Server, tmp_path: Path
) -> None:
    done = cli_server.cli(
        "login", f"{cli_server.url}/runs/3", "-u", "admin", "--password", "whatever"
    )
    assert done.returncode == 1
    assert "without the page's path (/runs/3)" in done.stderr
    assert f"simyard login {cli_server.url}`" in done.stderr


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "simyard", "--version"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    assert done.stdout.startswith("simyard ")
    assert done.stdout.split()[1][0].isdigit()


def test_an_unknown_model_suggests_close_names(cli_server: Server) -> None:
    done = cli_server.cli("run", "tyo", "--json")
    assert done.returncode == 2
    (error,) = json.loads(done.stdout)["errors"]
    assert error["field"] == "model"
    assert error["message"] == "no model 'tyo' is registered; did you mean 'toy'?"
    other = cli_server.cli("run", "toy@9.9")
    assert "no model 'toy 9.9' is registered; 'toy' has no version '9.9'" in other.stderr
