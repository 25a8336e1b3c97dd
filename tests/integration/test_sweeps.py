"""Sweeps over HTTP and the CLI against a live server: grid, zip, table, refusals, one summary."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MakeModel
from tests.integration.conftest import Server
from tests.integration.test_notify import Smtp, mail_server, smtp  # noqa: F401 - fixtures
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow


@pytest.fixture
def toy_server(server: Server, make_model: MakeModel) -> Server:
    """The live server (SQLite and PostgreSQL) with the toy model registered."""
    assert server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
    return server


def wait_for_sweep(server: Server, sweep_id: int, user: str = "admin") -> dict[str, Any]:
    deadline = time.monotonic() + 180
    with server.http(user) as api:
        while time.monotonic() < deadline:
            found: dict[str, Any] = api.get(f"/sweeps/{sweep_id}").json()
            if found["state"] == "finished":
                return found
            time.sleep(0.2)
    raise AssertionError(f"sweep {sweep_id} did not finish: {found}")


def post_sweep(server: Server, user: str = "admin", **body: Any) -> Any:
    files = {"inputs.forcing": ("forcing.csv", FORCING.encode())}
    table = body.pop("table", None)
    if table is not None:
        files["table"] = ("runs.csv", table.encode())
    data = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in body.items()}
    with server.http(user) as api:
        return api.post("/sweeps", data={"model": "toy", **data}, files=files)


def test_cli_grid_sweep_runs_every_combination_and_sends_one_summary(
    mail_server: Server,  # noqa: F811 - the fixture
    smtp: Smtp,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    done = mail_server.cli(
        "sweep", "toy", "-p", "days=2,3", "-p", "albedo=0.05,0.95", "-p", "site=Lake X",
        "-i", f"forcing={tmp_path / 'forcing.csv'}", "--wait", "--json",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # two of the four runs fail (albedo 0.95)
    found = json.loads(done.stdout)
    assert found["state"] == "finished"
    assert found["counts"] == {"succeeded": 2, "failed": 2}
    combos = sorted((r["params"]["days"], r["params"]["albedo"]) for r in found["runs"])
    assert combos == [(2, 0.05), (2, 0.95), (3, 0.05), (3, 0.95)]
    assert {r["params"]["site"] for r in found["runs"]} == {"Lake X"}
    totals = sorted(r["metrics"]["total"] for r in found["runs"] if r["state"] == "succeeded")
    assert totals == [20, 30]

    ((rcpts, message),) = smtp.wait_for(1)
    time.sleep(2.0)  # one message per run would have arrived by now
    assert len(smtp.box.messages) == 1, [m["Subject"] for _, m in smtp.box.messages]
    assert rcpts == ["admin@example.org"]
    subject = f"[simyard] toy sweep {found['id']} finished: 2 failed, 2 succeeded"
    assert message["Subject"] == subject
    text = message.get_body(("plain",)).get_content()
    for run in found["runs"]:
        assert f"run {run['id']}" in text
    assert "total=30" in text
    assert "ERROR: albedo too high for open water" in text
    assert f"http://simyard.example.org/sweeps/{found['id']}" in text


def test_a_sweep_with_no_notify_sends_nothing(
    mail_server: Server,  # noqa: F811 - the fixture
    smtp: Smtp,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    forcing = f"forcing={tmp_path / 'forcing.csv'}"
    swept = mail_server.cli(
        "sweep", "toy", "-p", "days=2,3", "-i", forcing, "--no-notify", "--wait", "--json"
    )  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout)["counts"] == {"succeeded": 2}
    # A run after it does notify: once its message is in, the sweep's would have been too.
    single = mail_server.cli("run", "toy", "-p", "days=2", "-i", forcing, "--wait", "--json")
    assert single.returncode == 0, single.stderr
    run_id = json.loads(single.stdout)["id"]
    smtp.wait_for(1)
    time.sleep(2.0)
    subjects = [m["Subject"] for _, m in smtp.box.messages]
    assert subjects == [f"[simyard] toy run {run_id} succeeded"]


def test_zip_sweep_pairs_the_values(toy_server: Server) -> None:
    answer = post_sweep(toy_server, mode="zip", axes={"days": [1, 2, 3], "albedo": [0.1, 0.2, 0.3]})
    assert answer.status_code == 201, answer.text
    found = wait_for_sweep(toy_server, answer.json()["id"])
    pairs = sorted((r["params"]["days"], r["params"]["albedo"]) for r in found["runs"])
    assert pairs == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert found["counts"] == {"succeeded": 3}
    assert found["finished_at"] is not None


def test_refused_sweeps_name_the_axis_and_create_nothing(toy_server: Server) -> None:
    uneven = post_sweep(toy_server, mode="zip", axes={"days": [1, 2], "albedo": [0.1]})
    assert uneven.status_code == 422
    assert uneven.json()["errors"][0]["field"] == "axes"
    assert "days has 2, albedo has 1" in uneven.json()["errors"][0]["message"]

    bad = post_sweep(toy_server, axes={"days": [5, 200, 300], "pace": [0]})
    assert bad.status_code == 422
    errors = bad.json()["errors"]
    assert [e["field"] for e in errors] == ["axes.days", "axes.days"]
    assert errors[0]["message"].startswith("200: ")
    assert "at most 100" in errors[0]["message"]

    unknown = post_sweep(toy_server, axes={"dayz": [1, 2]})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "axes.dayz"

    too_many = post_sweep(toy_server, axes={"days": list(range(1, 41)), "pace": [0] * 30})
    assert too_many.status_code == 422
    assert "1200 runs" in too_many.json()["errors"][0]["message"]

    refused_cli = toy_server.cli("sweep", "toy", "-p", "days=1,1000")
    assert refused_cli.returncode == 2
    assert "axes.days: 1000:" in refused_cli.stderr

    with toy_server.http() as api:
        assert api.get("/runs").json() == []
        assert api.get("/sweeps").json() == []


def test_table_sweep_takes_one_run_per_row_and_names_a_bad_row(toy_server: Server) -> None:
    bad = post_sweep(toy_server, table="days,albedo\n2,0.1\n3,7\n")
    assert bad.status_code == 422
    ((error,),) = [bad.json()["errors"]]
    assert error["field"] == "table"
    assert "runs.csv row 3" in error["message"]
    assert "albedo" in error["message"]

    good = post_sweep(toy_server, params={"albedo": 0.2}, table="days,albedo\n2,0.1\n3,\n")
    assert good.status_code == 201, good.text
    found = wait_for_sweep(toy_server, good.json()["id"])
    assert found["mode"] == "table"
    rows = sorted((r["params"]["days"], r["params"]["albedo"]) for r in found["runs"])
    assert rows == [(2, 0.1), (3, 0.2)]  # the empty cell keeps the base value


def test_cancel_stops_every_run_and_others_cannot_see_the_sweep(toy_server: Server) -> None:
    toy_server.add_user("bob")
    answer = post_sweep(toy_server, params={"pace": 2}, axes={"days": [3, 4, 5]})
    assert answer.status_code == 201, answer.text
    sweep_id = answer.json()["id"]
    with toy_server.http("bob") as bob:
        assert bob.get(f"/sweeps/{sweep_id}").status_code == 404
        assert bob.post(f"/sweeps/{sweep_id}/cancel").status_code == 404
        assert bob.get("/sweeps").json() == []
    with toy_server.http(None) as anonymous:
        assert anonymous.get(f"/sweeps/{sweep_id}").status_code == 401
    with toy_server.http() as api:
        assert api.post(f"/sweeps/{sweep_id}/cancel").status_code == 200
    found = wait_for_sweep(toy_server, sweep_id)
    assert found["counts"] == {"cancelled": 3}
