"""The Python client as a notebook uses it: run, wait, read metrics and logs, download, sweep."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import simyard
from simyard.errors import ValidationFailed
from tests.conftest import write_model
from tests.integration.conftest import Server, _server
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("sdk")
    for srv in _server(tmp, {}):
        assert srv.cli("models", "add", write_model(tmp / "toy", MODEL, FILES)).returncode == 0
        yield srv


@pytest.fixture
def forcing(tmp_path: Path) -> Path:
    path = tmp_path / "forcing.csv"
    path.write_text(FORCING)
    return path


def test_a_run_waited_for_gives_state_metrics_logs_and_outputs(
    sdk_server: Server, forcing: Path, tmp_path: Path
) -> None:
    with simyard.Client(sdk_server.url, token=sdk_server.tokens["admin"]) as client:
        run = client.run("toy", params={"days": 3}, inputs={"forcing": forcing}, wait=True)
        assert isinstance(run, simyard.Run)
        assert run.state == "succeeded"
        assert run.metrics["total"] == 30
        assert [t.state for t in run.tasks] == ["succeeded"] * 3
        assert "day 3 of 3" in run.logs("simulate")
        listed = {(o.task, o.path): o for o in run.outputs()}
        written = run.download(tmp_path / "out")
        assert written
        for path in written:
            task, *rest = path.relative_to(tmp_path / "out").parts
            expected = listed[(task, "/".join(rest))]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == expected.sha256
        summary = json.loads(
            (tmp_path / "out" / "simulate" / "results" / "summary.json").read_text()
        )
        assert summary["total"] == 30
        assert client.get(run.id).state == "succeeded"


def test_a_refused_run_names_every_problem(sdk_server: Server) -> None:
    with (
        simyard.Client(sdk_server.url, token=sdk_server.tokens["admin"]) as client,
        pytest.raises(ValidationFailed) as refused,
    ):
        client.run("toy", params={"days": "many", "nope": 1})
    fields = [p.field for p in refused.value.problems]
    assert "params.days" in fields
    assert "params.nope" in fields


def test_from_login_uses_what_simyard_login_stored(
    sdk_server: Server, forcing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = sdk_server.cli(
        "login", sdk_server.url, "-u", "admin", "--password", "correct horse battery"
    )
    assert logged.returncode == 0, logged.stderr
    monkeypatch.setenv("SIMYARD_CREDENTIALS_FILE", sdk_server.env["SIMYARD_CREDENTIALS_FILE"])
    monkeypatch.delenv("SIMYARD_URL", raising=False)
    monkeypatch.delenv("SIMYARD_TOKEN", raising=False)
    with simyard.Client.from_login() as client:
        run = client.run("toy", inputs={"forcing": forcing})
        assert run.wait(timeout=120).state == "succeeded"


def test_a_sweep_becomes_a_table_of_parameters_and_metrics(
    sdk_server: Server, forcing: Path
) -> None:
    with simyard.Client(sdk_server.url, token=sdk_server.tokens["admin"]) as client:
        sweep = client.sweep("toy", axes={"days": [1, 2, 3]}, inputs={"forcing": forcing})
        assert isinstance(sweep, simyard.Sweep)
        sweep.wait(timeout=180)
        assert sweep.state == "finished"
        assert [run.state for run in sweep.runs] == ["succeeded"] * 3
        table = sweep.to_dataframe()
    assert sorted(table["days"]) == [1, 2, 3]
    assert sorted(table["total"]) == [10, 20, 30]
    assert set(table["state"]) == {"succeeded"}
