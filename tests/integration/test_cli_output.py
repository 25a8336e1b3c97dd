"""What the command line prints for scripts and people: JSON refusals, logs of every task."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_model
from tests.integration.conftest import Server, _server
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("cli")
    for srv in _server(tmp, {}):
        assert srv.cli("models", "add", write_model(tmp / "toy", MODEL, FILES)).returncode == 0
        yield srv


def test_a_refused_run_with_json_prints_the_problems_as_json(cli_server: Server) -> None:
    done = cli_server.cli("run", "toy", "-p", "days=abc", "-p", "nope=1", "--json")
    assert done.returncode == 2
    answer = json.loads(done.stdout)
    fields = [e["field"] for e in answer["errors"]]
    assert "params.days" in fields
    assert "params.nope" in fields
    assert answer["warnings"] == []


def test_a_missing_input_file_with_json_prints_json_too(cli_server: Server, tmp_path: Path) -> None:
    done = cli_server.cli("run", "toy", "-i", f"forcing={tmp_path / 'absent.csv'}", "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["errors"][0]["field"] == "inputs.forcing"


def test_a_warning_names_its_field_once(cli_server: Server, tmp_path: Path) -> None:
    forcing = tmp_path / "forcing.csv"
    forcing.write_text(FORCING)
    done = cli_server.cli("run", "toy", "-p", "albedo=0.5", "-i", f"forcing={forcing}", "--wait")
    assert "! params.albedo: " in done.stderr, done.stderr
    assert "params: params." not in done.stderr


def test_logs_of_every_task_are_headed_by_the_task(cli_server: Server, tmp_path: Path) -> None:
    forcing = tmp_path / "forcing.csv"
    forcing.write_text(FORCING)
    done = cli_server.cli(
        "run", "toy", "-p", "days=2", "-i", f"forcing={forcing}", "--wait", "--json"
    )
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["id"]
    logs = cli_server.cli("runs", "logs", str(run_id)).stdout
    heads = [line for line in logs.splitlines() if line.startswith("==> ")]
    assert heads == ["==> prep <==", "==> simulate <==", "==> report <=="]
    assert logs.index("day 2 of 2") > logs.index("==> simulate <==")
    one = cli_server.cli("runs", "logs", str(run_id), "--task", "simulate").stdout
    assert "==>" not in one
